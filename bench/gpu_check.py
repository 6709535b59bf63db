"""One prepared check of rnnseq on a GPU, offline, on the tests' tiny corpora.

    python bench/gpu_check.py [--json PATH] [--budget-minutes 6.5] # on a GPU machine
    python bench/gpu_check.py --cpu-tiny                            # the same rows, tiny, on the CPU
    python bench/gpu_check.py --prepare DIR                         # here: what a GPU machine lacks

Rows (each prints ``ok``, ``failed: <reason>`` or ``skipped: <reason>``, its seconds, the peak
GPU memory allocated while it ran, and its numbers):

* ``train/<experiment>/<precision>``: every experiment of ``rnnseq/conf/experiment`` with a tiny
  model trains 20 steps and validates once through ``rnnseq.train.train`` (its callbacks and
  TensorBoard logger included), in ``32-true`` and ``bf16-mixed``.
* ``ddp/asr``: two ranks of ``DistributedDataParallel``, each on one of two fixed batches, against
  one process that averages both batches' gradients: the largest weight difference after one SGD
  step at learning rate 1 (so it is the gradients' difference). NCCL with two GPUs; with one,
  gloo with both ranks on ``cuda:0``.
* ``throughput/<asr|tts>``: the recipe-size model in bf16 on shuffled tiny-corpus batches:
  training utterances per second, and the share of wall time spent waiting in ``next(loader)``,
  with and without ``pin_memory``.
* ``beam/<batch>``: beam search (beam 4, CTC weight 0.3) of the recipe-size ``asr`` model with
  random weights, so every search runs to its length limit: utterances per second at batch 1 and
  batch 32 over the same 32 utterances.
* ``deterministic/<asr|tts>``: ``trainer.deterministic=true``, two runs with one seed: the largest
  weight difference. ``tts`` must give 0.0. ``asr`` has a CTC loss, whose CUDA backward has no
  deterministic kernel: the recipe (``rnnseq.train.resolve_determinism``) then runs Lightning's
  ``deterministic="warn"``, and the row shows how far the two runs drift.
* ``resume/<asr|tts>``: 20 steps uninterrupted against 10 steps and ``resume=`` for 10 more, both
  deterministic: the largest weight difference (checkpoints carry the CUDA random states).
* ``synthesize/tts``: ``rnnseq.synthesize`` speaks a sentence with the trained tiny tts run.

``--cpu-tiny`` (``tests/test_gpu_check.py`` runs it in ``make test``, so the script cannot rot):
asr and tts train 2 float32 steps on the CPU and the other experiments only compose; DDP runs
gloo with CPU tensors; beam search at batch 1 and 2; deterministic runs of 2 steps; throughput 4
tiny steps; the rows that need CUDA are skipped.

``--prepare DIR`` copies the tiny corpora the check reads (built here first where missing) to
``DIR/data`` and downloads the wheels that the GPU image lacks to ``DIR/wheels``, then prints
the command that runs the check there. DIR must be git-ignored (e.g. ``.whl/gpu_check``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from common import REPO, SHUFFLED, build_experiment, compose, machine, timed_training
from tiny import TINY_TTS

EXPERIMENTS = sorted(p.stem for p in (REPO / "rnnseq" / "conf" / "experiment").glob("*.yaml"))

# The tests' tiny settings (tests/conftest.py, tests/test_*_smoke.py, test_commands.py,
# test_forecast.py, test_librispeech_recipe.py); tests/test_gpu_check.py holds them equal.
ESPEAK_TINY = ["data.corpus.num_utterances={train:24,valid:6,test:6,test_text:6,test_voices:6,"
               "test_engine:6}", "data.corpus.voices=[en-us,en]", "data.corpus.variants=['','m3']",
               "data.corpus.max_words=6", "data.corpus.name=espeak-tiny"]
TINY_ASR = ["model.encoder.hidden_size=16", "model.encoder.num_layers=2",
            "model.encoder.conv_channels=4", "model.decoder.hidden_size=16",
            "model.decoder.embed_dim=8", "model.attention.attention_dim=8", "data.stats_utterances=10"]
TINY_LM = ["model.lm.embed_dim=16", "model.lm.hidden_size=24"]
TINY = {
    "asr": TINY_ASR + ESPEAK_TINY,
    "tts": TINY_TTS,
    "g2p": ["model.encoder.hidden_size=16", "model.decoder.hidden_size=16",
            "model.decoder.embed_dim=8", "model.attention.attention_dim=8", "task.source_embed_dim=8"],
    "textgen": TINY_LM + ["data.batch_size=8", "data.bptt=16"],
    "asr_lm": TINY_LM,
    "commands": ["model.encoder.hidden_size=16", "model.encoder.num_layers=1",
                 "model.encoder.conv_channels=4", "data.stats_utterances=10",
                 "+data.corpus.words=[yes,no,up,down]", "data.corpus.per_word={train:4,valid:2,test:2}",
                 "data.corpus.name=commands-tiny", "data.max_batch_size=4"],
    "forecast": ["model.encoder.hidden_size=8", "model.decoder.hidden_size=8"],
    "asr_librispeech": [
        "model.encoder.hidden_size=16", "model.encoder.num_layers=2", "model.encoder.conv_channels=2",
        "model.encoder.cell.proj_size=8", "model.decoder.hidden_size=16", "model.decoder.embed_dim=8",
        "model.attention.attention_dim=8", "model.attention.conv_kernel=5", "data.stats_utterances=4",
        "data.tokenizer.vocab_size=30", "task.decoding.beam_size=2", "task.average_checkpoints=0",
        "data.corpus.splits.train=[train-clean-5]"],
}
# Nothing random inside a step: two processes can then differ only in how gradients are summed.
NO_NOISE = ["model.encoder.dropout=0", "model.decoder.dropout=0", "task.spec_augment=null",
            "data.max_batch_size=4", "data.sorted_epochs=0"]
# A run stopped and resumed follows the same schedule only with a constant learning rate.
RESUMABLE = ["trainer.deterministic=true", "task.scheduler=null", "data.sorted_epochs=0",
             "callbacks.periodic_checkpoint.every_n_steps=10"]
# What rnnseq imports that the GPU image (torch, torchaudio, lightning, ...) lacks.
WHEELS = ["hydra-core", "omegaconf", "jiwer", "rapidfuzz", "soundfile", "cffi", "pycparser",
          "espeakng-loader"]
SOURCE_ONLY = ["antlr4-python3-runtime==4.9.3"]  # omegaconf's parser: no wheel on PyPI


class Skipped(Exception):
    """A row that cannot run here; the message says why."""


class Failed(Exception):
    """A row that ran and missed its target; it keeps the numbers it measured."""

    def __init__(self, reason: str, numbers: dict):
        super().__init__(reason)
        self.numbers = numbers


@dataclass
class Row:
    name: str
    status: str = "ok"
    seconds: float | None = None
    peak_mib: float | None = None  # torch.cuda.max_memory_allocated while the row ran
    numbers: dict = field(default_factory=dict)


@dataclass
class Check:
    """Where and how big the rows run."""

    cpu_tiny: bool
    work: Path  # run folders and temporary files
    deadline: float  # time.monotonic() after which the remaining rows are skipped
    cuda: bool = field(default_factory=torch.cuda.is_available)
    runs: dict = field(default_factory=dict)  # row name -> its run folder

    @property
    def steps(self) -> int:
        return 2 if self.cpu_tiny else 20

    def device(self) -> torch.device:
        return torch.device("cpu" if self.cpu_tiny else "cuda")

    def needs_cuda(self) -> None:
        """Skips a row that runs only on CUDA (in ``--cpu-tiny``, every one)."""
        if self.cpu_tiny or not self.cuda:
            raise Skipped("no CUDA" if not self.cuda else "--cpu-tiny runs on the CPU")


# -- running rows ----------------------------------------------------------------------------------
def measure(name: str, fn: Callable[[], dict], check: Check) -> Row:
    """Runs one row: its status, seconds, peak GPU memory and the numbers ``fn`` returns."""
    row = Row(name)
    if time.monotonic() > check.deadline:
        row.status = "skipped: the time budget (--budget-minutes) was spent"
        return row
    if check.cuda:
        torch.cuda.reset_peak_memory_stats()
    # A Trainer with deterministic=true switches deterministic algorithms on for the whole
    # process; the rows after it (CTC's CUDA backward has no such kernel) must not inherit that.
    deterministic = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
    start = time.perf_counter()
    try:
        row.numbers = fn()
    except Skipped as why:
        row.status = f"skipped: {why}"
    except Failed as miss:
        row.status, row.numbers = f"failed: {miss}", miss.numbers
    except Exception as err:  # a row that crashes is reported; the others still run
        traceback.print_exc()
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        row.status = f"failed: {type(err).__name__}: {message}"[:300]
    finally:
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
    row.seconds = round(time.perf_counter() - start, 1)
    if check.cuda:
        row.peak_mib = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    gc.collect()
    if check.cuda:
        torch.cuda.empty_cache()
    print(f"[gpu_check] {row.name}: {row.status} ({row.seconds} s)", file=sys.stderr, flush=True)
    return row


def experiment_overrides(experiment: str, check: Check) -> list[str]:
    """``experiment=<name>``, its tiny settings, and a LibriSpeech-layout fixture where needed."""
    overrides = [f"experiment={experiment}", *TINY[experiment]]
    if experiment == "asr_librispeech":
        root = librispeech_fixture(check.work / "LibriSpeech")
        overrides += [f"data.corpus.root={root}", f"data.corpus.out_dir={check.work / 'manifests'}"]
    return overrides


def trainer_overrides(check: Check, precision: str, steps: int) -> list[str]:
    """``steps`` training steps, one validation after the last (2 batches), no test, on one
    device: CUDA, or the CPU in ``--cpu-tiny``."""
    return [f"trainer.accelerator={'cpu' if check.cpu_tiny else 'gpu'}", "trainer.devices=1",
            "++trainer.strategy=auto", f"trainer.precision={precision}", "trainer.max_epochs=null",
            f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}",
            "trainer.check_val_every_n_epoch=null", "trainer.limit_val_batches=2",
            "trainer.num_sanity_val_steps=0", "trainer.max_time=null", "test=false",
            "data.num_workers=0", "callbacks.progress_bar=null", "++trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false", f"threads={1 if check.cpu_tiny else 'auto'}"]


def train_run(run_dir: Path, overrides: list[str]) -> dict:
    """``python -m rnnseq.train <overrides>`` in this process, into ``run_dir``: its results."""
    from rnnseq.train import train

    run_dir.mkdir(parents=True, exist_ok=True)  # Hydra's job, outside a Hydra run
    return train(compose(overrides, run_dir))


def last_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from rnnseq.checkpoints import load_checkpoint

    return load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["state_dict"]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest absolute difference between two state dicts' floating-point entries."""
    return max((x.float() - b[k].float()).abs().max().item()
               for k, x in a.items() if x.is_floating_point())


