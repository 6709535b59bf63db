"""Every experiment config composes and instantiates; every model option builds."""

from collections.abc import Mapping
from dataclasses import asdict

import hydra.utils
import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from rnnseq.config import CONFIG_DIR, task_config
from rnnseq.data.tokenizer import CharTokenizer, LabelTokenizer
from rnnseq.models.recurrent import CELLS, CUSTOM_CELLS
from rnnseq.train import build_callbacks, resolve_precision
from tests.conftest import compose_config

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
FUSED_MODULES = {"lstm": "LSTM", "lstmp": "LSTM", "gru": "GRU", "rnn": "RNN"}
VOCAB = CharTokenizer.from_texts(["abc '"]).symbols


def _task_arguments(cfg, datamodule) -> dict:
    """What a datamodule's ``task_arguments()`` would give each task, without reading data."""
    task = cfg.task._target_.rsplit(".", 1)[-1]
    tokenizer = CharTokenizer(VOCAB).state()
    if task == "SpeechToText":
        return {"vocabulary": VOCAB, "features": asdict(datamodule.feature_config)}
    if task == "SpeechClassification":
        labels = LabelTokenizer.from_texts(["yes", "no"]).symbols
        return {"vocabulary": labels, "features": asdict(datamodule.feature_config)}
    if task == "TextToSpeech":
        return {"vocabulary": VOCAB, "features": asdict(datamodule.feature_config),
                "inputs": "characters"}
    if task == "LanguageModel":
        return {"tokenizer": tokenizer}
    if task == "TextToText":
        return {"source_tokenizer": tokenizer, "target_tokenizer": tokenizer}
    if task == "Forecasting":
        return {"history": datamodule.history, "horizon": datamodule.horizon, "season": 12,
                "scaler": {"mean": 0.0, "std": 1.0},
                "series": {"name": "test", "start": 0.0, "step": 1.0, "unit": "step"}}
    raise AssertionError(f"no test arguments for task {task}")


def _build(cfg):
    datamodule = instantiate(cfg.data)
    task = instantiate(task_config(cfg), model=cfg.model, **_task_arguments(cfg, datamodule))
    callbacks = build_callbacks(cfg, task)  # as rnnseq.train does: monitors are checked
    loggers = [instantiate(c) for c in cfg.logger.values() if c]
    trainer = instantiate(resolve_precision(cfg.trainer), callbacks=callbacks, logger=loggers)
    return datamodule, task, trainer


def on_this_machine(experiment: str, tmp_path) -> list[str]:
    """Overrides an experiment needs to build here: a CPU trainer and a corpus folder for the
    real-data recipes (their corpus is read at setup, which these tests do not run)."""
    if experiment == "asr_librispeech":
        return ["trainer=cpu", f"data.corpus.root={tmp_path}"]
    return []


@pytest.mark.parametrize("cell", CELLS)
def test_every_experiment_composes_and_builds_with_every_cell(cell, tmp_path):
    for experiment in EXPERIMENTS:
        cfg = compose_config([f"experiment={experiment}", f"model/cell={cell}",
                              *on_this_machine(experiment, tmp_path)], tmp_path)
        _, task, _ = _build(cfg)
        # modules that follow model.cell (a recipe may give one module a cell of its own)
        modules = [name for name, value in cfg.model.items() if isinstance(value, Mapping)
                   and "cell" in value and OmegaConf.is_interpolation(value, "cell")]
        assert modules, experiment  # every experiment has a recurrent module that follows model.cell
        for name in modules:
            assert cfg.model[name].cell.name == cell, (experiment, name)
        kind = FUSED_MODULES.get(cell) or CUSTOM_CELLS[cell].__name__
        built = [m for m in task.modules() if type(m).__name__ == kind]
        assert built, (experiment, kind)
        if cell == "lstmp":
            assert all(m.proj_size > 0 for m in built), experiment


