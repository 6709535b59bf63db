import random

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from rnnseq.data.batching import (
    BucketBatchSampler,
    Example,
    Failure,
    collate_examples,
    make_pad_mask,
    padding_ratio,
)


def test_pad_mask():
    mask = make_pad_mask(torch.tensor([1, 3]), 4)
    assert mask.tolist() == [[True, False, False, False], [True, True, True, False]]


def test_collate_pads_and_drops_unreadable_items():
    lost = Failure("c", "/audio/c.wav", "audio file /audio/c.wav was not found")
    items = [
        Example("a", torch.ones(3, 2), torch.tensor([5, 6]), "xy"),
        lost,
        Example("b", torch.ones(5, 2) * 2, torch.tensor([7]), "z"),
    ]
    batch = collate_examples(items)
    assert batch.ids == ["a", "b"] and batch.texts == ["xy", "z"]
    assert batch.features.shape == (2, 5, 2)
    assert batch.feature_lengths.tolist() == [3, 5]
    assert batch.features[0, 3:].abs().sum() == 0
    assert batch.targets.tolist() == [[5, 6], [7, 0]]
    assert batch.target_lengths.tolist() == [2, 1]
    assert batch.failed == (lost,) and not batch.empty
    nothing = collate_examples([lost, lost._replace(id="d")])
    assert nothing.empty and [f.id for f in nothing.failed] == ["c", "d"]
    assert nothing.features.shape[0] == nothing.targets.shape[0] == 0


