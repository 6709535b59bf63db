"""Validation CER against wall-clock minutes of training, for runs measured on the same machine.

    .venv/bin/python bench/time_to_quality.py LABEL=RUN [LABEL=RUN ...] [--out curve.png]
        [--metric val/cer] [--json curves.json]

Each ``RUN`` is a run folder of ``rnnseq.train`` (several runs may share a label, e.g. the seeds
of one recipe: each is drawn, and the table gives each and their mean). The curve of a run is
its validation metric from TensorBoard against the minutes since its first logged event (the data
report, written when training starts: corpus building and feature caches are not counted, the
validations are). For each label the table gives the minutes each run needed to reach the best
value of the first label's runs (the reference, e.g. the old recipe), and its own best value.

To compare recipes, train them one after the other on the same machine with nothing else
running (``make train``, or ``python -m rnnseq.train experiment=asr ...``) and plot their runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def curve(run: Path, metric: str) -> list[tuple[float, float, int]]:
    """``(minutes since the run's first event, value, step)`` of every logged ``metric``."""
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    if metric not in tags:
        raise SystemExit(f"error: {run} logged no {metric} (it has {', '.join(sorted(tags))})")
    start = min(events.Scalars(tag)[0].wall_time for tag in tags)
    return [((e.wall_time - start) / 60, e.value, e.step) for e in events.Scalars(metric)]


def minutes_to_reach(points: list[tuple[float, float, int]], target: float) -> float | None:
    """The first minute at which the curve is at or below ``target`` (None if never)."""
    return next((minute for minute, value, _ in points if value <= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="LABEL=RUN")
    parser.add_argument("--metric", default="val/cer")
    parser.add_argument("--out", type=Path, default=Path("time_to_quality.png"))
    parser.add_argument("--json", type=Path, default=None, help="also write the curves here")
    parser.add_argument("--title", default="")
    args = parser.parse_args()

    curves: dict[str, list[tuple[str, list]]] = defaultdict(list)
    for item in args.runs:
        label, sep, run = item.partition("=")
        if not sep:
            raise SystemExit(f"error: {item!r} is not LABEL=RUN")
        curves[label].append((run, curve(Path(run), args.metric)))

    reference_label = next(iter(curves))
    target = statistics.mean(min(v for _, v, _ in points) for _, points in curves[reference_label])
    print(f"{args.metric}: minutes of training to reach {target:.3f}, the mean best of "
          f"{reference_label!r}")
    print(f"{'label':<24} {'run':<40} {'minutes':>8} {'best':>7} {'at minute':>9}")
    for label, runs in curves.items():
        reached = []
        for run, points in runs:
            minute = minutes_to_reach(points, target)
            best_minute, best, _ = min(points, key=lambda p: p[1])
            reached.append(minute)
            shown = f"{minute:8.1f}" if minute is not None else "   never"
            print(f"{label:<24} {Path(run).name:<40} {shown} {best:7.3f} {best_minute:9.1f}")
        if len(runs) > 1 and all(m is not None for m in reached):
            print(f"{label:<24} {'mean':<40} {statistics.mean(reached):8.1f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for colour, (label, runs) in zip(colours, curves.items()):
        for k, (_, points) in enumerate(runs):
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", color=colour,
                    alpha=0.9, label=label if k == 0 else None)
    ax.axhline(target, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("minutes of training (validations included)")
    ax.set_ylabel(f"{args.metric} (greedy)")
    ax.set_ylim(0, min(1.2, max(p[1] for runs in curves.values() for _, pts in runs for p in pts)))
    ax.grid(alpha=0.3)
    ax.legend()
    if args.title:
        ax.set_title(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    if args.json:
        args.json.write_text(json.dumps({label: {run: points for run, points in runs}
                                         for label, runs in curves.items()}, indent=1))


if __name__ == "__main__":
    main()
