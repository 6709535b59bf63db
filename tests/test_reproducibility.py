"""The same seed gives the same run on the CPU, also with `trainer.deterministic=true`."""

import json

from rnnseq import metrics as M
from tests.conftest import corpus_overrides
from tests.test_resume import _scalars
from tests.test_train_smoke import run_train

RUN = ["trainer.fast_dev_run=3", "data.max_batch_size=8", "trainer.log_every_n_steps=1",
       "trainer.deterministic=true"]


def _outcome(run_dir):
    results = json.loads((run_dir / "results.json").read_text())
    return _scalars(run_dir, M.TRAIN_LOSS), results["best_val"], results["test"]


def test_same_seed_same_losses_and_metrics_another_seed_differs(tmp_path, data_dir, tiny_corpus):
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        run_train(tmp_path / name, data_dir, *corpus_overrides(), *RUN, f"seed={seed}")
    a, b, c = (_outcome(tmp_path / name) for name in "abc")
    assert len(a[0]) == 3
    assert a == b
    assert a[0] != c[0]
