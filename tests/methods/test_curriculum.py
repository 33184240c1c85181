"""Pacing functions and the curriculum sampler: formulas against hand-worked values, draws exactly
and by chi-square, the three orders, sharding (pure and on a two-process gloo group), resuming."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist

from curriclab.core.data import IndexedDataset, make_loader
from curriclab.core.models import LogisticRegression
from curriclab.core.protocol import SampleMethod
from curriclab.core.stats import chi_square_test
from curriclab.core.training import fit, seed_everything
from curriclab.methods.curriculum import (
    PACINGS,
    CurriculumSampler,
    available_count,
    curriculum_order,
    fixed_exponential_pacing,
    pacing_fraction,
    pacing_function,
    selected_fraction,
)
from curriclab.methods.spl import threshold_for_fraction
from tests.helpers.distributed import run_ranks
from tests.helpers.sampling import SEED_ALPHA
from tests.helpers.state import weights_only_round_trip

# ---------------------------------------------------------------- pacing functions

# b = 0.2, a = 0.5, T = 100: all data at step 50; at step 25, x = t / (aT) = 0.5
HALF_WAY = {
    "linear": 0.2 + 0.8 * 0.5,
    "quadratic": 0.2 + 0.8 * 0.25,
    "root": 0.2 + 0.8 * 0.5**0.5,
    "exponential": 0.2 + 0.8 * (math.e**5 - 1) / (math.e**10 - 1),
    "logarithmic": 0.2 + 0.8 * (1 + math.log(0.5 + math.e**-10) / 10),
    "step": 0.2,
}


def test_each_pacing_formula_matches_its_hand_computed_value():
    assert set(HALF_WAY) == set(PACINGS)
    for name, expected in HALF_WAY.items():
        assert pacing_fraction(name, 25, 100, start=0.2, full_at=0.5) == pytest.approx(
            expected, rel=1e-12), name
    # a few numbers worked by hand: 0.6, 0.4, 0.765685, 0.205354, 0.944555
    rounded = [round(HALF_WAY[n], 6) for n in PACINGS[:5]]
    assert rounded == [0.6, 0.4, 0.765685, 0.205354, 0.944555]


@pytest.mark.parametrize("name", PACINGS)
def test_pacing_boundaries_monotone_and_clipped(name):
    total, start, full_at = 100, 0.2, 0.5
    values = [pacing_fraction(name, t, total, start=start, full_at=full_at)
              for t in range(2 * total)]
    assert values[0] == start
    assert all(v == 1.0 for v in values[50:]), "all data from step a*T on"
    assert all(v < 1.0 for v in values[:50]), "not all data before step a*T"
    assert all(b >= a for a, b in zip(values, values[1:])), "monotone"
    assert all(start <= v <= 1.0 for v in values)


def test_full_at_above_one_never_reaches_all_data_and_start_one_is_plain_training():
    assert pacing_fraction("linear", 100, 100, start=0.2, full_at=2.0) == pytest.approx(0.6)
    assert all(pacing_fraction(n, t, 10, start=1.0, full_at=0.3) == 1.0
               for n in PACINGS for t in range(10))


def test_pacing_function_is_pacing_fraction_of_the_step():
    pace = pacing_function("root", 40, start=0.1, full_at=0.25)
    assert [pace(t) for t in range(40)] == [
        pacing_fraction("root", t, 40, start=0.1, full_at=0.25) for t in range(40)]


def test_fixed_exponential_pacing_doubles_every_step_length():
    pace = fixed_exponential_pacing(0.1, 2.0, 10)
    expected = [0.1] * 10 + [0.2] * 10 + [0.4] * 10 + [0.8] * 10 + [1.0] * 30
    assert [pace(t) for t in range(70)] == pytest.approx(expected)
    assert pace(10**9) == 1.0  # no overflow far beyond the end


@pytest.mark.parametrize("call, name", [
    (lambda: pacing_fraction("cubic", 0, 10), "name"),
    (lambda: pacing_fraction("linear", -1, 10), "step"),
    (lambda: pacing_fraction("linear", 0, 0), "total_steps"),
    (lambda: pacing_fraction("linear", 0, 10, start=0.0), "start"),
    (lambda: pacing_fraction("linear", 0, 10, start=1.5), "start"),
    (lambda: pacing_fraction("linear", 0, 10, start=math.nan), "start"),
    (lambda: pacing_fraction("linear", 0, 10, full_at=0.0), "full_at"),
    (lambda: pacing_fraction("linear", 0, 10, full_at=math.inf), "full_at"),
    (lambda: pacing_function("linear", 0), "total_steps"),
    (lambda: fixed_exponential_pacing(0.1, 1.0, 5), "increase"),
    (lambda: fixed_exponential_pacing(0.1, 2.0, 0), "step_length"),
    (lambda: fixed_exponential_pacing(0.0, 2.0, 5), "start"),
    (lambda: available_count(0.0, 10), "fraction"),
    (lambda: available_count(1.01, 10), "fraction"),
])
def test_bad_pacing_arguments_are_refused_by_name(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_pacing_types_are_checked():
    with pytest.raises(TypeError, match="step"):
        pacing_fraction("linear", 1.5, 10)
    with pytest.raises(TypeError, match="start"):
        pacing_fraction("linear", 0, 10, start="0.2")


def test_available_count_truncates_with_a_tolerance_and_a_floor():
    assert 0.29 * 100 < 29  # the float product the tolerance is for
    assert available_count(0.29, 100) == 29
    assert available_count(0.299, 100) == 29
    assert available_count(0.001, 100) == 1  # never empty
    assert available_count(0.001, 100, min_samples=30) == 30
    assert available_count(0.5, 10, min_samples=30) == 10
    assert available_count(1.0, 7) == 7


# ---------------------------------------------------------------- orders


def test_orders_easy_hard_and_random():
    scores = torch.tensor([3.0, 1.0, 2.0, 1.0, 0.5])
    assert curriculum_order(scores, "easy").tolist() == [4, 1, 3, 2, 0]  # ties by index
    assert curriculum_order(scores, "hard").tolist() == [0, 2, 3, 1, 4]  # the reverse
    random = curriculum_order(scores, "random", torch.Generator().manual_seed(5))
    assert random.tolist() == torch.randperm(5, generator=torch.Generator().manual_seed(5)).tolist()
    with pytest.raises(ValueError, match="order"):
        curriculum_order(scores, "medium")


def test_selected_fraction_inverts_spl_threshold_for_fraction():
    losses = torch.rand(200, generator=torch.Generator().manual_seed(1))
    for fraction in (0.05, 0.3, 0.5, 1.0):
        assert selected_fraction(losses, threshold_for_fraction(losses, fraction)) == fraction
    with_unseen = torch.cat([losses, torch.full((50,), math.nan)])
    assert selected_fraction(with_unseen, threshold_for_fraction(with_unseen, 0.3)) == 0.3
    with pytest.raises(ValueError, match="seen"):
        selected_fraction(torch.full((3,), math.nan), 1.0)
    with pytest.raises(ValueError, match="threshold"):
        selected_fraction(losses, math.nan)


# ---------------------------------------------------------------- the sampler's draws

N = 60


def _scores(n: int = N, seed: int = 0) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).double()


def _sampler(order="easy", n=N, total=30, batch=6, pace=None, **kwargs) -> CurriculumSampler:
    pace = pace or pacing_function("linear", total, start=0.2, full_at=0.5)
    return CurriculumSampler(_scores(n), pace, total, batch, order, seed=11, **kwargs)


def _stream(sampler: CurriculumSampler) -> list[list[int]]:
    """Every epoch's yielded indices, epoch by epoch, as fit would drive the sampler."""
    epochs = []
    for epoch in range(sampler.num_epochs):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
        sampler.after_epoch(epoch)
    return epochs


