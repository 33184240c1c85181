"""Per-sample gradient norms against the one-autograd.grad-per-sample loop, the output-gradient proxy
against its closed form, the statistics against brute force, and the recorded epoch."""

import copy
import functools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
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
from curriclab.methods.importance import (
    TrainingStepRecorder,
    _grads_by_forward_kernel,
    _grads_by_weight_kernel,
    check_samples_independent,
    measure_batch,
    output_grad_norms,
    per_sample_grad_norms,
    per_sample_grad_norms_loop,
    per_sample_grad_norms_vmap,
    weight_grad_sq_norms,
)
from curriclab.plots.importance import chunk_correlations, density_loglog, rolling_band, timing_bars


def nll_per_sample(output, target, index=None):
    return F.nll_loss(output, target, reduction="none")


def squared_error_per_sample(output, target, index=None):
    """||output - onehot(target)||^2, written with gather so that vmap can trace it."""
    return output.square().sum(1) - 2 * output.gather(1, target[:, None]).squeeze(1) + 1


class ConvVariety(nn.Module):
    """Strides, padding, dilation, a bias-free convolution and a bias-free linear layer."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(4, 3, kernel_size=(2, 3), dilation=(1, 2), padding=(1, 0), bias=False)
        self.fc = nn.Linear(3 * 7 * 3, 5, bias=False)

    def forward(self, x):
        return self.fc(torch.tanh(self.conv2(torch.tanh(self.conv1(x)))).flatten(1))


class TwiceApplied(nn.Module):
    """One Linear layer applied to two halves of the input: its gradient is a sum of two terms."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.shared(x[:, :4])) * self.shared(x[:, 4:]))


class ConvThenTwice(nn.Module):
    """A convolution followed by one Linear layer applied to two halves of its features."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=3)
        self.shared = nn.Linear(9, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        features = torch.tanh(self.conv(x)).flatten(1)
        return self.head(torch.tanh(self.shared(features[:, :9])) * self.shared(features[:, 9:]))


def batch_for(model_name, size=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    shapes = {
        "mlp": ((size, 1, 28, 28), 10), "smallconv": ((size, 1, 28, 28), 10),
        "logistic": ((size, 2), 2), "convvariety": ((size, 2, 11, 13), 5), "twice": ((size, 8), 3),
        "convtwice": ((size, 1, 5, 5), 3),
    }
    shape, classes = shapes[model_name]
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    return x, torch.randint(0, classes, (size,), generator=generator)


def make_model(name, seed=0):
    torch.manual_seed(seed)
    model = {
        "mlp": lambda: MLP(hidden=(32, 16)), "smallconv": SmallConv, "logistic": LogisticRegression,
        "convvariety": ConvVariety, "twice": TwiceApplied, "convtwice": ConvThenTwice,
    }[name]()
    return model.double()


MODELS = ["mlp", "smallconv", "logistic", "convvariety", "twice", "convtwice"]
LOSSES = {"cross-entropy": None, "squared error": squared_error_per_sample}


def prepared(name, log_probabilities=False, loss_name="cross-entropy"):
    """(model, x, y, loss keyword arguments) of one test case."""
    model, (x, y) = make_model(name), batch_for(name)
    loss_fn = LOSSES[loss_name]
    if log_probabilities:
        model = nn.Sequential(model, nn.LogSoftmax(dim=1))
        loss_fn = loss_fn or nll_per_sample
    return model, x, y, {} if loss_fn is None else {"loss_fn": loss_fn}


@functools.cache
def loop_reference(name, log_probabilities=False, loss_name="cross-entropy"):
    """The blog's one-autograd.grad-per-sample norms, computed once per case."""
    model, x, y, kwargs = prepared(name, log_probabilities, loss_name)
    return per_sample_grad_norms_loop(model, x, y, **kwargs)


def relative_error(a, b):
    return float(((a - b).abs() / b.abs().clamp_min(1e-12)).max())


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("strategy", ["auto", "outer", "gram"])
def test_hooks_equal_the_per_sample_loop(name, strategy):
    model, (x, y) = make_model(name), batch_for(name)
    expected = loop_reference(name)
    fast = per_sample_grad_norms(model, x, y, method="hooks", strategy=strategy)
    assert relative_error(fast, expected) < 1e-10


