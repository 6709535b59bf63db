"""Score a trained model: a split of its run's data or any JSONL manifest, with any decoding.

    python -m rnnseq.evaluate run=experiments/asr/runs/<time>                    # its test split
    python -m rnnseq.evaluate run=<run> --split valid decoding.beam_size=1        # greedy, valid
    python -m rnnseq.evaluate run=<run> data.manifests.test=/corpus/other.jsonl   # data overrides
    python -m rnnseq.evaluate run=<run or .ckpt> --manifest my_audio.jsonl        # your own audio
    python -m rnnseq.evaluate run=<run> decoding.lm=experiments/asr_lm/runs/<time> \
        decoding.lm_weight=0.2                                                    # LM fusion
    python -m rnnseq.evaluate run=<run> decoding.ctc_weight=0.3 --nbest 8         # n-best, oracle
    python -m rnnseq.evaluate run=<run> --split valid --sweep decoding.ctc_weight=0,0.3,0.5 \
        --sweep decoding.length_penalty=0.5,1                                    # weight sweep
    python -m rnnseq.evaluate run=<tts run> --split test_long synthesis.window=[1,3] \
        evaluation.asr=experiments/asr/runs/<time>                               # synthesis

The checkpoint (the run's best unless ``--checkpoint`` names one) rebuilds the task;
``decoding.KEY=VALUE`` replaces its decoding settings (``decoding.mode=greedy``, ``ctc_greedy``
or ``ctc_beam``, which switch off the run's beam-only settings unless given again; scorer
weights; see ``rnnseq/conf/task/speech_to_text.yaml``); ``--nbest N`` keeps the
N best hypotheses of every item with their scores and reports the oracle WER. A synthesis run
takes ``synthesis.KEY=VALUE`` (stop and attention settings) and
``evaluation.asr=<speech-to-text run>`` (the round trip) instead, and is scored on a split of its
data. A split is rebuilt from the run's
``.hydra/config.yaml`` (relative data paths resolve against the working directory, as in
training; or set ``RNNSEQ_DATA_DIR``). A ``--manifest`` is read with the run's batching settings
(``data.max_frames``, ``data.max_batch_size``, overridable as ``data.KEY=VALUE``) and its
references pass through the checkpoint's transcript normaliser, as the training transcripts did.
It decodes in the precision the run trained in (``trainer.precision``; ``auto`` resolves for
this machine), so a split scores as in the run's own results.
The report, written to ``<run>/evaluations/<split or manifest>-<time>.json``, holds the settings,
metrics, decoding time, real-time factor (decoding seconds per second of audio), every item with
its reference (raw and normalised), hypothesis and word errors, and every item that could not be
scored with the reason; a summary is printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from rnnseq.arguments import DECODING_PREFIX, is_setting, parse_assignments, take_run
from rnnseq.evaluation import evaluate, sweep_decoding

SETTING_PREFIXES = (DECODING_PREFIX, "synthesis.", "evaluation.")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line as a namespace (``run``, ``decoding``, ``data``, ...)."""
    parser = argparse.ArgumentParser(prog="python -m rnnseq.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", nargs="+",
                        help="run=<run folder or .ckpt> (or the path alone first), decoding.KEY=VALUE")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint to score (default: the best)")
    parser.add_argument("--split", default="test",
                        help="test (default), valid, or an extra test split of the run's data "
                             "(test_text, test_voices)")
    parser.add_argument("--manifest", type=Path,
                        help="score this JSONL manifest instead of a split of the run's data")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--device", default="auto",
                        help="auto (a GPU where there is one), cpu, cuda, cuda:1, ...")
    parser.add_argument("--sweep", action="append", default=[], metavar="decoding.KEY=V1,V2",
                        help="score every combination of these decoding values on --split "
                             "(repeatable; the encoder runs once per batch for all of them)")
    parser.add_argument("--nbest", type=int, default=None, metavar="N",
                        help="write the N best hypotheses of every item with their scores and "
                             "report the oracle WER (beam search; the same as decoding.nbest=N)")
    args = parser.parse_intermixed_args(argv)
    try:
        run, args.items = take_run(args.items)
    except ValueError as err:
        parser.error(str(err))
    stray = [i for i in args.items if not is_setting(i)]
    if run is None or stray:
        parser.error(f"give one run folder or checkpoint (run=PATH or the path alone)"
                     f"{'; also got ' + ' '.join(stray) if stray else ''}")
    args.run = Path(run)
    try:
        args.settings = {prefix[:-1]: parse_assignments(
            [i for i in args.items if i.startswith(prefix)], prefix) for prefix in SETTING_PREFIXES}
    except ValueError as err:
        parser.error(str(err))
    args.decoding = args.settings["decoding"]
    if args.nbest is not None:
        args.decoding["nbest"] = args.nbest
    args.data = [i for i in args.items if i.startswith("data.")]
    unknown = [i for i in args.items if not i.startswith(("data.", *SETTING_PREFIXES))]
    if unknown:
        parser.error(f"expected run=, data.KEY=VALUE, decoding.KEY=VALUE (or for synthesis, "
                     f"synthesis.KEY=VALUE and evaluation.KEY=VALUE), got {unknown}")
    return args


