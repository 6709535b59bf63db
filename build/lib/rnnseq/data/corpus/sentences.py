"""Turning play texts into short normalised sentences for speech synthesis.

Normalised text is lowercase ``a-z``, apostrophe and single spaces. Speaker tags ("Ham."), stage
directions ("[Exit.]"), act and scene headings are dropped; speeches are cut at sentence and clause
punctuation so that most pieces fall in the wanted word range.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_SPEAKER = re.compile(r"^[A-Z][A-Za-z'\- ]{0,30}\.$")  # "Ham.", "First Clown.", "Lady M."
_HEADING = re.compile(r"^(ACT|SCENE|Scene|PROLOGUE|EPILOGUE|Prologue|Epilogue)\b|^[IVXLC]+\.?$")
_BYLINE = re.compile(r"^by William Shakespeare$", re.IGNORECASE)
_BREAK = re.compile(r"[.!?;:]+|--")
_NOT_TEXT = re.compile(r"[^a-z' ]+")


def normalize(text: str) -> str:
    """Lowercase a-z, apostrophes inside words and single spaces: ``"'Tis now, sir!" -> "tis now sir"``."""
    text = _NOT_TEXT.sub(" ", text.lower())
    words = (w.strip("'") for w in text.split())
    return " ".join(w for w in words if w)


def speech_lines(raw: str) -> Iterator[str]:
    """The spoken lines of a play (or poem), one paragraph of speech at a time."""
    # Plays open with a title and the cast list; the speech starts at the first act.
    first_act = re.search(r"^ACT\b", raw, flags=re.MULTILINE)
    if first_act:
        raw = raw[first_act.start():]
    in_direction = False
    first_of_paragraph = True
    paragraph: list[str] = []
    for line in raw.splitlines():
        stripped = line.strip()
        if not stripped:
            if paragraph:
                yield " ".join(paragraph)
                paragraph = []
            first_of_paragraph = True
            continue
        if in_direction or stripped.startswith("["):
            in_direction = "]" not in stripped
            first_of_paragraph = False
            continue
        is_tag = first_of_paragraph and _SPEAKER.match(stripped)
        first_of_paragraph = False
        if is_tag or _HEADING.match(stripped) or stripped.isupper() or _BYLINE.match(stripped):
            continue
        paragraph.append(re.sub(r"\[[^\]]*\]", " ", stripped))  # inline directions
    if paragraph:
        yield " ".join(paragraph)


def extract_sentences(raw: str, min_words: int = 3, max_words: int = 12) -> list[str]:
    """Distinct normalised sentences of ``min_words`` to ``max_words`` words, in text order."""
    seen: set[str] = set()
    out = []
    for paragraph in speech_lines(raw):
        for piece in _BREAK.split(paragraph):
            sentence = normalize(piece)
            n = len(sentence.split())
            if min_words <= n <= max_words and sentence not in seen:
                seen.add(sentence)
                out.append(sentence)
    return out
