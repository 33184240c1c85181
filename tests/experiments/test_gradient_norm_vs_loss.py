"""Notebook 02's runner: recording an epoch, chunked and rolling statistics, timing."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from curriclab.core.data import IndexedDataset, make_loader
from curriclab.core.models import MLP, LogisticRegression, SmallConv
from curriclab.core.protocol import SampleMethod
from curriclab.core.stats import spearman
from curriclab.core.training import per_sample_losses, train_epoch
from curriclab.experiments.gradient_norm_vs_loss import (
    record_epoch,
    rolling_by_rank,
    spearman_by_chunk,
    time_methods,
    timing_table,
)
from curriclab.methods.importance import measure_batch, per_sample_grad_norms_loop
from tests.helpers.importance import batch_for, make_model, relative_error


@pytest.mark.parametrize("name", ["smallconv", "mlp", "layernorm"])
def test_record_epoch_trains_exactly_like_train_epoch(name):
    """Same trajectory as a plain epoch, and each batch's norms equal the loop under the weights
    of its step (SmallConv: book-keeping; MLP: output gradients captured from the loop's backward;
    LayerNorm: the separate-pass fallback)."""
    generator = torch.Generator().manual_seed(5)
    dataset = IndexedDataset(torch.randn(24, 1, 28, 28, generator=generator, dtype=torch.float64),
                             torch.randint(0, 10, (24,), generator=generator))
    torch.manual_seed(0)
    if name == "smallconv":
        model = SmallConv().double()
    elif name == "mlp":
        model = MLP(hidden=(16,)).double()
    else:
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.LayerNorm(8), nn.Tanh(),
                              nn.Linear(8, 10)).double()
    twin = copy.deepcopy(model)
    loader = make_loader(dataset, 8, sampler=[5, 1, 7, 3, 0, 2, 4, 6] + list(range(8, 24)))
    record = record_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                          progress=False)
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    expected = torch.full((24,), float("nan"), dtype=torch.float64)

    class LoopNorms(SampleMethod):
        def objective(self, index, losses):
            _, x, y = dataset.__getitems__(index)
            expected[index] = per_sample_grad_norms_loop(twin, x, y)

    train_epoch(twin, loader, twin_optimizer, methods=[LoopNorms()], progress=False)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(p, q, rtol=1e-10, atol=1e-12)
    assert relative_error(record.grad_norms.double(), expected) < 1e-5  # stored as float32


def test_spearman_by_chunk_is_spearman_of_each_slice():
    a, b = torch.arange(10.0), torch.tensor([1.0, 0, 3, 2, 5, 4, 6, 7, 8, 9])
    by_chunk = spearman_by_chunk(a, b, 3)
    expected = [spearman(a[s], b[s]) for s in (slice(0, 4), slice(4, 7), slice(7, 10))]
    assert by_chunk.tolist() == pytest.approx(expected)
    with pytest.raises(ValueError, match="chunks"):
        spearman_by_chunk(a, b, 6)


def test_rolling_by_rank_matches_a_brute_force_window():
    generator = torch.Generator().manual_seed(0)
    key, values = torch.rand(40, generator=generator), torch.rand(40, generator=generator)
    ranks, mean, std = rolling_by_rank(key, values, window=7)
    ordered = values[key.argsort()].double()
    assert ranks.tolist() == list(range(6, 40))
    for position, end in enumerate(ranks.tolist()):
        chunk = ordered[end - 6: end + 1].numpy()
        assert mean[position].item() == pytest.approx(chunk.mean())
        assert std[position].item() == pytest.approx(chunk.std(ddof=1))
    assert all(len(t) == 0 for t in rolling_by_rank(key[:5], values[:5], window=7))
    with pytest.raises(ValueError, match="window"):
        rolling_by_rank(key, values, window=1)
    with pytest.raises(ValueError, match="equal length"):
        rolling_by_rank(key, values[:3])


def tiny_dataset(size=48):
    generator = torch.Generator().manual_seed(3)
    inputs = torch.randn(size, 2, generator=generator)
    return IndexedDataset(inputs, (inputs.sum(1) > 0).long())


def test_record_epoch_without_updates_equals_direct_measurement():
    dataset = tiny_dataset()
    torch.manual_seed(0)
    model = LogisticRegression()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    record = record_epoch(model, make_loader(dataset, 16, shuffle=True), optimizer, progress=False)
    direct = measure_batch(model, dataset.inputs, dataset.targets)
    assert torch.allclose(record.grad_norms, direct.grad_norms, rtol=1e-5)
    assert torch.allclose(record.output_grad_norms, direct.output_grad_norms, rtol=1e-5)
    assert torch.allclose(record.losses, per_sample_losses(model, dataset), rtol=1e-5)
    assert record.result.samples == len(dataset)


def test_record_epoch_measures_before_each_step_and_leaves_unvisited_nan():
    dataset = tiny_dataset()
    torch.manual_seed(0)
    model = LogisticRegression()
    first = measure_batch(model, dataset.inputs[:8], dataset.targets[:8])
    # the second batch measured under the weights after one hand-written SGD step on the first
    stepped = copy.deepcopy(model)
    F.cross_entropy(stepped(dataset.inputs[:8]), dataset.targets[:8]).backward()
    with torch.no_grad():
        for p in stepped.parameters():
            p -= 0.5 * p.grad
    second_after_step = measure_batch(stepped, dataset.inputs[8:16], dataset.targets[8:16])
    second_before_step = measure_batch(model, dataset.inputs[8:16], dataset.targets[8:16])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = make_loader(dataset, 8, sampler=list(range(24)))
    record = record_epoch(model, loader, optimizer, progress=False)
    assert torch.allclose(record.grad_norms[:8], first.grad_norms)
    assert torch.allclose(record.grad_norms[8:16], second_after_step.grad_norms, rtol=1e-5)
    assert not torch.allclose(record.grad_norms[8:16], second_before_step.grad_norms)
    assert torch.isnan(record.grad_norms[24:]).all() and torch.isnan(record.losses[24:]).all()
    with pytest.raises(TypeError, match="IndexedDataset"):
        record_epoch(model, [(torch.arange(2), dataset.inputs[:2], dataset.targets[:2])], optimizer)


@pytest.mark.parametrize("name", ["mlp", "logistic"])
def test_record_epoch_keeps_the_last_visit_of_a_repeated_sample(name):
    """A sampler that draws sample 3 in the first and the third batch: the record holds the third
    batch's measurement, taken under the weights after two steps."""
    dataset = tiny_dataset()
    torch.manual_seed(0)
    model = MLP(2, (8,), 2) if name == "mlp" else LogisticRegression()
    twin = copy.deepcopy(model)
    sampler = [3, 0, 1, 2, 4, 5, 6, 7, 3, 8, 9, 10]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    record = record_epoch(model, make_loader(dataset, 4, sampler=sampler), optimizer,
                          progress=False)
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=0.5)
    for start in (0, 4):  # the two steps before the third batch
        batch = sampler[start:start + 4]
        twin_optimizer.zero_grad()
        F.cross_entropy(twin(dataset.inputs[batch]), dataset.targets[batch]).backward()
        twin_optimizer.step()
    third = measure_batch(twin, dataset.inputs[sampler[8:]], dataset.targets[sampler[8:]])
    assert record.grad_norms[3] == pytest.approx(third.grad_norms[0].item(), rel=1e-5)
    assert record.losses[3] == pytest.approx(third.losses[0].item(), rel=1e-5)