def test_one_module_overrides_the_models_cell(tmp_path):
    cfg = compose_config(["experiment=asr", "model/cell=ln_lstm", "model.encoder.cell=gru",
                          "model.encoder.hidden_size=8", "model.decoder.hidden_size=8"], tmp_path)
    _, task, _ = _build(cfg)
    assert isinstance(task.model.encoder.layers[0].forward_rnn, torch.nn.GRU)
    assert type(task.model.decoder.rnn.layers[0]).__name__ == "LayerNormLSTM"


def test_experiments_exist():
    assert "asr" in EXPERIMENTS


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_instantiates(experiment, tmp_path):
    cfg = compose_config([f"experiment={experiment}", *on_this_machine(experiment, tmp_path)], tmp_path)
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    OmegaConf.to_container(job, resolve=True)  # every interpolation resolves
    datamodule, task, trainer = _build(cfg)
    assert isinstance(trainer, L.Trainer) and isinstance(task, L.LightningModule)
    assert cfg.study == experiment


def test_asr_recipe_on_your_own_manifests_has_no_embedded_corpus(tmp_path, tiny_corpus):
    """`experiment=asr data=speech data.manifests...` (the own-data command of docs/your-data.md) keeps the
    recipe's batch settings and reads the given manifests, with no corpus left over."""
    cfg = compose_config(["experiment=asr", "data=speech",
                          *(f"data.manifests.{k}={v}" for k, v in tiny_corpus.items()
                            if k in ("train", "valid", "test"))], tmp_path)
    assert cfg.data.corpus is None and cfg.data.sorted_epochs == 3
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert len(datamodule.datasets["train"]) == 24


@pytest.mark.parametrize("override", [
    "model/attention=none", "model/attention=general",
    "model/attention=additive", "model/attention=location", "model/encoder=pyramid",
    "model.encoder.cell=gru", "model.decoder.input_feeding=true",
    "task.ctc_weight=0 task.decoding.ctc_weight=0",
    "task/optimizer=adam", "task/scheduler=plateau", "task/scheduler=none", "trainer=cpu",
])
def test_model_and_training_options_compose_and_build(override, tmp_path):
    cfg = compose_config(["experiment=asr", *override.split(), "model.encoder.hidden_size=8",
                          "model.decoder.hidden_size=8"], tmp_path)
    _, task, _ = _build(cfg)
    assert task.model.encoder.output_dim == 16
    assert task.model.decoder.vocab_size == len(VOCAB)


@pytest.mark.parametrize("option", ["dot", "scaled_dot"])
def test_dot_attentions_build_with_equal_sizes_and_name_both_sizes_otherwise(option, tmp_path):
    """`dot` and `scaled_dot` score the memory itself: the decoder's hidden size must equal the
    encoder output size, 2 x 8 for the bidirectional asr encoder."""
    sizes = ["model.encoder.hidden_size=8"]
    cfg = compose_config(["experiment=asr", f"model/attention={option}", *sizes,
                          "model.decoder.hidden_size=16"], tmp_path)
    _, task, _ = _build(cfg)
    assert task.model.decoder.attention.memory_dim == task.model.encoder.output_dim == 16
    cfg = compose_config(["experiment=asr", f"model/attention={option}", *sizes,
                          "model.decoder.hidden_size=8"], tmp_path)
    with pytest.raises(Exception, match=rf"attention={option} .*memory_dim=16 .*query_dim=8 .*"
                                        r"model\.decoder\.hidden_size=16"):
        _build(cfg)


def test_monitored_metrics_are_metric_constants(tmp_path):
    from rnnseq import metrics

    for experiment in ("asr", "g2p"):
        cfg = compose_config([f"experiment={experiment}"], tmp_path)
        for name in ("model_checkpoint", "early_stopping"):
            if cfg.callbacks[name] is not None:  # the asr recipe has a step budget, no stopping
                assert cfg.callbacks[name].monitor in metrics.NAMES.values()


