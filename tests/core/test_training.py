import math

import pytest
import torch
import torch.nn.functional as F

from curriclab.core.data import IndexedDataset, make_loader
from curriclab.core.models import MLP, LogisticRegression, SmallConv
from curriclab.core.protocol import AfterEpoch, SampleMethod
from curriclab.core.tracking import LossTracker
from curriclab.core.training import evaluate, fit, per_sample_losses, seed_everything, train_epoch


def _blobs(n: int = 200) -> IndexedDataset:
    generator = torch.Generator().manual_seed(0)
    targets = torch.arange(n) % 2
    inputs = torch.randn(n, 2, generator=generator) + 3.0 * targets.unsqueeze(1)
    return IndexedDataset(inputs, targets)


def test_model_output_shapes():
    assert LogisticRegression()(torch.randn(5, 2)).shape == (5, 2)
    assert MLP()(torch.randn(5, 1, 28, 28)).shape == (5, 10)
    assert MLP(784, hidden=(32, 16))(torch.randn(5, 784)).shape == (5, 10)
    assert SmallConv()(torch.randn(5, 1, 28, 28)).shape == (5, 10)
    assert sum(p.numel() for p in SmallConv().parameters()) == 21840


def test_seed_everything_makes_runs_repeatable():
    seed_everything(5)
    first = (torch.rand(3), LogisticRegression().linear.weight.clone())
    seed_everything(5)
    second = (torch.rand(3), LogisticRegression().linear.weight.clone())
    assert all(torch.equal(a, b) for a, b in zip(first, second))


class ZeroObjective(SampleMethod):
    """Checks each batch's losses against a direct computation; returns a zero objective."""

    def __init__(self, model, data):
        self.model, self.data, self.seen = model, data, {}

    def objective(self, index, losses):
        inputs, targets = self.data.inputs[index], self.data.targets[index]
        expected = F.cross_entropy(self.model(inputs), targets, reduction="none")
        assert torch.allclose(losses, expected)
        self.seen.update(zip(index.tolist(), losses.tolist()))
        return (losses * 0).sum()  # a zero objective: the parameters must not move


def test_methods_see_each_sample_with_its_own_loss_and_the_objective_is_minimised():
    data = _blobs()
    model = LogisticRegression()
    method = ZeroObjective(model, data)

    before = [p.clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    loader = make_loader(data, 16, shuffle=True, generator=torch.Generator().manual_seed(0))
    result = train_epoch(model, loader, optimizer, methods=[method], progress=False)
    seen = method.seen
    assert sorted(seen) == list(range(len(data)))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert result.samples == 200 and result.steps == 13
    assert result.loss == pytest.approx(sum(seen.values()) / 200, rel=1e-5)


def test_default_objective_is_the_batch_mean():
    data = _blobs(32)
    model = LogisticRegression()
    reference = LogisticRegression()
    reference.load_state_dict(model.state_dict())
    train_epoch(model, make_loader(data, 32), torch.optim.SGD(model.parameters(), lr=0.5),
                progress=False)
    F.cross_entropy(reference(data.inputs), data.targets).backward()
    with torch.no_grad():
        for p in reference.parameters():
            p -= 0.5 * p.grad
    assert all(torch.allclose(a, b) for a, b in zip(model.parameters(), reference.parameters()))


class ScaledLoss(SampleMethod):
    def __init__(self, scale):
        self.scale = scale

    def compute_losses(self, output, target, index):
        return F.cross_entropy(output * self.scale, target, reduction="none")


def test_every_optimizer_in_a_list_is_stepped_exactly_as_a_hand_written_step():
    data = _blobs(8)
    model, reference = LogisticRegression(), LogisticRegression()
    reference.load_state_dict(model.state_dict())
    scale = torch.nn.Parameter(torch.ones(()))
    optimizers = [torch.optim.SGD(model.parameters(), lr=0.1), torch.optim.SGD([scale], lr=0.2)]
    train_epoch(model, make_loader(data, 8), optimizers, methods=[ScaledLoss(scale)],
                progress=False)

    reference_scale = torch.ones((), requires_grad=True)
    F.cross_entropy(reference(data.inputs) * reference_scale, data.targets).backward()
    with torch.no_grad():
        expected = [p - 0.1 * p.grad for p in reference.parameters()]
    assert all(torch.allclose(a, b) for a, b in zip(model.parameters(), expected))
    assert not torch.allclose(model.linear.weight, reference.linear.weight)  # the model moved
    assert float(scale.detach()) == pytest.approx(1.0 - 0.2 * float(reference_scale.grad), rel=1e-6)


def test_two_methods_that_both_give_an_objective_are_refused():
    data = _blobs(8)
    model = LogisticRegression()
    methods = [ZeroObjective(model, data), ZeroObjective(model, data)]
    with pytest.raises(ValueError, match="methods: at most one may return an objective"):
        train_epoch(model, make_loader(data, 8), torch.optim.SGD(model.parameters(), lr=0.1),
                    methods=methods, progress=False)


def test_observers_see_every_batch_beside_the_method_that_gives_the_objective():
    data = _blobs(24)
    model = LogisticRegression()
    tracker = LossTracker(len(data))
    method = ZeroObjective(model, data)
    train_epoch(model, make_loader(data, 8), torch.optim.SGD(model.parameters(), lr=0.1),
                methods=[tracker, method], progress=False)
    assert tracker.seen.all()
    assert torch.allclose(tracker.latest, torch.tensor([method.seen[i] for i in range(24)]))


def test_evaluate_and_per_sample_losses_agree_with_direct_computation():
    data = _blobs(50)
    model = LogisticRegression()
    losses = per_sample_losses(model, data, batch_size=7)
    with torch.no_grad():
        logits = model(data.inputs)
    assert torch.allclose(losses, F.cross_entropy(logits, data.targets, reduction="none"))
    result = evaluate(model, data, batch_size=7)
    assert result.loss == pytest.approx(float(losses.mean()), rel=1e-5)
    accuracy = (logits.argmax(1) == data.targets).float().mean()
    assert result.accuracy == pytest.approx(float(accuracy))
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, data.subset([]))