@pytest.mark.parametrize("order", ["easy", "hard", "random"])
def test_each_step_draws_distinct_samples_only_from_the_available_prefix(order):
    sampler = _sampler(order)
    scores = _scores()
    if order == "random":
        prefix_order = torch.randperm(N, generator=torch.Generator().manual_seed(11))
    else:  # scores are a permutation of 0..N-1: the easiest k are those with score < k
        prefix_order = torch.argsort(scores, descending=order == "hard")
    assert torch.equal(sampler.order, prefix_order)
    for step in range(sampler.total_steps):
        count = math.floor(sampler.pacing(step) * N + 1e-9)
        assert sampler.available(step) == count
        batch = sampler.plan_of_step(step)
        assert len(batch) == 6 and len(set(batch.tolist())) == 6
        allowed = set(prefix_order[:count].tolist())
        assert set(batch.tolist()) <= allowed, f"step {step}"
        if order != "random":
            rank = scores[batch] if order == "easy" else N - 1 - scores[batch]
            assert bool((rank < count).all())
    assert sampler.available(0) == 12 and sampler.available(15) == N  # b N, then all data


def test_iterating_yields_each_steps_batch_in_order_over_the_whole_budget():
    sampler = _sampler(steps_per_epoch=7)
    assert sampler.num_epochs == 5  # 30 steps in epochs of 7, 7, 7, 7, 2
    epochs = _stream(_sampler(steps_per_epoch=7))
    assert [len(e) for e in epochs] == [42, 42, 42, 42, 12]
    flat = [i for e in epochs for i in e]
    assert flat == [i for t in range(30) for i in sampler.plan_of_step(t).tolist()]
    sampler.set_epoch(5)
    assert len(sampler) == 0 and list(sampler) == []  # past the budget


