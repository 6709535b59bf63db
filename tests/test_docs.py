"""The documentation holds: the site builds in strict mode (every link, anchor and API reference
resolves), the API reference names every module, the worked examples run as written, every
training command composes, and what it shows of `--help` is what the command prints. The front
page's Python example runs in tests/test_api.py, beside the runs it needs."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import types
from pathlib import Path

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

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
         *sorted((REPO / "experiments").glob("*/README.md"))]


def documented_commands(module_pattern: str) -> list[tuple[str, str, str]]:
    """``(page, module, arguments)`` of every ``python -m <module> ...`` line of a ``bash`` block
    on the front page, the docs and the results pages (continuation lines joined, comments cut)."""
    found = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("  #")[0].strip()
                match = re.match(rf"(?:\S*/)?python -m ({module_pattern}) (.*)", line)
                if match:
                    found.append((str(page.relative_to(REPO)), match.group(1), match.group(2)))
    return found


def block_after(page: str, marker: str, language: str) -> str:
    """The first fenced ``language`` block after ``marker`` on the page ``page`` (a path from the
    repository's root)."""
    text = (REPO / page).read_text()
    found = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, text.index(marker))
    assert found, f"no {language} block after {marker!r} in {page}"
    return found.group(1)


def load_example(monkeypatch, page: str, marker: str, module_name: str) -> types.ModuleType:
    """Runs the Python example after ``marker`` on ``page`` as the module ``module_name``."""
    package = types.ModuleType("mypackage")
    package.__path__ = []
    module = types.ModuleType(module_name)
    monkeypatch.setitem(sys.modules, "mypackage", package)
    monkeypatch.setitem(sys.modules, module_name, module)
    code = block_after(page, marker, "python")
    exec(compile(code, f"{page} ({marker})", "exec"), module.__dict__)
    return module


def build_site(root: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(site)], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_site_builds_in_strict_mode(tmp_path):
    """``mkdocs build --strict`` fails on a link to a missing page or file, an anchor no heading
    makes, a ``::: module`` that does not resolve and a docstring griffe cannot read."""
    built = build_site(REPO, tmp_path / "site")
    problems = [line for line in built.stderr.splitlines() if not line.startswith(("INFO", "  - "))]
    assert built.returncode == 0, "\n".join(problems)[-4000:]
    home = (tmp_path / "site" / "index.html").read_text()
    assert "Install and run" in home and "Recognizer" in home  # the front page is the home
    api = (tmp_path / "site" / "docs" / "reference" / "api" / "index.html").read_text()
    assert "transcribe" in api and "Synthesizer" in api  # rendered from the docstrings


