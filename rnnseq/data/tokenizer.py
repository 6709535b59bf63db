"""Tokenizers shared by the speech and text tasks: characters, words and sentencepiece subwords.

Every tokenizer uses the same three special ids, so that models, losses and searches never need
to ask which tokenizer they got: 0 is ``<blank>`` (the CTC blank and the padding id), 1 is
``<eos>`` (start and end of a sequence, and the line break of a text stream), 2 is ``<unk>``.

A tokenizer is saved inside a checkpoint's hyper-parameters as a plain dict
(:meth:`state`, rebuilt by :func:`tokenizer_from_state`), so loading one never unpickles code.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

BLANK = "<blank>"  # CTC blank; also the padding id of target tensors
EOS = "<eos>"  # start and end of a target sequence (one shared symbol, as in ESPnet)
UNK = "<unk>"
SPECIALS = (BLANK, EOS, UNK)
BLANK_ID, EOS_ID, UNK_ID = 0, 1, 2

TOKENIZER_KINDS = ("char", "word", "bpe", "unigram")


class Tokenizer:
    """Interface and special ids shared by all tokenizers."""

    kind: str = ""
    blank_id = pad_id = BLANK_ID
    eos_id = EOS_ID
    unk_id = UNK_ID

    def __len__(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Token ids of a text (without ``<sos>``/``<eos>``); unknown symbols become ``<unk>``."""
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; stops at the first ``<eos>`` and drops blanks."""
        raise NotImplementedError

    def content_ids(self, ids: Iterable[int]) -> list[int]:
        """``ids`` up to the first ``<eos>``, blanks (padding) dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i != self.blank_id:
                out.append(i)
        return out

    def state(self) -> dict:
        """A plain dict that :func:`tokenizer_from_state` turns back into this tokenizer."""
        raise NotImplementedError

    def decode_stream(self, ids: Iterable[int]) -> str:
        """Text of a token stream in which ``<eos>`` marks line ends (language-model output)."""
        lines, current = [], []
        for i in ids:
            if int(i) == self.eos_id:
                lines.append(self.decode(current))
                current = []
            else:
                current.append(int(i))
        lines.append(self.decode(current))
        return "\n".join(lines)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and other.state() == self.state()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} symbols)"


