"""Readers that turn speech corpora as they lie on disk into rnnseq's JSONL manifests.

    python -m rnnseq.data.readers folder DIR [--transcripts FILE] [--out DIR/manifest.jsonl]
    python -m rnnseq.data.readers ljspeech DIR [--speaker NAME] [--out DIR/manifest.jsonl]

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

import argparse
import re
import sys
from pathlib import Path

import soundfile

from rnnseq.data.manifest import DataReport, write_manifest

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


def folder_manifest(folder: str | Path, transcripts: str | Path | None = None,
                    out: str | Path | None = None, normalised: bool = False,
                    speaker: str | None = None) -> tuple[Path, DataReport, int]:
    """Writes the manifest of an audio folder (see the module docstring); returns ``(manifest
    path, report of what was left out, utterances written)``. ``normalised`` reads the last
    column of ``ID|TEXT|NORMALISED`` transcripts; ``speaker`` is written on every line."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of audio files")
    out = Path(out) if out else folder / "manifest.jsonl"
    report = DataReport()
    table = None
    if transcripts is not None:
        transcripts = Path(transcripts)
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
            text = sidecar.read_text(encoding="utf-8").strip() if sidecar else None
        if text is None:
            where = f" in {transcripts}" if table is not None else " (.txt or .lab beside it)"
            report.add(str(audio), None, f"no transcript{where}", quiet=True)
            continue
        if not text:
            report.add(str(audio), None, "empty transcript", quiet=True)
            continue
        try:
            duration = soundfile.info(str(audio)).duration
        except Exception as err:  # soundfile raises several kinds for broken files
            report.add(str(audio), None, f"unreadable audio: {err}", quiet=True)
            continue
        entries.append({"id": relative, "audio_filepath": str(audio.resolve()),
                        "duration": round(duration, 3), "text": text,
                        **({"speaker": speaker} if speaker else {})})
    for key in sorted(set(table or {}) - used):
        report.add(str(transcripts), None, f"transcript {key} has no audio file under {folder}",
                   quiet=True)
    if not entries:
        raise ValueError(f"no audio file under {folder} has a transcript; see the problems above "
                         f"({report.counts()})")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_manifest(out, entries)
    report.write(out.with_suffix(".report.json"))
    return out, report, len(entries)


def ljspeech_manifest(folder: str | Path, out: str | Path | None = None,
                      speaker: str | None = None) -> tuple[Path, DataReport, int]:
    """The manifest of a corpus in the LJSpeech layout (see the module docstring)."""
    folder = Path(folder)
    if not (folder / "metadata.csv").is_file() or not (folder / "wavs").is_dir():
        raise FileNotFoundError(f"{folder} is not in the LJSpeech layout: it needs metadata.csv "
                                f"and a wavs/ folder")
    return folder_manifest(folder / "wavs", folder / "metadata.csv",
                           out or folder / "manifest.jsonl", normalised=True, speaker=speaker)


def main(argv: list[str] | None = None) -> int:
    """``python -m rnnseq.data.readers folder DIR ...``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m rnnseq.data.readers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    readers = parser.add_subparsers(dest="reader", required=True)
    folder = readers.add_parser("folder", help="a folder of audio files plus transcripts")
    folder.add_argument("dir", type=Path)
    folder.add_argument("--transcripts", type=Path,
                        help="ID TEXT lines (default: a .txt or .lab file beside each audio file)")
    folder.add_argument("--out", type=Path, help="manifest path (default: DIR/manifest.jsonl)")
    lj = readers.add_parser("ljspeech", help="LJSpeech layout: metadata.csv and wavs/")
    lj.add_argument("dir", type=Path)
    lj.add_argument("--speaker", help="a speaker name written on every line")
    lj.add_argument("--out", type=Path, help="manifest path (default: DIR/manifest.jsonl)")
    args = parser.parse_args(argv)
    try:
        if args.reader == "ljspeech":
            path, report, count = ljspeech_manifest(args.dir, args.out, args.speaker)
        else:
            path, report, count = folder_manifest(args.dir, args.transcripts, args.out)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {count} utterances to {path}")
    if report.issues:
        print(f"left out {len(report.issues)} (see {path.with_suffix('.report.json')}):")
        for issue in report.issues[:10]:
            print(f"  {issue.source}: {issue.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
