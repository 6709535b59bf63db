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
import functools
import sys
import time
from pathlib import Path

import yaml

from rnnseq.arguments import DECODING_PREFIX, is_setting, parse_assignments, take_run
from rnnseq.runs import manifest_batching, manifest_loader, run_data_config, run_data_loader, run_precision

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


def item_errors(reference: str, hypothesis: str) -> dict:
    """Word-level edit operations of one item."""
    import jiwer

    out = jiwer.process_words(reference or "<empty>", hypothesis)
    words = out.hits + out.substitutions + out.deletions
    return {"words": words, "substitutions": out.substitutions, "deletions": out.deletions,
            "insertions": out.insertions,
            "wer": (out.substitutions + out.deletions + out.insertions) / max(words, 1)}


def oracle_error_rate(items: list[dict]) -> float:
    """Corpus WER when every item is given the hypothesis of its n-best list closest to its
    reference (how much a perfect rescorer could gain)."""
    errors = words = 0
    for item in items:
        best = min((item_errors(item["reference"], h["hypothesis"]) for h in item["nbest"]),
                   key=lambda e: e["substitutions"] + e["deletions"] + e["insertions"])
        errors += best["substitutions"] + best["deletions"] + best["insertions"]
        words += best["words"]
    return errors / max(words, 1)


def apply_settings(task, decoding: dict, synthesis: dict | None = None,
                   evaluation: dict | None = None) -> None:
    """Hands each group of settings to the task that has it; a group the task does not have is
    a ``ValueError`` naming the keys to drop."""
    if "decoding" in task.hparams:  # checked even when nothing changes
        task.set_decoding(decoding)
        decoding = None
    groups = {"decoding": (decoding, None), "synthesis": (synthesis, "set_synthesis"),
              "evaluation": (evaluation, "set_evaluation")}
    for group, (values, setter) in groups.items():
        if not values:
            continue
        if setter is None or not hasattr(task, setter):
            raise ValueError(f"this {type(task).__name__} checkpoint has no {group} settings; "
                             f"drop {sorted(values)}")
        getattr(task, setter)(values)


def evaluate(run: Path, decoding: dict, checkpoint: Path | None = None, split: str = "test",
             manifest: Path | None = None, data_overrides: list[str] | None = None,
             synthesis: dict | None = None, evaluation: dict | None = None,
             device: str = "auto") -> dict:
    """Scores a split of the run's data (or ``manifest``) with its checkpoint on ``device``
    (``auto``: a GPU where there is one); writes and returns the report: settings, metrics,
    real-time factor and every item with its errors (for a synthesis run: its free-running
    scores, with ``synthesis`` and ``evaluation`` settings)."""
    import lightning as L

    import rnnseq.config  # noqa: F401  (registers the ${metric:...} resolver)
    from rnnseq.checkpoints import find_checkpoint, run_folder_of
    from rnnseq.data.manifest import DataReport
    from rnnseq.reporting import write_results
    from rnnseq.resources import resolve_device
    from rnnseq.runs import task_class_for

    checkpoint = checkpoint or find_checkpoint(run)
    run = run_folder_of(run)
    # host: loaded on the CPU, the Trainer moves it to its device
    task = task_class_for(checkpoint).load_from_checkpoint(checkpoint, map_location="cpu",
                                                           weights_only=True)
    apply_settings(task, decoding, synthesis, evaluation)
    if manifest is not None:
        if "synthesis" in task.hparams:
            raise ValueError("--manifest scores recognisers and classifiers; score a synthesis "
                             "run on a split of its data (--split), or speak a manifest with "
                             "python -m rnnseq.synthesize --manifest")
        report = DataReport()
        batching = manifest_batching(run_data_config(run, data_overrides or []))
        loader, utterances = manifest_loader(task, manifest, batching, report)
        label = manifest.stem
    else:
        loader, utterances, report = run_data_loader(run, split, data_overrides or [])
        report = report.of_split(split)  # not the other splits' problems
        label = split
    precision = run_precision(run)
    device = resolve_device(device)
    trainer = L.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu",
                        devices=[device.index] if device.index is not None else 1, logger=False,
                        enable_checkpointing=False, enable_model_summary=False,
                        precision=precision)
    started = time.time()
    metrics = trainer.test(task, dataloaders=loader, verbose=False)[0]
    seconds = time.time() - started
    raw = {u.id: u.raw_text for u in utterances or [] if u.raw_text is not None}
    items = [{**item, "raw_reference": raw.get(item["id"], item["reference"]),
              "errors": item_errors(item["reference"], item["hypothesis"])}
             if "hypothesis" in item else item for item in getattr(task, "test_results", [])]
    with_nbest = [item for item in items if item.get("nbest")]
    if with_nbest:
        metrics[f"test/oracle_wer_{len(with_nbest[0]['nbest'])}best"] = oracle_error_rate(with_nbest)
    report.merge(task.runtime_issues())  # audio that failed while it was being decoded
    audio_seconds = sum(u.duration for u in utterances) if utterances else None
    record = {
        "run": str(run), "checkpoint": str(checkpoint), "data": str(manifest or split),
        "precision": precision,
        "decoding": dict(task.hparams.get("decoding", {})),
        **{group: dict(task.hparams[group]) for group in ("synthesis", "evaluation")
           if group in task.hparams},
        # The task logs under test/ whatever it scored; name what was scored.
        "metrics": {k.replace("test/", f"{label}/", 1): float(v) for k, v in metrics.items()},
        "items_scored": len(items), "items_skipped": report.counts().get("skipped", 0),
        "data_issues": report.to_dict()["issues"], "seconds": round(seconds, 2),
        "audio_seconds": round(audio_seconds, 2) if audio_seconds else None,
        "real_time_factor": round(seconds / audio_seconds, 4) if audio_seconds else None,
        "items": items,
    }
    out = run / "evaluations" / f"{label}-{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_results(out, record)
    record["path"] = str(out)
    return record


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