@pytest.mark.parametrize("name", ["mlp", "smallconv", "logistic"])
@pytest.mark.parametrize("log_probabilities", [False, True])
@pytest.mark.parametrize("loss_name", list(LOSSES))
def test_outputs_and_loss_functions(name, log_probabilities, loss_name):
    model, x, y, kwargs = prepared(name, log_probabilities, loss_name)
    expected = loop_reference(name, log_probabilities, loss_name)
    assert relative_error(per_sample_grad_norms(model, x, y, **kwargs), expected) < 1e-10
    assert relative_error(per_sample_grad_norms_vmap(model, x, y, **kwargs), expected) < 1e-10


def test_float32_agrees_within_1e_4():
    model, (x, y) = make_model("smallconv").float(), batch_for("smallconv", size=32)
    x = x.float()
    assert relative_error(per_sample_grad_norms(model, x, y), per_sample_grad_norms_loop(model, x, y)) < 1e-4


def test_frozen_parameters_are_left_out():
    model, (x, y) = make_model("mlp"), batch_for("mlp")
    model.net[0].weight.requires_grad_(False)
    model.net[2].bias.requires_grad_(False)
    expected = per_sample_grad_norms_loop(model, x, y)
    assert relative_error(per_sample_grad_norms(model, x, y, method="hooks"), expected) < 1e-10
    assert relative_error(per_sample_grad_norms_vmap(model, x, y), expected) < 1e-10
    all_trainable = make_model("mlp")
    assert (per_sample_grad_norms(all_trainable, x, y) > expected).all()


def test_parameters_and_grad_untouched():
    model, (x, y) = make_model("smallconv"), batch_for("smallconv")
    model.fc1.weight.grad = torch.randn_like(model.fc1.weight)
    before = {n: (p.detach().clone(), None if p.grad is None else p.grad.clone())
              for n, p in model.named_parameters()}
    for method in ("hooks", "vmap", "loop"):
        measure_batch(model, x, y, method=method)
    output_grad_norms(model, x, y)
    time_methods(model, x, y, ("floor", "hooks"), repeats=1)
    for name, p in model.named_parameters():
        value, grad = before[name]
        assert torch.equal(p, value)
        assert (p.grad is None and grad is None) or torch.equal(p.grad, grad)


def test_batchnorm_in_train_mode_raises_and_eval_mode_is_exact():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 6 * 6, 4)).double()
    x, y = torch.randn(10, 1, 8, 8, dtype=torch.float64), torch.randint(0, 4, (10,))
    model(x)  # give the running statistics non-trivial values
    for method in ("auto", "hooks", "vmap", "loop"):
        with pytest.raises(ValueError, match="eval"):
            per_sample_grad_norms(model, x, y, method=method)
    model.eval()
    expected = per_sample_grad_norms_loop(model, x, y)
    assert relative_error(per_sample_grad_norms(model, x, y), expected) < 1e-10
    with pytest.raises(TypeError, match="BatchNorm2d"):
        per_sample_grad_norms(model, x, y, method="hooks")
    model[1] = nn.BatchNorm2d(3, track_running_stats=False).double().eval()
    with pytest.raises(ValueError, match="no running statistics"):
        check_samples_independent(model)


@pytest.mark.parametrize("case", ["layernorm", "inplace", "tied"])
def test_auto_falls_back_to_vmap_where_the_identities_do_not_apply(case):
    torch.manual_seed(0)
    if case == "layernorm":
        model = nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Linear(5, 3))
    elif case == "inplace":
        model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(inplace=True), nn.Linear(5, 3))
    else:
        model = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 6), nn.Linear(6, 3))
        model[2].weight = model[0].weight
    model = model.double()
    x, y = torch.randn(9, 6, dtype=torch.float64), torch.randint(0, 3, (9,))
    expected = per_sample_grad_norms_loop(model, x, y)
    assert relative_error(per_sample_grad_norms(model, x, y), expected) < 1e-10
    with pytest.raises(TypeError, match="method='hooks'"):
        per_sample_grad_norms(model, x, y, method="hooks")


