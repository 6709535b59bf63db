"""Score a finished run's checkpoint again, optionally with other decoding settings.

    python -m rnnseq.evaluate experiments/asr/runs/<time> decoding.beam_size=8
    python -m rnnseq.evaluate experiments/asr/runs/<time> \\
        decoding.lm=experiments/asr_lm/runs/<time> decoding.lm_weight=0.3

The run's own config (``.hydra/config.yaml``) rebuilds its data (relative data paths resolve
against the working directory, as in training: run it from the same folder, or set
``RNNSEQ_DATA_DIR``); the checkpoint (the run's best
unless ``--checkpoint`` names one) rebuilds the task. ``decoding.KEY=VALUE`` arguments replace the
task's decoding settings. Metrics are printed and written, with every output, to
``<run>/evaluations/<split>-<time>.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

DECODING_PREFIX = "decoding."


def parse_decoding(assignments: list[str]) -> dict:
    """``["decoding.beam_size=8", "decoding.lm=null"]`` -> ``{"beam_size": 8, "lm": None}``
    (values parsed as YAML, so numbers, booleans and null work)."""
    out = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith(DECODING_PREFIX) or key == DECODING_PREFIX:
            raise ValueError(f"expected decoding.KEY=VALUE, got {item!r}")
        out[key[len(DECODING_PREFIX):]] = yaml.safe_load(value)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rnnseq.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run folder written by rnnseq.train")
    parser.add_argument("decoding", nargs="*", help="decoding.KEY=VALUE overrides")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint to score (default: the best)")
    parser.add_argument("--split", choices=("test", "valid"), default="test")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args(argv)
    try:
        args.decoding = parse_decoding(args.decoding)
    except ValueError as err:
        parser.error(str(err))
    return args


def evaluate(run: Path, decoding: dict, checkpoint: Path | None = None, split: str = "test") -> dict:
    """Scores ``split`` of the run's data with its checkpoint; returns the written record."""
    import lightning as L
    from hydra.utils import get_class, instantiate
    from omegaconf import OmegaConf

    import rnnseq.config  # noqa: F401  (registers the ${metric:...} resolver)
    from rnnseq.checkpoints import find_checkpoint
    from rnnseq.reporting import write_results

    config_path = run / ".hydra" / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} is missing: is {run} a folder written by rnnseq.train?")
    cfg = OmegaConf.load(config_path)
    checkpoint = checkpoint or find_checkpoint(run)
    task = get_class(cfg.task._target_).load_from_checkpoint(checkpoint, map_location="cpu",
                                                             weights_only=False)
    unknown = set(decoding) - set(task.hparams.get("decoding", {})) - {"lm", "lm_weight"}
    if unknown:
        raise ValueError(f"unknown decoding settings {sorted(unknown)}; this task has "
                         f"{sorted(task.hparams.get('decoding', {}))}")
    task.hparams.decoding.update(decoding)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("test")
    loader = datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()
    trainer = L.Trainer(accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False)
    started = time.time()
    metrics = trainer.test(task, dataloaders=loader, verbose=False)[0]
    record = {
        "run": str(run), "checkpoint": str(checkpoint), "split": split,
        "decoding": dict(task.hparams.decoding),
        # The task logs under test/ whatever split it scored; name the split that was scored.
        "metrics": {k.replace("test/", f"{split}/", 1): float(v) for k, v in metrics.items()},
        "seconds": round(time.time() - started, 1),
        "items": getattr(task, "test_results", []),
    }
    out = run / "evaluations" / f"{split}-{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    out.parent.mkdir(exist_ok=True)
    write_results(out, record)
    record["path"] = str(out)
    return record


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        record = evaluate(args.run, args.decoding, args.checkpoint, args.split)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"decoding: {record['decoding']}")
    for name, value in sorted(record["metrics"].items()):
        print(f"{name}: {value:.4f}")
    print(f"written to {record['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
