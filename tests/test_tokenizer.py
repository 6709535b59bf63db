import pytest

from rnnseq.data.tokenizer import SPECIALS, CharTokenizer


def test_round_trip_and_special_ids():
    tok = CharTokenizer.from_texts(["to be or not", "that's it"])
    assert tok.symbols[:3] == list(SPECIALS)
    assert (tok.blank_id, tok.eos_id, tok.unk_id) == (0, 1, 2)
    for text in ["to be or not", "that's it", ""]:
        assert tok.decode(tok.encode(text)) == text


def test_unknown_characters_become_unk_and_decode_stops_at_eos():
    tok = CharTokenizer.from_texts(["abc"])
    ids = tok.encode("abz")
    assert ids[-1] == tok.unk_id
    assert tok.unknown_chars("abzy") == {"z", "y"}
    assert tok.decode([*tok.encode("ab"), tok.eos_id, *tok.encode("c")]) == "ab"
    assert tok.decode([tok.blank_id, *tok.encode("a"), tok.blank_id]) == "a"


def test_table_is_independent_of_text_order():
    assert CharTokenizer.from_texts(["ba", "c"]) == CharTokenizer.from_texts(["c", "ab"])


def test_bad_tables_are_rejected():
    with pytest.raises(ValueError, match="must start with"):
        CharTokenizer(["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        CharTokenizer([*SPECIALS, "a", "a"])