@pytest.mark.parametrize("name", ["mlp", "smallconv"])
def test_output_gradient_proxy_is_softmax_minus_onehot(name):
    model, (x, y) = make_model(name), batch_for(name)
    with torch.no_grad():
        logits = model(x)
    closed_form = (logits.softmax(1) - F.one_hot(y, 10)).norm(dim=1)
    assert relative_error(output_grad_norms(model, x, y), closed_form) < 1e-10
    batch = measure_batch(model, x, y)
    assert relative_error(batch.output_grad_norms, closed_form) < 1e-10
    assert torch.allclose(batch.losses, F.cross_entropy(logits, y, reduction="none"))
    # Cross-entropy of log-probabilities re-normalises them, so the closed form is the same.
    log_model = nn.Sequential(model, nn.LogSoftmax(dim=1))
    assert relative_error(output_grad_norms(log_model, x, y), closed_form) < 1e-10
    assert relative_error(measure_batch(log_model, x, y, method="vmap").output_grad_norms,
                          closed_form) < 1e-10


@pytest.mark.parametrize("positions", [1, 7])
def test_weight_grad_sq_norms_match_materialised_gradients(positions):
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(5, positions, 4, generator=generator, dtype=torch.float64)
    g = torch.randn(5, positions, 3, generator=generator, dtype=torch.float64)
    expected = torch.stack([(g[b].T @ a[b]).square().sum() for b in range(5)])
    for strategy in ("auto", "outer", "gram"):
        assert relative_error(weight_grad_sq_norms(a, g, strategy), expected) < 1e-12
    with pytest.raises(ValueError, match="strategy"):
        weight_grad_sq_norms(a, g, "fast")


@pytest.mark.parametrize("kernel", [_grads_by_weight_kernel, _grads_by_forward_kernel])
@pytest.mark.parametrize(
    "conv", [dict(stride=2, padding=1), dict(dilation=(1, 2), padding=(1, 0)),
             dict(stride=(2, 3), dilation=(2, 1), padding=(2, 1))],
)
def test_both_convolution_kernels_give_each_samples_weight_gradient(kernel, conv):
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 4, (3, 2), **conv).double()
    x = torch.randn(5, 3, 13, 9, dtype=torch.float64)
    out_grad = torch.randn_like(layer(x))
    expected = torch.stack([
        torch.nn.grad.conv2d_weight(x[b:b + 1], layer.weight.shape, out_grad[b:b + 1],
                                    layer.stride, layer.padding, layer.dilation)
        for b in range(5)
    ])
    assert torch.allclose(kernel(layer, x, out_grad), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "strategy"),
    [(name, "auto") for name in MODELS]
    + [("convvariety", "gram"), ("convtwice", "gram"), ("smallconv", "outer")],
)
def test_training_step_recorder_gives_the_norms_and_the_mean_loss_gradient(name, strategy):
    model, (x, y) = make_model(name), batch_for(name)
    expected_norms = loop_reference(name)
    losses = F.cross_entropy(model(x), y, reduction="none")
    expected_grads = torch.autograd.grad(losses.mean(), list(model.parameters()))
    with TrainingStepRecorder(model, strategy) as recorder:
        with torch.no_grad():
            model(x[:3])  # an evaluation in between is ignored
        losses = F.cross_entropy(model(x), y, reduction="none")
        objective = recorder.step(losses)
        assert objective.item() == pytest.approx(losses.mean().item(), rel=1e-12)
        objective.backward()
        batch = recorder.measurements()
    assert recorder.book_keeping == (name in ("smallconv", "convvariety", "convtwice"))
    assert relative_error(batch.grad_norms, expected_norms) < 1e-10
    assert torch.allclose(batch.losses, losses.detach())
    for p, expected in zip(model.parameters(), expected_grads):
        assert torch.allclose(p.grad, expected, rtol=1e-10, atol=1e-12)