# -- rows ------------------------------------------------------------------------------------------
def train_row(experiment: str, precision: str, check: Check) -> Callable[[], dict]:
    """``check.steps`` steps and one validation of a tiny ``experiment`` (compose only for the
    experiments other than asr and tts in ``--cpu-tiny``)."""

    def run() -> dict:
        if experiment not in TINY:
            raise Skipped("no tiny settings for this experiment in bench/gpu_check.py")
        if not (check.cpu_tiny and precision == "32-true"):
            check.needs_cuda()
        overrides = [*experiment_overrides(experiment, check),
                     *trainer_overrides(check, precision, check.steps)]
        run_dir = check.work / "runs" / f"{experiment}-{precision}"
        if check.cpu_tiny and experiment not in ("asr", "tts"):
            from omegaconf import OmegaConf

            cfg = compose(overrides, run_dir)
            OmegaConf.to_container(cfg.trainer, resolve=True)  # interpolations resolve
            return {"composed": True}
        results = train_run(run_dir, overrides)
        check.runs[f"train/{experiment}/{precision}"] = run_dir
        numbers = {"steps": results["steps"], **{k: round(v, 4) for k, v in results["best_val"].items()
                                                 if v is not None}}
        if results["steps"] != check.steps or not results["best_val"]:
            raise Failed(f"{results['steps']} steps and validation {results['best_val']}", numbers)
        return numbers

    return run


