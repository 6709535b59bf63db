"""Log-mel features computed once per corpus split and read back from one file.

Reading a WAV file and computing its log-mel spectrogram costs about 1/900 of the audio's
duration on one core (``bench/data_pipeline.py``). Done again every epoch, in the training process
or in a worker competing with it, that is several percent of every training step on a small
machine; sweeps repeat it in every job. The cache does it once, in parallel, with a progress bar:

``<cache_dir>/<key>/features.f32``
    every utterance's ``(S, F)`` float32 features, one after another;
``<cache_dir>/<key>/index.npy``
    ``(N, 2)`` int64 ``[offset in frames, frames]``; ``frames = -1`` marks audio that could not
    be used (undecodable or silent);
``<cache_dir>/<key>/problems.json``
    ``{row: reason}`` for those rows, so that the data report can name the cause.

The key hashes the feature settings and, for every utterance, its id, audio path, size and
modification time, so changed audio or settings make a new cache. A cache can also hold one
augmented copy of every utterance (:class:`~rnnseq.data.augment.WaveAugment`, variant ``k``):
each utterance's augmentation is drawn from a seed of its own, and the key adds the augmentation
settings and ``k``, so that a training split can cycle through several augmented copies of itself
at the cost of reading them. The folder is written under a
temporary name and renamed when complete: an interrupted build leaves nothing that looks valid.
Cached features are bit-identical to features computed on the fly.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import io
import json
import logging
import multiprocessing
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rnnseq.data.audio import AudioError, FeatureConfig, LogMel, load_audio, require_sound
from rnnseq.data.augment import WaveAugment
from rnnseq.data.manifest import Utterance

log = logging.getLogger(__name__)

FEATURES_FILE = "features.f32"
INDEX_FILE = "index.npy"
PROBLEMS_FILE = "problems.json"


# Bumped when what a cache holds changes (2: silent audio is refused), so old caches are rebuilt.
CACHE_FORMAT = 2


def cache_key(utterances: Sequence[Utterance], config: FeatureConfig,
              augment: WaveAugment | None = None, variant: int = 0) -> str:
    """Hash of the cache format, the feature settings, the augmentation (settings and variant, if
    any) and of every utterance's id, path, size and mtime."""
    digest = hashlib.sha1(json.dumps(asdict(config), sort_keys=True).encode())
    digest.update(f"format {CACHE_FORMAT}\n".encode())
    if augment is not None:
        digest.update(f"augment {augment.settings.digest()} variant {variant}\n".encode())
    for utt in utterances:
        try:
            stat = os.stat(utt.audio_path)
            signature = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            signature = "missing"
        digest.update(f"{utt.id}\t{utt.audio_path}\t{signature}\n".encode())
    return digest.hexdigest()[:16]


class FeatureCache:
    """Read access to one built cache: ``cache[i]`` is utterance ``i``'s ``(S, F)`` features, or
    ``None`` if its audio could not be read when the cache was built.

    Each item is read with one positioned read (``os.pread``) rather than through a memory map:
    the operating system still caches the file, but its pages do not count in the process's
    resident memory, which a memory map over a whole training split (gigabytes, read through
    once per epoch) would fill.
    """

    def __init__(self, folder: str | Path, num_features: int):
        self.folder = Path(folder)
        self.index = np.load(self.folder / INDEX_FILE)
        self.num_features = num_features
        self._file: io.RawIOBase | None = None  # opened lazily: DataLoader workers open their own

    def __len__(self) -> int:
        return len(self.index)

    def problems(self) -> dict[int, str]:
        """Row -> why its audio could not be used, for every row without features."""
        path = self.folder / PROBLEMS_FILE
        saved = {int(k): v for k, v in json.loads(path.read_text()).items()} if path.is_file() else {}
        return {int(i): saved.get(int(i), "audio could not be read when the features were cached")
                for i in np.flatnonzero(self.index[:, 1] < 0)}

    def select(self, rows: Sequence[int]) -> FeatureCache:
        """The same cache seen through ``rows`` only (e.g. without the unusable ones)."""
        view = copy.copy(self)
        view.index = self.index[np.asarray(rows, dtype=np.int64)].reshape(-1, 2)
        return view

    def _descriptor(self) -> int:
        if self._file is None:  # closed when the last view sharing it is gone
            self._file = open(self.folder / FEATURES_FILE, "rb", buffering=0)  # noqa: SIM115
        return self._file.fileno()

    def __getitem__(self, i: int) -> torch.Tensor | None:
        offset, frames = (int(v) for v in self.index[i])
        if frames < 0:
            return None
        item_bytes = frames * self.num_features * 4  # float32
        data = os.pread(self._descriptor(), item_bytes, offset * self.num_features * 4)
        if len(data) != item_bytes:
            raise OSError(f"{self.folder / FEATURES_FILE} is shorter than its index says "
                          f"(item {i}); delete the folder to rebuild the cache")
        # bytearray: a writable buffer, so the tensor owns memory it may change
        return torch.frombuffer(bytearray(data), dtype=torch.float32).view(frames,
                                                                            self.num_features)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None}

