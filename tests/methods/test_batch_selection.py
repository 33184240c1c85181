"""Online batch selection: selectors against brute force, and the loop's selection path."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from curriclab.core.distributed import Synchronized
from curriclab.core.protocol import SampleMethod
from curriclab.core.stats import chi_square_test
from curriclab.core.training import train_epoch
from curriclab.methods.batch_selection import (
    RhoLossSelection,
    TopLossSelection,
    UniformSelection,
    chosen_count,
    selection_order,
)
from tests.helpers.state import weights_only_round_trip


def _reference_loss(logits: list[float], label: int) -> float:
    """Cross-entropy of one sample, by hand: log-sum-exp minus the label's logit."""
    top = max(logits)
    return top + math.log(sum(math.exp(v - top) for v in logits)) - logits[label]


def _reference_choice(scores: list[float], index: list[int], count: int) -> list[int]:
    """Positions of the `count` highest scores, ties to the lower dataset index (Python's sort)."""
    return sorted(range(len(scores)), key=lambda p: (-scores[p], index[p]))[:count]


def _batch(n: int = 40, classes: int = 5, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(1000, generator=generator)[:n]
    output = torch.randn(n, classes, generator=generator, dtype=torch.float64) * 3
    target = torch.randint(0, classes, (n,), generator=generator)
    return index, output, target


def test_chosen_count_is_the_rounded_up_share_and_refuses_k_above_the_batch():
    for k, batch_size in [(1, 1), (3, 10), (10, 10), (7, 64)]:
        assert [chosen_count(n, k, batch_size) for n in range(batch_size + 1)] == [
            math.ceil(k * n / batch_size) for n in range(batch_size + 1)]
    with pytest.raises(ValueError, match="k must lie"):
        chosen_count(5, 11, 10)
    with pytest.raises(ValueError, match="k must"):
        TopLossSelection(0, 10)
    with pytest.raises(ValueError, match="batch_size=10"):
        chosen_count(11, 3, 10)
    with pytest.raises(ValueError, match="batch_size=10"):
        TopLossSelection(3, 10).select(*_batch(n=11))


@pytest.mark.parametrize("seed", range(5))
def test_top_loss_keeps_the_highest_reference_losses(seed):
    index, output, target = _batch(seed=seed)
    scores = [_reference_loss(output[p].tolist(), int(target[p])) for p in range(len(index))]
    chosen = TopLossSelection(8, 40).select(index, output, target)
    assert chosen.dtype == torch.long
    assert chosen.tolist() == _reference_choice(scores, index.tolist(), 8)


@pytest.mark.parametrize("seed", range(5))
def test_rho_loss_keeps_the_highest_reference_reducible_losses(seed):
    index, output, target = _batch(seed=seed)
    irreducible = torch.rand(1000, generator=torch.Generator().manual_seed(seed + 10),
                             dtype=torch.float64) * 4
    scores = [_reference_loss(output[p].tolist(), int(target[p])) - float(irreducible[index[p]])
              for p in range(len(index))]
    chosen = RhoLossSelection(irreducible, 8, 40).select(index, output, target)
    assert chosen.tolist() == _reference_choice(scores, index.tolist(), 8)


def test_rho_loss_passes_over_a_high_loss_sample_the_holdout_model_cannot_fit_either():
    index = torch.tensor([0, 1, 2])
    output = torch.tensor([[4.0, 0.0], [0.0, 0.5], [0.0, 0.0]])
    target = torch.tensor([1, 1, 1])  # losses: ~4.02 (a "mislabelled" point), ~0.47, ~0.69
    irreducible = torch.tensor([4.0, 0.1, 0.1])
    assert TopLossSelection(1, 3).select(index, output, target).tolist() == [0]
    assert RhoLossSelection(irreducible, 1, 3).select(index, output, target).tolist() == [2]


def test_ties_go_to_the_lower_dataset_index_whatever_the_batch_order():
    index = torch.tensor([7, 3, 9, 1, 5, 2])
    output = torch.zeros(6, 3)  # every loss is log 3: all tied
    target = torch.zeros(6, dtype=torch.long)
    selector = TopLossSelection(3, 6)
    assert index[selector.select(index, output, target)].tolist() == [1, 2, 3]
    order = torch.tensor([5, 0, 3, 1, 4, 2])
    shuffled = selector.select(index[order], output[order], target[order])
    assert index[order][shuffled].tolist() == [1, 2, 3]
    scores = torch.tensor([1.0, 2.0, 1.0, 2.0, 0.0, 1.0])
    assert selection_order(scores, index).tolist() == [3, 1, 5, 0, 2, 4]  # by hand


def test_a_smaller_last_batch_keeps_its_share_and_an_empty_one_keeps_nothing():
    index, output, target = _batch(n=20)
    assert len(TopLossSelection(8, 40).select(index, output, target)) == 4
    assert len(UniformSelection(8, 40).select(index, output, target)) == 4
    empty = (torch.empty(0, dtype=torch.long), torch.empty(0, 5), torch.empty(0, dtype=torch.long))
    for selector in (TopLossSelection(8, 40), RhoLossSelection(torch.zeros(3), 8, 40),
                     UniformSelection(8, 40)):
        assert selector.select(*empty).tolist() == []


def test_uniform_selection_frequencies_pass_a_chi_square_test():
    selector = UniformSelection(3, 10, seed=1)
    index, output, target = _batch(n=10)
    counts = torch.zeros(10)
    for _ in range(4000):
        chosen = selector.select(index, output, target)
        assert len(torch.unique(chosen)) == 3
        counts[chosen] += 1
    statistic, dof, p_value = chi_square_test(counts, torch.full((10,), 0.1))
    assert dof == 9 and p_value > 1e-3, (statistic, p_value)
    skewed = chi_square_test(counts, torch.tensor([0.2] + [0.8 / 9] * 9))
    assert skewed[2] < 1e-6  # the test can tell a 2x skew from these counts


def test_uniform_selection_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    UniformSelection(3, 10).select(*_batch(n=10))
    assert torch.equal(torch.get_rng_state(), state)


def test_non_finite_inputs_are_refused():
    index, output, target = _batch(n=10)
    output[3, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        TopLossSelection(3, 10).select(index, output, target)
    with pytest.raises(ValueError, match="irreducible_losses must be finite"):
        RhoLossSelection(torch.tensor([0.0, float("inf")]), 1, 2)
    with pytest.raises(ValueError, match="irreducible_losses must be a 1-D float"):
        RhoLossSelection(torch.zeros(3, dtype=torch.long), 1, 2)
    with pytest.raises(ValueError, match=r"index must lie in \[0, 10\)"):
        RhoLossSelection(torch.zeros(10), 3, 10).select(*_batch(n=10))


def test_state_dicts_round_trip_and_bad_states_are_refused_unchanged():
    rho = RhoLossSelection(torch.arange(5.0), 2, 4)
    other = RhoLossSelection(torch.zeros(5), 1, 3)
    other.load_state_dict(weights_only_round_trip(rho.state_dict()))
    assert torch.equal(other.irreducible_losses, torch.arange(5.0))
    assert (other.k, other.batch_size) == (2, 4)
    bad = {**rho.state_dict(), "irreducible_losses": torch.tensor([0.0, 1.0, float("nan"), 0, 0])}
    with pytest.raises(ValueError, match="irreducible_losses' must be finite"):
        other.load_state_dict(bad)
    with pytest.raises(ValueError, match="must hold 5 losses"):
        other.load_state_dict({**rho.state_dict(), "irreducible_losses": torch.zeros(4)})
    with pytest.raises(ValueError, match="state keys"):
        other.load_state_dict({"k": 2, "batch_size": 4})
    with pytest.raises(ValueError, match="'k' must be <= 'batch_size'"):
        other.load_state_dict({**rho.state_dict(), "k": 5})
    assert torch.equal(other.irreducible_losses, torch.arange(5.0)) and other.k == 2

    uniform = UniformSelection(3, 10, seed=4)
    batch = _batch(n=10)
    uniform.select(*batch)
    resumed = UniformSelection(3, 10, seed=99)
    resumed.load_state_dict(weights_only_round_trip(uniform.state_dict()))
    assert all(torch.equal(uniform.select(*batch), resumed.select(*batch)) for _ in range(5))
    with pytest.raises(ValueError, match="'generator'"):
        resumed.load_state_dict({**uniform.state_dict(), "generator": torch.zeros(3)})


# ---------------------------------------------------------------- the loop's selection path


def _model() -> nn.Module:
    torch.manual_seed(0)  # BatchNorm and dropout: the candidate forward's mode matters
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(8, 3))


def _batches(count: int = 6, size: int = 12) -> list:
    generator = torch.Generator().manual_seed(1)
    result = []
    for step in range(count):
        n = size if step < count - 1 else size // 2  # a smaller last batch
        result.append((torch.randperm(100, generator=generator)[:n],
                       torch.randn(n, 4, generator=generator),
                       torch.randint(0, 3, (n,), generator=generator)))
    return result


class _Recorder(SampleMethod):
    def __init__(self):
        self.seen = []

    def objective(self, index, losses):
        self.seen.append(index.clone())
        return None


def _hand_loop(model: nn.Module, batches: list, choose) -> list:
    """The reference: train-mode no-grad forward, choose by Python sort, step on the chosen."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    chosen_indices = []
    for index, x, y in batches:
        with torch.no_grad():
            output = model(x)
        positions = choose(index, output, y)
        index, x, y = index[positions], x[positions], y[positions]
        chosen_indices.append(index)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y, reduction="none").mean().backward()
        optimizer.step()
    return chosen_indices


def _top_by_hand(index, output, y):
    scores = F.cross_entropy(output, y, reduction="none").tolist()
    return torch.tensor(_reference_choice(scores, index.tolist(), math.ceil(4 * len(y) / 12)))


def _uniform_by_hand(seed: int):
    generator = torch.Generator().manual_seed(seed)
    return lambda index, output, y: torch.randperm(len(y), generator=generator)[
        : math.ceil(4 * len(y) / 12)]


@pytest.mark.parametrize("name", ["top", "uniform", "rho"])
def test_the_loop_makes_the_steps_of_a_hand_written_loop_on_the_chosen_samples(name):
    batches = _batches()
    irreducible = torch.rand(100, generator=torch.Generator().manual_seed(5))
    selector, choose = {
        "top": (TopLossSelection(4, 12), _top_by_hand),
        "uniform": (UniformSelection(4, 12, seed=3), _uniform_by_hand(3)),
        "rho": (RhoLossSelection(irreducible, 4, 12), lambda i, o, y: torch.tensor(
            _reference_choice((F.cross_entropy(o, y, reduction="none") - irreducible[i]).tolist(),
                              i.tolist(), math.ceil(4 * len(y) / 12)))),
    }[name]
    model, reference = _model(), _model()
    recorder = _Recorder()
    torch.manual_seed(7)
    result = train_epoch(model, batches, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                         methods=[recorder, selector], progress=False)
    torch.manual_seed(7)
    expected = _hand_loop(reference, batches, choose)
    for (key, value), (_, wanted) in zip(model.state_dict().items(),
                                         reference.state_dict().items()):
        assert torch.equal(value, wanted), key  # bitwise, BatchNorm's running statistics too
    assert [t.tolist() for t in recorder.seen] == [t.tolist() for t in expected]
    assert result.candidates == sum(len(b[0]) for b in batches) == 66
    assert result.samples == 5 * 4 + 2 and result.steps == 6


class _CountingModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.linear(x)


def test_without_a_selector_the_loop_is_unchanged():
    batches = _batches()
    model = _CountingModel()
    reference = copy.deepcopy(model)
    state = torch.get_rng_state()
    result = train_epoch(model, batches, torch.optim.SGD(model.parameters(), lr=0.1),
                         methods=[_Recorder()], progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    assert model.calls == 6 and result.candidates == 0 and result.samples == 66
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    for _, x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(reference(x), y, reduction="none").mean().backward()
        optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))


def test_the_loop_skips_an_empty_candidate_batch_and_forwards_each_candidate_batch_once():
    empty = (torch.empty(0, dtype=torch.long), torch.empty(0, 4), torch.empty(0, dtype=torch.long))
    model = _CountingModel()
    result = train_epoch(model, [empty] + _batches(2), torch.optim.SGD(model.parameters(), lr=0.1),
                         methods=[TopLossSelection(4, 12)], progress=False)
    assert result.steps == 2 and result.candidates == 18 and result.samples == 4 + 2
    assert model.calls == 4  # two candidate forwards and two training forwards


class _BadSelector(SampleMethod):
    def __init__(self, positions):
        self.positions = positions

    def select(self, index, output, target):
        return self.positions


@pytest.mark.parametrize("positions, message", [
    (torch.tensor([0.0, 1.0]), "1-D int64"),
    (torch.tensor([0, 6]), r"outside \[0, 6\)"),  # _batches(1) holds 6
    (torch.tensor([1, 1]), "more than once"),
])
def test_the_loop_refuses_a_bad_selection_and_more_than_one_selector(positions, message):
    model = _CountingModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=message):
        train_epoch(model, _batches(1), optimizer, methods=[_BadSelector(positions)],
                    progress=False)
    with pytest.raises(ValueError, match="at most one may select"):
        train_epoch(model, _batches(1), optimizer,
                    methods=[TopLossSelection(1, 12), UniformSelection(1, 12)], progress=False)


def test_a_selector_keep_all_answer_trains_on_the_whole_batch():
    model = _CountingModel()
    result = train_epoch(model, _batches(2), torch.optim.SGD(model.parameters(), lr=0.1),
                         methods=[_BadSelector(None)], progress=False)
    assert result.samples == result.candidates == 18


def test_synchronized_refuses_to_wrap_a_selector():
    with pytest.raises(TypeError, match="beside Synchronized"):
        Synchronized([TopLossSelection(1, 2)])