def test_draws_are_uniform_within_the_prefix_chi_square():
    steps = 3000
    pace = fixed_exponential_pacing(0.25, 2.0, steps)  # 15 of 60 available throughout
    sampler = CurriculumSampler(_scores(), pace, steps, 5, seed=3)
    counts = torch.bincount(torch.cat([sampler.plan_of_step(t) for t in range(steps)]),
                            minlength=N)
    available = _scores() < 15
    assert int(counts[~available].sum()) == 0
    _, dof, p_value = chi_square_test(counts, available.double())
    assert dof == 14 and p_value > SEED_ALPHA


def test_draws_with_replacement_when_the_prefix_is_smaller_than_a_batch_chi_square():
    steps = 2000
    pace = fixed_exponential_pacing(0.05, 2.0, steps)  # 3 of 60 available, batches of 8
    sampler = CurriculumSampler(_scores(), pace, steps, 8, seed=4)
    counts = torch.bincount(torch.cat([sampler.plan_of_step(t) for t in range(steps)]),
                            minlength=N)
    available = _scores() < 3
    assert int(counts.sum()) == 8 * steps and int(counts[~available].sum()) == 0
    _, dof, p_value = chi_square_test(counts, available.double())
    assert dof == 2 and p_value > SEED_ALPHA


def test_chi_square_detects_a_draw_that_is_not_uniform():
    """The uniformity check above has power: a prefix drawn 2:1 fails it."""
    counts = torch.zeros(N)
    counts[:15] = torch.tensor([1200.0] * 5 + [600.0] * 10)
    assert chi_square_test(counts, (torch.arange(N) < 15).double())[2] < SEED_ALPHA


def test_min_samples_widens_the_first_prefix():
    sampler = _sampler(min_samples=30)
    assert sampler.available(0) == 30
    assert set(sampler.plan_of_step(0).tolist()) <= set(sampler.order[:30].tolist())


def test_same_seed_same_stream_other_seed_other_stream():
    assert _stream(_sampler()) == _stream(_sampler())
    other = CurriculumSampler(_scores(), pacing_function("linear", 30), 30, 6, seed=12)
    assert _stream(other) != _stream(_sampler())


# ---------------------------------------------------------------- score updates (SPL-like)


def test_update_scores_re_sorts_by_the_recorded_losses_at_the_next_epoch():
    sampler = _sampler(update_scores=True, steps_per_epoch=10)
    before = sampler.order.clone()
    losses = torch.arange(N, 0, -1).double()  # reverses the difficulty of every sample
    sampler.objective(torch.arange(N), losses)
    assert torch.equal(sampler.order, before), "the order holds within an epoch"
    sampler.after_epoch(0)
    assert sampler.order.tolist() == list(range(N - 1, -1, -1))


def test_the_callers_scores_are_never_updated_in_place():
    given = _scores()
    sampler = CurriculumSampler(given, pacing_function("linear", 10), 10, 4, update_scores=True)
    sampler.objective(torch.arange(N), torch.zeros(N))
    assert torch.equal(given, _scores()) and bool((sampler.scores == 0).all())


