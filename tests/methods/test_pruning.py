"""curriclab.methods.pruning: forgetting events, EL2N, GraNd, random, pruning, agreement.

The math is checked against brute force: a hand-counted forgetting sequence, the authors' counting
rule (`order_examples_by_forgetting.py`) re-implemented on a presentation x sample matrix, EL2N
and GraNd from one autograd call per sample, and pruning against a full sort.
"""

from __future__ import annotations

import io
import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from curriclab.core.data import IndexedDataset, make_loader
from curriclab.core.models import SmallConv
from curriclab.core.protocol import SampleMethod
from curriclab.core.training import fit
from curriclab.methods.pruning import (
    ForgettingEvents,
    averaged_scores,
    kept_count,
    prune_by_score,
    random_scores,
    rank_by_score,
    score_agreement,
    score_dataset,
)
from tests.helpers.distributed import run_ranks

# ----------------------------------------------------------------------------- helpers


def scripted_output(correct: torch.Tensor, target: torch.Tensor, classes: int = 3) -> torch.Tensor:
    """Logits whose arg-max is `target` where `correct`, else the next class."""
    predicted = torch.where(correct, target, (target + 1) % classes)
    return F.one_hot(predicted, classes).float() * 2.0 - 1.0


def feed(observer: ForgettingEvents, matrix: torch.Tensor, batch: int, seed: int = 0) -> None:
    """Present every sample once per row of `matrix` [P, N] (True = correct), in shuffled batches
    through `compute_losses`, as the training loop does."""
    generator = torch.Generator().manual_seed(seed)
    num_samples = matrix.shape[1]
    targets = torch.arange(num_samples) % 3
    for row in matrix:
        order = torch.randperm(num_samples, generator=generator)
        for start in range(0, num_samples, batch):
            index = order[start : start + batch]
            assert observer.compute_losses(
                scripted_output(row[index], targets[index]), targets[index], index
            ) is None


def toneva_scores(matrix: np.ndarray) -> np.ndarray:
    """The authors' rule for one run: transitions 1 -> 0 between consecutive presentations;
    a sample never correct gets npresentations."""
    presentations = matrix.shape[0]
    scores = []
    for column in matrix.T.astype(int):
        transitions = column[1:] - column[:-1]
        learned = (column == 1).any()
        scores.append(int((transitions == -1).sum()) if learned else presentations)
    return np.array(scores, dtype=float)


def data(n: int = 24, shape: tuple = (6,), classes: int = 3, seed: int = 0) -> IndexedDataset:
    generator = torch.Generator().manual_seed(seed)
    return IndexedDataset(torch.randn(n, *shape, generator=generator),
                          torch.randint(0, classes, (n,), generator=generator))


# ----------------------------------------------------------------------------- forgetting


HAND = torch.tensor([  # rows: presentations (epochs); columns: samples
    # s0 never learned, s1 forgotten twice, s2 learned at the last presentation,
    # s3 always right, s4 learned then forgotten once and not relearned
    [0, 1, 0, 1, 0],
    [0, 0, 0, 1, 1],
    [0, 1, 0, 1, 1],
    [0, 0, 0, 1, 0],
    [0, 1, 1, 1, 0],
], dtype=torch.bool)


def test_hand_counted_sequence():
    observer = ForgettingEvents(5)
    feed(observer, HAND, batch=2)
    assert observer.presentations.tolist() == [5] * 5
    assert observer.forgetting_events.tolist() == [0, 2, 0, 0, 1]
    # never learned: the maximal score, the number of presentations (5), not 0 (DeepCore)
    assert observer.scores().tolist() == [5.0, 2.0, 0.0, 0.0, 1.0]
    assert observer.never_forgotten_fraction() == pytest.approx(2 / 5)  # s2 and s3
    assert observer.never_learned_fraction() == pytest.approx(1 / 5)  # s0