def test_unknown_config_values_fail_naming_the_key(tmp_path):
    cfg = compose_config(["experiment=asr", "model.encoder.cell=transformer"], tmp_path)
    with pytest.raises(Exception, match="unknown recurrent cell 'transformer'"):
        _build(cfg)
    cfg = compose_config(["experiment=asr", "task.ctc_weight=2"], tmp_path)
    with pytest.raises(Exception, match="ctc_weight must be in"):
        _build(cfg)
    cfg = compose_config(["experiment=asr", "model.encoder.hidden_size=-8"], tmp_path)
    with pytest.raises(Exception, match="sizes must be positive, got hidden_size=-8"):
        _build(cfg)
    with pytest.raises(Exception, match=r"(?s)model/attention/luong.*Available options.*location"):
        compose_config(["experiment=asr", "model/attention=luong"], tmp_path)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_checkpointing_early_stopping_and_plateau_watch_the_metric_the_task_declares(
        experiment, tmp_path):
    machine = on_this_machine(experiment, tmp_path)
    cfg = compose_config([f"experiment={experiment}", *machine], tmp_path)
    _, task, _ = _build(cfg)
    assert task.MONITOR in task.validation_metrics()
    for name in ("model_checkpoint", "early_stopping"):
        if cfg.callbacks[name] is None:  # a recipe with a step budget does not stop early
            continue
        assert cfg.callbacks[name].monitor == task.MONITOR, name
        assert cfg.callbacks[name].mode == task.MONITOR_MODE == "min"
    plateau = compose_config([f"experiment={experiment}", "task/scheduler=plateau", *machine], tmp_path)
    # keys a recipe sets for its default (warm-up cosine) schedule do not apply to the plateau one
    leftovers = [f"~task.scheduler.{key}" for key in ("warmup_steps", "min_lr_ratio")
                 if key in plateau.task.scheduler]
    if leftovers:
        plateau = compose_config([f"experiment={experiment}", "task/scheduler=plateau",
                                  *leftovers, *machine], tmp_path)
    _, task, _ = _build(plateau)
    scheduler = task.configure_optimizers()["lr_scheduler"]
    assert scheduler["monitor"] == task.MONITOR and scheduler["interval"] == "epoch"
    expected = {"asr": "val/wer", "asr_librispeech": "val/wer", "g2p": "val/per"}.get(experiment, "val/loss")
    assert task.MONITOR == expected


