"""What every corpus reader shares: one manifest entry per audio file (or a report of why not),
and :class:`SplitCorpus`, the ``data.corpus`` object that writes a corpus's split manifests once.

A reader of a layout (``librispeech.py``, ``common_voice.py``, ``kaldi.py``, ``ljspeech.py``) is a
:class:`SplitCorpus` whose :meth:`~SplitCorpus.read` turns one source (a LibriSpeech subset folder,
a Common Voice TSV, a Kaldi data folder) into manifest entries. The speech datamodule calls
:meth:`~SplitCorpus.build` and adds :attr:`~SplitCorpus.report` (every line or file left out, with
file, line and reason) to the run's ``data_report.json``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
from pathlib import Path

import soundfile

from rnnseq.data.manifest import DataReport, write_manifest

log = logging.getLogger(__name__)

# Bumped when what a reader writes changes, so manifests built by an older reader are rebuilt.
READER_FORMAT = 1


def audio_entry(audio: Path, utt_id: str, text: str, report: DataReport, source: str | Path | None = None,
                line: int | None = None, **extra) -> dict | None:
    """The manifest entry ``{id, audio_filepath, duration, text, **extra}`` of one audio file, or
    None after reporting why it cannot be one (empty transcript, missing or unreadable audio).
    ``source``/``line`` name where the item was listed (default: the audio file itself)."""
    where = str(source or audio)
    text = text.strip()
    if not text:
        report.add(where, line, "empty transcript", id=utt_id, quiet=True)
        return None
    if not audio.is_file():
        report.add(where, line, f"audio file {audio} does not exist", id=utt_id, quiet=True)
        return None
    try:
        duration = soundfile.info(str(audio)).duration
    except Exception as err:  # soundfile raises several kinds for broken files
        report.add(where, line, f"unreadable audio: {audio}: {err}", id=utt_id, quiet=True)
        return None
    return {"id": utt_id, "audio_filepath": str(audio.resolve()), "duration": round(duration, 3),
            "text": text, **{k: v for k, v in extra.items() if v is not None}}


class SplitCorpus:
    """A corpus on disk as ``data.corpus``: ``splits`` maps each split (train, valid, test and
    any extra test split, e.g. ``test_other``) to one source or a list of sources below ``root``.

    :meth:`build` writes ``<out_dir>/<name>-<hash>/<split>.jsonl`` and ``report.json`` the first
    time and reuses them afterwards; the hash covers the root, the splits and the reader's
    settings, so another choice of sources gets its own manifests. ``rebuild=True`` reads again.
    """

    name = "corpus"  # the manifest folder's prefix, and how errors name the layout

    def __init__(self, root: str, splits: dict, out_dir: str, rebuild: bool = False):
        if root in (None, "", "???"):
            raise ValueError(f"data.corpus.root is not set: give the folder that holds the "
                             f"{self.name} corpus")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.corpus.root={self.root} is not a folder")
        if not splits or "train" not in splits:
            raise ValueError(f"data.corpus.splits needs at least train (got {dict(splits or {})})")
        self.splits = {str(split): [str(sources)] if isinstance(sources, (str, Path))
                       else [str(s) for s in sources] for split, sources in dict(splits).items()}
        self.out_dir = Path(out_dir).expanduser()
        self.rebuild = rebuild
        self.report = DataReport()

    # -- what a layout defines -----------------------------------------------------------------
    def read(self, source: Path, report: DataReport, work_dir: Path) -> list[dict]:
        """Manifest entries of one source (a path below ``root``); problems go to ``report``.
        ``work_dir`` is this corpus's manifest folder (for audio a reader has to cut out)."""
        raise NotImplementedError

    def settings(self) -> dict:
        """The reader's own settings, part of the manifest folder's hash."""
        return {}

    def split_names(self) -> list[str]:
        """The splits :meth:`split_entries` returns."""
        return list(self.splits)

    def split_entries(self, report: DataReport, work_dir: Path) -> dict[str, list[dict]]:
        """``{split: entries}``: every source of a split read in turn."""
        out = {}
        for split, sources in self.splits.items():
            report.split = split
            out[split] = []
            for source in sources:
                path = self.root / source
                if not path.exists():
                    raise FileNotFoundError(f"data.corpus.splits.{split}: {path} does not exist "
                                            f"(sources are paths below data.corpus.root)")
                out[split].extend(self.read(path, report, work_dir))
        report.split = None
        return out

    # -- shared --------------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        """``<out_dir>/<name>-<hash of root, splits and settings>``."""
        key = json.dumps([READER_FORMAT, str(self.root.resolve()), self.splits, self.settings()],
                         sort_keys=True)
        return self.out_dir / f"{self.name}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"

    def build(self) -> dict[str, str]:
        """Writes (once) and returns ``{split: manifest path}``; fills :attr:`report`. Processes
        that build the same corpus at once (DDP ranks, parallel sweep jobs) take turns: the
        first writes, the others read what it wrote."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return self._build()
            finally:
                with contextlib.suppress(OSError):
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def _build(self) -> dict[str, str]:
        folder = self.folder
        paths = {split: folder / f"{split}.jsonl" for split in self.split_names()}
        report_path = folder / "report.json"
        if not self.rebuild and report_path.is_file() and all(p.is_file() for p in paths.values()):
            # a rebuild is read once per object: the next process of the same run reuses it
            self.report = DataReport.read(report_path)
            log.info("%s manifests from %s", self.name, folder)
            return {split: str(p) for split, p in paths.items()}
        folder.mkdir(parents=True, exist_ok=True)
        report = DataReport()
        entries = self.split_entries(report, folder)
        assert set(entries) == set(paths), (set(entries), set(paths))
        for split, rows in entries.items():
            if not rows:
                report.write(report_path.with_suffix(".failed.json"))
                raise ValueError(f"{self.name} split {split}: no usable utterance in "
                                 f"{self.splits.get(split, 'its sources')} under {self.root}; "
                                 f"{len(report.issues)} problems are listed in "
                                 f"{report_path.with_suffix('.failed.json')}")
            write_manifest(paths[split], rows)
        report.write(report_path)  # last: its presence marks a finished build
        self.report = report
        log.info("%s manifests in %s: %s; %d items left out (%s)", self.name, folder,
                 {s: len(r) for s, r in entries.items()}, len(report.issues), report_path)
        return {split: str(p) for split, p in paths.items()}
