"""Intra-op threads against DataLoader workers on this machine, training the default speech model.

    .venv/bin/python bench/threads.py [--steps 30] [--warmup 5] [--repeats 3] [--grid 1x0,2x0,1x1,2x1,2x2]

On a machine with few cores, torch's intra-op threads in the training process and the feature
extraction in DataLoader workers compete for the same cores; an oversubscribed core makes the small
matrix products of an RNN wait for a descheduled thread. Every ``THREADSxWORKERS`` setting trains
the same steps of ``experiment=asr`` in a plain loop (same weights, batches and random state;
batches shuffled from the first step, a representative mix of lengths),
settings interleaved, and the script prints the median seconds per step and the ratio to the
fastest. Workers always run single-threaded; ``nNICE`` lowers their priority by NICE
(``data.worker_nice``).
"""

from __future__ import annotations

import copy
import os

import lightning as L
import torch
from common import (
    SHUFFLED,
    build_experiment,
    compose,
    interleaved,
    machine,
    median,
    plain_training,
    training_parser,
)


def main() -> None:
    parser = training_parser(__doc__, steps=30, warmup=5)
    parser.add_argument("--grid", default="2x0,1x1,2x1,2x1n10,2x2n10",
                        help="comma-separated THREADSxWORKERS[nNICE] settings (nNICE: workers "
                             "run NICE steps lower in priority)")
    args = parser.parse_args()

    cfg = compose(["experiment=asr", SHUFFLED, *args.overrides])
    datamodule, template = build_experiment(cfg)
    print(f"machine: {machine().rsplit(';', 1)[0]}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")

    def setting(threads: int, workers: int, nice: int):
        def run() -> float:
            torch.set_num_threads(threads)
            datamodule.num_workers = workers
            datamodule.worker_nice = nice
            task = copy.deepcopy(template)
            L.seed_everything(cfg.seed, verbose=False)
            seconds, _ = plain_training(task, datamodule.train_dataloader(), cfg, args.steps,
                                        args.warmup)
            return seconds
        return run

    cases = {}
    for item in args.grid.split(","):
        threads, workers = item.split("x")
        workers, _, nice = workers.partition("n")
        label = f"{threads} threads, {workers} workers" + (f" at nice {nice}" if nice else "")
        cases[label] = setting(int(threads), int(workers), int(nice or 0))
    results = interleaved(cases, args.repeats)
    best = min(median(v) for v in results.values())
    print(f"{'setting':<34} {'ms/step':>8} {'vs best':>8}   runs")
    for name, values in results.items():
        runs = ", ".join(f"{v * 1000:.0f}" for v in values)
        print(f"{name:<34} {median(values) * 1000:8.1f} {median(values) / best:8.2f}   {runs}")


if __name__ == "__main__":
    main()
