"""Turning play texts and prose into short normalised sentences for speech synthesis.

Normalised text is lowercase ``a-z``, apostrophe and single spaces. Speaker tags ("Ham.",
"The President."), stage directions ("[Exit.]", "[Applause]"), act and scene headings are
dropped; speeches and paragraphs are cut at sentence and clause punctuation so that most pieces
fall in the wanted word range.

A piece that a synthesiser would read differently from its normalised transcript is dropped, not
mangled: digits and symbols ("in 1984 he" would become "in he" while the voice says "nineteen
eighty-four"), abbreviations ("Mr.", "U.S."), acronyms ("NATO", which espeak-ng may spell out) and
letters outside a-z.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_SPEAKER = re.compile(r"^[A-Z][A-Za-z'\- ]{0,30}\.$")  # "Ham.", "First Clown.", "Lady M."
_HEADING = re.compile(r"^(ACT|SCENE|Scene|PROLOGUE|EPILOGUE|Prologue|Epilogue)\b|^[IVXLC]+\.?$")
_BYLINE = re.compile(r"^by William Shakespeare$", re.IGNORECASE)
_BREAK = re.compile(r"[.!?;:]+|--")
_NOT_TEXT = re.compile(r"[^a-z' ]+")
# Typography that means plain punctuation: curly quotes, dashes, non-breaking spaces.
_TYPOGRAPHY = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"',
                             "\u2014": " -- ", "\u2013": " -- ", "\u00a0": " "})
# What the normaliser cannot spell the way a voice reads it (see the module docstring).
_UNSPEAKABLE = re.compile(r"[0-9#$%&@+=/*<>^~|\\_\u00a7\u00a3\u20ac\u00a5\u00b0]|[^\x00-\x7f]"
                          r"|\b[A-Z]{2,}\b")
_ABBREVIATION = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Gen|Gov|Sen|Rep|Lt|Col|Capt|Prof|Rev|"
                           r"Hon|Mt|No|Nos|Vol|vs|etc|Inc|Co|Corp|Ltd|Jan|Feb|Mar|Apr|Aug|Sept?|"
                           r"Oct|Nov|Dec)\.|\b(?:[A-Za-z]\.){2,}|\b(?![IO]\b)[A-Z]\.")  # "E. coli"
_PROSE_SPEAKER = re.compile(r"^(?:The President|The Vice President|Audience members?|"
                            r"[A-Z][a-z]+(?: [A-Z][a-z.]*){0,3})\.\s+")


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


def prose_paragraphs(raw: str) -> Iterator[str]:
    """The paragraphs of prose (blank-line separated), without bracketed notes
    ("[Laughter]") or a leading speaker label ("The President.")."""
    for block in re.split(r"\n\s*\n", raw):
        paragraph = " ".join(block.split())
        paragraph = _PROSE_SPEAKER.sub("", re.sub(r"\[[^\]]*\]", " ", paragraph)).strip()
        if paragraph:
            yield paragraph


def extract_sentences(raw: str, min_words: int = 3, max_words: int = 12,
                      style: str = "play") -> list[str]:
    """Distinct normalised sentences of ``min_words`` to ``max_words`` words, in text order, from
    a play (``style="play"``) or prose (``"prose"``); pieces a voice would not read as their
    transcript says are left out (see the module docstring)."""
    if style not in ("play", "prose"):
        raise ValueError(f"text style must be 'play' or 'prose', got {style!r}")
    paragraphs = speech_lines(raw) if style == "play" else prose_paragraphs(raw)
    seen: set[str] = set()
    out = []
    for paragraph in paragraphs:
        paragraph = _ABBREVIATION.sub("#", paragraph.translate(_TYPOGRAPHY))
        for piece in _BREAK.split(paragraph):
            if _UNSPEAKABLE.search(piece):
                continue
            sentence = normalize(piece)
            n = len(sentence.split())
            if min_words <= n <= max_words and sentence not in seen:
                seen.add(sentence)
                out.append(sentence)
    return out
