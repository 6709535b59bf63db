"""Thread and worker settings: `threads=auto|N` and single-threaded, lower-priority workers."""

import os

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from rnnseq.resources import available_cores, set_threads, worker_init


class _WorkerFacts(Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, index):
        return torch.tensor([torch.get_num_threads(), os.nice(0)])


def test_threads_auto_takes_every_available_core_and_numbers_are_kept():
    before = torch.get_num_threads()
    try:
        assert set_threads("auto") == available_cores() == torch.get_num_threads()
        assert set_threads(None) == available_cores()
        assert set_threads(1) == 1 == torch.get_num_threads()
        assert set_threads("2") == 2 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -2, "many"])
def test_bad_thread_counts_are_refused_by_name(bad):
    with pytest.raises(ValueError, match="threads must be a positive number or 'auto'"):
        set_threads(bad)


def test_workers_run_single_threaded_at_a_lower_priority():
    own_nice = os.nice(0)
    loader = DataLoader(_WorkerFacts(), batch_size=None, num_workers=1,
                        worker_init_fn=worker_init(nice=5))
    threads, nice = next(iter(loader)).tolist()
    assert threads == 1
    assert nice == min(own_nice + 5, 19)
    assert os.nice(0) == own_nice  # the training process keeps its priority


def test_negative_worker_nice_is_refused():
    with pytest.raises(ValueError, match="worker_nice must be >= 0"):
        worker_init(-1)


def test_freed_memory_the_allocator_keeps_goes_back_to_the_system():
    from rnnseq.resources import anonymous_memory_mb, release_free_memory

    # 100 kB blocks come from glibc's heap: 60 MB of them, then blocks that stay above them, so
    # that the first ones leave a hole below the heap's top when freed, which glibc keeps
    freed = [bytearray(100_000) for _ in range(600)]
    kept = [bytearray(100_000) for _ in range(10)]
    before = anonymous_memory_mb()
    del freed
    held = anonymous_memory_mb()
    assert held > before - 10  # the allocator still holds the freed hole ...
    assert release_free_memory()
    assert anonymous_memory_mb() < held - 40  # ... until it is released
    assert len(kept) == 10


def test_release_after_steps_as_asked_and_only_above_the_threshold(monkeypatch):
    from types import SimpleNamespace

    from rnnseq import callbacks

    calls = []
    monkeypatch.setattr(callbacks, "release_free_memory", lambda: calls.append(1) or True)
    monkeypatch.setattr(callbacks, "anonymous_memory_mb", lambda: 900.0)
    trainer = SimpleNamespace(global_step=0)

    def steps(callback, count):
        calls.clear()
        for step in range(1, count + 1):
            trainer.global_step = step
            callback.on_train_batch_end(trainer, None, None, None, step)
        return len(calls)

    assert steps(callbacks.ReleaseFreeMemory(), 6) == 6
    assert steps(callbacks.ReleaseFreeMemory(every_n_steps=3), 6) == 2
    assert steps(callbacks.ReleaseFreeMemory(every_n_steps=0), 6) == 0
    assert steps(callbacks.ReleaseFreeMemory(above_mb=1000), 6) == 0
    assert steps(callbacks.ReleaseFreeMemory(above_mb=800), 6) == 6

    def test_batches(callback, count):  # and after every test batch, whatever the step count
        calls.clear()
        callback.on_test_start(trainer, None)
        for index in range(count):
            callback.on_test_batch_end(trainer, None, None, None, index)
        return len(calls)

    assert test_batches(callbacks.ReleaseFreeMemory(every_n_steps=3), 4) == 5
    assert test_batches(callbacks.ReleaseFreeMemory(every_n_steps=0), 4) == 0
    assert test_batches(callbacks.ReleaseFreeMemory(above_mb=1000), 4) == 0
    with pytest.raises(ValueError, match="callbacks.release_free_memory"):
        callbacks.ReleaseFreeMemory(every_n_steps=-1)


def test_the_kernel_cache_is_capped_unless_the_environment_says_otherwise(monkeypatch):
    from rnnseq.resources import KERNEL_CACHE, limit_kernel_cache

    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    limit_kernel_cache()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(KERNEL_CACHE) != "1024"
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "512")  # the user's choice stays
    limit_kernel_cache()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "512"
