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
"""

from __future__ import annotations

NORMALIZERS = ("letters", "lowercase", "none")


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
    raise ValueError(f"unknown transcript normaliser {normalizer!r} (data.normalizer); "
                     f"choose one of {', '.join(NORMALIZERS)}")
