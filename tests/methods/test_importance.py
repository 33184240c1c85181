"""Per-sample gradient norms against the one-autograd.grad-per-sample loop, the output-gradient
proxy against its closed form, and the training-step recorder."""

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from curriclab.experiments.gradient_norm_vs_loss import time_methods
from curriclab.methods.importance import (
    TrainingStepRecorder,
    check_samples_independent,
    measure_batch,
    output_grad_norms,
    per_sample_grad_norms,
    per_sample_grad_norms_loop,
    per_sample_grad_norms_vmap,
    weight_grad_sq_norms,
)
from curriclab.methods.importance.kernels import CONV_KERNELS
from tests.helpers.importance import batch_for, make_model, relative_error


def nll_per_sample(output, target, index=None):
    return F.nll_loss(output, target, reduction="none")


def squared_error_per_sample(output, target, index=None):
    """||output - onehot(target)||^2, written with gather so that vmap can trace it."""
    return output.square().sum(1) - 2 * output.gather(1, target[:, None]).squeeze(1) + 1


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
    """Zakka's (blog-code, pr-lr) one-autograd.grad-per-sample norms, computed once per case."""
    model, x, y, kwargs = prepared(name, log_probabilities, loss_name)
    return per_sample_grad_norms_loop(model, x, y, **kwargs)


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
    expected = per_sample_grad_norms_loop(model, x, y)
    assert relative_error(per_sample_grad_norms(model, x, y), expected) < 1e-4


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


@pytest.mark.parametrize("kernel", list(CONV_KERNELS.values()), ids=list(CONV_KERNELS))
@pytest.mark.parametrize(
    "conv", [dict(stride=2, padding=1), dict(dilation=(1, 2), padding=(1, 0)),
             dict(stride=(2, 3), dilation=(2, 1), padding=(2, 1)), dict(in_channels=1)],
)
def test_every_convolution_kernel_gives_each_samples_weight_gradient(kernel, conv):
    torch.manual_seed(0)
    settings = dict(conv)  # the parameter dict is shared by the kernels' cases: do not pop from it
    in_channels = settings.pop("in_channels", 3)
    layer = nn.Conv2d(in_channels, 4, (3, 2), **settings).double()
    x = torch.randn(5, in_channels, 13, 9, dtype=torch.float64)
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