def test_settings_that_cannot_apply_are_errors_naming_the_key(tmp_path):
    # a warm-up length left over from the language model's schedule, under the plateau scheduler
    cfg = compose_config(["experiment=textgen", "task/scheduler=plateau"], tmp_path)
    _, task, _ = _build(cfg)
    with pytest.raises(ValueError, match=r"task.scheduler.warmup_steps does not apply.*"
                                         r"~task.scheduler.warmup_steps"):
        task.configure_optimizers()
    # the asr recipe's warm-up length left over after task/scheduler=none (a constant rate)
    cfg = compose_config(["experiment=asr", "task/scheduler=none"], tmp_path)
    _, task, _ = _build(cfg)
    with pytest.raises(ValueError, match=r"task.scheduler has \['warmup_steps'\] but no "
                                         r"scheduler.*task.scheduler=null"):
        task.configure_optimizers()
    cfg = compose_config(["experiment=asr", "task.scheduler=null"], tmp_path)
    _, task, _ = _build(cfg)
    assert isinstance(task.configure_optimizers(), torch.optim.Optimizer)
    cfg = compose_config(["experiment=textgen", "callbacks.model_checkpoint.monitor=val/wer"],
                         tmp_path)
    with pytest.raises(ValueError, match=r"callbacks.model_checkpoint.monitor=val/wer is not "
                                         r"logged by LanguageModel, which logs val/loss"):
        _build(cfg)
    cfg = compose_config(["experiment=textgen", "task/scheduler=plateau",
                          "~task.scheduler.warmup_steps", "task.scheduler.monitor=val/cer"],
                         tmp_path)
    _, task, _ = _build(cfg)
    with pytest.raises(ValueError, match=r"task.scheduler.monitor=val/cer is not logged"):
        task.configure_optimizers()
    for overrides, message in [
        (["task.ctc_weight=0", "task.decoding.ctc_weight=0.3"],
         r"decoding.ctc_weight=0.3 needs a CTC head, and this model has none"),
        (["task.ctc_weight=0", "task.decoding.mode=ctc_greedy"],
         r"decoding.mode=ctc_greedy needs a CTC head"),
        (["task.decoding.mode=greedy", "task.decoding.ctc_weight=0.3"],
         r"decoding.ctc_weight is used by beam search only"),
        (["task.decoding.lm_weight=0.3"], r"decoding.lm_weight=0.3 has no language model"),
        (["task.decoding.mode=fast"], r"decoding.mode='fast' is not one of beam, greedy"),
    ]:
        cfg = compose_config(["experiment=asr", *overrides], tmp_path)
        with pytest.raises(Exception, match=message):  # Hydra wraps the task's ValueError
            _build(cfg)
    _, task, _ = _build(compose_config(["experiment=asr"], tmp_path))
    with pytest.raises(ValueError, match=r"unknown decoding settings \['beam'\]"):
        task.set_decoding({"beam": 3})
    # the recipe decodes with a CTC weight; another mode drops it unless it is asked for again
    assert task.hparams.decoding["ctc_weight"] > 0
    with pytest.raises(ValueError, match=r"decoding.ctc_weight is used by beam search only"):
        task.set_decoding({"mode": "greedy", "ctc_weight": 0.3})
    assert task.hparams.decoding["mode"] == "beam"  # a refused change leaves nothing behind
    task.set_decoding({"mode": "ctc_greedy"})
    assert task.hparams.decoding["mode"] == "ctc_greedy"
    assert task.hparams.decoding["ctc_weight"] == 0.0
    task.set_decoding({"mode": "beam", "ctc_weight": 0.3})
    task.set_decoding({"mode": "ctc_beam"})  # CTC weighs 1 there: its weight gives way
    assert task.hparams.decoding["ctc_weight"] == 0.0
    # the shortest hypothesis beam search may end is no setting of the greedy searches
    with pytest.raises(ValueError, match=r"decoding.min_length_ratio is used by beam search only"):
        task.set_decoding({"mode": "greedy", "min_length_ratio": 0.5})
    task.set_decoding({"mode": "beam", "min_length_ratio": 0.3})
    task.set_decoding({"mode": "ctc_greedy"})
    assert task.hparams.decoding["min_length_ratio"] == 0.0