def test_non_finite_losses_and_bad_indices_leave_the_scores_unchanged():
    sampler = _sampler(update_scores=True)
    before = sampler.scores.clone()
    with pytest.raises(ValueError, match="finite"):
        sampler.objective(torch.tensor([0, 1]), torch.tensor([0.5, math.nan]))
    with pytest.raises(ValueError, match="index"):
        sampler.objective(torch.tensor([0, N]), torch.tensor([0.5, 0.5]))
    with pytest.raises(TypeError, match="index"):
        sampler.objective(torch.tensor([0.0]), torch.tensor([0.5]))
    assert torch.equal(sampler.scores, before)
    assert sampler.objective(torch.empty(0, dtype=torch.long), torch.empty(0)) is None


def test_a_fixed_score_sampler_only_observes():
    sampler = _sampler()
    before = sampler.scores.clone()
    assert sampler.objective(torch.tensor([0]), torch.tensor([9.0])) is None
    assert torch.equal(sampler.scores, before)


class _Recorder(SampleMethod):
    def __init__(self):
        self.batches = []

    def objective(self, index, losses):
        self.batches.append((index.clone(), losses.detach().double().clone()))


def test_fit_trains_exactly_the_budget_and_records_losses_by_dataset_index():
    seed_everything(0)
    data = IndexedDataset(torch.randn(N, 4), torch.randint(0, 2, (N,)))
    initial = torch.rand(N).double()
    sampler = CurriculumSampler(initial, pacing_function("quadratic", 25), 25, 4,
                                update_scores=True, seed=1)
    loader = make_loader(data, sampler.local_batch_size, sampler=sampler)
    model, recorder = LogisticRegression(4, 2), _Recorder()
    history = fit(model, loader, torch.optim.SGD(model.parameters(), lr=0.1),
                  sampler.num_epochs, methods=[sampler, recorder], progress=False)
    assert sum(r.train.steps for r in history) == 25 == len(recorder.batches)
    assert sum(r.train.samples for r in history) == 100
    expected = initial.clone()
    for index, losses in recorder.batches:
        expected[index] = losses
    assert torch.equal(sampler.scores, expected)
    assert not torch.equal(expected, initial)


# ---------------------------------------------------------------- sharding


@pytest.mark.parametrize("order", ["easy", "random"])
def test_rank_shards_interleave_to_the_one_process_batches(order):
    one = _stream(_sampler(order, batch=6, steps_per_epoch=4))
    shards = [_stream(_sampler(order, batch=6, steps_per_epoch=4, num_replicas=3, rank=r))
              for r in range(3)]
    for epoch, whole in enumerate(one):
        parts = [torch.tensor(s[epoch]).reshape(-1, 2) for s in shards]  # [steps, 6 / 3]
        merged = torch.stack(parts, dim=2).reshape(-1)  # step by step, entry j from rank j % 3
        assert merged.tolist() == whole
        assert sum(len(s[epoch]) for s in shards) == len(whole)