def sweep_decoding(run: Path, grid: dict[str, list], decoding: dict | None = None,
                   split: str = "valid", checkpoint: Path | None = None,
                   data_overrides: list[str] | None = None, device: str = "auto") -> dict:
    """Scores every combination of the ``grid`` decoding values on ``split`` (beam search), with
    one encoder pass per batch: the encoder outputs are kept and every setting decodes them.
    Runs on ``device`` (``auto``: a GPU where there is one).

    Writes ``<run>/evaluations/sweep-<split>-<time>.json`` (settings, metrics and decoding seconds
    of every combination) and returns it.
    """
    import itertools

    import torch

    from rnnseq.checkpoints import find_checkpoint, run_folder_of
    from rnnseq.reporting import write_results
    from rnnseq.resources import autocast_for, resolve_device
    from rnnseq.runs import task_class_for

    checkpoint = checkpoint or find_checkpoint(run)
    run = run_folder_of(run)
    device = resolve_device(device)
    task = task_class_for(checkpoint).load_from_checkpoint(checkpoint, map_location=device,
                                                           weights_only=True).eval()
    if "decoding" not in task.hparams:
        raise ValueError("--sweep sweeps decoding settings; this checkpoint has none")
    task.set_decoding(decoding or {})
    base = dict(task.hparams.decoding)
    loader = run_data_loader(run, split, data_overrides or [])[0]
    precision = run_precision(run)
    # as Lightning's mixed precision: autocast around the encoder and every search
    autocast = functools.partial(autocast_for, device, precision)
    encoded, references = [], []
    started = time.time()
    with torch.no_grad(), autocast():
        for batch in loader:
            batch = task.transfer_batch_to_device(batch, device, 0)
            encoded.append(task.encode(batch))
            references.extend(batch.texts)
    encoding_seconds = time.time() - started
    rows = []
    for values in itertools.product(*grid.values()):
        settings = dict(zip(grid, values))
        task.hparams.decoding.clear()
        task.hparams.decoding.update(base)
        task.set_decoding(settings)
        if task.hparams.decoding.get("mode", "beam") not in ("beam", "ctc_beam"):
            raise ValueError("--sweep decodes with beam search (decoding.mode=beam or ctc_beam)")
        started = time.time()
        with torch.no_grad(), autocast():
            hypotheses = [text for enc in encoded
                          for text in task.best_texts(task.beam_hypotheses(None, enc=enc))]
        seconds = time.time() - started
        metrics = {k.replace("test/", f"{split}/", 1): float(v)
                   for k, v in task.score(references, hypotheses, "test").items()}
        rows.append({"settings": settings, "metrics": metrics, "seconds": round(seconds, 2)})
    record = {"run": str(run), "checkpoint": str(checkpoint), "data": split, "decoding": base,
              "precision": precision,
              "grid": grid, "encoding_seconds": round(encoding_seconds, 2),
              "items": len(references), "results": rows}
    out = run / "evaluations" / f"sweep-{split}-{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_results(out, record)
    record["path"] = str(out)
    return record


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
