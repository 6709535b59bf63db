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
    assert tok.unknown_symbols("abzy") == {"z", "y"}
    assert tok.decode([*tok.encode("ab"), tok.eos_id, *tok.encode("c")]) == "ab"
    assert tok.decode([tok.blank_id, *tok.encode("a"), tok.blank_id]) == "a"


def test_table_is_independent_of_text_order():
    assert CharTokenizer.from_texts(["ba", "c"]) == CharTokenizer.from_texts(["c", "ab"])


def test_bad_tables_are_rejected():
    with pytest.raises(ValueError, match="must start with"):
        CharTokenizer(["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        CharTokenizer([*SPECIALS, "a", "a"])


from rnnseq.data.tokenizer import (  # noqa: E402
    WordTokenizer,
    build_tokenizer,
    tokenizer_from_state,
)

TEXTS = ["to be or not to be that is the question",
         "whether tis nobler in the mind to suffer",
         "the slings and arrows of outrageous fortune"] * 20


@pytest.mark.parametrize("kind,vocab_size", [("char", None), ("word", None), ("bpe", 60),
                                             ("unigram", 60)])
def test_every_tokenizer_round_trips_and_survives_its_saved_state(kind, vocab_size):
    tok = build_tokenizer(kind, TEXTS, vocab_size=vocab_size)
    assert (tok.blank_id, tok.eos_id, tok.unk_id) == (0, 1, 2)
    for text in ["to be or not to be", "the mind of fortune"]:
        ids = tok.encode(text)
        assert all(3 <= i < len(tok) for i in ids)
        assert tok.decode(ids) == text
        assert tok.decode([*ids, tok.eos_id, *ids]) == text  # decoding stops at <eos>
    restored = tokenizer_from_state(tok.state())
    assert restored == tok and restored.kind == kind
    assert restored.encode("slings and arrows") == tok.encode("slings and arrows")


def test_word_vocabulary_cap_keeps_the_most_frequent_words():
    tok = WordTokenizer.from_texts(["a a a b b c", "<unk> a"], max_size=5)
    assert tok.symbols == [*SPECIALS, "a", "b"]
    assert tok.encode("a c <unk> b") == [3, tok.unk_id, tok.unk_id, 4]
    with pytest.raises(ValueError, match="more than 3"):
        WordTokenizer.from_texts(["a"], max_size=3)


def test_stream_decoding_turns_eos_into_line_breaks():
    tok = build_tokenizer("char", ["ab"])
    ids = [*tok.encode("ab"), tok.eos_id, *tok.encode("ba")]
    assert tok.decode_stream(ids) == "ab\nba"


def test_unknown_kinds_and_missing_sizes_are_explained():
    with pytest.raises(ValueError, match="unknown tokenizer kind 'bytes'"):
        build_tokenizer("bytes", TEXTS)
    with pytest.raises(ValueError, match="needs a vocab_size"):
        build_tokenizer("bpe", TEXTS)
