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
