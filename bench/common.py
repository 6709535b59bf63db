"""What the benchmarks share: the repository on the import path, the machine they ran on, the
experiment config composed as ``python -m rnnseq.train`` would, and interleaved timing."""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def parser(description: str, repeats: int) -> argparse.ArgumentParser:
    """The command line every benchmark shares: ``--repeats``, ``--threads``, ``--device``."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=repeats, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser


def training_parser(description: str, steps: int, warmup: int) -> argparse.ArgumentParser:
    """The command line of the benchmarks that time training steps of ``experiment=asr``:
    ``--steps``, ``--warmup``, ``--repeats`` and Hydra overrides after the options."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--warmup", type=int, default=warmup, help="steps left out of the timing")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("overrides", nargs="*", help="extra hydra overrides of experiment=asr")
    return parser


def device_from(args: argparse.Namespace) -> torch.device:
    """Applies ``--threads`` and returns ``--device``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return torch.device(args.device)


def machine() -> str:
    """One line naming the CPU (and GPU), core count, torch version and intra-op threads."""
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return (f"{cpu}, {cores} cores{gpu}; torch {torch.__version__}, "
            f"{torch.get_num_threads()} intra-op threads")


def compose(overrides: list[str], run_dir: str | Path | None = None):
    """The config ``python -m rnnseq.train <overrides>`` would run with, its output folder set to
    ``run_dir`` (a new temporary folder by default)."""
    from rnnseq.config import compose_train_config

    return compose_train_config(overrides, run_dir or tempfile.mkdtemp(prefix="rnnseq-bench-"))


# Steps timed on a representative mix of lengths: the first epoch is otherwise sorted short to
# long (SortaGrad), and its first steps hold the shortest utterances of the corpus.
SHUFFLED = "data.sorted_epochs=0"


def interleaved(cases: dict[str, Callable[[], float | None]], repeats: int) -> dict[str, list[float]]:
    """Runs every case once per round, ``repeats`` rounds, alternating the order each round so
    that neither side always runs first (warm caches, turbo, other load hit both alike).

    A case returns its own measurement (e.g. seconds per step), or ``None`` to be timed whole.
    """
    names = list(cases)
    results: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            start = time.perf_counter()
            value = cases[name]()
            results[name].append(time.perf_counter() - start if value is None else value)
    return results


def median(values: list[float]) -> float:
    return statistics.median(values)


def print_median_ratios(column: str, runs: dict, keys: list[str]) -> None:
    """One row per case of ``runs`` (case -> a dict of measurements per round): the median of
    each of ``keys`` and its ratio to the first case's."""
    cases = list(runs)
    width = max(len(column), *(len(str(case)) for case in cases))
    print(f"{column:>{width}} " + " ".join(f"{k:>24}" for k in keys))
    base = {k: median([run[k] for run in runs[cases[0]]]) for k in keys}
    for case in cases:
        values = {k: median([run[k] for run in runs[case]]) for k in keys}
        print(f"{case!s:>{width}} " + " ".join(
            f"{values[k]:>15.2f} ({values[k] / base[k]:5.2f}x)" for k in keys))


def timed(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build_experiment(cfg):
    """The datamodule (set up) and the task (feature statistics set) that ``rnnseq.train`` would
    build from ``cfg``."""
    from rnnseq.train import build_data_and_task

    return build_data_and_task(cfg)


class StepTimer:
    """End times of training steps, for the mean step time after ``warmup`` steps.

    On a GPU, work is queued; the timer waits for the device only at the two steps that bound the
    timed window, so the steps in between run as they would in training.
    """

    def __init__(self, steps: int, warmup: int):
        if not 0 <= warmup < steps - 1:
            raise ValueError(f"need 0 <= warmup < steps - 1, got warmup={warmup}, steps={steps}")
        self.steps, self.warmup = steps, warmup
        self.times: list[float] = []
        self.usage: list[resource.struct_rusage] = []  # the process's CPU times and page faults

    def lap(self) -> None:
        if torch.cuda.is_available() and len(self.times) in (self.warmup, self.steps - 1):
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        self.usage.append(resource.getrusage(resource.RUSAGE_SELF))

    def mean(self) -> float:
        """Mean seconds per step after the first ``warmup`` steps."""
        return (self.times[-1] - self.times[self.warmup]) / (len(self.times) - 1 - self.warmup)

    def kernel_work(self) -> dict[str, float]:
        """After the warm-up: minor page faults per step (memory handed to the process anew) and
        the share of the process's CPU time spent in the kernel."""
        first, last = self.usage[self.warmup], self.usage[-1]
        system, user = last.ru_stime - first.ru_stime, last.ru_utime - first.ru_utime
        steps = len(self.usage) - 1 - self.warmup
        return {"page_faults_per_step": (last.ru_minflt - first.ru_minflt) / steps,
                "system_share": system / max(system + user, 1e-9)}


def plain_training(task, loader, cfg, steps: int, warmup: int) -> tuple[float, list[torch.Tensor]]:
    """A minimal hand-written loop over ``loader`` with the optimiser, schedule and gradient
    clipping of ``cfg``, on the GPU when there is one: mean seconds per step after ``warmup``
    steps, and every step's loss."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    task.to(device).train()

    def loss_of(batch):
        return task.compute_losses(task.transfer_batch_to_device(batch, device, 0))["loss"]

    return timed_training(loss_of, task.parameters(), loader, cfg, steps, warmup)


def timed_training(loss_of: Callable[[object], torch.Tensor], parameters, batches, cfg, steps: int,
                   warmup: int, seconds: float | None = None) -> tuple[float, list[torch.Tensor]]:
    """``loss_of(batch)``, zero_grad, backward, gradient clipping, optimiser and schedule step
    for each of ``steps`` batches (or until ``seconds`` have passed), with the optimiser, schedule
    and clipping of ``cfg``: mean seconds per step after ``warmup`` steps, and every step's loss
    (still on the device)."""
    from hydra.utils import instantiate

    parameters = list(parameters)
    optimizer = instantiate(cfg.task.optimizer, params=parameters)
    schedule = {k: v for k, v in cfg.task.scheduler.items() if k not in ("interval", "monitor")}
    scheduler = instantiate(schedule)(optimizer, total_steps=steps)
    clip = cfg.trainer.gradient_clip_val
    timer, losses = StepTimer(steps, warmup), []
    start = time.perf_counter()
    for batch in batches:
        loss = loss_of(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, clip)
        optimizer.step()
        scheduler.step()
        losses.append(loss.detach())
        timer.lap()
        if len(losses) == steps or (seconds is not None and time.perf_counter() - start >= seconds):
            break
    return timer.mean(), losses
