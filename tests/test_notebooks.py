"""The notebooks run top to bottom on tiny runs (through a real Jupyter kernel), import nothing
outside rnnseq, and are kept in git without outputs."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from rnnseq import finished_runs
from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _code(notebook: Path) -> list[str]:
    return [c.source for c in nbformat.read(notebook, as_version=4).cells
            if c.cell_type == "code"]


def execute(notebook: Path, monkeypatch, **env: Path) -> nbformat.NotebookNode:
    """Runs every cell of ``notebook`` in a fresh kernel that sees ``env``; returns the executed
    notebook (a failing cell raises, with its traceback)."""
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO)}}).execute()
    return nb


def _outputs(nb) -> tuple[str, int]:
    """All printed text of an executed notebook, and how many images it showed."""
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("text", ""))
            images += "image/png" in out.get("data", {})
    return "".join(text), images


def test_there_are_four_numbered_notebooks_importing_only_rnnseq():
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_", "04_"]
    for notebook in NOTEBOOKS:
        modules = set()
        for source in _code(notebook):
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Import):
                    modules |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom):
                    modules.add(node.module.split(".")[0])
        assert modules == {"rnnseq"}, (notebook.name, modules)


def test_notebooks_are_stored_without_outputs():
    for notebook in NOTEBOOKS:
        for cell in nbformat.read(notebook, as_version=4).cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, notebook.name


def test_speech_run_notebook(monkeypatch, data_dir, smoke_run):
    nb = execute(REPO / "notebooks" / "01_inspect_speech_run.ipynb", monkeypatch,
                 RNNSEQ_RUN=smoke_run, RNNSEQ_DATA_DIR=data_dir)
    text, images = _outputs(nb)
    assert "SpeechToText" in text and "reference:" in text and "test-00000.wav:" in text
    assert images == 2  # the log-mel features and the attention alignment


def test_text_generation_notebook(monkeypatch, data_dir, textgen_run):
    nb = execute(REPO / "notebooks" / "02_text_generation.ipynb", monkeypatch,
                 RNNSEQ_RUN=textgen_run, RNNSEQ_DATA_DIR=data_dir)
    text, _ = _outputs(nb)
    assert text.count("--- temperature") == 5 and "perplexity" in text and "bits/char" in text


def test_sweep_notebook(monkeypatch, data_dir, tiny_sweep):
    nb = execute(REPO / "notebooks" / "03_read_a_sweep.ipynb", monkeypatch, RNNSEQ_SWEEP=tiny_sweep,
                 RNNSEQ_DATA_DIR=data_dir)
    text, images = _outputs(nb)
    assert "model.encoder.hidden_size" in text and "val/wer" in text
    assert images == 2  # val/wer and test/cer against the hidden size


def test_speech_synthesis_notebook(monkeypatch, data_dir, tts_run):
    nb = execute(REPO / "notebooks" / "04_speech_synthesis.ipynb", monkeypatch,
                 RNNSEQ_RUN=tts_run, RNNSEQ_DATA_DIR=data_dir)
    text, images = _outputs(nb)
    assert "TextToSpeech" in text and "reads:" in text and "frames," in text
    assert images == 2  # the log-mel spectrogram and the attention alignment
    audio = [out for cell in nb.cells for out in cell.get("outputs", [])
             if "text/html" in out.get("data", {}) and "<audio" in out["data"]["text/html"]]
    assert len(audio) == 1  # the player


def test_finished_runs_finds_the_newest_run_and_explains_a_missing_one(tmp_path, monkeypatch):
    monkeypatch.delenv(finished_runs.RUN_VARIABLE, raising=False)
    monkeypatch.setenv("RNNSEQ_EXPERIMENTS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="experiment=asr"):
        finished_runs.find_run("asr")
    for name in ("old", "new", "no-checkpoint"):
        folder = tmp_path / "asr" / "runs" / name
        (folder / "checkpoints").mkdir(parents=True)
        if name != "no-checkpoint":
            (folder / "checkpoints" / "last.ckpt").write_bytes(b"")
    older = tmp_path / "asr" / "runs" / "old"
    os.utime(older, (1, 1))
    assert finished_runs.find_run("asr").name == "new"
    monkeypatch.setenv(finished_runs.RUN_VARIABLE, str(older / "checkpoints" / "last.ckpt"))
    assert finished_runs.find_run("asr") == older
