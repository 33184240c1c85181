import math

import pytest
import torch

from curriclab.core.data import make_loader
from curriclab.core.models import LogisticRegression
from curriclab.core.training import fit, per_sample_losses, seed_everything
from curriclab.methods.persistence import (
    LossRecorder,
    chance_percent_match,
    percent_match,
    quantile_bins,
    quantile_sizes,
    quantile_transitions,
)
from tests.helpers.persistence import _toy


def _brute_ranks(losses: list[float], descending: bool) -> list[int]:
    """Rank of each sample: how many samples come before it (by loss, then by lower index)."""
    sign = -1 if descending else 1
    keys = [(sign * loss, i) for i, loss in enumerate(losses)]
    return [sum(other < key for other in keys) for key in keys]


def _brute_members(bins: torch.Tensor, quantile: int) -> set[int]:
    return {i for i, b in enumerate(bins.tolist()) if b == quantile}


@pytest.mark.parametrize("n, q", [(10, 10), (23, 4), (17, 5), (9, 9), (31, 1), (50, 7)])
@pytest.mark.parametrize("descending", [True, False])
def test_quantile_bins_are_equal_size_cuts_of_the_ranking(n, q, descending):
    generator = torch.Generator().manual_seed(n * 100 + q)
    # Few distinct values, so ties are common and the tie rule is exercised.
    losses = torch.randint(0, 6, (n,), generator=generator).double() / 3
    bins = quantile_bins(losses, q, descending=descending)
    ranks = _brute_ranks(losses.tolist(), descending)
    assert sorted(ranks) == list(range(n))
    by_rank = [b for _, b in sorted(zip(ranks, bins.tolist()))]
    assert by_rank == sorted(by_rank), "quantiles must follow the loss ranking"
    sizes = torch.bincount(bins, minlength=q)
    assert len(sizes) == q and int(sizes.sum()) == n
    assert set(sizes.tolist()) <= {n // q, math.ceil(n / q)}
    assert torch.equal(sizes, quantile_sizes(n, q))


def test_quantile_bins_order_highest_losses_first_and_break_ties_by_index():
    losses = torch.tensor([0.5, 3.0, 0.5, 1.0, 0.5, 2.0])
    # descending ranks: 3.0 (1), 2.0 (5), 1.0 (3), then the ties 0.5 by index: 0, 2, 4
    assert quantile_bins(losses, 6).tolist() == [3, 0, 4, 2, 5, 1]
    # ascending ranks: ties 0.5 by index 0, 2, 4, then 1.0 (3), 2.0 (5), 3.0 (1)
    assert quantile_bins(losses, 6, descending=False).tolist() == [0, 5, 1, 3, 2, 4]
    assert quantile_bins(torch.zeros(7), 3).tolist() == [0, 0, 0, 1, 1, 2, 2]


def test_quantile_bins_of_a_table_are_per_epoch():
    losses = torch.rand(4, 33, generator=torch.Generator().manual_seed(0))
    bins = quantile_bins(losses, 5)
    for row, row_bins in zip(losses, bins):
        assert torch.equal(quantile_bins(row, 5), row_bins)
    assert torch.equal(quantile_bins(losses, 5, descending=False), quantile_bins(-losses, 5))


def test_percent_match_equals_a_set_intersection():
    generator = torch.Generator().manual_seed(3)
    base = torch.rand(1, 41, generator=generator)
    losses = base + 0.3 * torch.rand(5, 41, generator=generator)  # correlated epochs
    for q in (3, 4, 10):
        for first, last in [(1, 5), (2, 5), (4, 5), (3, 3), (1, 2)]:
            bins = quantile_bins(losses, q)
            expected = []
            for j in range(q):
                common = set.intersection(
                    *(_brute_members(bins[e], j) for e in range(first - 1, last))
                )
                expected.append(100.0 * len(common) / len(_brute_members(bins[first - 1], j)))
            got = percent_match(losses, q, first, last)
            assert got.dtype == torch.float64 and got.shape == (q,)
            assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64))


def test_percent_match_is_100_for_the_same_ranking_and_0_for_a_reversed_one():
    losses = torch.rand(30, generator=torch.Generator().manual_seed(1))
    same = torch.stack([losses, 2 * losses + 1, losses**3])  # same order, other values
    assert torch.equal(percent_match(same, 10), torch.full((10,), 100.0, dtype=torch.float64))
    reversed_ = torch.stack([losses, -losses])
    # q = 5 divides 30: the middle quantile maps onto itself, all others swap.
    assert percent_match(reversed_, 5).tolist() == [0.0, 0.0, 100.0, 0.0, 0.0]
    assert percent_match(reversed_, 6).tolist() == [0.0] * 6


def test_chance_level_closed_form():
    assert torch.allclose(
        chance_percent_match(1000, 10, 5), torch.full((10,), 0.01, dtype=torch.float64)
    )
    assert torch.equal(chance_percent_match(37, 4, 1), torch.full((4,), 100.0, dtype=torch.float64))
    sizes = quantile_sizes(23, 4).double()  # 6, 6, 5, 6
    assert torch.allclose(chance_percent_match(23, 4, 3), 100 * (sizes / 23) ** 2)


