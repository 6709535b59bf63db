"""Transcript normalisers, against hand-written cases and the embedded corpus's own normaliser."""

import pytest

from rnnseq.data.builders.sentences import normalize
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


# -- spoken: the text front end of speech synthesis --------------------------------------------
SPOKEN_CASES = [
    # cardinals, without "and" or hyphens, with thousands commas
    ("0", "zero"), ("13", "thirteen"), ("42", "forty two"), ("101", "one hundred one"),
    ("1,234", "one thousand two hundred thirty four"), ("1,000,000", "one million"),
    ("999,999,999,999", "nine hundred ninety nine billion nine hundred ninety nine million "
                        "nine hundred ninety nine thousand nine hundred ninety nine"),
    ("007", "zero zero seven"),
    # four digits standing alone: years in pairs; 2000-2009 and others as cardinals
    ("in 1850.", "in eighteen fifty"), ("1905", "nineteen oh five"), ("1900", "nineteen hundred"),
    ("2024", "twenty twenty four"), ("2005", "two thousand five"), ("2000", "two thousand"),
    ("1066", "one thousand sixty six"), ("1,850", "one thousand eight hundred fifty"),
    ("the 1990s", "the nineteen nineties"),
    # ordinals
    ("1st 2nd 3rd 4th", "first second third fourth"), ("21st 23rd", "twenty first twenty third"),
    ("12th 100th", "twelfth one hundredth"),
    # decimals, currency, percent, &
    ("3.14", "three point one four"), ("$5", "five dollars"), ("$1", "one dollar"),
    ("$3.50", "three dollars fifty cents"), ("$0.01", "one cent"), ("£2", "two pounds"),
    ("£2.50", "two pounds fifty pence"), ("€10", "ten euros"), ("10€", "ten euros"),
    ("$2.5 million", "two point five million dollars"), ("50%", "fifty percent"),
    ("Tom & Jerry", "tom and jerry"),
    # abbreviations, case-sensitive where it matters
    ("Dr. Smith", "doctor smith"), ("dr. smith", "dr smith"),
    ("Mr. and Mrs. Jones", "mister and missus jones"), ("St. Paul", "saint paul"),
    ("cats vs. dogs", "cats versus dogs"), ("pears, etc.", "pears et cetera"),
    ("e.g. this", "for example this"), ("i.e. that", "that is that"),
]


@pytest.mark.parametrize("raw,expected", SPOKEN_CASES)
def test_spoken_writes_numbers_symbols_and_abbreviations_as_words(raw, expected):
    spoken = normalize_text(raw, "spoken")
    assert spoken == expected
    assert normalize_text(spoken, "letters") == spoken  # only what letters keeps: no hyphens


def test_spoken_leaves_letters_unchanged():
    assert normalize_text("in 1850", "letters") == "in"  # the recogniser's scores depend on it
    assert normalize_text("in 1850", "spoken") == "in eighteen fifty"


def test_unspeakable_names_what_the_normaliser_drops_in_order():
    from rnnseq.data import normalize

    # ʔ (U+0294) is a Unicode letter, kept by letters and so by spoken, as é and ä are
    assert normalize.unspeakable("a § b ʔ", "spoken") == ["§"]
    assert normalize.unspeakable("§ ✓ $5 § 3% ✓", "spoken") == ["§", "✓"]
    assert normalize.unspeakable("Don't, no! # 4", "letters") == ["#", "4"]  # pauses are silent
    assert normalize.unspeakable("Hi, you", "lowercase") == []


def test_cardinals_stop_below_a_trillion_and_unknown_normalisers_still_fail():
    from rnnseq.data.spoken import cardinal, ordinal

    assert ordinal(1_000_000) == "one millionth"
    with pytest.raises(ValueError):
        cardinal(10**12)
    with pytest.raises(ValueError, match=r"data.normalizer.*letters, lowercase, none, spoken"):
        normalize_text("x", "upper")

