"""A folder of audio files with transcripts, and the LJSpeech layout, as one JSONL manifest.

``folder``: every audio file under ``DIR`` (any format soundfile reads: wav, flac, ogg, ...) with
its transcript, taken from

- ``--transcripts FILE``: one utterance per line, ``ID TEXT`` (Kaldi's ``text`` and LibriSpeech's
  ``*.trans.txt``), ``ID<TAB>TEXT`` or ``ID|TEXT[|...]`` (LJSpeech's ``metadata.csv``), where
  ``ID`` is the audio file's name without its extension (or its path below ``DIR`` without it);
- otherwise a sidecar file next to each audio file: ``<name>.txt`` or ``<name>.lab``.

``ljspeech``: the LJSpeech layout, ``DIR/metadata.csv`` (``ID|TEXT|NORMALISED TEXT``) and
``DIR/wavs/ID.wav``; the normalised column (numbers and abbreviations spelt out) is the text
where it is given, since that is what the speaker said. ``--speaker`` writes a speaker name on
every line (for multi-speaker synthesis, manifests of several speakers are concatenated).

Audio without a transcript, transcripts without audio, empty transcripts and audio that cannot
be read are left out and listed, with the reason, in ``<manifest>.report.json`` (and counted on
the console). The manifest then goes to ``rnnseq.evaluate --manifest`` or into ``data=speech``.
"""

from __future__ import annotations

import re
from pathlib import Path

import soundfile

from rnnseq.data.manifest import DataReport, write_manifest
from rnnseq.data.readers.split_corpus import audio_entry

SIDECARS = (".txt", ".lab")
_ID_AND_TEXT = re.compile(r"^(\S+?)(?:\t|\||\s+)(.*)$")


def audio_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` that soundfile can read by its extension, sorted."""
    readable = {f".{ext.lower()}" for ext in soundfile.available_formats()}
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in readable)


def read_transcripts(path: Path, report: DataReport, normalised: bool = False) -> dict[str, str]:
    """``{id: text}`` of a transcript file (``ID TEXT``, ``ID<TAB>TEXT`` or ``ID|TEXT|...``);
    malformed and repeated lines go to ``report``. With ``normalised``, an ``ID|TEXT|NORMALISED``
    line gives its last non-empty column."""
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        match = _ID_AND_TEXT.match(line.strip())
        if not match:
            report.add(str(path), number, "no transcript after the id", quiet=True)
            continue
        key, text = match.group(1), match.group(2)
        if "|" in line and "\t" not in line:
            columns = [c for c in text.split("|") if c.strip()] or [""]
            text = columns[-1] if normalised else columns[0]  # LJSpeech: id|text|normalised
        if key in out:
            report.add(str(path), number, f"id {key} appears twice; the first line is kept",
                       quiet=True)
            continue
        out[key] = text.strip()
    return out


def folder_entries(folder: Path, transcripts: Path | None, report: DataReport,
                   normalised: bool = False, speaker: str | None = None) -> list[dict]:
    """Manifest entries of an audio folder (see the module docstring); what is left out goes to
    ``report``. ``normalised`` reads the last column of ``ID|TEXT|NORMALISED`` transcripts;
    ``speaker`` is written on every line."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of audio files")
    table = None
    if transcripts is not None:
        if not transcripts.is_file():
            raise FileNotFoundError(f"transcript file {transcripts} does not exist")
        table = read_transcripts(transcripts, report, normalised)
    files = audio_files(folder)
    if not files:
        raise ValueError(f"no audio files under {folder} (formats soundfile reads: wav, flac, ...)")
    entries, used = [], set()
    for audio in files:
        relative = audio.relative_to(folder).with_suffix("").as_posix()
        if table is not None:
            key = next((k for k in (relative, audio.stem) if k in table), None)
            text = table.get(key) if key else None
            if key:
                used.add(key)
        else:
            sidecar = next((audio.with_suffix(s) for s in SIDECARS if audio.with_suffix(s).is_file()),
                           None)
            text = sidecar.read_text(encoding="utf-8") if sidecar else None
        if text is None:
            where = f" in {transcripts}" if table is not None else " (.txt or .lab beside it)"
            report.add(str(audio), None, f"no transcript{where}", quiet=True)
            continue
        entry = audio_entry(audio, relative, text, report, speaker=speaker)
        if entry:
            entries.append(entry)
    for key in sorted(set(table or {}) - used):
        report.add(str(transcripts), None, f"transcript {key} has no audio file under {folder}",
                   quiet=True)
    return entries


def folder_manifest(folder: str | Path, transcripts: str | Path | None = None,
                    out: str | Path | None = None, normalised: bool = False,
                    speaker: str | None = None) -> tuple[Path, DataReport, int]:
    """Writes the manifest of an audio folder (:func:`folder_entries`) to ``out`` (default:
    ``folder/manifest.jsonl``) and what was left out to ``<out>.report.json``; returns
    ``(manifest path, report, utterances written)``."""
    folder = Path(folder)
    out = Path(out) if out else folder / "manifest.jsonl"
    report = DataReport()
    entries = folder_entries(folder, Path(transcripts) if transcripts else None, report,
                             normalised, speaker)
    return write_with_report(out, entries, report, f"no audio file under {folder} has a transcript")


def write_with_report(out: Path, entries: list[dict], report: DataReport, empty: str):
    """Writes ``entries`` to ``out`` and ``report`` beside it (``<out>.report.json``); returns
    ``(out, report, len(entries))``. No entries: ``ValueError`` saying ``empty``."""
    if not entries:
        raise ValueError(f"{empty}; see the problems above ({report.counts()})")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_manifest(out, entries)
    report.write(out.with_suffix(".report.json"))
    return out, report, len(entries)


def ljspeech_entries(folder: Path, report: DataReport, speaker: str | None = None) -> list[dict]:
    """Manifest entries of a corpus in the LJSpeech layout (see the module docstring)."""
    if not (folder / "metadata.csv").is_file() or not (folder / "wavs").is_dir():
        raise FileNotFoundError(f"{folder} is not in the LJSpeech layout: it needs metadata.csv "
                                f"and a wavs/ folder")
    return folder_entries(folder / "wavs", folder / "metadata.csv", report, normalised=True,
                          speaker=speaker)


def ljspeech_manifest(folder: str | Path, out: str | Path | None = None,
                      speaker: str | None = None) -> tuple[Path, DataReport, int]:
    """Writes the manifest of an LJSpeech-layout corpus (default: ``folder/manifest.jsonl``)."""
    folder, report = Path(folder), DataReport()
    entries = ljspeech_entries(folder, report, speaker)
    return write_with_report(Path(out) if out else folder / "manifest.jsonl", entries, report,
                             f"no audio file under {folder / 'wavs'} has a transcript")