@pytest.mark.parametrize("n, q, epochs", [(97, 7, 2), (60, 4, 3), (20, 3, 2)])
def test_chance_level_matches_random_rankings(n, q, epochs):
    """Monte Carlo: the mean percent match of random rankings agrees with the exact chance level."""
    trials = 3000
    generator = torch.Generator().manual_seed(n + q + epochs)
    results = torch.stack(
        [percent_match(torch.rand(epochs, n, generator=generator), q) for _ in range(trials)]
    )
    mean = results.mean(0)
    standard_error = results.std(0) / math.sqrt(trials)
    expected = chance_percent_match(n, q, epochs)
    assert torch.all((mean - expected).abs() < 4.5 * standard_error + 1e-9), (mean, expected)
    # and the naive (1/q)^(k-1) is off where quantile sizes are unequal (n=97, q=7: 14 vs 13)
    if n % q:
        assert not torch.allclose(
            expected, torch.full((q,), 100.0 / q ** (epochs - 1), dtype=torch.float64)
        )


def test_transitions_count_where_members_go():
    generator = torch.Generator().manual_seed(5)
    losses = torch.rand(3, 47, generator=generator)
    losses[2] = losses[0] + 0.2 * torch.rand(47, generator=generator)
    matrix = quantile_transitions(losses, 5, from_epoch=1, to_epoch=3)
    assert torch.allclose(matrix.sum(1), torch.ones(5, dtype=torch.float64))
    bins = quantile_bins(losses, 5)
    for i in range(5):
        for j in range(5):
            members = _brute_members(bins[0], i)
            landed = members & _brute_members(bins[2], j)
            assert math.isclose(matrix[i, j].item(), len(landed) / len(members))
    two_epochs = percent_match(losses[[0, 2]], 5)
    assert torch.allclose(100 * matrix.diagonal(), two_epochs)
    backwards = quantile_transitions(losses, 5, from_epoch=3, to_epoch=1)
    assert torch.allclose(backwards.diagonal(), matrix.diagonal())
    assert torch.allclose(backwards.sum(1), torch.ones(5, dtype=torch.float64))


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: quantile_bins(torch.rand(10), 0), ValueError, "num_quantiles"),
        (lambda: quantile_bins(torch.rand(10), 11), ValueError, "num_quantiles"),
        (lambda: quantile_bins(torch.rand(10), 2.0), TypeError, "num_quantiles"),
        (lambda: quantile_bins(torch.rand(2, 3, 4), 2), ValueError, "shape"),
        (lambda: quantile_bins(torch.arange(10), 2), TypeError, "floating"),
        (lambda: quantile_bins([0.1, 0.2], 2), TypeError, "tensor"),
        (lambda: quantile_bins(torch.tensor([0.1, float("nan")]), 2), ValueError, "NaN"),
        (lambda: quantile_bins(torch.empty(0), 1), ValueError, "at least one sample"),
        (lambda: percent_match(torch.rand(10), 2), ValueError, "shape"),
        (lambda: percent_match(torch.rand(5, 10), 2, 0, 5), ValueError, "first_epoch"),
        (lambda: percent_match(torch.rand(5, 10), 2, 1, 6), ValueError, "last_epoch"),
        (lambda: percent_match(torch.rand(5, 10), 2, 4, 2), ValueError, "first_epoch"),
        (lambda: chance_percent_match(10, 2, 0), ValueError, "num_epochs"),
        (lambda: chance_percent_match(10, 20, 2), ValueError, "num_quantiles"),
        (lambda: quantile_transitions(torch.rand(3, 10), 2, 1, 4), ValueError, "to_epoch"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_recorder_keys_losses_by_dataset_index_in_shuffled_epochs():
    data = _toy()
    seed_everything(0)
    model = LogisticRegression()
    frozen = torch.optim.SGD(
        model.parameters(), lr=0.0
    )  # weights never move: loss is a function of i
    loader = make_loader(data, 16, shuffle=True, generator=torch.Generator().manual_seed(2))
    recorder = LossRecorder(len(data))
    fit(model, loader, frozen, 3, methods=[recorder], progress=False)
    expected = per_sample_losses(model, data)
    assert recorder.by_epoch.shape == (3, len(data))
    for row in recorder.by_epoch:
        assert torch.allclose(row, expected, atol=1e-6)


def test_recorder_refuses_an_epoch_that_skipped_samples():
    data = _toy()
    model = LogisticRegression()
    loader = make_loader(data, 50, drop_last=True)  # 120 samples: the last 20 are never seen
    recorder = LossRecorder(len(data))
    with pytest.raises(ValueError, match="20 of 120 samples"):
        fit(
            model,
            loader,
            torch.optim.SGD(model.parameters(), lr=0.1),
            1,
            methods=[recorder],
            progress=False,
        )
    assert recorder.by_epoch.shape == (0, len(data))


def test_recorder_state_dict_round_trip_resumes_the_same_record():
    data = _toy()
    recorder = LossRecorder(len(data))
    generator = torch.Generator().manual_seed(4)
    for epoch in range(2):
        for start in range(0, len(data), 32):
            index = torch.arange(start, min(start + 32, len(data)))
            recorder.objective(index, torch.rand(len(index), generator=generator))
        recorder.after_epoch(epoch)
    restored = LossRecorder(len(data))
    restored.load_state_dict(recorder.state_dict())
    assert torch.equal(restored.by_epoch, recorder.by_epoch)
    last = torch.rand(len(data), generator=generator)
    for copy in (recorder, restored):
        copy.objective(torch.arange(len(data)), last)
        copy.after_epoch(2)
    assert torch.equal(restored.by_epoch, recorder.by_epoch) and restored.by_epoch.shape == (
        3,
        len(data),
    )
    with pytest.raises(ValueError, match="'losses'"):
        LossRecorder(5).load_state_dict(recorder.state_dict())