def build_feature_cache(
    utterances: Sequence[Utterance],
    config: FeatureConfig,
    cache_dir: str | Path,
    num_workers: int = 1,
    description: str = "features",
    augment: WaveAugment | None = None,
    variant: int = 0,
) -> FeatureCache:
    """The cache of ``utterances`` under ``cache_dir`` (augmented copy ``variant`` of them when
    ``augment`` is given): reused if it exists, built otherwise."""
    folder = Path(cache_dir) / cache_key(utterances, config, augment, variant)
    if (folder / INDEX_FILE).is_file():
        return FeatureCache(folder, config.n_mels)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    index = np.zeros((len(utterances), 2), dtype=np.int64)
    problems: dict[int, str] = {}
    offset = 0
    paths = [u.audio_path for u in utterances]
    try:
        with (open(tmp / FEATURES_FILE, "wb") as out,
              _extractors(num_workers, config, augment, variant) as extract):
            for i, features in enumerate(tqdm(extract(_extract, paths), total=len(paths),
                                              desc=description, unit="utt", mininterval=2.0)):
                if isinstance(features, str):
                    index[i] = (offset, -1)
                    problems[i] = features
                    continue
                out.write(features.tobytes())
                index[i] = (offset, features.shape[0])
                offset += features.shape[0]
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    np.save(tmp / INDEX_FILE, index)
    (tmp / PROBLEMS_FILE).write_text(json.dumps(problems, indent=0))
    try:
        tmp.rename(folder)  # atomic: the cache appears complete or not at all
    except OSError:
        if not (folder / INDEX_FILE).is_file():
            raise
        shutil.rmtree(tmp)  # another process finished the same cache first
    log.info("cached features of %d utterances in %s%s", len(paths), folder,
             f" ({len(problems)} unusable)" if problems else "")
    return FeatureCache(folder, config.n_mels)


_logmel: LogMel | None = None
_sample_rate = 16000
_augment: WaveAugment | None = None
_variant = 0


def _init_extractor(config: FeatureConfig, augment: WaveAugment | None, variant: int) -> None:
    global _logmel, _sample_rate, _augment, _variant
    torch.set_num_threads(1)
    _logmel, _sample_rate = LogMel(config), config.sample_rate
    _augment, _variant = augment, variant


def _extract(path: str) -> np.ndarray | str:
    """Features of one file (augmented, for an augmented cache), or why there are none."""
    try:
        wave = require_sound(load_audio(path, _sample_rate), path)
    except AudioError as err:
        return str(err)
    if _augment is not None:
        generator = torch.Generator().manual_seed(_augment.seed_for(path, _variant))
        wave = _augment(wave, generator)
    return _logmel(wave).numpy()


@contextlib.contextmanager
def _extractors(num_workers: int, config: FeatureConfig, augment: WaveAugment | None = None,
                variant: int = 0):
    """Yields an ordered ``map`` over ``num_workers`` extractor processes (or this process)."""
    threads = torch.get_num_threads()
    try:
        if num_workers > 1:
            context = multiprocessing.get_context("fork")
            with context.Pool(num_workers, _init_extractor, (config, augment, variant)) as pool:
                yield functools.partial(pool.imap, chunksize=8)
        else:
            _init_extractor(config, augment, variant)
            yield map
    finally:
        torch.set_num_threads(threads)

