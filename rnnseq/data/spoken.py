"""The text front end of speech synthesis: English text expanded into words that can be spoken.

:func:`expand` writes out in words what a voice cannot read off the letters: numbers, currency
and percent signs, ``&`` and a few common abbreviations. The ``spoken`` normaliser
(:func:`rnnseq.data.normalize.normalize_text`) applies the ``letters`` normalisation to the
result, so that every word it writes is one ``letters`` keeps: no digits, no hyphens.

Conventions (American, without "and"):

* cardinals from 0 to 10^12 - 1, with or without thousands commas:
  ``101 -> "one hundred one"``, ``1,234 -> "one thousand two hundred thirty four"``; longer
  digit strings, and those with a leading zero (``007``), are read digit by digit;
* four digits standing alone (no comma, decimal point, suffix or sign) from 1100 to 1999 and
  from 2010 to 2099 are years, read in pairs: ``1850 -> "eighteen fifty"``,
  ``1905 -> "nineteen oh five"``, ``1900 -> "nineteen hundred"``,
  ``2024 -> "twenty twenty four"``; 2000 to 2009 read as cardinals (``"two thousand five"``);
  a plural ``s`` is kept (``1990s -> "nineteen nineties"``);
* ordinals ``1st -> "first"``, ``23rd -> "twenty third"``, ``100th -> "one hundredth"``;
* decimals digit by digit after the point: ``3.14 -> "three point one four"``;
* ``$``, ``£`` and ``€`` before (or right after) an amount, with two-digit cents or pence:
  ``$3.50 -> "three dollars fifty cents"``, ``$1 -> "one dollar"``,
  ``$2.5 million -> "two point five million dollars"``; ``50% -> "fifty percent"``;
  ``& -> "and"``;
* ``Mr.``, ``Mrs.``, ``Dr.``, ``St.`` (always "saint"), ``vs.``, ``etc.``, ``e.g.``, ``i.e.``,
  case-sensitive where case matters (``Dr.`` is a doctor, ``dr.`` is left alone).

Negative signs, times, fractions and other units are not read; whatever is left that is not a
letter is dropped by ``letters`` (:func:`rnnseq.data.normalize.unspeakable` names it).
"""

from __future__ import annotations

import re

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINALS = {"one": "first", "two": "second", "three": "third", "five": "fifth",
             "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}
_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"),
               "£": ("pound", "pounds", "penny", "pence"),
               "€": ("euro", "euros", "cent", "cents")}
_ABBREVIATIONS = tuple((re.compile(pattern), f" {words} ") for pattern, words in (
    (r"\bMrs\b\.?", "missus"), (r"\bMr\b\.?", "mister"), (r"\bDr\b\.?", "doctor"),
    (r"\bSt\b\.?", "saint"), (r"\bvs\b\.?", "versus"), (r"\betc\b\.?", "et cetera"),
    (r"\b[Ee]\.g\.?", "for example"), (r"\b[Ii]\.e\.?", "that is"), (r"&", "and")))
_NUMBER = r"[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+"
_TOKEN = re.compile(rf"""
    (?P<sign>[$£€])\s?(?P<amount>{_NUMBER})(?:\.(?P<cents>[0-9]+))?
        (?:\s(?P<scale>thousand|million|billion)\b)?
  | (?P<number>{_NUMBER})(?:\.(?P<decimals>[0-9]+))?
        (?:(?P<ordinal>st|nd|rd|th)\b|(?P<plural>s)\b|(?P<percent>\s?%)|(?P<after>[$£€])(?![0-9]))?
""", re.VERBOSE)


def cardinal(n: int) -> str:
    """``n`` (0 to 10^12 - 1) in words, without "and" or hyphens: ``1234 -> "one thousand two
    hundred thirty four"``."""
    if not 0 <= n < 10**12:
        raise ValueError(f"cardinal reads 0 to 10^12 - 1, not {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + (f" {_ONES[n % 10]}" if n % 10 else "")
    if n < 1000:
        return f"{_ONES[n // 100]} hundred" + (f" {cardinal(n % 100)}" if n % 100 else "")
    size, name = next((size, name) for size, name in _SCALES if n >= size)
    return f"{cardinal(n // size)} {name}" + (f" {cardinal(n % size)}" if n % size else "")


def ordinal(n: int) -> str:
    """``n`` (0 to 10^12 - 1) as an ordinal in words: ``21 -> "twenty first"``."""
    return _last_word(cardinal(n), _ordinal_word)


def expand(text: str) -> str:
    """``text`` with numbers, currency, ``%``, ``&`` and common abbreviations written out in words
    (see the module's conventions); everything else, case included, is left as it is."""
    for pattern, words in _ABBREVIATIONS:
        text = pattern.sub(words, text)
    return _TOKEN.sub(lambda m: f" {_say(m)} ", text)


def _ordinal_word(word: str) -> str:
    return _ORDINALS.get(word) or (word[:-1] + "ieth" if word.endswith("y") else word + "th")


def _plural_word(word: str) -> str:
    return word[:-1] + "ies" if word.endswith("y") else word + ("es" if word == "six" else "s")


def _last_word(words: str, change) -> str:
    head, _, last = words.rpartition(" ")
    return f"{head} {change(last)}".strip()


def _digits(digits: str) -> str:
    return " ".join(_ONES[int(d)] for d in digits if d != ",")


def _integer(digits: str, year: bool = False) -> str:
    """The digit string ``digits`` (maybe with thousands commas) in words; four digits without
    a comma in 1100-1999 or 2010-2099 read as a year where ``year``."""
    n = int(digits.replace(",", ""))
    if year and len(digits) == 4 and (1100 <= n <= 1999 or 2010 <= n <= 2099):
        high, low = divmod(n, 100)
        return cardinal(high) + (" hundred" if not low else
                                 f" oh {cardinal(low)}" if low < 10 else f" {cardinal(low)}")
    if (len(digits) > 1 and digits[0] == "0") or n >= 10**12:
        return _digits(digits)
    return cardinal(n)


def _amount(whole: str, decimals: str | None) -> str:
    return _integer(whole) + (f" point {_digits(decimals)}" if decimals else "")


def _money(sign: str, whole: str, cents: str | None, scale: str | None = None) -> str:
    """An amount of the currency ``sign``: whole units, then cents (pence) when given as two
    digits; any other fraction, or a scale word (``$2.5 million``), is read as a decimal."""
    one, many, cent, many_cents = _CURRENCIES[sign]
    if scale or (cents and len(cents) != 2):
        return " ".join(filter(None, (_amount(whole, cents), scale, many)))
    units, hundredths = int(whole.replace(",", "")), int(cents or 0)
    words = [f"{_integer(whole)} {one if units == 1 else many}"] if units or not hundredths else []
    if hundredths:
        words.append(f"{cardinal(hundredths)} {cent if hundredths == 1 else many_cents}")
    return " ".join(words)


def _say(m: re.Match) -> str:
    if m["sign"]:
        return _money(m["sign"], m["amount"], m["cents"], m["scale"])
    if m["after"]:
        return _money(m["after"], m["number"], m["decimals"])
    plain = not (m["decimals"] or m["ordinal"] or m["percent"])
    words = _integer(m["number"], year=True) if plain else _amount(m["number"], m["decimals"])
    if m["ordinal"]:
        words = _last_word(words, _ordinal_word)
    if m["plural"]:
        words = _last_word(words, _plural_word)
    return words + (" percent" if m["percent"] else "")