def test_shard_arguments_are_checked():
    with pytest.raises(ValueError, match="batch_size"):
        _sampler(batch=5, num_replicas=2, rank=0)
    with pytest.raises(ValueError, match="rank"):
        _sampler(num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas"):
        _sampler(num_replicas=0, rank=0)
    assert _sampler(batch=6, num_replicas=2, rank=1).local_batch_size == 3


def _gloo_worker(rank: int, directory: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{directory}/store", rank=rank,
                            world_size=2, timeout=timedelta(seconds=60))
    sampler = _sampler("easy", batch=6, steps_per_epoch=4, update_scores=True)
    seen = []
    for epoch in range(sampler.num_epochs):
        sampler.set_epoch(epoch)  # checks that both ranks hold the same order
        seen.append(list(sampler))
        sampler.objective(torch.arange(N), torch.arange(N, 0, -1).double() * (epoch + 1))
        sampler.after_epoch(epoch)
    torch.save({"seen": seen, "world": dist.get_world_size(), "rank": sampler.rank},
               f"{directory}/result{rank}.pt")
    dist.destroy_process_group()


def test_two_gloo_ranks_draw_disjoint_halves_of_the_one_process_batches(tmp_path):
    assert run_ranks(_gloo_worker, str(tmp_path), world=2) == [0, 0]
    results = [torch.load(tmp_path / f"result{r}.pt", weights_only=True) for r in range(2)]
    assert [r["rank"] for r in results] == [0, 1] and results[0]["world"] == 2

    one = _sampler("easy", batch=6, steps_per_epoch=4, update_scores=True)
    for epoch in range(one.num_epochs):
        one.set_epoch(epoch)
        whole = list(one)
        halves = [torch.tensor(r["seen"][epoch]).reshape(-1, 3) for r in results]
        assert torch.stack(halves, dim=2).reshape(-1).tolist() == whole
        one.objective(torch.arange(N), torch.arange(N, 0, -1).double() * (epoch + 1))
        one.after_epoch(epoch)


# ---------------------------------------------------------------- state


def test_resume_from_state_dict_continues_the_stream_bitwise():
    def run(resume_after: int | None) -> list[list[int]]:
        sampler = _sampler(update_scores=True, steps_per_epoch=5)
        seen = []
        for epoch in range(sampler.num_epochs):
            if epoch == resume_after:
                state = weights_only_round_trip(sampler.state_dict())
                sampler = CurriculumSampler(torch.zeros(N), pacing_function("linear", 30, start=0.2,
                                                                            full_at=0.5),
                                            30, 6, update_scores=True, steps_per_epoch=5, seed=99)
                sampler.load_state_dict(state)
            sampler.set_epoch(epoch)
            seen.append(list(sampler))
            losses = torch.rand(N, generator=torch.Generator().manual_seed(epoch)).double()
            sampler.objective(torch.arange(N), losses)
            sampler.after_epoch(epoch)
        return seen

    assert run(resume_after=None) == run(resume_after=3)


@pytest.mark.parametrize("change, key", [
    (lambda s: s.pop("order"), "key.*order"),
    (lambda s: s.update(extra=1), "key.*extra"),
    (lambda s: s.update(num_samples=N + 1), "num_samples"),
    (lambda s: s.update(seed=-1), "seed"),
    (lambda s: s.update(epoch=1.5), "epoch"),
    (lambda s: s.update(scores=s["scores"].float()), "scores"),
    (lambda s: s.update(scores=s["scores"][:-1]), "scores"),
    (lambda s: s["scores"].__setitem__(0, math.inf), "scores"),
    (lambda s: s.update(order=s["order"].int()), "order"),
    (lambda s: s["order"].__setitem__(0, s["order"][1]), "order"),
])
def test_bad_states_are_refused_by_key_and_leave_the_sampler_unchanged(change, key):
    sampler = _sampler()
    state = sampler.state_dict()
    change(state)
    before = sampler.state_dict()
    with pytest.raises(ValueError, match=key):
        sampler.load_state_dict(state)
    after = sampler.state_dict()
    assert after["seed"] == before["seed"] and torch.equal(after["order"], before["order"])


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, name", [
    ({"scores": torch.tensor([0.0, math.nan])}, "scores"),
    ({"scores": torch.tensor([0.0, math.inf])}, "scores"),
    ({"scores": torch.zeros(2, 3)}, "scores"),
    ({"scores": torch.zeros(0)}, "scores"),
    ({"total_steps": 0}, "total_steps"),
    ({"batch_size": 0}, "batch_size"),
    ({"order": "medium"}, "order"),
    ({"steps_per_epoch": 0}, "steps_per_epoch"),
    ({"min_samples": 0}, "min_samples"),
    ({"seed": -3}, "seed"),
    ({"order": "random", "update_scores": True}, "update_scores"),
])
def test_bad_sampler_arguments_are_refused_by_name(kwargs, name):
    arguments = {"scores": _scores(), "pacing": pacing_function("linear", 10), "total_steps": 10,
                 "batch_size": 4, **kwargs}
    with pytest.raises(ValueError, match=name):
        CurriculumSampler(**arguments)


def test_a_pacing_outside_zero_one_is_refused_when_drawn():
    for bad in (0.0, 1.5, math.nan, -0.1):
        sampler = CurriculumSampler(_scores(), lambda step, v=bad: v, 10, 4, seed=0)
        with pytest.raises(ValueError, match="pacing"):
            list(sampler)
    with pytest.raises(TypeError, match="pacing"):
        CurriculumSampler(_scores(), 0.5, 10, 4)
    with pytest.raises(ValueError, match="epoch"):
        sampler = _sampler()
        sampler.set_epoch(2)
        sampler.set_epoch(1)

