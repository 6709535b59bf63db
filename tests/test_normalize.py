"""Transcript normalisers, against hand-written cases and the embedded corpus's own normaliser."""

import pytest

from rnnseq.data.corpus.sentences import normalize
from rnnseq.data.normalize import normalize_text


@pytest.mark.parametrize("raw,expected", [
    ("'Tis NOW, sir!", "tis now sir"),
    ("HE SAID: \"DON'T\" -- GO", "he said don't go"),
    ("in 1984 he left", "in he left"),           # digits are not letters: gone, as in the corpus
    ("  o'er   the  'hills'  ", "o'er the hills"),
])
def test_letters_lowercases_and_keeps_only_letters_and_inner_apostrophes(raw, expected):
    assert normalize_text(raw, "letters") == expected
    assert normalize_text(raw, "letters") == normalize(raw)  # what the espeak corpus is built with


def test_letters_keeps_other_alphabets_and_the_other_normalisers_keep_punctuation():
    assert normalize_text("Schön, GRÜN!", "letters") == "schön grün"
    assert normalize_text("Hello,  World!", "lowercase") == "hello, world!"
    assert normalize_text(" Hello,  World! ", "none") == "Hello, World!"
    with pytest.raises(ValueError, match=r"data.normalizer.*letters, lowercase, none"):
        normalize_text("x", "upper")
