"""The embedded grapheme-to-phoneme lexicon: every word of the Shakespeare plays with the IPA
phonemes espeak-ng gives it, split by word so that test words never occur in training."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path

from tqdm import tqdm

from rnnseq.data.builders.espeak import EspeakSynthesizer
from rnnseq.data.builders.sentences import normalize, speech_lines
from rnnseq.data.builders.shakespeare import fetch_shakespeare
from rnnseq.data.manifest import DataReport
from rnnseq.data.pairs import SPLITS, Pair, read_pairs, split_of

log = logging.getLogger(__name__)

LEXICON_FORMAT = 1  # bump when the output of build() changes for the same settings


def play_words(texts_dir: Path, min_length: int = 1) -> list[str]:
    """Distinct normalised words (``a-z`` and inner apostrophes) of every text, sorted."""
    words: set[str] = set()
    for path in sorted(texts_dir.glob("*.txt")):
        for paragraph in speech_lines(path.read_text(encoding="utf-8")):
            words.update(w for w in normalize(paragraph).split() if len(w) >= min_length)
    return sorted(words)


class EspeakLexicon:
    """Word -> phonemes pairs built once into ``<cache_dir>/<name>-<hash of settings>/``.

    Args:
        cache_dir: data folder (the Shakespeare texts are cached there too).
        name: prefix of the lexicon folder.
        voice: espeak-ng voice whose pronunciation rules are used (``en-us``: General American).
        valid_fraction, test_fraction: share of words in each held-out split (by a stable hash of
            the word, so the split of a word never changes).
        min_length: shortest word kept, in letters.
    """

    def __init__(self, cache_dir: str, name: str = "g2p", voice: str = "en-us",
                 valid_fraction: float = 0.04, test_fraction: float = 0.08, min_length: int = 2):
        self.cache_dir = Path(cache_dir)
        self.name = name
        self.settings = {"voice": voice, "valid_fraction": valid_fraction,
                         "test_fraction": test_fraction, "min_length": min_length,
                         "format": LEXICON_FORMAT}

    @property
    def folder(self) -> Path:
        """The cache folder of this lexicon's settings."""
        digest = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()
        return self.cache_dir / f"{self.name}-{digest[:10]}"

    def files(self) -> dict[str, Path]:
        """The pair files of each split, ``{split: path}``."""
        return {split: self.folder / f"{split}.tsv" for split in SPLITS}

    def build(self) -> dict[str, Path]:
        """Writes ``train.tsv``, ``valid.tsv``, ``test.tsv`` (once); returns their paths."""
        if self.folder.is_dir():
            return self.files()
        texts_dir = fetch_shakespeare(self.cache_dir / "shakespeare")
        words = play_words(texts_dir, self.settings["min_length"])
        espeak = EspeakSynthesizer.shared()
        splits: dict[str, list[str]] = {split: [] for split in SPLITS}
        for word in tqdm(words, desc=f"phonemising {self.folder.name}", unit="word"):
            phonemes = espeak.phonemes(word, self.settings["voice"])
            if phonemes:
                split = split_of(word, self.settings["valid_fraction"], self.settings["test_fraction"])
                splits[split].append(f"{word}\t{phonemes}\n")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.cache_dir, prefix=f".{self.name}-"))
        try:
            for split, lines in splits.items():
                (tmp / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
            (tmp / "settings.json").write_text(json.dumps(self.settings, indent=2) + "\n")
            tmp.rename(self.folder)  # atomic: a folder that exists is complete
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not self.folder.is_dir():
                raise
        log.info("g2p lexicon: %s words in %s", {s: len(v) for s, v in splits.items()}, self.folder)
        return self.files()

    def load(self, report: DataReport) -> dict[str, list[Pair]]:
        """The ``(word, phonemes)`` pairs of each split, built and cached on first use."""
        return {split: read_pairs(path, report, "tsv") for split, path in self.build().items()}
