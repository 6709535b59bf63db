"""Writes the JSONL manifest of a corpus as it lies on disk, and beside it what was left out.

    python -m rnnseq.data.readers folder DIR [--transcripts FILE] [--out DIR/manifest.jsonl]
    python -m rnnseq.data.readers ljspeech DIR [--speaker NAME] [--out DIR/manifest.jsonl]
    python -m rnnseq.data.readers librispeech /corpora/LibriSpeech/dev-clean --out dev-clean.jsonl
    python -m rnnseq.data.readers common_voice /corpora/cv/en/dev.tsv --out cv-dev.jsonl
    python -m rnnseq.data.readers kaldi /kaldi/egs/x/s5/data/dev --root /kaldi/egs/x/s5 --out dev.jsonl

Each writes ``OUT`` and ``OUT.report.json`` (every item left out, with file, line and reason). For
training, the ``data=librispeech|common_voice|kaldi|ljspeech`` configs do the same per split.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnnseq.data.manifest import DataReport
from rnnseq.data.readers.common_voice import read_common_voice
from rnnseq.data.readers.folder import folder_manifest, ljspeech_manifest, write_with_report
from rnnseq.data.readers.kaldi import read_kaldi
from rnnseq.data.readers.librispeech import read_librispeech


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line as a namespace (``reader``, ``dir``, ``out``, ...)."""
    parser = argparse.ArgumentParser(prog="python -m rnnseq.data.readers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    readers = parser.add_subparsers(dest="reader", required=True)
    folder = readers.add_parser("folder", help="a folder of audio files plus transcripts")
    folder.add_argument("dir", type=Path)
    folder.add_argument("--transcripts", type=Path,
                        help="ID TEXT lines (default: a .txt or .lab file beside each audio file)")
    lj = readers.add_parser("ljspeech", help="LJSpeech layout: metadata.csv and wavs/")
    lj.add_argument("dir", type=Path)
    lj.add_argument("--speaker", help="a speaker name written on every line")
    libri = readers.add_parser("librispeech", help="one LibriSpeech subset folder (e.g. dev-clean)")
    libri.add_argument("dir", type=Path)
    cv = readers.add_parser("common_voice", help="one Common Voice TSV (clips/ beside it)")
    cv.add_argument("dir", type=Path, metavar="tsv")
    kaldi = readers.add_parser("kaldi", help="one Kaldi data folder (wav.scp, text, ...)")
    kaldi.add_argument("dir", type=Path)
    kaldi.add_argument("--root", type=Path, default=Path("."),
                       help="folder that relative wav.scp paths start from (default: here); "
                            "segments are cut into OUT's folder")
    for sub in (folder, lj, libri, cv, kaldi):
        sub.add_argument("--out", type=Path, help="manifest path (folder, ljspeech: default "
                         "DIR/manifest.jsonl)", required=sub in (libri, cv, kaldi))
    return parser.parse_args(argv)


def write_manifest_of(args: argparse.Namespace) -> tuple[Path, DataReport, int]:
    """Runs the chosen reader; returns ``(manifest, report, utterances written)``."""
    if args.reader == "folder":
        return folder_manifest(args.dir, args.transcripts, args.out)
    if args.reader == "ljspeech":
        return ljspeech_manifest(args.dir, args.out, args.speaker)
    report = DataReport()
    if args.reader == "librispeech":
        entries = read_librispeech(args.dir, report)
    elif args.reader == "common_voice":
        if not args.dir.is_file():
            raise FileNotFoundError(f"Common Voice TSV {args.dir} does not exist")
        entries = read_common_voice(args.dir, report)
    else:
        entries = read_kaldi(args.dir, args.root, report, args.out.parent)
    return write_with_report(args.out, entries, report, f"no usable utterance in {args.dir}")


def main(argv: list[str] | None = None) -> int:
    """``python -m rnnseq.data.readers READER ...``; returns the exit status."""
    args = parse_args(argv)
    try:
        path, report, count = write_manifest_of(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {count} utterances to {path}")
    if report.issues:
        print(f"left out {len(report.issues)} (see {path.with_suffix('.report.json')}):")
        for issue in report.issues[:10]:
            where = f"{issue.source}:{issue.line}" if issue.line else issue.source
            print(f"  {where}: {issue.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