def parse_sweep(assignments: list[str]) -> dict[str, list]:
    """``["decoding.ctc_weight=0,0.3", "decoding.beam_size=4,8"]`` -> ``{"ctc_weight": [0, 0.3],
    "beam_size": [4, 8]}`` (values read as YAML)."""
    grid = {}
    for assignment in assignments:
        key, sep, values = assignment.partition("=")
        if not key.startswith(DECODING_PREFIX) or not sep or not values:
            raise ValueError(f"--sweep {assignment}: expected decoding.KEY=V1,V2,...")
        grid[key[len(DECODING_PREFIX):]] = [yaml.safe_load(v) for v in values.split(",")]
    return grid


def print_sweep(record: dict) -> int:
    """A table of a :func:`sweep_decoding` record, best first by its first metric."""
    rows = record["results"]
    names = list(rows[0]["metrics"]) if rows else []
    ranked = sorted(rows, key=lambda r: r["metrics"][names[0]]) if names else rows
    print(f"{record['items']} items of {record['data']}, encoded once in "
          f"{record['encoding_seconds']} s")
    for row in ranked:
        settings = " ".join(f"{k}={v}" for k, v in row["settings"].items())
        scores = "  ".join(f"{k}: {v:.4f}" for k, v in row["metrics"].items())
        print(f"{settings:40s}  {scores}  ({row['seconds']} s)")
    print(f"written to {record['path']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m rnnseq.evaluate``; returns the exit status."""
    from rnnseq.console import quiet_third_party
    from rnnseq.resources import limit_kernel_cache

    quiet_third_party()
    limit_kernel_cache()
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        if args.sweep:
            if args.manifest:
                raise ValueError("--sweep scores a split of the run's data (--split), not a "
                                 "--manifest")
            return print_sweep(sweep_decoding(args.run, parse_sweep(args.sweep), args.decoding,
                                              args.split, args.checkpoint, args.data,
                                              args.device))
        record = evaluate(args.run, args.decoding, args.checkpoint, args.split, args.manifest,
                          args.data, args.settings["synthesis"], args.settings["evaluation"],
                          args.device)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for group in ("decoding", "synthesis", "evaluation"):
        if record.get(group):
            print(f"{group}: {record[group]}")
    for name, value in sorted(record["metrics"].items()):
        print(f"{name}: {value:.4f}")
    if record["items_skipped"]:
        print(f"{record['items_skipped']} items could not be scored as they are (see \"data_issues\" "
              f"in the report)")
    print(f"items: {record['items_scored']}, time: {record['seconds']} s"
          + (f", real-time factor: {record['real_time_factor']}" if record["real_time_factor"] else ""))
    print(f"written to {record['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
