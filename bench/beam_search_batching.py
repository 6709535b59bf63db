"""Beam search over utterances x beams in one batch, against one utterance at a time.

    .venv/bin/python bench/beam_search_batching.py [--run RUN] [--utterances 64] [--beam 4]

Decodes the first ``--utterances`` test utterances of a trained ``experiment=asr`` run (``--run``,
default: the newest run under ``experiments/asr/runs`` that has a checkpoint; without one, a
freshly initialised model of the default size) with the run's beam search, the way
``rnnseq.evaluate`` does: length-bucketed batches of ``--batch`` utterances, against batches of
one. The encoder runs inside the timing in both cases. Prints utterances per second, the
speed-up (targets: >= 1.5x on CPU, >= 10x on a GPU) and whether every hypothesis is identical.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import REPO, build_experiment, compose, interleaved, machine, median

from rnnseq.checkpoints import load_task
from rnnseq.data.batching import collate_examples
from rnnseq.tasks.speech_to_text import SpeechToText


def newest_run() -> Path | None:
    runs = sorted((REPO / "experiments" / "asr" / "runs").glob("*/checkpoints/best*.ckpt"))
    return runs[-1].parent.parent if runs else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--utterances", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    cfg = compose(["experiment=asr", "data.num_workers=0", f"threads={args.threads}"])
    datamodule, task = build_experiment(cfg)
    run = args.run or newest_run()
    if run is not None:
        task = load_task(SpeechToText, run, args.device)
    task = task.to(args.device).eval()
    task.hparams.decoding["beam_size"] = args.beam
    print(f"machine: {machine()}; device {args.device}")
    print(f"model: {run or 'untrained default model'}; beam {args.beam}, "
          f"{args.utterances} test utterances")

    dataset = datamodule.datasets["test"]
    items = sorted((dataset[i] for i in range(min(args.utterances, len(dataset)))),
                   key=lambda it: it.features.shape[0])
    seconds = sum(it.features.shape[0] for it in items) / 100  # 10 ms frames

    def batches(size: int):
        return [task.transfer_batch_to_device(collate_examples(items[i:i + size]), task.device, 0)
                for i in range(0, len(items), size)]

    batched, single = batches(args.batch), batches(1)
    outputs: dict[str, list[str]] = {}

    def decode(name: str, prepared):
        def run_all():
            hyps = []
            for batch in prepared:
                hyps.extend(task.beam_decode(batch))
            if task.device.type == "cuda":
                torch.cuda.synchronize()
            outputs[name] = hyps
        return run_all

    cases = {f"batch {args.batch}": decode("batched", batched), "batch 1": decode("single", single)}
    times = interleaved(cases, args.repeats)
    rate = {name: len(items) / median(values) for name, values in times.items()}
    for name, utts in rate.items():
        print(f"   {name:<10} {utts:8.1f} utterances/s  ({utts * seconds / len(items):7.1f} "
              f"audio seconds/s)")
    speedup = rate[f"batch {args.batch}"] / rate["batch 1"]
    same = outputs["batched"] == outputs["single"]
    differing = sum(a != b for a, b in zip(outputs["batched"], outputs["single"]))
    print(f"   throughput batch {args.batch} / batch 1: {speedup:.2f}x; hypotheses identical: "
          f"{same} ({differing} of {len(items)} differ)")


if __name__ == "__main__":
    main()
