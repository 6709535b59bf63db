"""Mozilla Common Voice as it is unpacked: ``<root>/<split>.tsv`` (tab-separated, a header line;
columns found by name, since releases add columns: ``path`` and ``sentence`` are needed,
``client_id`` becomes the speaker) and ``<root>/clips/<path>`` (MP3, which soundfile decodes).

    data=common_voice data.corpus.root=/corpora/cv-corpus-17.0/en    # train.tsv, dev.tsv, test.tsv
"""

from __future__ import annotations

import csv
from pathlib import Path

from rnnseq.data.manifest import DataReport
from rnnseq.data.readers.split_corpus import SplitCorpus, audio_entry

NEEDED_COLUMNS = ("path", "sentence")


def read_common_voice(tsv: Path, report: DataReport, clips: Path | None = None) -> list[dict]:
    """Manifest entries of one Common Voice TSV; clips are looked up in ``clips`` (default: the
    ``clips`` folder beside the TSV). The ID is the clip's name without its extension."""
    clips = clips or tsv.parent / "clips"
    with tsv.open(encoding="utf-8", newline="") as f:
        # QUOTE_NONE: sentences hold quotation marks that are text, not CSV quoting
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows, None)
        missing = [c for c in NEEDED_COLUMNS if c not in (header or [])]
        if missing:
            raise ValueError(f"{tsv}:1: the header lacks column(s) {missing}; a Common Voice TSV "
                             f"starts with client_id, path, sentence, ... (got {header})")
        column = {name: i for i, name in enumerate(header)}
        entries = []
        for number, row in enumerate(rows, start=2):
            if len(row) < len(header):
                report.add(str(tsv), number, f"{len(row)} columns where the header has "
                           f"{len(header)}", quiet=True)
                continue
            clip = row[column["path"]]
            speaker = row[column["client_id"]] if "client_id" in column else None
            entry = audio_entry(clips / clip, Path(clip).stem, row[column["sentence"]], report, tsv,
                                number, speaker=speaker or None)
            if entry:
                entries.append(entry)
    return entries


class CommonVoice(SplitCorpus):
    """``data.corpus`` for Common Voice: ``splits`` maps each split to TSV files below ``root``
    (``train: train.tsv``, ``valid: dev.tsv``, ``test: test.tsv``)."""

    name = "common_voice"

    def read(self, source: Path, report: DataReport, work_dir: Path) -> list[dict]:
        return read_common_voice(source, report, self.root / "clips")