def ddp_rank(rank: int, backend: str, state_file: str, out_file: str, rendezvous: str) -> None:
    """One rank of the DDP row: DistributedDataParallel over the task's loss on batch ``rank``,
    one backward, one SGD step; rank 0 saves the weights."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group(backend, init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    try:
        saved = torch.load(state_file, weights_only=False)
        device = torch.device(saved["device"] if backend != "nccl" else f"cuda:{rank}")
        if device.type == "cpu":
            torch.set_num_threads(1)
        task = saved["task"].to(device).train()
        model = DistributedDataParallel(TaskLoss(task), device_ids=[device.index] if
                                        device.type == "cuda" else None)
        optimizer = torch.optim.SGD(task.parameters(), lr=1.0)
        model(task.transfer_batch_to_device(saved["batches"][rank], device, 0)).backward()
        optimizer.step()
        if rank == 0:
            torch.save({k: v.cpu() for k, v in task.state_dict().items()}, out_file)
    finally:
        dist.destroy_process_group()


class TaskLoss(torch.nn.Module):
    """The task's training loss as a module's forward, so that DDP sees the whole step."""

    def __init__(self, task):
        super().__init__()
        self.task = task

    def forward(self, batch):
        return self.task.compute_losses(batch)["loss"]


def ddp_row(check: Check) -> dict:
    """Two DDP ranks, one batch each, against one process averaging both batches' gradients:
    the largest weight difference after one SGD step at learning rate 1 (target <= 1e-5)."""
    import torch.multiprocessing as mp

    if not check.cpu_tiny:
        check.needs_cuda()
    gpus = torch.cuda.device_count() if not check.cpu_tiny else 0
    backend = "nccl" if gpus >= 2 else "gloo"
    device = "cpu" if check.cpu_tiny else "cuda:0"
    cfg = compose([*experiment_overrides("asr", check), *NO_NOISE, "data.num_workers=0",
                   "threads=1" if check.cpu_tiny else "threads=auto"], check.work / "ddp")
    datamodule, task = build_experiment(cfg)
    batches = iter(datamodule.train_dataloader())
    folder = Path(tempfile.mkdtemp(dir=check.work, prefix="ddp-"))
    state_file, out_file = folder / "state.pt", folder / "rank0.pt"
    torch.save({"task": task, "batches": [next(batches), next(batches)], "device": device}, state_file)

    # A forked rank starts at once, but CUDA, once initialised here, needs freshly spawned ones.
    mp.start_processes(ddp_rank, args=(backend, str(state_file), str(out_file),
                                       str(folder / "rendezvous")), nprocs=2, join=True,
                       start_method="spawn" if torch.cuda.is_initialized() else "fork")

    saved = torch.load(state_file, weights_only=False)
    single = saved["task"].to(device).train()
    optimizer = torch.optim.SGD(single.parameters(), lr=1.0)
    for batch in saved["batches"]:
        (single.compute_losses(single.transfer_batch_to_device(batch, torch.device(device), 0))["loss"]
         / 2).backward()
    optimizer.step()
    difference = max_difference({k: v.cpu() for k, v in single.state_dict().items()},
                                torch.load(out_file, weights_only=True))
    numbers = {"backend": backend, "ranks_on": "cpu" if check.cpu_tiny else
               ("cuda:0,cuda:1" if backend == "nccl" else "cuda:0,cuda:0"),
               "max_weight_difference": float(f"{difference:.3g}")}
    if not difference <= 1e-5:
        raise Failed(f"weights differ by {difference:.3g} > 1e-5", numbers)
    return numbers


def timed_batches(loader, waits: list[float], sizes: list[int]):
    """The loader's batches, round and round, with the seconds each ``next`` waited."""
    while True:
        batches = iter(loader)
        while True:
            start = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            waits.append(time.perf_counter() - start)
            sizes.append(len(batch.ids))
            yield batch


