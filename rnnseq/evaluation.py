"""Scoring a trained run: a split of its data or a JSONL manifest, with any decoding, into a
report of every item (``evaluate``), and a grid of decoding settings over one encoder pass
(``sweep_decoding``). ``python -m rnnseq.evaluate`` is the command line over these."""

from __future__ import annotations

import functools
import time
from pathlib import Path

from rnnseq.runs import manifest_batching, manifest_loader, run_data_config, run_data_loader, run_precision


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
        with task.decoding_changed(settings) as decoding:
            if not decoding.beam_search:
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
