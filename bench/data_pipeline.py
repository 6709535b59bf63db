"""The speech data pipeline of ``experiment=asr``: padding, feature extraction speed, data waits.

    .venv/bin/python bench/data_pipeline.py [--steps 40] [--utterances 300] [overrides]

1. **Padding**: padded frames / real frames of the length-bucketing sampler over the whole
   training split at the experiment's batch settings, for the sorted first epoch and for
   shuffled epochs, and for the validation and test loaders.
2. **Log-mel extraction**: seconds of audio turned into features per second of compute, with one
   thread, for the transform alone and for reading the file plus the transform.
3. **Waiting for data**: in a training loop with the default DataLoader workers, the time spent in
   ``next(loader)`` as a share of the step time (median of ``--repeats`` runs).
"""

from __future__ import annotations

import copy
import time

import lightning as L
import torch
from common import build_experiment, compose, machine, median, training_parser

from rnnseq.data.audio import LogMel, load_audio
from rnnseq.data.batching import padding_ratio


def loader_padding(datamodule, split: str, epoch: int) -> tuple[float, int]:
    """Padding ratio and batch count of ``split``'s loader at ``epoch``."""
    dataset = datamodule.datasets[split]
    loader = getattr(datamodule, {"train": "train_dataloader", "valid": "val_dataloader",
                                  "test": "test_dataloader"}[split])()
    sampler = loader.batch_sampler
    sampler.set_epoch(epoch)
    batches = list(sampler)
    return padding_ratio(dataset.frame_lengths(), batches), len(batches)


def extraction_speed(datamodule, utterances: int) -> tuple[float, float, float | None]:
    """Real-time factors (audio seconds per compute second, one thread) of the log-mel transform
    alone, of file reading plus the transform, and of reading the cached features (if cached)."""
    dataset = datamodule.datasets["train"]
    config = datamodule.feature_config
    logmel = LogMel(config)
    utts = dataset.utterances[:utterances]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        waves = [load_audio(u.audio_path, config.sample_rate) for u in utts]
        read_seconds = time.perf_counter() - start
        audio_seconds = sum(w.numel() for w in waves) / config.sample_rate
        logmel(waves[0])  # warm-up
        start = time.perf_counter()
        for wave in waves:
            logmel(wave)
        transform_seconds = time.perf_counter() - start
        cached = None
        if dataset.cache is not None:
            start = time.perf_counter()
            for i in range(len(utts)):
                dataset.cache[i]
            cached = audio_seconds / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return (audio_seconds / transform_seconds, audio_seconds / (transform_seconds + read_seconds),
            cached)


def data_wait_share(datamodule, template, cfg, steps: int, warmup: int) -> tuple[float, float]:
    """Share of the step time spent waiting for the next batch, and the mean step seconds."""
    from hydra.utils import instantiate

    task = copy.deepcopy(template)
    L.seed_everything(cfg.seed, verbose=False)
    task.train()
    optimizer = instantiate(cfg.task.optimizer, params=task.parameters())
    sorted_epochs, datamodule.sorted_epochs = datamodule.sorted_epochs, 0  # a mix of lengths
    iterator = iter(datamodule.train_dataloader())
    datamodule.sorted_epochs = sorted_epochs
    waits, totals = [], []
    for _ in range(steps):
        start = time.perf_counter()
        batch = next(iterator)
        got = time.perf_counter()
        loss = task.compute_losses(batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        waits.append(got - start)
        totals.append(time.perf_counter() - start)
    del iterator
    return sum(waits[warmup:]) / sum(totals[warmup:]), sum(totals[warmup:]) / (steps - warmup)


def main() -> None:
    parser = training_parser(__doc__, steps=40, warmup=5)
    parser.add_argument("--utterances", type=int, default=300, help="for the extraction speed")
    args = parser.parse_args()

    cfg = compose(["experiment=asr", *args.overrides])
    datamodule, template = build_experiment(cfg)
    print(f"machine: {machine()}")
    print(f"batches: max_frames={datamodule.max_frames}, max_batch_size={datamodule.max_batch_size}, "
          f"{datamodule.num_workers} worker(s)")

    print("\n1. padded frames / real frames (target <= 1.05)")
    sorted_epochs = datamodule.sorted_epochs
    rows = [("train", e, f"train, epoch {e} ({'sorted' if e < sorted_epochs else 'shuffled'})")
            for e in range(sorted_epochs + 1)]
    for split, epoch, label in [*rows, ("valid", 0, "valid"), ("test", 0, "test")]:
        ratio, count = loader_padding(datamodule, split, epoch)
        print(f"   {label:<28} {ratio:.4f}  ({count} batches)")
    datamodule.sorted_epochs = 0
    for epoch in (0, 1):
        ratio, count = loader_padding(datamodule, "train", epoch)
        print(f"   {f'train, sorted_epochs=0, epoch {epoch}':<28} {ratio:.4f}  ({count} batches)")
    datamodule.sorted_epochs = sorted_epochs

    print("\n2. log-mel extraction, one thread (target >= 1000x real time)")
    transform, with_reading, cached = extraction_speed(datamodule, args.utterances)
    print(f"   transform alone            {transform:8.0f}x real time")
    print(f"   read file + transform      {with_reading:8.0f}x real time")
    if cached is not None:
        print(f"   read from the cache        {cached:8.0f}x real time  (data.feature_cache)")

    print(f"\n3. waiting for data, {datamodule.num_workers} worker(s) (target <= 5 % of the step)")
    shares, steps = [], []
    for _ in range(args.repeats):
        share, step = data_wait_share(datamodule, template, cfg, args.steps, args.warmup)
        shares.append(share)
        steps.append(step)
    print(f"   {median(shares) * 100:.2f} % of {median(steps) * 1000:.0f} ms/step  "
          f"(runs: {', '.join(f'{s * 100:.2f} %' for s in shares)})")


if __name__ == "__main__":
    main()