def test_time_methods_and_table():
    model, (x, y) = make_model("logistic"), batch_for("logistic")
    seconds = time_methods(model, x, y, ("floor", "hooks", "proxy"), repeats=2)
    assert list(seconds) == ["floor", "hooks", "proxy"] and all(s > 0 for s in seconds.values())
    table = timing_table(seconds)
    assert list(table.index) == ["floor", "hooks", "proxy"]
    assert table.loc["floor", "x floor"] == 1.0
    assert table.loc["hooks", "ms / batch"] == round(1000 * seconds["hooks"], 2)
    assert table.loc["proxy", "x floor"] == round(seconds["proxy"] / seconds["floor"], 2)
    with pytest.raises(ValueError, match="unknown"):
        time_methods(model, x, y, ("floor", "backpack"))
    with pytest.raises(ValueError, match="clock"):
        time_methods(model, x, y, ("floor",), clock="gpu")
    with pytest.raises(ValueError, match="baseline"):
        timing_table({"hooks": 1.0})


def test_the_epoch_study_records_what_record_epoch_records(mnist_train):
    """The harness arm and `record_epoch` agree bit for bit on the same split, order and start,
    and the arm's running accuracy is `train_epoch`'s."""
    from torch.utils.data import SequentialSampler

    from curriclab.core.training import seed_everything
    from curriclab.experiments.gradient_norm_vs_loss import epoch_study
    from curriclab.experiments.harness import load_splits, run

    spec = epoch_study(200, batch_size=16, seed=3)
    results = run(spec, progress=False)
    arm = results.artifacts[("SGD", 3)]
    train = load_splits(spec.data).train
    seed_everything(3)
    model = SmallConv()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99)
    loader = make_loader(train, 16, sampler=SequentialSampler(range(len(train))))
    record = record_epoch(model, loader, optimizer, progress=False)
    for name in ("losses", "grad_norms", "output_grad_norms"):
        assert torch.equal(arm[name], getattr(record, name)), name
    assert not arm["losses"].isnan().any()  # every sample visited once
    assert arm["running_accuracy"] == pytest.approx(record.result.accuracy)
    assert results.finals[0]["samples"] == 200 and results.finals[0]["steps"] == 13