def test_training_step_recorder_reports_what_it_cannot_measure():
    layernorm = nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Linear(5, 3))
    assert not TrainingStepRecorder(layernorm).supported
    assert "LayerNorm" in TrainingStepRecorder(layernorm).unsupported_reason
    inplace = nn.Sequential(nn.Linear(6, 5), nn.ReLU(inplace=True), nn.Linear(5, 3))
    x, y = torch.randn(4, 6), torch.randint(0, 3, (4,))
    with TrainingStepRecorder(inplace) as recorder:
        assert recorder.step(F.cross_entropy(inplace(x), y, reduction="none")) is None
    with pytest.raises(RuntimeError, match="active"):
        recorder.step(torch.zeros(4, requires_grad=True))
    with TrainingStepRecorder(inplace) as recorder, pytest.raises(RuntimeError, match="step"):
        recorder.measurements()
    with pytest.raises(ValueError, match="strategy"):
        TrainingStepRecorder(inplace, strategy="fast")


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


def test_bad_input_and_empty_batches():
    model, (x, y) = make_model("mlp"), batch_for("mlp")
    with pytest.raises(ValueError, match="y"):
        per_sample_grad_norms(model, x, y[:-1])
    with pytest.raises(ValueError, match="loss_fn"):
        per_sample_grad_norms(model, x, y, loss_fn=lambda out, target, index: out.sum())
    with pytest.raises(ValueError, match="method"):
        per_sample_grad_norms(model, x, y, method="backpack")
    with pytest.raises(ValueError, match="strategy"):
        per_sample_grad_norms(model, x, y, strategy="fast")
    with pytest.raises(TypeError, match="tensors"):
        per_sample_grad_norms(model, x.numpy(), y)
    with pytest.raises(ValueError, match="index"):
        per_sample_grad_norms(model, x, y, index=torch.arange(3))
    for method in ("auto", "vmap", "loop"):
        assert per_sample_grad_norms(model, x[:0], y[:0], method=method).shape == (0,)
    assert output_grad_norms(model, x[:0], y[:0]).shape == (0,)


def test_index_reaches_the_loss_function():
    model, (x, y) = make_model("logistic"), batch_for("logistic")
    index = torch.arange(len(y)) + 100
    weights = torch.rand(200, dtype=torch.float64)

    def weighted(output, target, idx):
        return weights[idx] * F.cross_entropy(output, target, reduction="none")

    expected = per_sample_grad_norms_loop(model, x, y, weighted, index)
    unweighted = per_sample_grad_norms_loop(model, x, y)
    assert relative_error(expected, weights[index] * unweighted) < 1e-10
    for method in ("hooks", "vmap"):
        fast = per_sample_grad_norms(model, x, y, weighted, index, method=method)
        assert relative_error(fast, expected) < 1e-10


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


def test_plots_skip_unplottable_points_and_survive_empty_input():
    fig, axes = plt.subplots(1, 3)
    hexes = density_loglog(axes[0], torch.tensor([0.0, 1.0, 2.0, float("nan")]),
                           torch.tensor([1.0, 2.0, 3.0, 4.0]), xlabel="loss", ylabel="norm")
    assert float(hexes.get_array().sum()) == 2.0  # only the two positive, finite pairs are binned
    assert "2 pairs" in axes[0].texts[0].get_text()
    empty = torch.zeros(0)
    assert density_loglog(axes[1], empty, empty, xlabel="a", ylabel="b") is None
    line, _ = rolling_band(axes[2], *rolling_by_rank(empty, empty), xlabel="rank", ylabel="loss")
    assert len(line.get_xdata()) == 0
    assert len(chunk_correlations(axes[2], empty, label="c", xlabel="chunk")) == 1
    bars = timing_bars(axes[1], {"floor": 2.0, "loop": 50.0})
    assert [bar.get_width() for bar in bars] == [1.0, 25.0]
    with pytest.raises(ValueError, match="baseline"):
        timing_bars(axes[1], {"loop": 1.0})
    plt.close(fig)
