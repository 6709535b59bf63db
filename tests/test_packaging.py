"""rnnseq as an installed package, not a checkout: a wheel built from the sources, installed
without dependencies into a fresh virtualenv that borrows `.venv`'s packages, runs its console
scripts from a folder outside the checkout, with the configs it ships and a user's own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO, corpus_overrides
from tests.test_train_smoke import TINY_MODEL


def _run(cmd: list, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Runs ``cmd`` in ``cwd`` with ``env`` added and no PYTHONPATH (nothing of the checkout)."""
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **env}
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A virtualenv holding rnnseq from a wheel (its ``bin`` folder is returned)."""
    root = tmp_path_factory.mktemp("packaging")
    # Build from a copy of what a source distribution holds, so the checkout gets no build/.
    source = root / "source"
    shutil.copytree(REPO / "rnnseq", source / "rnnseq",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    wheels = root / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
          "--no-index", "--wheel-dir", wheels, source], cwd=root)
    wheel = next(wheels.glob("rnnseq-*.whl"))
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
          "--no-index", wheel], cwd=root)
    # The dependencies come from .venv: its site-packages joins the path after the venv's own,
    # through a .pth line (which does not run .venv's own .pth files, so the editable checkout
    # stays out of sight).
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   cwd=root).stdout.strip()
    (Path(purelib) / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


def test_the_wheel_ships_the_configs_and_the_installed_copy_is_the_one_imported(installed, tmp_path):
    where = _run([installed / "python", "-c", "import rnnseq, rnnseq.config as c; "
                  "print(rnnseq.__file__); print(c.CONFIG_DIR)"], cwd=tmp_path).stdout.split()
    package, config_dir = Path(where[0]).parent, Path(where[1])
    assert REPO not in package.parents and installed.parent in package.parents
    shipped = {p.relative_to(config_dir) for p in config_dir.rglob("*.yaml")}
    checkout = REPO / "rnnseq" / "conf"
    in_checkout = {p.relative_to(checkout) for p in checkout.rglob("*.yaml")}
    assert shipped == in_checkout and Path("train.yaml") in shipped


def test_console_scripts_run_outside_the_checkout_with_a_users_config_folder(installed, tmp_path,
                                                                              data_dir, tiny_corpus):
    for script in ("train", "evaluate", "transcribe", "generate", "synthesize", "summarize", "average"):
        assert (installed / f"rnnseq-{script}").is_file(), script
    # the user's own experiment, in a folder of their own, found through Hydra's search path
    mine = tmp_path / "my_configs" / "experiment"
    mine.mkdir(parents=True)
    (mine / "tiny_asr.yaml").write_text(
        "# @package _global_\ndefaults:\n  - asr\n  - _self_\nstudy: mine\n"
        "model:\n  decoder:\n    hidden_size: 24\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    run = work / "run"
    env = {"RNNSEQ_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    tiny = [o for o in TINY_MODEL if not o.startswith("model.decoder.hidden_size")]
    _run([installed / "rnnseq-train", "--config-dir", tmp_path / "my_configs", "experiment=tiny_asr",
          *tiny, *corpus_overrides(), "data.num_workers=0", "threads=1", "trainer.fast_dev_run=1",
          f"hydra.run.dir={run}"], cwd=work, **env)
    config = (run / ".hydra" / "config.yaml").read_text()
    assert "study: mine" in config and "hidden_size: 24" in config
    # the same folder through hydra.searchpath, as docs/getting-started.md shows
    job = _run([installed / "rnnseq-train", f"hydra.searchpath=[file://{tmp_path / 'my_configs'}]",
                "experiment=tiny_asr", "--cfg", "job"], cwd=work, **env).stdout
    assert "study: mine" in job
    # every entry point takes the run the same way: run=PATH or the path first
    _run([installed / "rnnseq-evaluate", run, "decoding.beam_size=1"], cwd=work, **env)
    assert len(list((run / "evaluations").glob("test-*.json"))) == 1