class _SymbolTableTokenizer(Tokenizer):
    """A tokenizer whose table is a list of strings starting with :data:`SPECIALS`."""

    def __init__(self, symbols: Iterable[str]):
        self.symbols: list[str] = list(symbols)
        if tuple(self.symbols[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a symbol table must start with {SPECIALS}, got {self.symbols[:3]}")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("the symbol table has duplicate entries")
        self._index = {s: i for i, s in enumerate(self.symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    def split(self, text: str) -> Sequence[str]:
        raise NotImplementedError

    def join(self, pieces: list[str]) -> str:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; pieces outside the table become ``<unk>``."""
        return [self._index.get(piece, self.unk_id) for piece in self.split(text)]

    def unknown_symbols(self, text: str) -> set[str]:
        """The pieces of ``text`` that have no id of their own."""
        return {piece for piece in self.split(text) if piece not in self._index}

    def decode(self, ids: Iterable[int]) -> str:
        n = len(self.symbols)
        return self.join([self.symbols[i] if 0 <= i < n else UNK for i in self.content_ids(ids)])

    def state(self) -> dict:
        return {"kind": self.kind, "symbols": list(self.symbols)}


class CharTokenizer(_SymbolTableTokenizer):
    """One id per character; characters follow the specials in sorted order, so the table only
    depends on the set of characters seen."""

    kind = "char"

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        """Builds the table from every character in ``texts`` (usually the training split)."""
        chars: set[str] = set()
        for text in texts:
            chars.update(text)
        return cls([*SPECIALS, *sorted(chars)])

    def split(self, text: str) -> Sequence[str]:
        """The characters of a text."""
        return text

    def join(self, pieces: list[str]) -> str:
        """Characters back into text."""
        return "".join(pieces)


class WordTokenizer(_SymbolTableTokenizer):
    """One id per whitespace-separated word; the ``max_size`` most frequent training words get
    ids, the rest become ``<unk>`` (a literal ``<unk>`` in the text, as in Penn Treebank files,
    maps to the same id). Also serves phoneme strings such as ``"h ə l ˈoʊ"``."""

    kind = "word"

    @classmethod
    def from_texts(cls, texts: Iterable[str], max_size: int | None = None,
                   min_count: int = 1) -> WordTokenizer:
        """Most frequent words first (ties in alphabetical order), at most ``max_size`` ids in
        all (specials included) and only words seen ``min_count`` times or more."""
        counts = Counter(word for text in texts for word in text.split() if word not in SPECIALS)
        ranked = sorted((w for w, n in counts.items() if n >= min_count),
                        key=lambda w: (-counts[w], w))
        if max_size is not None:
            if max_size <= len(SPECIALS):
                raise ValueError(f"a word vocabulary needs more than {len(SPECIALS)} entries, "
                                 f"got max_size={max_size}")
            ranked = ranked[: max_size - len(SPECIALS)]
        return cls([*SPECIALS, *ranked])

    def split(self, text: str) -> Sequence[str]:
        """The whitespace-separated words of a text."""
        return text.split()

    def join(self, pieces: list[str]) -> str:
        """Words back into text, separated by spaces."""
        return " ".join(pieces)


class LabelTokenizer(_SymbolTableTokenizer):
    """One id per whole transcript: the class labels of a classification task (spoken commands),
    in sorted order after the specials. A label never seen in training becomes ``<unk>``."""

    kind = "label"

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> LabelTokenizer:
        return cls([*SPECIALS, *sorted({text.strip() for text in texts} - set(SPECIALS))])

    @property
    def labels(self) -> list[str]:
        """The class labels, without the special symbols."""
        return self.symbols[len(SPECIALS):]

    def split(self, text: str) -> Sequence[str]:
        """The whole text is one label."""
        return [text.strip()]

    def join(self, pieces: list[str]) -> str:
        """The labels, space-separated (one label for a classifier's output)."""
        return " ".join(pieces)


class SentencePieceTokenizer(Tokenizer):
    """Subword units from a sentencepiece model (BPE or unigram) trained on the training split.

    The serialised model is kept in :meth:`state` (base64), so a checkpoint carries it.
    """

    def __init__(self, model_proto: bytes, kind: str = "bpe"):
        import sentencepiece as spm

        self._proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self._proto)
        specials = tuple(self._sp.id_to_piece(i) for i in range(len(SPECIALS)))
        if specials != SPECIALS:
            raise ValueError(f"a sentencepiece model must have {SPECIALS} as ids 0-2, got {specials}")
        self.kind = kind

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, model_type: str = "bpe",
              max_sentences: int = 2_000_000, seed: int = 0) -> SentencePieceTokenizer:
        """Trains a ``model_type`` (``bpe`` or ``unigram``) model of ``vocab_size`` pieces."""
        import sentencepiece as spm

        if model_type not in ("bpe", "unigram"):
            raise ValueError(f"sentencepiece model_type must be 'bpe' or 'unigram', got {model_type!r}")
        buffer = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=_non_empty(texts), model_writer=buffer, vocab_size=vocab_size,
            model_type=model_type, character_coverage=1.0, input_sentence_size=max_sentences,
            shuffle_input_sentence=True, seed_sentencepiece_size=1_000_000, num_threads=1,
            pad_id=BLANK_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
            pad_piece=BLANK, eos_piece=EOS, unk_piece=UNK, hard_vocab_limit=False,
            minloglevel=2,
        )
        return cls(buffer.getvalue(), kind=model_type)

    @property
    def symbols(self) -> list[str]:
        """Every piece of the model, by id."""
        return [self._sp.id_to_piece(i) for i in range(len(self))]

    def __len__(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Piece ids of a text (without ``<sos>``/``<eos>``)."""
        return list(self._sp.encode(text))

    def decode(self, ids: Iterable[int]) -> str:
        return self._sp.decode(self.content_ids(ids))

    def unknown_symbols(self, text: str) -> set[str]:
        """Characters of ``text`` that the model has no piece for (they encode to ``<unk>``)."""
        return {c for c in set(text) if not c.isspace() and self.unk_id in self._sp.encode(c)}

    def state(self) -> dict:
        return {"kind": self.kind, "model": base64.b64encode(self._proto).decode("ascii")}


def _non_empty(texts: Iterable[str]) -> Iterator[str]:
    return (t for t in texts if t.strip())


def build_tokenizer(kind: str, texts: Iterable[str], vocab_size: int | None = None,
                    seed: int = 0) -> Tokenizer:
    """Trains a tokenizer of ``kind`` (:data:`TOKENIZER_KINDS`) on ``texts``.

    ``vocab_size`` caps a word vocabulary (``None``: every word) and sets the size of a
    sentencepiece model (required there); characters ignore it.
    """
    if kind == "char":
        return CharTokenizer.from_texts(texts)
    if kind == "word":
        return WordTokenizer.from_texts(texts, max_size=vocab_size)
    if kind in ("bpe", "unigram"):
        if not vocab_size:
            raise ValueError(f"tokenizer {kind!r} needs a vocab_size (e.g. 1000)")
        return SentencePieceTokenizer.train(texts, vocab_size, model_type=kind, seed=seed)
    raise ValueError(f"unknown tokenizer kind {kind!r}; choose one of {', '.join(TOKENIZER_KINDS)}")


def tokenizer_from_state(state: dict) -> Tokenizer:
    """Rebuilds a tokenizer from :meth:`Tokenizer.state` (as stored in a checkpoint)."""
    kind = state.get("kind")
    if kind == "char":
        return CharTokenizer(state["symbols"])
    if kind == "word":
        return WordTokenizer(state["symbols"])
    if kind == "label":
        return LabelTokenizer(state["symbols"])
    if kind in ("bpe", "unigram"):
        return SentencePieceTokenizer(base64.b64decode(state["model"]), kind=kind)
    raise ValueError(f"unknown tokenizer kind {kind!r} in saved state")