def test_per_sample_losses_over_a_loader_of_part_of_the_data_leaves_the_rest_nan():
    data = _blobs(30)
    loader = make_loader(data, 4, sampler=[2, 5, 7])
    losses = per_sample_losses(LogisticRegression(), loader)
    assert losses.shape == (30,) and int(torch.isfinite(losses).sum()) == 3
    assert torch.isfinite(losses[[2, 5, 7]]).all()


def test_fit_learns_separable_blobs_and_calls_epoch_end():
    seed_everything(0)
    data = _blobs(400)
    model = LogisticRegression()
    ends = []
    history = fit(
        model, make_loader(data, 32, shuffle=True), torch.optim.SGD(model.parameters(), lr=0.5), 3,
        test_data=data, methods=[AfterEpoch(ends.append)], progress=False,
    )
    assert ends == [0, 1, 2] and len(history) == 3
    assert history[-1].test.accuracy > 0.95
    assert history[-1].test.loss < history[0].train.loss
    assert math.isfinite(history[-1].train.seconds)


def test_evaluation_uses_eval_mode_and_restores_the_previous_mode():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.9))
    data = _blobs(64)
    model.train()
    first, second = per_sample_losses(model, data), per_sample_losses(model, data)
    assert torch.equal(first, second)  # dropout off: deterministic
    assert model.training
    model.eval()
    evaluate(model, data)
    assert not model.training


def test_after_step_runs_once_per_step_after_the_update():
    data = _blobs(40)
    model = LogisticRegression()
    weights_seen = []
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    start = model.linear.weight.detach().clone()
    class RecordWeights(SampleMethod):
        def after_step(self):
            weights_seen.append(model.linear.weight.detach().clone())

    result = train_epoch(model, make_loader(data, 16), optimizer, methods=[RecordWeights()],
                         progress=False)
    assert len(weights_seen) == result.steps == 3
    assert not torch.equal(weights_seen[0], start)  # called after the first update
    assert torch.equal(weights_seen[-1], model.linear.weight)


def test_progress_bar_iterates_a_loader_exactly_once_per_pass():
    from curriclab.core.training import progress_bar

    data = _blobs(20)

    def orders(wrap):
        loader = make_loader(data, 5, shuffle=True, generator=torch.Generator().manual_seed(0))
        return [[index.tolist() for index, _, _ in wrap(loader)] for _ in range(2)]

    plain = orders(lambda loader: loader)
    assert orders(lambda loader: progress_bar(loader, "x", enabled=False)) == plain
    assert orders(lambda loader: progress_bar(loader, "x", enabled=True)) == plain


def test_error_rate_and_evaluation_error_count_misclassified_samples():
    from curriclab.core.training import error_rate

    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, -1.0], [0.1, 0.2]])
    targets = torch.tensor([0, 0, 0, 1])
    assert error_rate(logits, targets) == 0.25
    with pytest.raises(ValueError, match="targets"):
        error_rate(logits[:0], targets[:0])
    data = _blobs(40)
    model = LogisticRegression()
    result = evaluate(model, data)
    with torch.no_grad():
        assert result.error == pytest.approx(error_rate(model(data.inputs), data.targets))
