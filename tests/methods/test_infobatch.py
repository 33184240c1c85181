"""curriclab.methods.infobatch: the InfoBatch-style pruner."""

import math

import pytest
import torch

from curriclab.methods.infobatch import InfoBatchSampler, below_mean
from tests.helpers.sampling import _counts, _feed, _generator

pytestmark = pytest.mark.usefixtures("one_thread")


# --- InfoBatch-style pruner ---------------------------------------------------------------------

def test_below_mean_ignores_unseen_samples():
    losses = torch.tensor([1.0, float("nan"), 3.0, 0.5])
    assert below_mean(losses).tolist() == [True, False, False, True]
    assert not bool(below_mean(torch.full((3,), float("nan"))).any())


def test_infobatch_prunes_below_mean_at_rate_r_and_rescales_the_rest():
    n, ratio, epochs = 400, 0.3, 40
    losses = torch.linspace(0.0, 2.0, n)
    low = losses < losses.mean()
    sampler = InfoBatchSampler(n, total_epochs=epochs + 1, prune_ratio=ratio, delta=1.0,
                               generator=_generator(10))
    sampler.set_epoch(0)
    assert sorted(sampler) == list(range(n))  # nothing seen yet: full data
    kept_counts = torch.zeros(n)
    expected_weight = torch.zeros(n)
    for epoch in range(1, epochs + 1):
        _feed(sampler, losses)
        sampler.set_epoch(epoch)
        drawn = torch.tensor(list(sampler), dtype=torch.long)
        assert len(set(drawn.tolist())) == len(drawn)  # a permutation of the kept samples
        kept = _counts(drawn, n).float()
        kept_counts += kept
        expected_weight += kept * sampler.weights(torch.arange(n))
    assert bool((kept_counts[~low] == epochs).all())  # above-mean samples are never pruned
    total = int(low.sum()) * epochs
    kept_share = float(kept_counts[low].sum()) / total
    assert abs(kept_share - (1 - ratio)) < 4 * math.sqrt(ratio * (1 - ratio) / total)
    # unbiased: kept share * weight 1/(1-r) is 1 on average for every below-mean sample
    assert abs(float(expected_weight[low].mean()) / epochs - 1.0) < 4 * math.sqrt(
        ratio / (1 - ratio) / total)


def test_infobatch_uses_all_data_in_the_final_epochs():
    sampler = InfoBatchSampler(100, total_epochs=8, prune_ratio=0.5, delta=0.75)
    assert [sampler.prunes_in(e) for e in range(8)] == [True] * 6 + [False] * 2
    # delta * total_epochs counted in integers: 0.55 * 100 is 55.00000000000001 in floats.
    rounded_up = InfoBatchSampler(10, total_epochs=100, delta=0.55)
    assert rounded_up.pruning_epochs == 55 and not rounded_up.prunes_in(55)
    assert InfoBatchSampler(100, total_epochs=4, delta=0.6).pruning_epochs == 3  # epochs 0-2 < 2.4
    for epoch in range(8):
        sampler.set_epoch(epoch)
        _feed(sampler, torch.linspace(0, 1, 100))
    assert sorted(sampler) == list(range(100))
    assert bool((sampler.weights(torch.arange(100)) == 1).all())