def recipe(experiment: str, check: Check) -> tuple:
    """``(cfg, datamodule, task)`` of the recipe-size model on the tiny corpus (the tiny model
    in ``--cpu-tiny``), batches shuffled from the first step."""
    corpus = [o for o in TINY[experiment] if o.startswith("data.corpus")]
    model = [o for o in TINY[experiment] if o not in corpus] if check.cpu_tiny else []
    extra = ["data.num_workers=0", "threads=1"] if check.cpu_tiny else []
    search = ["task.decoding.beam_size=4", "task.decoding.ctc_weight=0.3"] if experiment == "asr" else []
    cfg = compose([f"experiment={experiment}", *corpus, *model, SHUFFLED, *extra, *search],
                  check.work / f"recipe-{experiment}")
    datamodule, task = build_experiment(cfg)
    return cfg, datamodule, task.to(check.device())


def throughput_row(experiment: str, check: Check) -> dict:
    """Training utterances per second of the recipe-size model in bf16 (float32 on the CPU), and
    the share of wall time spent in ``next(loader)``, without and with ``pin_memory``."""
    if not check.cpu_tiny:
        check.needs_cuda()
    steps, warmup = (4, 1) if check.cpu_tiny else (35, 5)
    cfg, datamodule, task = recipe(experiment, check)
    device = check.device()
    task.train()

    def loss_of(batch):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return task.compute_losses(task.transfer_batch_to_device(batch, device, 0))["loss"]

    numbers: dict = {"workers": datamodule.num_workers}
    for pin in (False, True) if device.type == "cuda" else (False,):  # pinning needs a GPU
        datamodule.pin_memory = pin
        waits: list[float] = []
        sizes: list[int] = []
        mean, _ = timed_training(loss_of, task.parameters(),
                                 timed_batches(datamodule.train_dataloader(), waits, sizes),
                                 cfg, steps, warmup)
        wall = mean * (steps - 1 - warmup)
        label = "pinned" if pin else "unpinned"
        numbers[f"utt_per_s_{label}"] = round(sum(sizes[warmup + 1:steps]) / wall, 1)
        numbers[f"data_wait_{label}"] = round(sum(waits[warmup + 1:steps]) / wall, 3)
    numbers["mean_batch"] = round(sum(sizes) / len(sizes), 1)
    return numbers