def test_never_learned_ranks_hardest_not_with_the_unforgettable():
    observer = ForgettingEvents(5)
    feed(observer, HAND, batch=5)
    scores = observer.scores()
    assert int(scores.argmax()) == 0 and bool((scores[0] > scores[1:]).all())
    assert prune_by_score(scores, 0.2, "hard").tolist() == [0]
    assert 0 not in prune_by_score(scores, 0.8, "easy").tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_sequences_match_the_authors_rule(seed):
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.rand(9, 30, generator=generator) < torch.rand(30, generator=generator)
    matrix[:, 0] = False  # at least one never-learned sample
    observer = ForgettingEvents(30)
    feed(observer, matrix, batch=7, seed=seed)
    expected = toneva_scores(matrix.numpy())
    assert np.array_equal(observer.scores().numpy(), expected)
    learned = matrix.any(0)
    events = torch.tensor(expected)
    assert observer.never_forgotten_fraction() == pytest.approx(
        float((learned & (events == 0)).float().mean()))
    assert observer.never_learned_fraction() == pytest.approx(float((~learned).float().mean()))


def test_a_sample_repeated_in_a_batch_is_presented_in_order():
    observer = ForgettingEvents(2)
    observer.record(torch.tensor([0, 1, 0, 0]), torch.tensor([True, False, False, True]))
    assert observer.presentations.tolist() == [3, 1]
    assert observer.forgetting_events.tolist() == [1, 0]
    assert observer.last_correct.tolist() == [True, False]


def test_scores_need_every_sample_presented_and_fractions_some():
    observer = ForgettingEvents(3)
    with pytest.raises(ValueError, match="no sample has been presented"):
        observer.never_forgotten_fraction()
    observer.record(torch.tensor([0, 1]), torch.tensor([True, False]))
    with pytest.raises(ValueError, match="1 of 3 samples were never presented"):
        observer.scores()
    assert observer.never_learned_fraction() == pytest.approx(0.5)  # over the presented
    observer.record(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.bool))
    assert observer.presentations.tolist() == [1, 1, 0]


def test_in_the_training_loop_it_observes_without_changing_training():
    train = data(20)
    runs = []
    for observe in (False, True):
        torch.manual_seed(0)
        model = nn.Linear(6, 3)
        observer = ForgettingEvents(len(train))
        methods = [observer] if observe else []
        loader = make_loader(train, 8, shuffle=True, generator=torch.Generator().manual_seed(1))
        fit(model, loader, torch.optim.SGD(model.parameters(), lr=0.5), 3, methods=methods,
            progress=False)
        runs.append((model.weight.detach().clone(), observer))
    assert torch.equal(runs[0][0], runs[1][0])  # the loss stayed cross-entropy
    assert runs[1][1].presentations.tolist() == [3] * 20


@pytest.mark.parametrize("case, error, match", [
    ("nan", ValueError, "losses must be finite"),
    ("target", ValueError, "losses must be finite"),
    ("index", ValueError, r"index must lie in \[0, 4\)"),
    ("shape", ValueError, r"output must be \[B, C\]"),
    ("float-target", TypeError, "target must be an integer"),
])
def test_bad_batches_are_refused_and_leave_the_state_unchanged(case, error, match):
    observer = ForgettingEvents(4)
    observer.record(torch.tensor([0, 1]), torch.tensor([True, True]))
    before = observer.state_dict()
    output, target, index = torch.zeros(2, 3), torch.tensor([0, 1]), torch.tensor([0, 1])
    if case == "nan":
        output[1, 2] = float("nan")
    elif case == "target":
        target = torch.tensor([0, 3])
    elif case == "index":
        index = torch.tensor([0, 4])
    elif case == "shape":
        output = torch.zeros(2, 3, 1)
    else:
        target = target.float()
    with pytest.raises(error, match=match):
        observer.compute_losses(output, target, index)
    after = observer.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k != "num_samples")


