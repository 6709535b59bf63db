"""Character tokenizer shared by speech and text tasks.

The symbol table is a plain list of strings so that it can be stored inside a checkpoint's
hyper-parameters and loaded back without unpickling code.
"""

from __future__ import annotations

from collections.abc import Iterable

BLANK = "<blank>"  # CTC blank; also the padding id of target tensors
EOS = "<eos>"  # start and end of a target sequence (one shared symbol, as in ESPnet)
UNK = "<unk>"
SPECIALS = (BLANK, EOS, UNK)


class CharTokenizer:
    """Maps text to integer ids one character at a time.

    Ids 0, 1, 2 are always ``<blank>`` (also padding), ``<eos>`` and ``<unk>``; characters follow in
    sorted order so that the table only depends on the set of characters seen.
    """

    def __init__(self, symbols: Iterable[str]):
        self.symbols: list[str] = list(symbols)
        if tuple(self.symbols[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a symbol table must start with {SPECIALS}, got {self.symbols[:3]}")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("the symbol table has duplicate entries")
        self._index = {s: i for i, s in enumerate(self.symbols)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        """Builds the table from every character in ``texts`` (usually the training transcripts)."""
        chars: set[str] = set()
        for text in texts:
            chars.update(text)
        return cls([*SPECIALS, *sorted(chars)])

    @property
    def blank_id(self) -> int:
        return 0

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def eos_id(self) -> int:
        return 1

    @property
    def unk_id(self) -> int:
        return 2

    def __len__(self) -> int:
        return len(self.symbols)

    def unknown_chars(self, text: str) -> set[str]:
        """The characters of ``text`` that have no id of their own."""
        return {c for c in text if c not in self._index}

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; characters outside the table become ``<unk>``."""
        return [self._index.get(c, self.unk_id) for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; stops at the first ``<eos>`` and drops blanks."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i == self.blank_id:
                continue
            out.append(self.symbols[i] if 0 <= i < len(self.symbols) else UNK)
        return "".join(out)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharTokenizer) and other.symbols == self.symbols

    def __repr__(self) -> str:
        return f"CharTokenizer({len(self)} symbols)"
