"""LibriSpeech as it is unpacked: ``<root>/<subset>/<speaker>/<chapter>/`` holds
``<speaker>-<chapter>.trans.txt`` (``ID TEXT`` lines, upper case) and ``ID.flac`` per utterance.

    data=librispeech data.corpus.root=/corpora/LibriSpeech       # train-clean-100 etc. below it

Transcripts keep their case here; the datamodule's ``data.normalizer`` (``letters``: lower case,
inner apostrophes) makes them like every other corpus. A transcript line without audio, a flac
without a transcript line and a line without text are left out and reported with file and line.
"""

from __future__ import annotations

from pathlib import Path

from rnnseq.data.manifest import DataReport
from rnnseq.data.readers.split_corpus import SplitCorpus, audio_entry


def read_librispeech(subset: Path, report: DataReport) -> list[dict]:
    """Manifest entries of one subset folder (e.g. ``.../LibriSpeech/dev-clean``), in ID order;
    the speaker is the first part of the ID."""
    transcripts = sorted(subset.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise FileNotFoundError(f"no <speaker>/<chapter>/*.trans.txt under {subset}: is it a "
                                f"LibriSpeech subset folder such as dev-clean?")
    entries = []
    for path in transcripts:
        listed = set()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            listed.add(utt_id)
            entry = audio_entry(path.parent / f"{utt_id}.flac", utt_id, text, report, path, number,
                                speaker=utt_id.split("-")[0])
            if entry:
                entries.append(entry)
        for flac in sorted(path.parent.glob("*.flac")):
            if flac.stem not in listed:
                report.add(str(flac), None, f"no line for {flac.stem} in {path.name}", id=flac.stem,
                           quiet=True)
    return entries


class LibriSpeech(SplitCorpus):
    """``data.corpus`` for LibriSpeech: ``splits`` maps each split to subset folders below
    ``root`` (``train: [train-clean-100, train-clean-360, train-other-500]``, ...)."""

    name = "librispeech"

    def read(self, source: Path, report: DataReport, work_dir: Path) -> list[dict]:
        return read_librispeech(source, report)