def test_state_dict_round_trip_through_weights_only_load():
    observer = ForgettingEvents(5)
    feed(observer, HAND[:3], batch=2)
    buffer = io.BytesIO()
    torch.save(observer.state_dict(), buffer)
    buffer.seek(0)
    restored = ForgettingEvents(5)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    feed(observer, HAND[3:], batch=2, seed=3)
    feed(restored, HAND[3:], batch=2, seed=3)
    assert torch.equal(restored.scores(), observer.scores())
    assert restored.scores().tolist() == [5.0, 2.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize("change, match", [
    (lambda s: s.pop("learned"), "missing"),
    (lambda s: s.update(extra=1), "unexpected"),
    (lambda s: s.update(num_samples=4), "num_samples"),
    (lambda s: s.update(presentations=s["presentations"].int()), "'presentations' must have dtype"),
    (lambda s: s.update(learned=torch.zeros(4, dtype=torch.bool)), r"'learned' must have shape"),
    (lambda s: s["presentations"].__setitem__(0, -1), "presentations must be >= 0"),
    (lambda s: s["forgetting_events"].__setitem__(1, 3), "forgetting_events must lie"),
    (lambda s: s["learned"].__setitem__(4, True), "never presented"),
    (lambda s: s["learned"].__setitem__(3, False), "last_correct"),
])
def test_load_state_dict_validates_every_key(change, match):
    observer = ForgettingEvents(5)
    observer.record(torch.tensor([0, 1, 1, 1, 2, 3]),
                    torch.tensor([False, True, False, True, True, True]))
    state = observer.state_dict()
    change(state)
    with pytest.raises(ValueError, match=match):
        ForgettingEvents(5).load_state_dict(state)


def test_constructor_and_record_reject_bad_arguments():
    with pytest.raises(ValueError, match="num_samples must be >= 0"):
        ForgettingEvents(-1)
    with pytest.raises(TypeError, match="num_samples must be an int"):
        ForgettingEvents(2.0)
    observer = ForgettingEvents(2)
    with pytest.raises(TypeError, match="correct must be a bool"):
        observer.record(torch.tensor([0]), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"index must lie in \[0, 2\)"):
        observer.record(torch.tensor([2]), torch.tensor([True]))


# ----------------------------------------------------------------------------- EL2N and GraNd


def brute_el2n(model: nn.Module, dataset: IndexedDataset) -> torch.Tensor:
    values = []
    for x, y in zip(dataset.inputs, dataset.targets):
        probabilities = model(x[None]).softmax(1)[0]
        values.append(torch.linalg.vector_norm(probabilities - F.one_hot(y, probabilities.numel())))
    return torch.stack(values).double().detach()


def brute_grand(model: nn.Module, dataset: IndexedDataset) -> torch.Tensor:
    values = []
    params = list(model.parameters())
    for x, y in zip(dataset.inputs, dataset.targets):
        grads = torch.autograd.grad(F.cross_entropy(model(x[None]), y[None]), params)
        values.append(torch.sqrt(sum(g.square().sum() for g in grads)))
    return torch.stack(values).double().detach()


def models_and_data():
    torch.manual_seed(0)
    small = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    torch.manual_seed(1)
    conv = SmallConv(num_classes=10)
    return [(small, data(23)), (conv, data(9, (1, 28, 28), classes=10))]


@pytest.mark.parametrize("case", [0, 1])
@pytest.mark.parametrize("measure, brute", [("el2n", brute_el2n), ("grand", brute_grand)])
def test_scores_equal_a_per_sample_loop(case, measure, brute):
    model, dataset = models_and_data()[case]
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    scores = score_dataset(model, dataset, measure, batch_size=4)
    assert model.training  # restored
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    model.eval()  # the brute force in eval mode (no dropout), as score_dataset scores
    assert scores.dtype == torch.float64 and scores.shape == (len(dataset),)
    torch.testing.assert_close(scores, brute(model, dataset), rtol=1e-5, atol=1e-6)


def test_el2n_of_log_probability_outputs_is_the_same():
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    dataset = data(10)
    as_log = nn.Sequential(model, nn.LogSoftmax(1))
    torch.testing.assert_close(score_dataset(as_log, dataset), brute_el2n(model, dataset))


def test_loss_score_is_the_cross_entropy():
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    dataset = data(10)
    expected = F.cross_entropy(model(dataset.inputs), dataset.targets, reduction="none")
    torch.testing.assert_close(score_dataset(model, dataset, "loss", batch_size=3),
                               expected.double().detach())


def test_averages_over_models_consume_a_generator():
    dataset = data(12)
    built = []

    def build(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        built.append(seed)
        return nn.Linear(6, 3)

    expected_el2n = torch.stack([brute_el2n(build(s), dataset) for s in range(3)]).mean(0)
    expected_grand = torch.stack([brute_grand(build(s), dataset) for s in range(3)]).mean(0)
    torch.testing.assert_close(averaged_scores((build(s) for s in range(3)), dataset, "el2n"),
                               expected_el2n)
    torch.testing.assert_close(averaged_scores((build(s) for s in range(3)), dataset, "grand"),
                               expected_grand)
    assert len(built) == 12
    with pytest.raises(ValueError, match="at least one model"):
        averaged_scores([], dataset)


def test_scoring_refuses_bad_input():
    dataset = data(4)
    model = nn.Linear(6, 3)
    with torch.no_grad():
        model.bias[0] = float("nan")
    with pytest.raises(ValueError, match="'el2n' scores must be finite"):
        score_dataset(model, dataset)
    with pytest.raises(ValueError, match="measure must be one of"):
        score_dataset(model, dataset, "forgetting")
    with pytest.raises(TypeError, match="IndexedDataset"):
        score_dataset(model, (dataset.inputs, dataset.targets))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        score_dataset(model, dataset, batch_size=0)
    with pytest.raises(ValueError, match="one score per sample"):
        score_dataset(model, dataset, lambda m, x, y: torch.zeros(len(y), 2))
    empty = score_dataset(nn.Linear(6, 3), dataset.subset([]))
    assert empty.shape == (0,) and empty.dtype == torch.float64


def test_random_scores_are_seeded_uniform():
    assert torch.equal(random_scores(100, 3), random_scores(100, 3))
    assert not torch.equal(random_scores(100, 3), random_scores(100, 4))
    scores = random_scores(20000, 0)
    assert 0 <= float(scores.min()) and float(scores.max()) < 1
    assert scipy.stats.kstest(scores.numpy(), "uniform").pvalue > 1e-3
    with pytest.raises(ValueError, match="num_samples must be >= 0"):
        random_scores(-1, 0)


# ----------------------------------------------------------------------------- selection


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("keep", ["hard", "easy"])
def test_pruning_keeps_exactly_the_top_or_bottom_fraction(fraction, keep):
    scores = torch.randn(41, generator=torch.Generator().manual_seed(0))  # distinct values
    kept = prune_by_score(scores, fraction, keep)
    count = math.floor(fraction * 41 + 0.5)
    expected = torch.sort(scores, descending=keep == "hard").indices[:count]
    assert kept.dtype == torch.int64
    assert kept.tolist() == sorted(expected.tolist())
    assert len(data(41).subset(kept)) == count  # the empty selection included


def test_ties_break_by_index_or_by_the_generator():
    scores = torch.tensor([1.0, 2.0, 2.0, 2.0, 0.0, 2.0])
    assert prune_by_score(scores, 0.5, "hard").tolist() == [1, 2, 3]
    assert prune_by_score(scores, 0.5, "easy").tolist() == [0, 1, 4]
    assert rank_by_score(scores, descending=False).tolist() == [4, 0, 1, 2, 3, 5]
    drawn = [tuple(prune_by_score(scores, 0.5, "hard", torch.Generator().manual_seed(s)).tolist())
             for s in range(30)]
    assert drawn[0] == tuple(prune_by_score(scores, 0.5, "hard",
                                            torch.Generator().manual_seed(0)).tolist())
    assert all(set(d) <= {1, 2, 3, 5} and len(d) == 3 for d in drawn)
    assert len(set(drawn)) > 1  # the generator, not the index, chose among the tied


def test_kept_count_and_bad_arguments():
    assert [kept_count(10, f) for f in (0.0, 0.04, 0.05, 0.3, 0.7, 1.0)] == [0, 0, 1, 3, 7, 10]
    assert kept_count(0, 0.5) == 0
    scores = torch.zeros(4)
    with pytest.raises(ValueError, match=r"fraction must lie in \[0, 1\]"):
        prune_by_score(scores, 1.5)
    with pytest.raises(ValueError, match="keep must be one of"):
        prune_by_score(scores, 0.5, "middle")
    with pytest.raises(ValueError, match="scores must be finite"):
        prune_by_score(torch.tensor([0.0, float("inf")]), 0.5)
    with pytest.raises(ValueError, match="scores must be 1-D"):
        prune_by_score(torch.zeros(2, 2), 0.5)
    assert prune_by_score(torch.zeros(0), 0.5).tolist() == []


def test_score_agreement_is_scipys_spearman():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(50, generator=generator)
    scores = {"a": a, "b": a + torch.randn(50, generator=generator),
              "ties": torch.randint(0, 4, (50,), generator=generator).double()}
    table = score_agreement(scores)
    assert list(table.index) == list(table.columns) == ["a", "b", "ties"]
    for first in scores:
        for second in scores:
            expected = 1.0 if first == second else scipy.stats.spearmanr(
                scores[first].numpy(), scores[second].numpy()).statistic
            assert table.loc[first, second] == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match=r"scores\['flat'\] is constant"):
        score_agreement({"a": a, "flat": torch.ones(50)})
    with pytest.raises(ValueError, match="same samples"):
        score_agreement({"a": a, "short": a[:10]})
    with pytest.raises(ValueError, match="non-empty"):
        score_agreement({})


# ----------------------------------------------------------------------------- 2 gloo ranks


class LocalCorrectness(SampleMethod):
    """Keeps this rank's own (index, correct) per step, to replay in one process."""

    def __init__(self):
        self.steps: list[tuple[torch.Tensor, torch.Tensor]] = []

    def compute_losses(self, output, target, index):
        self.steps.append((index.clone(), output.detach().argmax(1) == target))


def _scenario(rank: int, directory) -> dict:
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DistributedSampler

    from curriclab.core.distributed import Synchronized, state_digest

    train = data(40)
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    sampler = DistributedSampler(train, seed=0)
    loader = make_loader(train, 4, sampler=sampler)
    direct, wrapped, local = ForgettingEvents(40), ForgettingEvents(40), LocalCorrectness()
    methods = [local, direct, Synchronized([wrapped], num_samples=40)]
    fit(DistributedDataParallel(model), loader, torch.optim.SGD(model.parameters(), lr=0.5), 5,
        methods=methods, progress=False)
    torch.manual_seed(2)
    init = nn.Linear(6, 3)
    result = {
        "local": local.steps, "state": direct.state_dict(), "digest": state_digest(
            direct.state_dict()), "wrapped": state_digest(wrapped.state_dict()),
        "model": model.state_dict(), "init": init.state_dict(),
        "el2n": averaged_scores([model], train, "el2n", batch_size=3),
        "grand": averaged_scores([init, model], train, "grand", batch_size=3),
        "random": random_scores(40, 7),
    }
    bad = torch.zeros(2, 3)
    if rank == 1:
        bad[0, 0] = float("nan")
    try:
        ForgettingEvents(40).compute_losses(bad, torch.tensor([0, 1]), torch.tensor([0, 1]) + rank)
    except ValueError as error:
        result["bad"] = str(error)
    return result


WORLD = 2


def _worker(rank: int, directory: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{directory}/store", rank=rank,
                            world_size=WORLD, timeout=timedelta(seconds=60))
    result = _scenario(rank, Path(directory))
    torch.save(result, f"{directory}/result{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Each rank's result of `_scenario` on a two-process gloo group (a collective that cannot
    complete raises after the group's timeout; a hung process fails after `run_ranks`'s bound)."""
    directory = tmp_path_factory.mktemp("pruning")
    assert run_ranks(_worker, str(directory), world=WORLD) == [0] * WORLD
    return [torch.load(directory / f"result{rank}.pt", weights_only=False)
            for rank in range(WORLD)]


def test_two_ranks_hold_identical_forgetting_state_equal_to_one_process(ranks):
    assert ranks[0]["digest"] == ranks[1]["digest"] == ranks[0]["wrapped"] == ranks[1]["wrapped"]
    one = ForgettingEvents(40)
    for (index0, correct0), (index1, correct1) in zip(ranks[0]["local"], ranks[1]["local"]):
        one.record(torch.cat([index0, index1]), torch.cat([correct0, correct1]))
    state = ranks[0]["state"]
    assert all(torch.equal(one.state_dict()[k], state[k]) for k in state if k != "num_samples")
    assert state["presentations"].tolist() == [5] * 40  # each epoch's shards cover all samples
    assert int(state["forgetting_events"].sum()) > 0  # a run in which something was forgotten


def test_two_ranks_hold_identical_scores_equal_to_one_process(ranks):
    train = data(40)
    model, init = nn.Linear(6, 3), nn.Linear(6, 3)
    model.load_state_dict(ranks[0]["model"])
    init.load_state_dict(ranks[0]["init"])
    for name, expected in (("el2n", brute_el2n(model, train)),
                           ("grand", (brute_grand(init, train) + brute_grand(model, train)) / 2),
                           ("random", random_scores(40, 7))):
        assert torch.equal(ranks[0][name], ranks[1][name])
        torch.testing.assert_close(ranks[0][name], expected)


def test_a_bad_batch_on_one_rank_fails_every_rank(ranks):
    assert "must be finite" in ranks[0]["bad"] and "rank 1" in ranks[0]["bad"]
    assert "must be finite" in ranks[1]["bad"]
