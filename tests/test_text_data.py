"""Text sources (plain files, Penn Treebank folders, the Shakespeare plays) and LM batching."""

import pytest
import torch

from rnnseq.data.builders.text_sources import PennTreebank, ShakespeareText, TextFiles, read_lines
from rnnseq.data.text import (
    StreamWindows,
    TextDataModule,
    batchify,
    collate_lines,
    encode_stream,
)
from rnnseq.data.tokenizer import CharTokenizer


class ListSource:
    def __init__(self, splits):
        self.splits = splits

    def load(self):
        return self.splits


def test_stream_is_cut_into_rows_and_consecutive_windows():
    tok = CharTokenizer.from_texts(["abcdefgh"])
    stream = encode_stream(["abcdefgh", "abc"], tok)  # 8 + 1 + 3 + 1 = 13 ids
    assert stream.tolist()[8] == tok.eos_id and stream.numel() == 13
    rows = batchify(stream, 2)  # (2, 6): the last id is dropped
    assert rows.shape == (2, 6)
    assert rows[1, 0] == stream[6]
    windows = StreamWindows(rows, bptt=2)
    assert len(windows) == 3  # targets need one id beyond the inputs: 5 input steps
    first, second, last = windows[0], windows[1], windows[2]
    assert torch.equal(first.targets[:, :-1], first.inputs[:, 1:])
    assert torch.equal(second.inputs[:, 0], first.targets[:, -1])  # row b continues row b
    assert last.inputs.shape == (2, 1) and first.stateful
    with pytest.raises(ValueError, match="too short"):
        batchify(stream, 10)


def test_lines_are_independent_sequences_with_eos_on_both_sides():
    batch = collate_lines([torch.tensor([5, 6, 7]), torch.tensor([8])], eos_id=1)
    assert batch.inputs.tolist() == [[1, 5, 6, 7], [1, 8, 0, 0]]
    assert batch.targets.tolist() == [[5, 6, 7, 1], [8, 1, 0, 0]]
    assert not batch.stateful


@pytest.mark.parametrize("mode", ["stream", "lines"])
def test_datamodule_batches_every_split(mode):
    lines = ["the quick brown fox", "jumps over", "the lazy dog"] * 10
    dm = TextDataModule(ListSource({"train": lines, "valid": lines[:6], "test": lines[:6]}),
                        tokenizer={"kind": "word"}, mode=mode, batch_size=4, bptt=5)
    dm.setup()
    assert dm.task_arguments()["tokenizer"]["kind"] == "word"
    batches = list(dm.train_dataloader())
    assert batches and all(b.inputs.shape == b.targets.shape for b in batches)
    assert all(b.stateful == (mode == "stream") for b in batches)
    real = sum(int((b.targets != 0).sum()) for b in batches)
    expected = 4 * (sum(len(t.split()) + 1 for t in lines) // 4) - 4 if mode == "stream" else \
        sum(len(t.split()) + 1 for t in lines)
    assert real == expected  # every token is predicted once (stream: all but each row's first)
    assert next(iter(dm.val_dataloader())).inputs.shape[0] <= 4


def test_missing_splits_name_the_source():
    dm = TextDataModule(ListSource({"train": ["a"], "valid": [], "test": ["a"]}))
    with pytest.raises(ValueError, match="no valid lines"):
        dm.setup()


def test_text_files_read_folders_and_hold_out_the_tail(tmp_path):
    (tmp_path / "b.txt").write_text("line three\n\nline four\n")
    (tmp_path / "a.txt").write_text("line one\n  line two  \n")
    (tmp_path / "skip.md").write_text("not text")
    assert read_lines(tmp_path) == ["line one", "line two", "line three", "line four"]
    splits = TextFiles(str(tmp_path), holdout_fraction=0.25).load()
    assert splits == {"train": ["line one", "line two"], "valid": ["line three"],
                      "test": ["line four"]}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TextFiles(str(tmp_path / "nope")).load()


def test_penn_treebank_folder(tmp_path):
    for split, text in [("train", " the cat sat \n a <unk> sat \n"), ("valid", " the cat \n"),
                        ("test", " a cat \n")]:
        (tmp_path / f"ptb.{split}.txt").write_text(text)
    splits = PennTreebank(str(tmp_path)).load()
    assert splits["train"] == ["the cat sat", "a <unk> sat"] and splits["test"] == ["a cat"]
    (tmp_path / "ptb.test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"ptb\.test\.txt"):
        PennTreebank(str(tmp_path))


def test_shakespeare_holds_out_whole_plays(data_dir):
    source = ShakespeareText(str(data_dir), ["much_ado_about_nothing"], ["hamlet"])
    splits = source.load()
    assert any(line.startswith("BEATRICE") for line in splits["valid"])
    assert any("To be, or not to be" in line for line in splits["test"])
    assert not any(line.startswith("BEATRICE") for line in splits["train"])
    assert not any(line.startswith("HAMLET") for line in splits["train"])
    sentences = ShakespeareText(str(data_dir), ["much_ado_about_nothing"], ["hamlet"],
                                style="sentences").load()
    assert all(set(s) <= set("abcdefghijklmnopqrstuvwxyz' ") for s in sentences["train"][:500])
    with pytest.raises(ValueError, match="not in"):
        ShakespeareText(str(data_dir), ["no_such_play"], []).load()
