"""Text-to-text pairs: TSV, JSONL and CMUdict readers, word-level splits, the espeak lexicon."""

import json

import pytest

from rnnseq.data.manifest import DataReport
from rnnseq.data.pairs import PairDataModule, PairFiles, read_pairs, split_of
from rnnseq.tasks.text_to_text import sequence_error_rates


def test_tsv_jsonl_and_cmudict_files_give_the_same_pairs(tmp_path):
    (tmp_path / "lex.tsv").write_text("hello\th ə l ˈoʊ\nworld\tw ˈɜː l d\n")
    (tmp_path / "lex.jsonl").write_text(
        json.dumps({"source": "hello", "target": "h ə l ˈoʊ"}) + "\n"
        + json.dumps({"source": "world", "target": "w  ˈɜː l d"}) + "\n")
    (tmp_path / "lex.dict").write_text(";;; comment\nHELLO  h ə l ˈoʊ\nWORLD  w ˈɜː l d # note\n")
    report = DataReport()
    pairs = [read_pairs(tmp_path / f"lex.{ext}", report) for ext in ("tsv", "jsonl", "dict")]
    assert pairs[0] == pairs[1] == pairs[2]
    assert pairs[0][1].target == "w ˈɜː l d" and not report.issues


def test_bad_lines_are_skipped_and_reported_with_file_and_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("good\tg ʊ d\nno tab here\nempty\t \nfine\tf aɪ n\n")
    report = DataReport()
    pairs = read_pairs(path, report, "tsv")
    assert [p.source for p in pairs] == ["good", "fine"]
    assert [(i.line, i.source) for i in report.issues] == [(2, str(path)), (3, str(path))]
    (tmp_path / "bad.jsonl").write_text('{"source": "a"}\nnot json\n')
    with pytest.raises(ValueError, match="no usable jsonl pairs"):
        read_pairs(tmp_path / "bad.jsonl", DataReport())
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        read_pairs(tmp_path / "missing.tsv", DataReport())


def test_held_out_splits_are_by_word_so_alternates_stay_together(tmp_path):
    words = [f"word{i}" for i in range(400)]
    lines = [f"{w.upper()}  a b\n{w.upper()}(1)  a c\n" for w in words]
    (tmp_path / "cmu.dict").write_text("".join(lines))
    splits = PairFiles(str(tmp_path / "cmu.dict"), holdout_fraction=0.1).load(DataReport())
    vocab = {s: {p.source for p in pairs} for s, pairs in splits.items()}
    assert vocab["test"] and vocab["valid"]
    assert not vocab["train"] & vocab["test"] and not vocab["train"] & vocab["valid"]
    assert all(len(pairs) == 2 * len(vocab[s]) for s, pairs in splits.items())
    assert split_of("word7", 0.1, 0.1) == split_of("word7", 0.1, 0.1)


def test_datamodule_batches_source_ids_and_target_symbols(tmp_path):
    (tmp_path / "train.tsv").write_text("".join(f"ab{c}\tx {c}\n" for c in "cdefgh"))
    (tmp_path / "dev.tsv").write_text("abc\tx c\n")
    files = PairFiles(str(tmp_path / "train.tsv"), str(tmp_path / "dev.tsv"), str(tmp_path / "dev.tsv"))
    dm = PairDataModule(files, max_tokens=100, max_batch_size=4)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch.features.dtype == batch.targets.dtype and batch.features.dim() == 2
    assert dm.source_tokenizer.decode(batch.features[0].tolist()) == batch.ids[0]
    assert dm.tokenizer.decode(batch.targets[0].tolist()) == batch.texts[0]
    arguments = dm.task_arguments()
    assert arguments["target_tokenizer"]["kind"] == "word"


def test_phoneme_and_word_error_rates():
    per, wer = sequence_error_rates(["a b c d", "e f"], ["a b x d", "e f"])
    assert per == pytest.approx(1 / 6) and wer == pytest.approx(1 / 2)


def test_espeak_lexicon_splits_words_and_never_leaks(data_dir):
    from rnnseq.data.builders.lexicon import EspeakLexicon

    splits = EspeakLexicon(str(data_dir)).load(DataReport())
    words = {s: {p.source for p in pairs} for s, pairs in splits.items()}
    assert len(words["train"]) > 10_000 and len(words["test"]) > 1_000
    assert not words["train"] & words["test"] and not words["train"] & words["valid"]
    hello = [p for pairs in splits.values() for p in pairs if p.source == "hello"]
    assert not hello or hello[0].target == "h ə l ˈoʊ"
    assert all(p.target.split() for p in splits["test"])
