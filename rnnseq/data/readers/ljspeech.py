"""LJSpeech as ``data.corpus`` (``metadata.csv`` with ``ID|TEXT|NORMALISED TEXT`` lines and
``wavs/ID.wav``), for synthesis and recognition alike:

    experiment=tts data=ljspeech data.corpus.root=/corpora/LJSpeech-1.1

LJSpeech has no official split: ``held_out`` utterances go to each held-out split, chosen by a
stable hash of the ID (the same split on every machine and for every ``root`` path), the rest
to training.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from rnnseq.data.manifest import DataReport
from rnnseq.data.readers.folder import ljspeech_entries
from rnnseq.data.readers.split_corpus import SplitCorpus


class LJSpeech(SplitCorpus):
    """``held_out``: ``{split: number of utterances}`` taken out of training, e.g.
    ``{valid: 100, test: 250}``; ``speaker`` is written on every line when given."""

    name = "ljspeech"

    def __init__(self, root: str, out_dir: str, held_out: dict, speaker: str | None = None,
                 rebuild: bool = False):
        super().__init__(root, {"train": "metadata.csv"}, out_dir, rebuild)
        self.held_out = {str(k): int(v) for k, v in dict(held_out).items()}
        if "train" in self.held_out or any(v < 1 for v in self.held_out.values()):
            raise ValueError(f"data.corpus.held_out names held-out splits and their sizes (>= 1), "
                             f"e.g. {{valid: 100, test: 250}}; got {self.held_out}")
        self.speaker = speaker

    def settings(self) -> dict:
        return {"held_out": self.held_out, "speaker": self.speaker}

    def split_names(self) -> list[str]:
        return ["train", *self.held_out]

    def split_entries(self, report: DataReport, work_dir: Path) -> dict[str, list[dict]]:
        entries = ljspeech_entries(self.root, report, self.speaker)
        order = sorted(entries, key=lambda e: hashlib.sha1(e["id"].encode()).hexdigest())
        if sum(self.held_out.values()) >= len(order):
            raise ValueError(f"data.corpus.held_out takes {sum(self.held_out.values())} of the "
                             f"{len(order)} usable utterances in {self.root}; leave some for training")
        out, start = {}, 0
        for split, count in self.held_out.items():
            chosen = {e["id"] for e in order[start:start + count]}
            out[split] = [e for e in entries if e["id"] in chosen]
            start += count
        taken = {e["id"] for rows in out.values() for e in rows}
        return {"train": [e for e in entries if e["id"] not in taken], **out}
