"""Mixed precision: bf16-mixed trains on CPU, and the losses are computed in float32."""

from __future__ import annotations

import json
import math

import torch

from rnnseq.data.batching import Batch
from tests.conftest import compose_config, corpus_overrides
from tests.test_train_smoke import TINY_MODEL, run_train


def test_bf16_mixed_trains_on_cpu(tmp_path, data_dir, tiny_corpus):
    run = tmp_path / "bf16"
    run_train(run, data_dir, *corpus_overrides(), "trainer.fast_dev_run=2",
              "trainer.precision=bf16-mixed", "data.max_batch_size=4")
    results = json.loads((run / "results.json").read_text())
    assert results["steps"] == 2  # a step with a non-finite loss would have been skipped
    assert all(math.isfinite(v) for v in results["test"].values())


def test_losses_are_float32_under_bf16_autocast(tmp_path, tiny_corpus, monkeypatch):
    from rnnseq.train import build_data_and_task

    cfg = compose_config(["experiment=asr", *TINY_MODEL, *corpus_overrides(), "data.num_workers=0",
                          "data.feature_cache=null"], tmp_path)
    datamodule, task = build_data_and_task(cfg)
    batch: Batch = next(iter(datamodule.train_dataloader()))
    seen = {}
    ctc = torch.nn.functional.ctc_loss

    def spy_ctc(log_probs, *args, **kwargs):
        seen["ctc input"] = log_probs.dtype
        return ctc(log_probs, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "ctc_loss", spy_ctc)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = task.compute_losses(batch)
        ctc_logits = task.model.ctc_head(task.encode(batch).memory)
    assert ctc_logits.dtype == torch.bfloat16  # the network itself does run in bf16
    assert seen["ctc input"] == torch.float32
    assert {name: loss.dtype for name, loss in losses.items()} == {
        "loss": torch.float32, "att": torch.float32, "ctc": torch.float32}
