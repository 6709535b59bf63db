"""Multirun sweeps (basic and joblib launchers) and `rnnseq.summarize`."""

import csv
import json

import pytest
import yaml

from tests.conftest import corpus_overrides
from tests.test_train_smoke import TINY_MODEL, run_module


def _job(folder, number, overrides, results):
    job = folder / str(number)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if results is not None:
        (job / "results.json").write_text(json.dumps(results))


def test_summarize_tabulates_varying_overrides_against_metrics(tmp_path):
    from rnnseq.summarize import summarize

    _job(tmp_path, 0, ["experiment=asr", "model/attention=dot"],
         {"best_val": {"val/wer": 0.5}, "test": {"test/wer": 0.25}, "train_seconds": 10.0})
    _job(tmp_path, 1, ["experiment=asr", "model/attention=location"],
         {"best_val": {"val/wer": 0.4}, "test": {"test/wer": 0.125}, "train_seconds": 12.0})
    _job(tmp_path, 2, ["experiment=asr", "model/attention=additive"], None)  # crashed job
    markdown = summarize(tmp_path)
    assert markdown.splitlines() == [
        "| job | model/attention | test/wer | val/wer | train_seconds |",
        "|---|---|---|---|---|",
        "| 0 | dot | 0.2500 | 0.5000 | 10.0000 |",
        "| 1 | location | 0.1250 | 0.4000 | 12.0000 |",
        "| 2 | additive |  |  |  |",
    ]
    rows = list(csv.reader((tmp_path / "summary.csv").open()))
    assert rows[0] == ["job", "model/attention", "test/wer", "val/wer", "train_seconds"]
    assert rows[2] == ["1", "location", "0.125", "0.4", "12.0"]
    with pytest.raises(FileNotFoundError, match="no job folders"):
        summarize(tmp_path / "0" / "nothing-here")


def test_the_seeds_of_one_recipe_get_their_mean_and_spread(tmp_path, capsys):
    from statistics import mean

    from rnnseq.summarize import main

    wers, cers = [0.25, 0.125, 0.5], [0.1, 0.2, 0.3]
    for seed, (wer, cer) in enumerate(zip(wers, cers), 1):
        _job(tmp_path, seed, ["experiment=asr", "model/attention=location", f"seed={seed}"],
             {"test": {"test/wer": wer}, "test_voices": {"test_voices/cer": cer},
              "train_seconds": 10.0 * seed})
    runs = [str(tmp_path / str(seed)) for seed in (1, 2, 3)]
    assert main(["--seeds", *runs]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| job | seed | test/wer | test_voices/cer | train_seconds |"
    assert lines[2:5] == ["| 1 | 1 | 0.2500 | 0.1000 | 10.0000 |",
                          "| 2 | 2 | 0.1250 | 0.2000 | 20.0000 |",
                          "| 3 | 3 | 0.5000 | 0.3000 | 30.0000 |"]
    assert lines[5] == (f"| mean |  | {mean(wers):.4f} | {mean(cers):.4f} | 20.0000 |")
    assert lines[6] == "| spread |  | 0.1250-0.5000 | 0.1000-0.3000 | 10.0000-30.0000 |"
    assert main(["--runs", *runs]) == 0  # a row each, no summary rows
    assert "mean" not in capsys.readouterr().out
    assert main(["--seeds", str(tmp_path)]) == 2  # a sweep folder is not a run
    assert "is not a run folder" in capsys.readouterr().err


def test_two_job_multirun_writes_one_folder_per_job(tiny_sweep, data_dir):
    for job in ("0", "1"):
        results = json.loads((tiny_sweep / job / "results.json").read_text())
        assert "test/wer" in results["test"]
    out = run_module("rnnseq.summarize", data_dir, str(tiny_sweep)).stdout
    assert "| 0 | 8 |" in out and "| 1 | 16 |" in out  # as Hydra records the sweep values


def test_two_jobs_run_side_by_side_with_joblib(tmp_path, data_dir, tiny_corpus):
    sweep = tmp_path / "sweep"
    run_module("rnnseq.train", data_dir, "-m", "experiment=asr", *TINY_MODEL, *corpus_overrides(),
               "data.num_workers=0", "threads=1", "trainer.fast_dev_run=1",
               "model.decoder.input_feeding=false,true", f"hydra.sweep.dir={sweep}",
               "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    for job, feeding in (("0", False), ("1", True)):
        config = yaml.safe_load((sweep / job / ".hydra" / "config.yaml").read_text())
        assert config["model"]["decoder"]["input_feeding"] is feeding
        assert "test/wer" in json.loads((sweep / job / "results.json").read_text())["test"]


def test_optuna_search_is_stored_in_the_sweep_folder_and_continues(tmp_path, data_dir, tiny_corpus):
    import optuna

    experiments = tmp_path / "experiments"
    args = ["-m", "experiment=asr", "hparams_search=asr_optuna", *TINY_MODEL, *corpus_overrides(),
            "data.num_workers=0", "threads=1", "trainer.fast_dev_run=1",
            f"paths.experiments_dir={experiments}", "hydra.sweeper.n_trials=1",
            "hydra.sweeper.params={task.optimizer.lr:'tag(log, interval(1e-4, 1e-2))',"
            "task.ctc_weight:'interval(0.1, 0.9)'}"]
    run_module("rnnseq.train", data_dir, *args)
    sweep = experiments / "asr" / "multiruns" / "optuna-asr_search"
    storage = f"sqlite:///{sweep}/optuna.db"
    assert len(optuna.load_study(study_name="asr_search", storage=storage).trials) == 1
    run_module("rnnseq.train", data_dir, *args)  # the same command continues the study
    trials = optuna.load_study(study_name="asr_search", storage=storage).trials
    assert len(trials) == 2 and all(t.value is not None for t in trials)
    jobs = [p for p in sweep.iterdir() if (p / "results.json").is_file()]
    assert len(jobs) == 2  # no job folder was overwritten


def test_slurm_launcher_composes_with_cluster_settings(tmp_path):
    from tests.conftest import compose_config

    cfg = compose_config(["experiment=asr", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                          "hydra.launcher.gpus_per_node=4", "hydra.launcher.tasks_per_node=4",
                          "trainer.devices=4"], tmp_path)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.nodes, launcher.gpus_per_node, launcher.timeout_min) == \
        ("gpu", 1, 4, 240)


def test_each_parallel_job_gets_its_own_gpu(tmp_path, monkeypatch):
    import torch
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    from tests.conftest import compose_config

    cfg = compose_config(["experiment=asr", "trainer=gpu_per_job"], tmp_path)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    devices = []
    for num in range(4):
        OmegaConf.set_readonly(cfg.hydra, False)  # HydraConfig froze it
        with open_dict(cfg):
            cfg.hydra.job.num = num
        HydraConfig.instance().set_config(cfg)
        devices.append(list(cfg.trainer.devices))
    assert devices == [[0], [1], [0], [1]]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(Exception, match="needs CUDA GPUs"):
        _ = cfg.trainer.devices


@pytest.mark.parametrize("sampler,target", [("tpe", "TPESampler"), ("random", "RandomSampler"),
                                            ("grid", "GridSampler")])
def test_optuna_samplers_are_selectable(sampler, target, tmp_path):
    from tests.conftest import compose_config

    cfg = compose_config(["experiment=asr", "hparams_search=asr_optuna",
                          f"hydra/sweeper/sampler={sampler}"], tmp_path)
    assert cfg.hydra.sweeper.sampler._target_.endswith(target)
    assert cfg.hydra.sweeper.direction == "minimize" and "sqlite:///" in cfg.hydra.sweeper.storage
