"""JSONL speech manifests and the report of every item that had to be skipped.

One utterance per line, NeMo/ESPnet style::

    {"audio_filepath": "wav/0001.wav", "duration": 2.31, "text": "good night sweet prince"}

``audio_filepath`` may be relative: it is resolved against the manifest's folder. ``id`` is
optional (default: ``<manifest stem>-<line number>``), and so are ``phonemes`` (the text's
phonemes, space-separated, for speech synthesis) and ``speaker`` (a speaker name, for
multi-speaker synthesis). Bad lines never stop a run: they are
skipped, counted and listed in a :class:`DataReport` that names the file and the line.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("audio_filepath", "duration", "text")


@dataclass(frozen=True)
class Utterance:
    """One manifest entry with an absolute audio path."""

    id: str
    audio_path: str
    duration: float
    text: str
    raw_text: str | None = None  # the manifest's own text, when ``text`` has been normalised
    phonemes: str | None = None  # space-separated phoneme symbols, when the manifest has them
    speaker: str | None = None  # the speaker's name, when the manifest has one


@dataclass
class DataIssue:
    """Something wrong with one item of a corpus, and what was done about it."""

    source: str  # the manifest file or audio file
    line: int | None  # 1-based manifest line, when known
    reason: str
    action: str = "skipped"  # or "kept" when the item is used anyway (e.g. <unk> characters)
    id: str | None = None
    split: str | None = None  # train, valid or test, when known


@dataclass
class DataReport:
    """Every problem met while reading a corpus; written to ``data_report.json`` in the run."""

    issues: list[DataIssue] = field(default_factory=list)
    split: str | None = None  # the split being read: recorded with every issue added meanwhile

    def add(self, source, line, reason, action="skipped", id=None, quiet=False) -> None:
        """Records (and, unless ``quiet``, logs) one problem: where, why, and what was done about
        it. Callers that may add hundreds of one kind pass ``quiet`` and log a summary."""
        issue = DataIssue(str(source), line, reason, action, id, self.split)
        self.issues.append(issue)
        if quiet:
            return
        where = f"{issue.source}:{line}" if line is not None else issue.source
        log.warning("%s: %s (%s)", where, reason, action)

    def merge(self, issues: list[DataIssue]) -> int:
        """Adds the issues not already in the report (same file, id and reason), e.g. items that
        failed to load while training ran; returns how many were new."""
        known = {(i.source, i.id, i.reason) for i in self.issues}
        before = len(self.issues)
        for issue in issues:
            if (issue.source, issue.id, issue.reason) not in known:
                known.add((issue.source, issue.id, issue.reason))
                self.issues.append(issue)
        return len(self.issues) - before

    def of_split(self, split: str) -> DataReport:
        """The issues of one split (and those of no known split)."""
        return DataReport([i for i in self.issues if i.split in (None, split)])

    def counts(self) -> dict[str, int]:
        """Number of issues per action, e.g. ``{"skipped": 3, "kept": 1}``."""
        return dict(Counter(i.action for i in self.issues))

    def to_dict(self) -> dict:
        """``{counts, issues}`` for JSON."""
        return {"counts": self.counts(), "issues": [asdict(i) for i in self.issues]}

    def write(self, path: str | Path) -> None:
        """Writes the report as JSON to ``path``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def read(cls, path: str | Path) -> DataReport:
        """A report written by :meth:`write`."""
        issues = json.loads(Path(path).read_text())["issues"]
        return cls([DataIssue(**issue) for issue in issues])


def read_manifest(path: str | Path, report: DataReport) -> list[Utterance]:
    """Reads a JSONL manifest, skipping (and reporting) lines that cannot be used.

    Raises ``FileNotFoundError`` naming the path when the manifest itself is missing: that is a
    configuration mistake, not bad data.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"manifest {path} does not exist; check the data paths in your config "
            "(data.manifests.*) or build the embedded corpus first"
        )
    utterances: list[Utterance] = []
    seen_ids: set[str] = set()
    with path.open(encoding="utf-8") as f:
        for line_no, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            utt = _parse_line(raw, path, line_no, report)
            if utt is None:
                continue
            if utt.id in seen_ids:
                report.add(path, line_no, f"duplicate id {utt.id!r}", id=utt.id)
                continue
            seen_ids.add(utt.id)
            utterances.append(utt)
    return utterances


def _parse_line(raw: str, path: Path, line_no: int, report: DataReport) -> Utterance | None:
    try:
        entry = json.loads(raw)
    except json.JSONDecodeError as err:
        report.add(path, line_no, f"malformed JSON ({err.msg})")
        return None
    if not isinstance(entry, dict):
        report.add(path, line_no, "a line must be a JSON object")
        return None
    missing = [k for k in REQUIRED_KEYS if k not in entry]
    if missing:
        report.add(path, line_no, f"missing key(s) {missing}; each line needs {list(REQUIRED_KEYS)}")
        return None
    utt_id = str(entry.get("id", f"{path.stem}-{line_no}"))
    text = entry["text"]
    if not isinstance(text, str) or not text.strip():
        report.add(path, line_no, "empty transcript", id=utt_id)
        return None
    try:
        duration = float(entry["duration"])
    except (TypeError, ValueError):
        report.add(path, line_no, f"duration {entry['duration']!r} is not a number", id=utt_id)
        return None
    if not duration > 0:
        report.add(path, line_no, f"duration {duration} is not positive", id=utt_id)
        return None
    optional = {}
    for key in ("phonemes", "speaker"):
        value = entry.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            report.add(path, line_no, f"{key} {value!r} is not a non-empty string", id=utt_id)
            return None
        optional[key] = value.strip()
    audio = Path(entry["audio_filepath"])
    if not audio.is_absolute():
        audio = path.parent / audio
    return Utterance(id=utt_id, audio_path=str(audio), duration=duration, text=text.strip(),
                     **optional)


def normalize_utterances(utterances: list[Utterance], normalizer: str, report: DataReport,
                         source: str | Path) -> list[Utterance]:
    """The utterances with their transcripts through ``normalizer``
    (:func:`rnnseq.data.normalize.normalize_text`; the manifest's text stays in ``raw_text``);
    those left empty by it (only digits or punctuation) are skipped and reported."""
    from rnnseq.data.normalize import normalize_text

    out = []
    for utt in utterances:
        text = normalize_text(utt.text, normalizer)
        if not text:
            report.add(source, None, f"transcript {utt.text!r} is empty after the {normalizer!r} "
                       f"normaliser (data.normalizer)", id=utt.id)
            continue
        out.append(replace(utt, text=text, raw_text=utt.text))
    return out


def write_manifest(path: str | Path, entries: list[dict]) -> None:
    """Writes JSONL entries atomically (a temporary file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one per process: parallel writers
    with tmp.open("w", encoding="utf-8") as f:
        for entry in entries:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
    tmp.replace(path)
