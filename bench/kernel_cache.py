"""How many compiled oneDNN kernels a process should keep: the speed and memory of training steps
and of the test split's beam search with each cache capacity.

    .venv/bin/python bench/kernel_cache.py [--capacities 1024,16] [--steps 40] [--warmup 10]
        [--repeats 2] [--checkpoint CKPT] [overrides]

oneDNN runs torch's CPU convolutions, bf16 LSTMs and some matrix products, and keeps a compiled
kernel for each input shape it meets (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``, 1,024 by default; the
entry points set ``rnnseq.resources.KERNEL_CACHE``). It reads the variable once, so each capacity
runs in a process of its own, and the rounds alternate their order. In each process: training
steps of ``experiment=asr`` (plus overrides) through Lightning's Trainer in the recipe's precision
on shuffled batches, then, with ``--checkpoint`` (a trained run's weights, so that hypotheses end
as they would), the recipe's beam search over the whole test split. Reported per capacity: ms per
training step after the warm-up, seconds of decoding, and the peak anonymous memory (``RssAnon``,
sampled every 5 ms) while training and while decoding, and the minor page faults per step and the
kernel's share of the CPU time. Only the callbacks named in ``--callbacks`` train with the steps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import lightning as L
import torch
from common import SHUFFLED, StepTimer, build_experiment, compose, machine, print_median_ratios
from omegaconf import open_dict

from rnnseq.resources import anonymous_memory_mb
from rnnseq.train import resolve_precision

RESULT = "RESULT "


class PeakMemory:
    """The largest ``RssAnon`` seen in each phase, sampled by a background thread."""

    def __init__(self, every_s: float = 0.005):
        self.phase, self.peaks = "setup", {}
        threading.Thread(target=self._sample, args=(every_s,), daemon=True).start()

    def _sample(self, every_s: float) -> None:
        while True:
            anon = anonymous_memory_mb() or 0.0
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), anon)
            time.sleep(every_s)


class StepClock(L.Callback):
    def __init__(self, timer: StepTimer):
        self.timer = timer

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.timer.lap()


def child(args) -> dict:
    """One process, one capacity (already in the environment): the measurements."""
    memory = PeakMemory()
    out = Path(tempfile.mkdtemp(prefix="rnnseq-kernel-cache-"))
    cfg = compose(["experiment=asr", SHUFFLED, *args.overrides], out)
    datamodule, task = build_experiment(cfg)
    if args.checkpoint:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        task.load_state_dict(state)
    trainer_cfg = resolve_precision(cfg.trainer.copy())
    precision = trainer_cfg.precision
    with open_dict(trainer_cfg):
        trainer_cfg.update(max_steps=args.steps, max_epochs=None, max_time=None,
                           limit_val_batches=0, num_sanity_val_steps=0, val_check_interval=None,
                           check_val_every_n_epoch=1, enable_model_summary=False,
                           enable_checkpointing=False, logger=False, enable_progress_bar=False)
    from hydra.utils import instantiate

    timer = StepTimer(args.steps, args.warmup)
    callbacks = [instantiate(cfg.callbacks[name]) for name in args.callbacks.split(",") if name]
    trainer = instantiate(trainer_cfg, callbacks=[StepClock(timer), *callbacks])
    memory.phase = "training"
    trainer.fit(task, datamodule=datamodule)
    result = {"ms_per_step": 1000 * timer.mean(), **timer.kernel_work(), "precision": precision}
    if args.checkpoint:
        memory.phase = "decoding"
        tester = L.Trainer(accelerator="cpu", devices=1, precision=precision, logger=False,
                           enable_checkpointing=False, enable_progress_bar=False,
                           enable_model_summary=False)
        datamodule.setup("test")
        started = time.perf_counter()
        tester.test(task, dataloaders=datamodule.test_dataloader(), verbose=False)
        result["decoding_s"] = time.perf_counter() - started
    memory.phase = "done"
    result.update({f"peak_anon_{phase}_mb": round(mb) for phase, mb in memory.peaks.items()
                   if phase in ("training", "decoding")})
    shutil.rmtree(out, ignore_errors=True)
    return result


def run_child(capacity: int, argv: list[str]) -> dict:
    env = {**os.environ, "ONEDNN_PRIMITIVE_CACHE_CAPACITY": str(capacity)}
    done = subprocess.run([sys.executable, __file__, "--child", *argv], env=env, text=True,
                          capture_output=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        sys.exit(f"capacity {capacity} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT):])


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capacities", default="1024,16", help="comma-separated; first: baseline")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the timing")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--checkpoint", default=None, help="weights to start from and decode with")
    parser.add_argument("--callbacks", default="",
                        help="comma-separated recipe callbacks to train with (release_free_memory)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="extra hydra overrides of experiment=asr")
    args = parser.parse_args()
    if args.child:
        print(RESULT + json.dumps(child(args)), flush=True)
        return

    argv = [f"--steps={args.steps}", f"--warmup={args.warmup}", f"--callbacks={args.callbacks}",
            *args.overrides]
    if args.checkpoint:
        argv.insert(0, f"--checkpoint={args.checkpoint}")
    capacities = [int(c) for c in args.capacities.split(",")]
    runs: dict[int, list[dict]] = {c: [] for c in capacities}
    for r in range(args.repeats):
        for capacity in capacities if r % 2 == 0 else reversed(capacities):
            runs[capacity].append(run_child(capacity, argv))
            print(f"round {r + 1}, capacity {capacity}: {runs[capacity][-1]}", flush=True)

    print(f"\nmachine: {machine()}")
    print(f"experiment=asr {' '.join(args.overrides)}; precision {runs[capacities[0]][0]['precision']}"
          f"; {args.steps - args.warmup} steps timed after {args.warmup}, {args.repeats} rounds; "
          f"medians")
    print_median_ratios("capacity", runs, [k for k in runs[capacities[0]][0] if k != "precision"])


if __name__ == "__main__":
    main()
