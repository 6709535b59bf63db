"""Kaldi data folders (``data/train``, ...): ``wav.scp`` (``REC PATH``), ``text`` (``UTT
WORDS``), and optionally ``segments`` (``UTT REC START END``, seconds; END -1 for the end of the
recording) and ``utt2spk`` (``UTT SPEAKER``).

    data=kaldi data.corpus.root=/kaldi/egs/mine/s5 \\
        'data.corpus.splits={train: data/train, valid: data/dev, test: data/test}'

Relative paths in ``wav.scp`` are read from ``root``, as Kaldi runs from the recipe folder.
``wav.scp`` lines that are commands (``REC sph2pipe -f wav x.sph |``) or archive offsets
(``REC feats.ark:123``) are refused: rnnseq reads audio files, so run the command once and list the
file it writes. Segments are cut out of their recordings once, as FLAC files in the corpus's
manifest folder. Every line left out is reported with file, line and reason.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import soundfile

from rnnseq.data.manifest import DataReport
from rnnseq.data.readers.split_corpus import SplitCorpus, audio_entry

_ARCHIVE_OFFSET = re.compile(r"\.ark:\d+$")


def read_table(path: Path, report: DataReport, fields: int | None = None) -> dict[str, tuple[int, str]]:
    """``{key: (line number, rest of the line)}`` of a Kaldi table; a line without a value, with
    the wrong number of ``fields`` or with a key seen before is reported and left out."""
    out: dict[str, tuple[int, str]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        key, *rest = line.split(maxsplit=1)  # spaces or tabs, as Kaldi's own readers
        rest = rest[0].strip() if rest else ""
        if fields is not None and len(line.split()) != fields:
            report.add(str(path), number, f"expected {fields} fields, got {len(line.split())}",
                       id=key, quiet=True)
        elif key in out:
            report.add(str(path), number, f"{key} listed again (line {out[key][0]} is kept)",
                       id=key, quiet=True)
        elif not rest and path.name != "text":
            report.add(str(path), number, "a key without a value", id=key, quiet=True)
        else:
            out[key] = (number, rest)
    return out


def recording_paths(wav_scp: Path, root: Path, report: DataReport) -> dict[str, Path]:
    """``{recording: audio path}`` of a ``wav.scp``; commands and archive offsets are refused."""
    out = {}
    for rec, (number, value) in read_table(wav_scp, report).items():
        if value.endswith("|"):
            report.add(str(wav_scp), number, f"recording {rec} is a command ({value}); rnnseq reads "
                       f"audio files only: run the command once and list the file it writes",
                       id=rec, quiet=True)
        elif _ARCHIVE_OFFSET.search(value) or " " in value:
            report.add(str(wav_scp), number, f"recording {rec} is not a plain audio path ({value}); "
                       f"list an audio file (wav, flac, ...) instead", id=rec, quiet=True)
        else:
            path = Path(value)
            out[rec] = path if path.is_absolute() else root / path
    return out


def segment_file(work_dir: Path, utt: str, recording: Path, start: float, end: float) -> Path:
    """Where a segment's FLAC lives: named by the utterance and a hash of its recording and
    times, so changed segments get a new file and folders that share utterance names do not
    collide."""
    key = hashlib.sha1(f"{recording.resolve()}|{start}|{end}".encode()).hexdigest()[:10]
    return work_dir / "segments" / f"{utt}-{key}.flac"


def cut_segment(recording: Path, start: float, end: float, out: Path) -> None:
    """Writes seconds ``start``..``end`` of ``recording`` (``end`` < 0: to its end) as FLAC."""
    rate = soundfile.info(str(recording)).samplerate
    stop = None if end < 0 else int(round(end * rate))
    samples, _ = soundfile.read(str(recording), start=int(round(start * rate)), stop=stop,
                                dtype="int16", always_2d=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.flac")  # one per process: parallel builds
    soundfile.write(str(tmp), samples, rate, subtype="PCM_16")
    tmp.replace(out)


def read_kaldi(folder: Path, root: Path, report: DataReport, work_dir: Path,
               recut: bool = False) -> list[dict]:
    """Manifest entries of one Kaldi data folder, in ``text`` order; segments already cut into
    ``work_dir`` are reused unless ``recut``."""
    for needed in ("wav.scp", "text"):
        if not (folder / needed).is_file():
            raise FileNotFoundError(f"{folder / needed} does not exist: a Kaldi data folder has "
                                    f"wav.scp and text (segments and utt2spk are optional)")
    recordings = recording_paths(folder / "wav.scp", root, report)
    texts = read_table(folder / "text", report)
    speakers = read_table(folder / "utt2spk", report, fields=2) if (folder / "utt2spk").is_file() else {}
    segments = (read_table(folder / "segments", report, fields=4)
                if (folder / "segments").is_file() else None)
    entries = []
    for utt, (number, text) in texts.items():
        speaker = speakers[utt][1] if utt in speakers else None
        if segments is None:
            audio, source, line = recordings.get(utt), folder / "text", number
            if audio is None:
                report.add(str(folder / "text"), number, f"{utt} has no usable line in wav.scp",
                           id=utt, quiet=True)
                continue
        else:
            if utt not in segments:
                report.add(str(folder / "text"), number, f"{utt} has no line in segments", id=utt,
                           quiet=True)
                continue
            line, fields = segments[utt]
            source = folder / "segments"
            rec, start, end = fields.split()
            if rec not in recordings:
                report.add(str(source), line, f"recording {rec} has no usable line in wav.scp",
                           id=utt, quiet=True)
                continue
            try:
                start, end = float(start), float(end)
                if start < 0 or (0 <= end <= start):
                    raise ValueError(f"start {start} s, end {end} s")
            except ValueError as err:
                report.add(str(source), line, f"bad segment times: {err}", id=utt, quiet=True)
                continue
            audio = segment_file(work_dir, utt, recordings[rec], start, end)
            if recut or not audio.is_file():
                audio.parent.mkdir(parents=True, exist_ok=True)
                try:
                    cut_segment(recordings[rec], start, end, audio)
                except Exception as err:  # soundfile raises several kinds for broken files
                    report.add(str(source), line, f"cannot cut {utt} from {recordings[rec]}: {err}",
                               id=utt, quiet=True)
                    continue
        entry = audio_entry(Path(audio), utt, text, report, source, line, speaker=speaker)
        if entry:
            entries.append(entry)
    for utt in sorted(set(recordings if segments is None else segments) - set(texts)):
        report.add(str(folder / "text"), None, f"{utt} has audio but no line in text", id=utt,
                   quiet=True)
    return entries


class KaldiData(SplitCorpus):
    """``data.corpus`` for Kaldi data folders: ``splits`` maps each split to data folders below
    ``root`` (``train: data/train``, ``valid: data/dev``, ``test: data/test``)."""

    name = "kaldi"

    def read(self, source: Path, report: DataReport, work_dir: Path) -> list[dict]:
        return read_kaldi(source, self.root, report, work_dir, recut=self.rebuild)