def beam_rows(check: Check) -> list[Row]:
    """Beam search (beam 4, CTC weight 0.3) of an untrained asr model: utterances per second at
    batch 1 and at the large batch, over the same utterances."""
    from rnnseq.data.batching import collate_examples

    sizes = (1, 2) if check.cpu_tiny else (1, 32)
    state: dict = {}

    def prepare() -> None:
        if not check.cpu_tiny:
            check.needs_cuda()
        if "task" not in state:
            _, datamodule, task = recipe("asr", check)
            splits = [s for s in datamodule.datasets if s != "train"]
            items = [datamodule.datasets[s][i] for s in splits for i in range(len(datamodule.datasets[s]))]
            count = sizes[-1]
            items = (items * (count // len(items) + 1))[:count]  # repeated where the corpus is smaller
            state.update(task=task.eval(), items=sorted(items, key=lambda it: it.features.shape[0]))

    def run(size: int) -> dict:
        prepare()
        task, items = state["task"], state["items"]
        batches = [task.transfer_batch_to_device(collate_examples(items[i:i + size]), task.device, 0)
                   for i in range(0, len(items), size)]
        task.beam_decode(batches[0])  # warm-up: kernels chosen, memory pools filled
        if task.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for batch in batches:
            task.beam_decode(batch)
        if task.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        return {"utt_per_s": round(len(items) / seconds, 1), "utterances": len(items),
                "weights": "random (every search runs to its length limit)"}

    return [measure(f"beam/{size}", lambda size=size: run(size), check) for size in sizes]


# How far two runs of 20 steps may drift apart when CUDA's CTC backward is not deterministic (its
# atomic sums change the last bits of some gradients): the largest weight difference.
CTC_TOLERANCE = 1e-3


def deterministic_row(experiment: str, check: Check) -> dict:
    """Two runs of ``trainer.deterministic=true`` with one seed: the largest weight difference.
    Without CTC it must be 0.0; with CTC on CUDA the recipe runs ``deterministic="warn"`` and
    the runs may differ by up to :data:`CTC_TOLERANCE`."""
    if not check.cpu_tiny:
        check.needs_cuda()
    overrides = [*experiment_overrides(experiment, check),
                 *trainer_overrides(check, "32-true", check.steps), "trainer.deterministic=true",
                 "trainer.limit_val_batches=0",  # the weights are compared, not scores
                 f"callbacks.periodic_checkpoint.every_n_steps={check.steps}"]
    first, second = (check.work / "runs" / f"deterministic-{experiment}-{n}" for n in (1, 2))
    train_run(first, overrides)
    train_run(second, overrides)
    difference = max_difference(last_weights(first), last_weights(second))
    ctc_on_cuda = experiment == "asr" and not check.cpu_tiny
    numbers = {"max_weight_difference": float(f"{difference:.3g}"),
               "mode": "warn (CTC backward)" if ctc_on_cuda else "true"}
    if difference > (CTC_TOLERANCE if ctc_on_cuda else 0.0):
        raise Failed(f"two deterministic runs differ by {difference:.3g}", numbers)
    return numbers


def resume_row(experiment: str, check: Check) -> dict:
    """20 deterministic steps uninterrupted against 10 steps and ``resume=`` for 10 more: the
    largest weight difference (0.0 without CTC, at most :data:`CTC_TOLERANCE` with it)."""
    check.needs_cuda()  # tests/test_resume.py checks resuming on the CPU
    base = [*experiment_overrides(experiment, check), *RESUMABLE]
    whole, parts = (check.work / "runs" / f"resume-{experiment}-{n}" for n in ("whole", "parts"))
    train_run(whole, [*base, *trainer_overrides(check, "32-true", 20)])
    first = train_run(parts, [*base, *trainer_overrides(check, "32-true", 20), "trainer.max_steps=10"])
    resumed = train_run(parts, [*base, *trainer_overrides(check, "32-true", 20), f"resume={parts}"])
    difference = max_difference(last_weights(whole), last_weights(parts))
    numbers = {"steps": f"{first['steps']}+{resumed['steps'] - first['steps']}",
               "max_weight_difference": float(f"{difference:.3g}")}
    if (first["steps"], resumed["steps"]) != (10, 20):
        raise Failed("the run did not stop at step 10 and resume to step 20", numbers)
    if difference > (CTC_TOLERANCE if experiment == "asr" else 0.0):
        raise Failed(f"the resumed run differs by {difference:.3g}", numbers)
    return numbers


def synthesize_row(check: Check) -> dict:
    """``rnnseq.synthesize`` on the trained tiny tts run, on the device the run trained on."""
    run = check.runs.get("train/tts/32-true")
    if run is None:
        raise Skipped("train/tts/32-true did not train")
    from rnnseq.synthesize import main as synthesize

    out = check.work / "spoken"
    with contextlib.redirect_stdout(sys.stderr):  # its lines would split the table
        status = synthesize([str(run), "good night sweet prince", "--out", str(out),
                             "--device", check.device().type])
    if status != 0 or not (out / "001.wav").is_file():
        raise Failed(f"exit status {status}", {})
    return {"wav_bytes": (out / "001.wav").stat().st_size}


def run_all(check: Check) -> list[Row]:
    """Every row, the most telling first (the budget skips the last ones)."""
    rows = [measure(f"train/{e}/{p}", train_row(e, p, check), check)
            for e in EXPERIMENTS for p in ("32-true", "bf16-mixed")]
    rows.append(measure("ddp/asr", lambda: ddp_row(check), check))
    rows += [measure(f"deterministic/{e}", lambda e=e: deterministic_row(e, check), check)
             for e in ("asr", "tts")]
    rows += [measure(f"resume/{e}", lambda e=e: resume_row(e, check), check) for e in ("asr", "tts")]
    rows += [measure(f"throughput/{e}", lambda e=e: throughput_row(e, check), check)
             for e in ("asr", "tts")]
    rows += beam_rows(check)
    rows.append(measure("synthesize/tts", lambda: synthesize_row(check), check))
    return rows


# -- output ----------------------------------------------------------------------------------------
def table(rows: list[Row]) -> str:
    """One line per row: name, status, seconds, peak GPU MiB, numbers."""
    width = max(len(r.name) for r in rows)
    lines = [f"{'row':<{width}}  {'status':<10} {'s':>6} {'peak MiB':>9}  numbers"]
    for r in rows:
        status = r.status if r.status == "ok" else r.status.split(":", 1)[0]
        numbers = " ".join(f"{k}={v}" for k, v in r.numbers.items())
        reason = "" if r.status == "ok" else r.status.split(":", 1)[1].strip()
        peak = "-" if r.peak_mib is None else f"{r.peak_mib:.0f}"
        seconds = "-" if r.seconds is None else f"{r.seconds:.1f}"
        lines.append(f"{r.name:<{width}}  {status:<10} {seconds:>6} {peak:>9}  "
                     f"{'  '.join(x for x in (numbers, reason) if x)}")
    return "\n".join(lines)


# -- preparing the GPU machine ---------------------------------------------------------------------
def librispeech_fixture(root: Path) -> Path:
    """A few seconds of tones in LibriSpeech's layout: train-clean-5, dev-clean, and
    test-clean/test-other as links to dev-clean."""
    import numpy as np
    import soundfile

    lines = ["go do you hear", "the staircase groaned", "words number one", "a short line",
             "no more than this", "then we went home", "it was late", "good night"]
    for subset, speaker, count in (("train-clean-5", "19", 8), ("dev-clean", "84", 4)):
        chapter = root / subset / speaker / "198"
        if chapter.is_dir():
            continue
        chapter.mkdir(parents=True)
        for n in range(count):
            t = np.arange(int(16000 * (1.5 + 0.25 * n))) / 16000
            soundfile.write(chapter / f"{speaker}-198-{n:04d}.flac",
                            (0.2 * np.sin(2 * np.pi * (200 + 40 * n) * t)).astype(np.float32), 16000)
        (chapter / f"{speaker}-198.trans.txt").write_text(
            "".join(f"{speaker}-198-{n:04d} {lines[n].upper()}\n" for n in range(count)))
    for subset in ("test-clean", "test-other"):
        if not (root / subset).exists():
            (root / subset).symlink_to(root / "dev-clean")
    return root


def corpus_folders(work: Path) -> set[Path]:
    """The data folders the check reads, each built here first if it is missing."""
    from hydra.utils import instantiate

    from rnnseq.data.builders.shakespeare import fetch_shakespeare
    from rnnseq.data.builders.sotu import fetch_sotu

    check = Check(cpu_tiny=True, work=work, deadline=float("inf"))
    folders = set()
    for experiment in ("asr", "tts", "commands", "g2p"):
        cfg = compose(experiment_overrides(experiment, check), work / experiment)
        source = cfg.data.get("corpus") or cfg.data.get("source")
        corpus = instantiate(source)
        corpus.build()
        folders.add(Path(getattr(corpus, "root", None) or corpus.folder))
    data_dir = Path(cfg.paths.data_dir)
    folders.add(fetch_shakespeare(data_dir / "shakespeare"))
    folders.add(fetch_sotu(data_dir / "sotu"))
    return folders


def prepare(folder: Path, python_version: str) -> None:
    """Copies the corpora into ``folder/data`` and downloads the wheels into ``folder/wheels``
    (Linux x86_64, CPython ``python_version``); prints the command that runs the check."""
    from importlib.metadata import version

    data_dir = Path(os.environ["RNNSEQ_DATA_DIR"]).resolve()
    with tempfile.TemporaryDirectory() as work:
        for source in sorted(corpus_folders(Path(work))):
            target = folder / "data" / source.resolve().relative_to(data_dir)
            if not target.exists():
                shutil.copytree(source, target)
    wheels = folder / "wheels"
    pip = [sys.executable, "-m", "pip", "-q"]
    platforms = [f"--platform=manylinux_2_{n}_x86_64" for n in (17, 27, 28)]
    subprocess.run([*pip, "download", "--no-deps", "--only-binary=:all:", "--implementation=cp",
                    f"--python-version={python_version}", *platforms, "-d", str(wheels),
                    *(f"{name}=={version(name)}" for name in WHEELS)], check=True)
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), *SOURCE_ONLY], check=True)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
    rel = os.path.relpath(folder, REPO)
    print(f"{folder}: {size:.1f} MiB. On the GPU machine, from the repository root (carry {rel}):\n"
          f"  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "
          f"/tmp/site {rel}/wheels/*.whl && PYTHONPATH=/tmp/site:. RNNSEQ_DATA_DIR={rel}/data "
          f"PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --json $OUT/gpu_check.json")


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=REPO / "experiments/benchmarks/gpu_check.json")
    parser.add_argument("--cpu-tiny", action="store_true", help="the tiny CPU mode of make test")
    parser.add_argument("--budget-minutes", type=float, default=6.5,
                        help="rows that would start later are skipped (a started row finishes)")
    parser.add_argument("--prepare", type=Path, metavar="DIR",
                        help="copy the corpora and download the wheels a GPU machine lacks")
    parser.add_argument("--python-version", default="3.12", help="the GPU image's Python (--prepare)")
    args = parser.parse_args(argv)
    os.environ.setdefault("RNNSEQ_DATA_DIR", str(REPO / "data"))
    # PyTorch reads cuBLAS's workspace setting once, at its first cuBLAS call; the deterministic
    # rows (Lightning sets this when they start) come after other rows in this process.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    from rnnseq.console import quiet_third_party

    quiet_third_party()
    if args.prepare:
        prepare(args.prepare.resolve(), args.python_version)
        return []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        check = Check(cpu_tiny=args.cpu_tiny, work=Path(work),
                      deadline=started + 60 * args.budget_minutes)
        rows = run_all(check)
    text = table(rows)
    print(f"machine: {machine()}\n{text}\ntotal: {time.monotonic() - started:.0f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine(), "mode": "cpu-tiny" if args.cpu_tiny else "gpu",
                                     "seconds": round(time.monotonic() - started, 1),
                                     "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
