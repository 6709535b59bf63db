"""Distributed training: 2 CPU processes over gloo equal 1 process with the same global batch, and
the multi-node SLURM recipe composes."""

from __future__ import annotations

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rnnseq import metrics as M
from rnnseq.checkpoints import load_checkpoint
from rnnseq.train import resolve_precision
from tests.conftest import compose_config, corpus_overrides
from tests.test_train_smoke import run_train

# Nothing random inside a step, so that the two runs can only differ by how gradients are summed.
NO_NOISE = ["model.encoder.dropout=0", "model.decoder.dropout=0", "task.spec_augment=null",
            "data.max_batch_size=4", "data.sorted_epochs=0", "trainer.max_epochs=2",
            "callbacks.attention_samples=null", "trainer.deterministic=true"]


def test_two_processes_equal_one_process_and_skip_an_unreadable_batch_together(
        tmp_path, data_dir, tiny_corpus):
    """Rank r of 2 takes batches r, r + 2, ...; DDP averages the two ranks' gradients. One process
    accumulating 2 batches per step averages the same two batches: the same update, up to the
    order of floating-point sums (tolerance 1e-5 on weights, 1e-4 on losses).

    In the 2-process run every audio file of rank 1's batch at step 1 is missing (in both epochs),
    so both ranks must skip that step together: the run finishes, the weights equal those of the
    1-process run in which that step's two batches never existed (constant learning rate, so
    only the skipped updates can differ), and the lost files are in the run's data report."""
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    common = [*corpus_overrides(), *NO_NOISE, "data._target_=tests.helpers.SpeechDataWithABadStep",
              "data.sorted_epochs=2", "data.feature_cache=null", "task.scheduler=null",
              "trainer.log_every_n_steps=1"]
    run_train(single, data_dir, *common, "+data.spoil=false", "trainer.accumulate_grad_batches=2")
    run_train(ddp, data_dir, *common, "+data.spoil=true", "trainer=ddp_cpu")

    one = json.loads((single / "results.json").read_text())
    two = json.loads((ddp / "results.json").read_text())
    # 24 utterances in 6 batches of 4 per epoch, 2 per step, 2 epochs; the spoilt run skips 2
    assert (two["steps"], one["steps"]) == (6, 4)
    events = EventAccumulator(str(ddp / "tensorboard"))
    events.Reload()
    assert max(e.value for e in events.Scalars(M.SKIPPED_STEPS)) == 2
    assert two["test_items"] == one["test_items"] == 6  # the whole test split, not one rank's half
    for name, value in one["test"].items():
        assert two["test"][name] == pytest.approx(value, abs=1e-4), name
    for name, value in one["best_val"].items():
        assert two["best_val"][name] == pytest.approx(value, abs=1e-4), name
    weights_one = load_checkpoint(single / "checkpoints" / "last.ckpt")["state_dict"]
    weights_two = load_checkpoint(ddp / "checkpoints" / "last.ckpt")["state_dict"]
    for name, tensor in weights_one.items():
        torch.testing.assert_close(weights_two[name], tensor, atol=1e-5, rtol=1e-4, msg=name)
    outputs = json.loads((ddp / "test_outputs.json").read_text())["items"]
    assert len({item["id"] for item in outputs}) == 6
    # rank 1's four lost files, each once although they failed in both epochs
    report = json.loads((ddp / "data_report.json").read_text())
    lost = [i for i in report["issues"] if i["source"].startswith("/nonexistent/")]
    assert len(lost) == 4 == len({i["id"] for i in lost}) and report["counts"] == {"skipped": 4}
    assert all("was not found (during training)" in i["reason"] for i in lost)
    assert json.loads((single / "data_report.json").read_text())["counts"] == {}


def test_a_split_of_one_batch_under_two_processes_is_scored_whole(tmp_path, data_dir):
    """The validation and test splits (6 utterances) are one batch of 8: rank 1 has none of them.
    It still runs the evaluation hooks (on an empty batch), whose gathers rank 0 waits for, so the
    run ends and scores every item once; the validation loss is the mean over items."""
    run = tmp_path / "ddp"
    run_train(run, data_dir, *corpus_overrides(), "trainer=ddp_cpu", "data.max_batch_size=8",
              "trainer.max_epochs=1", "callbacks.attention_samples=null", timeout=240)
    results = json.loads((run / "results.json").read_text())
    assert results["best_val"] and results["test_items"] == 6
    outputs = json.loads((run / "test_outputs.json").read_text())["items"]
    assert sorted(item["id"] for item in outputs) == sorted({item["id"] for item in outputs})
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert len(events.Scalars(M.VAL_LOSS)) == 1


def test_multi_node_ddp_under_slurm_composes(tmp_path):
    cfg = compose_config(["experiment=asr", "trainer=ddp", "trainer.num_nodes=2", "trainer.devices=4",
                          "hydra/launcher=slurm", "hydra.launcher.nodes=2",
                          "hydra.launcher.tasks_per_node=4", "hydra.launcher.gpus_per_node=4"],
                         tmp_path)
    assert (cfg.trainer.strategy, cfg.trainer.accelerator, cfg.trainer.num_nodes) == ("ddp", "gpu", 2)
    assert cfg.trainer.use_distributed_sampler is False  # rnnseq's sampler shards by rank itself
    launcher = cfg.hydra.launcher
    assert launcher.nodes == cfg.trainer.num_nodes
    assert launcher.tasks_per_node == cfg.trainer.devices == launcher.gpus_per_node


def test_cpu_ddp_config_builds_a_two_process_gloo_trainer(tmp_path):
    from hydra.utils import instantiate

    cfg = compose_config(["experiment=asr", "trainer=ddp_cpu"], tmp_path)
    trainer = instantiate(resolve_precision(cfg.trainer), logger=False, callbacks=[])
    assert trainer.num_devices == 2
    assert type(trainer.strategy).__name__ == "DDPStrategy"
    assert type(trainer.accelerator).__name__ == "CPUAccelerator"  # hence gloo, not NCCL
