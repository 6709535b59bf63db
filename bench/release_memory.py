"""When to hand the memory glibc keeps free back to the system: speed, page faults and peak memory
of training steps under each setting of the ``release_free_memory`` callback.

    .venv/bin/python bench/release_memory.py [--steps 150] [--warmup 10] [--repeats 2] [overrides]

Releasing (``malloc_trim``) after a step keeps the process near the step's own working set, but
the next step allocates the same sizes again and the kernel hands the memory back page by page,
zeroed: the cost shows as minor page faults and as the process's CPU time spent in the kernel.
Each policy trains ``experiment=asr`` (plus overrides) on shuffled batches in a process of its own
(the machinery of ``bench/kernel_cache.py``, with the recipe's kernel cache), rounds alternating.
Reported per policy: ms per step after the warm-up, minor page faults per step, the kernel's share
of the CPU time, and the peak anonymous memory while training, as medians.
"""

from __future__ import annotations

import argparse

from common import machine, print_median_ratios
from kernel_cache import run_child

from rnnseq.resources import KERNEL_CACHE

CALLBACK = "callbacks.release_free_memory"
POLICIES = {
    "after every step": [f"{CALLBACK}.every_n_steps=1", f"{CALLBACK}.above_mb=0"],
    "every 10 steps": [f"{CALLBACK}.every_n_steps=10", f"{CALLBACK}.above_mb=0"],
    "above 1,300 MiB": [f"{CALLBACK}.every_n_steps=1", f"{CALLBACK}.above_mb=1300"],
    "above 1,500 MiB": [f"{CALLBACK}.every_n_steps=1", f"{CALLBACK}.above_mb=1500"],
    "never": [f"{CALLBACK}.every_n_steps=0"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the timing")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds")
    parser.add_argument("overrides", nargs="*", help="extra hydra overrides of experiment=asr")
    args = parser.parse_args()

    names = list(POLICIES)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(args.repeats):
        for name in names if r % 2 == 0 else reversed(names):
            argv = [f"--steps={args.steps}", f"--warmup={args.warmup}",
                    "--callbacks=release_free_memory", *POLICIES[name], *args.overrides]
            runs[name].append(run_child(KERNEL_CACHE, argv))
            print(f"round {r + 1}, {name}: {runs[name][-1]}", flush=True)

    print(f"\nmachine: {machine()}")
    print(f"experiment=asr {' '.join(args.overrides)}; precision {runs[names[0]][0]['precision']}; "
          f"{args.steps - args.warmup} steps timed after {args.warmup}, {args.repeats} rounds; medians")
    print_median_ratios("release", runs, ["ms_per_step", "page_faults_per_step", "system_share",
                                          "peak_anon_training_mb"])


if __name__ == "__main__":
    main()