def test_a_broken_anchor_fails_the_strict_build(tmp_path):
    """The check above can fail: a copy of the repository's files whose one page links to a
    heading that does not exist."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    copy = tmp_path / "copy"
    for name in listed.splitlines():
        if (REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            (copy / name).write_bytes((REPO / name).read_bytes())
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
    page = copy / "docs" / "troubleshooting.md"
    page.write_text(page.read_text() + "\n[broken](configs.md#no-such-heading)\n")
    built = build_site(copy, tmp_path / "site")
    assert built.returncode != 0 and "no-such-heading" in built.stderr, built.stderr[-2000:]


def test_the_api_reference_names_every_module():
    modules = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
               for p in (REPO / "rnnseq").glob("**/*.py") if p.name != "__main__.py"}
    referenced = {m for page in (REPO / "docs" / "reference").glob("*.md")
                  for m in re.findall(r"^::: (\S+)$", page.read_text(), re.M)}
    assert modules - {"rnnseq", "rnnseq.conf"} <= referenced, sorted(modules - referenced)
    assert referenced <= modules, sorted(referenced - modules)


def training_commands() -> list[tuple[str, list[str]]]:
    """Every documented ``python -m rnnseq.train`` line as (page, overrides), but for lines with
    placeholders (``<run>``, ``[...]``, ``...``, ``$VAR``), sweeps over a launcher, help and
    resumes, which compose differently."""
    found = []
    for page, _, arguments in documented_commands(r"rnnseq\.train"):
        words = shlex.split(arguments)
        if any(re.search(r"<|\[\.\.\.|\.\.\.|\$|^--|^resume=|^hydra/launcher", w) for w in words):
            continue
        multirun = "-m" in words
        words = [w for w in words if w != "-m"]
        if multirun:  # the first value of each swept key
            words = [w if "=" not in w or "[" in w else w.split(",")[0] for w in words]
        found.append((page, words))
    return found


def test_every_training_command_in_the_docs_composes(tmp_path):
    commands = training_commands()
    assert len(commands) >= 15, commands
    failed = []
    for page, overrides in commands:
        try:
            compose_config(overrides, tmp_path / "run")
        except Exception as err:  # noqa: BLE001  (every failing command is listed at once)
            failed.append(f"{page}: {' '.join(overrides)}: {str(err).splitlines()[0]}")
    assert not failed, "\n".join(failed)


def test_every_other_documented_command_parses():
    """The other commands' documented lines, placeholders (``<run>``) filled in, are accepted by
    their argument parsers: no option, subcommand or setting prefix that does not exist."""
    commands = [c for c in documented_commands(r"rnnseq\.[a-z_.]+") if c[1] != "rnnseq.train"]
    assert len(commands) >= 10, commands
    failed = []
    for page, module, arguments in commands:
        if "..." in arguments:
            continue
        words = shlex.split(re.sub(r"<[^>]*>", "x", arguments))
        name = module + ".__main__" if module == "rnnseq.data.readers" else module
        parse = getattr(importlib.import_module(name), "parse_args", None)
        if parse is None:
            continue
        try:
            parse(words)
        except SystemExit:
            failed.append(f"{page}: python -m {module} {arguments}")
    assert not failed, "\n".join(failed)


def test_every_entry_point_the_docs_name_exists():
    module = re.compile(r"python -m (rnnseq(?:\.[a-z_]+)*)")
    named = {m for page in PAGES for m in module.findall(page.read_text())}
    assert {"rnnseq.train", "rnnseq.evaluate", "rnnseq.upgrade"} <= named
    missing = [m for m in named if importlib.util.find_spec(m) is None]
    assert not missing, missing


def test_the_front_pages_results_are_those_of_the_experiment_pages():
    """Every figure of the front page's results table is on the results page its row links to,
    so the front page cannot drift from the pages (which hold every seed)."""
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Results"):readme.index("## Documentation")]
    rows = [line for line in table.splitlines() if line.startswith("| [")]
    assert len(rows) >= 6
    for row in rows:
        page = REPO / re.search(r"\]\(([^)]+)\)", row).group(1)
        figures = re.findall(r"\d+\.\d+", row.split("|")[4])
        assert figures, row
        text = page.read_text()
        missing = [f for f in figures if f not in text]
        assert not missing, f"{page}: {missing} of {row!r}"


def test_encoder_example_builds_into_a_seq2seq_model(monkeypatch):
    load_example(monkeypatch, "docs/extending.md", "**An encoder.**", "mypackage.encoders")
    encoder_config = yaml.safe_load(block_after("docs/extending.md",
                                                "rnnseq/conf/model/encoder/conv_gru.yaml", "yaml"))
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
    corpora = load_example(monkeypatch, "docs/extending.md", "**A speech dataset.**",
                           "mypackage.corpora")
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

    # the page's command line, with this test's folders
    command = block_after("docs/extending.md", "**A speech dataset.**", "bash").replace("\\\n", " ")
    overrides = shlex.split(command)[3:]  # after `python -m rnnseq.train`
    overrides = [o.replace("/corpora/mine", str(root)).replace("data/mine", str(tmp_path / "m2"))
                 for o in overrides] + [f"data.feature_cache={tmp_path / 'features'}",
                                        "+data.corpus.held_out=1", "data.num_workers=0"]
    cfg = compose_config(overrides, tmp_path / "run")
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert len(datamodule.datasets["train"]) == 3 and len(datamodule.datasets["valid"]) == 1


def test_help_lists_the_groups_the_docs_show(data_dir):
    shown = block_after("docs/configs.md", "### Seeing what a run will use", "text")
    groups = shown.split("(group=option)\n", 1)[1].split("...")[0].strip().splitlines()
    printed = run_module("rnnseq.train", data_dir, "--help").stdout
    assert len(groups) > 10 and all(line in printed.splitlines() for line in groups), printed[:2000]
    config = run_module("rnnseq.train", data_dir, "experiment=forecast",
                        "model.decoder.hidden_size=32", "--cfg", "job", "--package", "model").stdout
    assert yaml.safe_load(config)["decoder"]["hidden_size"] == 32
