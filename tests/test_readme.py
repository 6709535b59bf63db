"""The README's worked examples run as written, and what it shows of `--help` is what the
command prints."""

from __future__ import annotations

import re
import shlex
import sys
import types

import numpy as np
import soundfile
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from rnnseq.config import CONFIG_DIR
from rnnseq.data.manifest import DataReport, read_manifest
from rnnseq.models.seq2seq import build_seq2seq
from tests.conftest import REPO, compose_config
from tests.test_train_smoke import run_module

README = (REPO / "README.md").read_text()


def block_after(marker: str, language: str) -> str:
    """The first fenced ``language`` block after ``marker`` in the README."""
    found = re.compile(rf"```{language}\n(.*?)```", re.S).search(README, README.index(marker))
    assert found, f"no {language} block after {marker!r}"
    return found.group(1)


def load_example(monkeypatch, marker: str, module_name: str) -> types.ModuleType:
    """Runs the README's Python example after ``marker`` as the module ``module_name``."""
    package = types.ModuleType("mypackage")
    package.__path__ = []
    module = types.ModuleType(module_name)
    monkeypatch.setitem(sys.modules, "mypackage", package)
    monkeypatch.setitem(sys.modules, module_name, module)
    exec(compile(block_after(marker, "python"), f"README ({marker})", "exec"), module.__dict__)
    return module


def test_encoder_example_builds_into_a_seq2seq_model(monkeypatch):
    load_example(monkeypatch, "**An encoder.**", "mypackage.encoders")
    encoder_config = yaml.safe_load(block_after("rnnseq/conf/model/encoder/conv_gru.yaml", "yaml"))
    model = {
        "cell": {"name": "lstm"},  # what the decoder's ${model.cell} reads
        "encoder": {**encoder_config, "hidden_size": 8},
        "decoder": {**OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model/decoder/lstm.yaml")),
                    "hidden_size": 8,
                    "embed_dim": 4},
        "attention": {**OmegaConf.load(CONFIG_DIR / "model/attention/location.yaml"),
                      "attention_dim": 8},
    }
    seq2seq = build_seq2seq(OmegaConf.create({"model": model}).model, input_dim=20,
                            vocab_size=10)
    features, lengths = torch.randn(2, 37, 20), torch.tensor([37, 20])
    out = seq2seq(features, lengths, torch.zeros(2, 5, dtype=torch.long))
    assert out.logits.shape == (2, 5, 10)
    assert out.memory_lengths.tolist() == [10, 5]  # ceil(S / 4)
    memory, _ = seq2seq.encoder(features, lengths)
    assert memory.shape == (2, 10, 16) and memory[1, 5:].abs().sum() == 0


def test_dataset_example_builds_manifests_that_train_reads(monkeypatch, tmp_path):
    corpora = load_example(monkeypatch, "**A speech dataset.**", "mypackage.corpora")
    root = tmp_path / "mine"
    root.mkdir()
    words = ["one", "two", "three", "four", "five"]
    for i, word in enumerate(words):
        tone = 0.3 * np.sin(2 * np.pi * 220 * (i + 1) * np.arange(8000) / 16000)
        soundfile.write(root / f"rec{i}.wav", tone.astype(np.float32), 16000)
        (root / f"rec{i}.txt").write_text(word.upper() + "\n")
    manifests = corpora.WavTxtFolder(str(root), str(tmp_path / "out"), held_out=1).build()
    rows = {split: read_manifest(path, DataReport()) for split, path in manifests.items()}
    assert [len(rows[s]) for s in ("train", "valid", "test")] == [3, 1, 1]
    assert sorted(u.text for r in rows.values() for u in r) == sorted(words)

    # the README's command line, with this test's folders
    command = block_after("**A speech dataset.**", "bash").replace("\\\n", " ")
    overrides = shlex.split(command)[3:]  # after `python -m rnnseq.train`
    overrides = [o.replace("/corpora/mine", str(root)).replace("data/mine", str(tmp_path / "m2"))
                 for o in overrides] + [f"data.feature_cache={tmp_path / 'features'}",
                                        "+data.corpus.held_out=1", "data.num_workers=0"]
    cfg = compose_config(overrides, tmp_path / "run")
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert len(datamodule.datasets["train"]) == 3 and len(datamodule.datasets["valid"]) == 1


def test_help_lists_the_groups_the_readme_shows(data_dir):
    shown = block_after("### Seeing what a run will use", "text")
    groups = shown.split("(group=option)\n", 1)[1].split("...")[0].strip().splitlines()
    printed = run_module("rnnseq.train", data_dir, "--help").stdout
    assert len(groups) > 10 and all(line in printed.splitlines() for line in groups), printed[:2000]
    config = run_module("rnnseq.train", data_dir, "experiment=forecast",
                        "model.decoder.hidden_size=32", "--cfg", "job", "--package", "model").stdout
    assert yaml.safe_load(config)["decoder"]["hidden_size"] == 32
