"""Transcript normalisers: what training transcripts and evaluation references pass through, so
that a model is scored against text written the way it learnt to write.

A normaliser is named by a string (``data.normalizer``), recorded with the checkpoint of every
speech model, and applied again by ``rnnseq.evaluate`` to any reference it scores:

``letters`` (the default)
    lowercase; every character that is not a letter or an apostrophe becomes a space;
    apostrophes at word edges are dropped; single spaces. On English text it equals what the
    embedded corpus is built with (``"'Tis NOW, sir!" -> "tis now sir"``); letters of other
    alphabets (``ä``, ``é``) are kept.
``lowercase``
    lowercase and single spaces, punctuation kept.
``none``
    single spaces only (labels of a classifier, transcripts that are already final).
``spoken``
    the text front end of speech synthesis: numbers, currency, ``%``, ``&`` and common
    abbreviations written out in English words (:func:`rnnseq.data.spoken.expand`), then
    ``letters`` (``"Dr. Smith paid $3.50 in 1850" -> "doctor smith paid three dollars fifty cents
    in eighteen fifty"``). :func:`unspeakable` names what it still drops.
"""

from __future__ import annotations

from rnnseq.data.spoken import expand

NORMALIZERS = ("letters", "lowercase", "none", "spoken")


def _letters(text: str) -> str:
    kept = "".join(c if c.isalpha() or c == "'" else " " for c in text.lower())
    return " ".join(w for w in (w.strip("'") for w in kept.split()) if w)


def normalize_text(text: str, normalizer: str = "letters") -> str:
    """``text`` through the normaliser named ``normalizer`` (one of :data:`NORMALIZERS`)."""
    if normalizer == "letters":
        return _letters(text)
    if normalizer == "lowercase":
        return " ".join(text.lower().split())
    if normalizer == "none":
        return " ".join(text.split())
    if normalizer == "spoken":
        return _letters(expand(text))
    raise ValueError(f"unknown transcript normaliser {normalizer!r} (data.normalizer); "
                     f"choose one of {', '.join(NORMALIZERS)}")


# Punctuation that a reader pauses on rather than says: dropping it loses nothing spoken.
SILENT_PUNCTUATION = frozenset(".,;:!?'\"()[]{}-–—…‘’“”«»¡¿")


def unspeakable(text: str, normalizer: str) -> list[str]:
    """The distinct characters of ``text`` (as :func:`rnnseq.data.spoken.expand` writes it, for
    ``spoken``) that the normaliser ``normalizer`` drops and that stood for something said, in
    order of first appearance: ``unspeakable("a § b!", "spoken") == ["§"]``, so that a caller
    can warn "cannot speak '§'". A character counts as dropped when it is in none of the
    normalised words, in any case; spaces and :data:`SILENT_PUNCTUATION` are never named."""
    out = normalize_text(text, normalizer)
    source = expand(text) if normalizer == "spoken" else text
    return [c for c in dict.fromkeys(source)
            if not c.isspace() and c not in SILENT_PUNCTUATION and c not in out
            and c.lower() not in out]