def _lengths(n=500, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(50, 600, (n,), generator=g).tolist()


def test_bucketing_covers_every_item_once_within_budget():
    lengths = _lengths()
    sampler = BucketBatchSampler(lengths, max_frames=4000, max_batch_size=16, seed=1)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 16
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 4000
    assert len(sampler) == len(batches)
    assert padding_ratio(lengths, batches) < 1.05


def test_epochs_reshuffle_and_same_epoch_repeats():
    sampler = BucketBatchSampler(_lengths(), max_frames=4000, seed=1)
    first = list(sampler)
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_ranks_get_disjoint_batches_of_equal_count():
    lengths = _lengths(301)
    per_rank = [list(BucketBatchSampler(lengths, max_frames=3000, num_replicas=2, rank=r))
                for r in range(2)]
    assert len(per_rank[0]) == len(per_rank[1])
    seen = [i for batches in per_rank for b in batches for i in b]
    assert len(seen) == len(set(seen))


def test_evaluation_ranks_score_every_item_exactly_once():
    lengths = _lengths(301)
    per_rank = [list(BucketBatchSampler(lengths, max_frames=3000, shuffle=False, num_replicas=2,
                                        rank=r, drop_uneven=False)) for r in range(2)]
    seen = sorted(i for batches in per_rank for b in batches for i in b)
    assert seen == list(range(len(lengths)))
    assert abs(len(per_rank[0]) - len(per_rank[1])) <= 1


def test_resume_at_serves_the_rest_of_an_epoch_then_moves_on():
    sampler = BucketBatchSampler(_lengths(), max_frames=4000, seed=1)
    sampler.set_epoch(2)
    epoch2 = list(sampler)
    sampler.set_epoch(3)
    epoch3 = list(sampler)

    sampler.resume_at(2, 5)
    assert list(sampler) == epoch2[5:]
    assert list(sampler) == epoch2  # the skip applies to one pass only
    sampler.resume_at(2, 5)
    sampler.set_epoch(2)  # Lightning sets the same epoch again after loading: still skipped
    assert list(sampler) == epoch2[5:]
    sampler.resume_at(2, len(epoch2))  # saved at the end of epoch 2
    assert sampler.epoch == 3 and list(sampler) == epoch3


def test_a_restored_position_is_served_first_and_later_epochs_count_from_it():
    sampler = BucketBatchSampler(_lengths(), max_frames=4000, seed=1)
    epochs = {}
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        epochs[epoch] = list(sampler)
    # Saved after the last batch of epoch 0; Lightning (training by steps) then announces epoch 1
    # and, after an empty epoch, epoch 2: the data goes on with epoch 1 all the same ...
    sampler.resume_at(0, 10**6)
    sampler.set_epoch(1)
    sampler.set_epoch(2)
    assert list(sampler) == epochs[1]
    sampler.set_epoch(3)  # ... and Lightning's next epoch is the data's epoch 2
    assert list(sampler) == epochs[2]


def test_stream_windows_resume_in_order_too():
    from rnnseq.data.batching import InOrderBatches

    sampler = InOrderBatches(5)
    assert list(sampler) == [[0], [1], [2], [3], [4]]
    sampler.resume_at(0, 2)
    assert list(sampler) == [[2], [3], [4]]
    sampler.resume_at(0, 5)
    assert sampler.epoch == 1 and len(list(sampler)) == 5


def test_no_shuffle_is_sorted_and_deterministic():
    lengths = _lengths()
    batches = list(BucketBatchSampler(lengths, max_frames=4000, shuffle=False))
    longest = [max(lengths[i] for i in b) for b in batches]
    assert longest == sorted(longest)


def test_sorted_first_epoch_goes_short_to_long_then_shuffles():
    lengths = _lengths()
    sampler = BucketBatchSampler(lengths, max_frames=4000, sorted_epochs=1, seed=2)
    longest = [max(lengths[i] for i in b) for b in sampler]
    assert longest == sorted(longest)
    sampler.set_epoch(1)
    longest = [max(lengths[i] for i in b) for b in sampler]
    assert longest != sorted(longest)


def test_sorted_epochs_sort_the_first_n_epochs_alike_then_shuffle():
    lengths = _lengths()
    sampler = BucketBatchSampler(lengths, max_frames=4000, sorted_epochs=2, seed=2)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
    assert epochs[0] == epochs[1]
    assert [max(lengths[i] for i in b) for b in epochs[1]] == sorted(max(lengths[i] for i in b)
                                                                    for b in epochs[1])
    assert epochs[2] != epochs[1]
    with pytest.raises(ValueError, match="sorted_epochs must be >= 0"):
        BucketBatchSampler(lengths, max_frames=4000, sorted_epochs=-1)


class _RecordBatches(L.LightningModule):
    """Trains nothing; records which items each training batch held, per epoch."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: dict[int, list[list[int]]] = {}

    def training_step(self, batch, batch_idx):
        self.seen.setdefault(self.current_epoch, []).append(batch.tolist())
        return (self.weight * 0).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_moves_the_bucketing_sampler_to_each_new_epoch(tmp_path):
    lengths = [random.Random(i).randint(5, 100) for i in range(60)]
    sampler = BucketBatchSampler(lengths, max_frames=400, max_batch_size=8, seed=3,
                                 sorted_epochs=1)
    loader = DataLoader(list(range(60)), batch_sampler=sampler)
    module = _RecordBatches()
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.fit(module, train_dataloaders=loader)

    longest = [max(lengths[i] for i in batch) for batch in module.seen[0]]
    assert longest == sorted(longest)  # epoch 0: SortaGrad, short to long
    assert module.seen[1] != module.seen[0] and module.seen[2] != module.seen[1]
    assert [max(lengths[i] for i in b) for b in module.seen[1]] != sorted(longest)  # shuffled
    assert sampler.epoch == 2


def test_an_evaluation_rank_without_a_batch_gets_one_empty_batch():
    """A split of one batch under two processes: the second rank still runs the epoch (its hooks
    gather from every rank), on an empty batch that every batch type can collate and skip."""
    from rnnseq.data.forecast import WindowDataset
    from rnnseq.data.text import collate_lines
    from rnnseq.tasks.base import is_empty

    samplers = [BucketBatchSampler([10, 12], max_frames=100, shuffle=False, num_replicas=2,
                                   rank=r, drop_uneven=False) for r in range(2)]
    assert [list(s) for s in samplers] == [[[0, 1]], [[]]]
    assert [len(s) for s in samplers] == [1, 1]
    windows = WindowDataset(np.arange(40.0), np.arange(40.0), [20, 24], history=4, horizon=2,
                            season=1)
    empties = [collate_examples([]), collate_lines([], eos_id=1), windows.collate([])]
    assert all(is_empty(batch) for batch in empties)
    assert not is_empty(windows.collate([0])) and not is_empty(collate_lines([torch.ones(2)], 1))