def test_checkpoints_from_before_strict_dot_are_refused_and_upgraded_to_scaled_dot(tmp_path):
    """Until checkpoints recorded ``checkpoint["rnnseq"]``, `dot` was scaled: such a checkpoint is
    refused with the upgrade command, which turns it (equal sizes, so no hidden projection) into
    `scaled_dot`, computing the same; one with the hidden projection cannot be upgraded."""
    import lightning
    import torch

    from rnnseq.models.attention import ScaledDotAttention
    from rnnseq.tasks.speech_to_text import SpeechToText
    from rnnseq.upgrade import upgrade_checkpoint

    cfg = compose_config(["experiment=asr", "model/attention=scaled_dot",
                          "model.encoder.hidden_size=8", "model.decoder.hidden_size=16"], tmp_path)
    _, task, _ = _build(cfg)
    hparams = dict(task.hparams)
    old_attention = {**hparams["model"]["attention"], "_target_": "rnnseq.models.attention.DotAttention"}
    hparams["model"] = {**hparams["model"], "attention": old_attention}
    old = {"state_dict": task.state_dict(), "hyper_parameters": hparams,
           "pytorch-lightning_version": lightning.__version__}
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(ValueError, match="python -m rnnseq.upgrade"):
        SpeechToText.load_from_checkpoint(tmp_path / "old.ckpt", weights_only=True)
    assert upgrade_checkpoint(tmp_path / "old.ckpt")
    loaded = SpeechToText.load_from_checkpoint(tmp_path / "old.ckpt", weights_only=True)
    assert type(loaded.model.decoder.attention) is ScaledDotAttention
    for name, tensor in task.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    with_projection = {**old, "state_dict": {**old["state_dict"], "model.decoder.attention.proj.weight":
                                             torch.zeros(16, 16)}}
    torch.save(with_projection, tmp_path / "projected.ckpt")
    with pytest.raises(ValueError, match="no longer builds"):
        upgrade_checkpoint(tmp_path / "projected.ckpt")
    # they recorded no transcript normaliser: their references are scored as written
    torch.save({**old, "hyper_parameters": {k: v for k, v in hparams.items() if k != "normalizer"}},
               tmp_path / "raw.ckpt")
    assert upgrade_checkpoint(tmp_path / "raw.ckpt")
    raw = SpeechToText.load_from_checkpoint(tmp_path / "raw.ckpt", weights_only=True)
    assert raw.hparams.normalizer == "none" and task.hparams.normalizer == "letters"
    # continuing or fine-tuning it with another attention than it was trained with would change
    # the arithmetic under the same weights: an error that names both
    from rnnseq.train import require_same_attention

    upgraded = torch.load(tmp_path / "old.ckpt", weights_only=True)
    with pytest.raises(ValueError, match=r"ScaledDotAttention.*model/attention=scaled_dot"):
        require_same_attention(upgraded, "old.ckpt", "resume", compose_config(
            ["experiment=asr", "model/attention=dot"], tmp_path))
    require_same_attention(upgraded, "old.ckpt", "resume", cfg)  # scaled_dot: fine


DEBUG_CONFIGS = sorted(p.stem for p in (CONFIG_DIR / "debug").glob("*.yaml"))


@pytest.mark.parametrize("debug", DEBUG_CONFIGS)
def test_debug_configs_compose_and_build_for_every_experiment(debug, tmp_path):
    assert {"fdr", "overfit", "limit", "profiler"} <= set(DEBUG_CONFIGS)
    for experiment in EXPERIMENTS:
        cfg = compose_config([f"experiment={experiment}", f"debug={debug}",
                              *on_this_machine(experiment, tmp_path)], tmp_path)
        _, _, trainer = _build(cfg)
        assert cfg.study == "debug" and isinstance(trainer, L.Trainer)


def test_decoding_settings_are_one_typed_object_with_the_defaults_filled_in(tmp_path):
    from dataclasses import fields

    from rnnseq.decoding.settings import DECODING_KEYS, DecodingSettings, default_pre_beam

    # every setting the search and the scorer registry know has its typed field (a new scorer's
    # weight and options must be added to DecodingSettings too)
    assert {f.name for f in fields(DecodingSettings)} == set(DECODING_KEYS)

    settings = DecodingSettings.from_mapping({"mode": "ctc_beam", "beam_size": 12,
                                              "pre_beam": None, "lm_weight": None})
    assert (settings.beam_size, settings.pre_beam, settings.lm_weight) == (12, None, 0.0)
    assert settings.candidates == default_pre_beam(12) == 36
    assert settings.uses_ctc and settings.beam_search
    greedy = DecodingSettings.from_mapping({"mode": "greedy", "ctc_weight": 0.3})
    assert not greedy.beam_search and greedy.uses_ctc and greedy.length_penalty == 1.0
    with pytest.raises(ValueError, match=r"unknown decoding settings \['beam_sizes'\]"):
        DecodingSettings.from_mapping({"beam_sizes": 4})
    recipe = compose_config(["experiment=asr"], tmp_path).task.decoding  # every key it knows
    assert DecodingSettings.from_mapping(recipe).beam_size == recipe.beam_size
