"""What a run holds: the task class that wrote its checkpoint, the tokenizer its targets were
written with, the precision it trained in, and loaders of the data it was trained on (rebuilt from
its config; the config's resolvers, :mod:`rnnseq.config`, must be registered). Above the tasks
(it knows every one), below the entry points.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

from rnnseq.checkpoints import find_checkpoint, load_checkpoint
from rnnseq.data.tokenizer import CharTokenizer, Tokenizer, tokenizer_from_state
from rnnseq.formats import require_current_data_config
from rnnseq.tasks.base import Task


def task_class_named(recorded: str, checkpoint) -> type[Task]:
    """The task class of the import path ``recorded`` (``package.module.Class``), which
    ``checkpoint`` names: a task of your own package needs no entry anywhere. Importing a module
    runs its top-level code, so load checkpoints whose task package you trust (their weights and
    settings are read without running any code)."""
    module_name, _, class_name = recorded.rpartition(".")
    try:
        task_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{checkpoint} was written by the task {recorded}, which cannot be "
                         f"imported here ({err}); install the package that defines it") from None
    if not (isinstance(task_class, type) and issubclass(task_class, Task)):
        raise ValueError(f"{checkpoint} names {recorded} as its task, which is not an rnnseq "
                         f"task class; rnnseq does not load it")
    return task_class


def task_class_for(checkpoint: str | Path) -> type[Task]:
    """The task class that wrote ``checkpoint``: the import path it records
    (``checkpoint["rnnseq"]["task"]``)."""
    return task_class_named(load_checkpoint(checkpoint)["rnnseq"]["task"], checkpoint)


def tokenizer_of_run(run: str | Path) -> Tokenizer:
    """The target tokenizer of a run folder or checkpoint: its saved tokenizer, or its symbol
    table (``vocabulary``) as characters."""
    checkpoint = find_checkpoint(run)
    hparams = load_checkpoint(checkpoint).get("hyper_parameters", {})
    if hparams.get("tokenizer"):
        return tokenizer_from_state(hparams["tokenizer"])
    if hparams.get("vocabulary"):
        return CharTokenizer(hparams["vocabulary"])
    raise ValueError(f"data.tokenizer.from_run={run}: {checkpoint} holds no tokenizer or "
                     f"vocabulary; give a speech-to-text or text-to-text run")


# -- the data a run was trained on ---------------------------------------------------------------
def manifest_loader(task, manifest: Path, batching: dict, report):
    """A test loader over any JSONL manifest, with the checkpoint's own symbols, features and
    transcript normaliser, batched by ``batching`` (``max_frames``, ``max_batch_size``); bad
    lines go to ``report``. Returns ``(loader, utterances)``."""
    from torch.utils.data import DataLoader

    from rnnseq.data.audio import FeatureConfig
    from rnnseq.data.batching import BucketBatchSampler, collate_examples
    from rnnseq.data.manifest import normalize_utterances, read_manifest
    from rnnseq.data.speech import SpeechDataset

    if "features" not in task.hparams:
        raise ValueError("--manifest scores speech models; this checkpoint is not one")
    utterances = normalize_utterances(read_manifest(manifest, report),
                                      task.hparams.get("normalizer", "letters"), report, manifest)
    if not utterances:
        raise ValueError(f"{manifest} has no usable utterances (see the warnings above)")
    dataset = SpeechDataset(utterances, task.tokenizer, FeatureConfig(**task.hparams.features))
    sampler = BucketBatchSampler(dataset.frame_lengths(), shuffle=False, **batching)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_examples), utterances


def run_data_config(run: Path, data_overrides: list[str]):
    """The ``data`` config the run was trained with (``None`` for a bare checkpoint without its
    run folder), with ``data.KEY=VALUE`` overrides applied; an override of a key the config does
    not have is an error naming it."""
    from omegaconf import OmegaConf

    config_path = run / ".hydra" / "config.yaml"
    if not config_path.is_file():
        if data_overrides:
            raise ValueError(f"{config_path} is missing, so there is no data config for "
                             f"{data_overrides}")
        return None
    cfg = OmegaConf.load(config_path)
    require_current_data_config(OmegaConf.to_container(cfg.get("data") or {}), run)
    for item in data_overrides:
        key, _, value = item.partition("=")
        if OmegaConf.select(cfg, key, default="<missing>") == "<missing>":
            raise ValueError(f"{key} is not in the run's data config; see {config_path}")
        OmegaConf.update(cfg, key, yaml.safe_load(value), merge=False)
    return cfg


def run_precision(run: Path) -> str:
    """The precision to decode a run in: the one it was trained (and tested) in, so a score here
    matches the run's own; ``auto`` and a bare checkpoint without its run folder resolve for
    this machine (:func:`rnnseq.resources.auto_precision`)."""
    from omegaconf import OmegaConf

    from rnnseq.resources import auto_precision

    config_path = run / ".hydra" / "config.yaml"
    precision = OmegaConf.select(OmegaConf.load(config_path), "trainer.precision",
                                 default=None) if config_path.is_file() else None
    if precision in (None, "auto") or (str(precision).startswith("16") and not _cuda()):
        return auto_precision()  # float16 autocast is for GPUs
    return str(precision)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def manifest_batching(cfg) -> dict:
    """``max_frames`` and ``max_batch_size`` of the run's data config (or the datamodule's
    defaults without one)."""
    import inspect

    from rnnseq.data.speech import SpeechDataModule

    defaults = inspect.signature(SpeechDataModule).parameters
    data = cfg.data if cfg is not None else {}
    return {key: int(data.get(key, defaults[key].default)) for key in ("max_frames", "max_batch_size")}


def run_data_loader(run: Path, split: str, data_overrides: list[str]):
    """The ``split`` loader of the data the run was trained on (rebuilt from its config, with
    ``data.KEY=VALUE`` overrides, e.g. another manifest or batch budget): ``(loader, utterances,
    data report)``."""
    from hydra.utils import instantiate

    cfg = run_data_config(run, data_overrides)
    if cfg is None:
        raise FileNotFoundError(f"{run / '.hydra' / 'config.yaml'} is missing: give --manifest, "
                                f"or a run folder written by rnnseq.train")
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("test")
    if split not in datamodule.datasets:
        raise ValueError(f"--split {split}: the run's data has no such split; choose from "
                         f"{', '.join(s for s in datamodule.datasets if s != 'train')}")
    if hasattr(datamodule, "split_dataloader"):
        loader = datamodule.split_dataloader(split)
    else:
        loader = datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()
    utterances = getattr(datamodule.datasets[split], "utterances", None)
    return loader, utterances, datamodule.report
