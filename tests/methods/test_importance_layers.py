"""The per-layer registry: its cost rules pick what they document, every registered function and
kernel equals the per-sample loop, and a custom layer can be registered."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from curriclab.methods.importance import (
    TrainingStepRecorder,
    per_sample_grad_norms,
    per_sample_grad_norms_loop,
    register_layer,
    registered_layers,
)
from curriclab.methods.importance import layers as layers_module
from curriclab.methods.importance.kernels import CONV_KERNELS, conv_kernel_for, gram_is_cheaper
from tests.helpers.importance import relative_error


class TwoCalls(nn.Module):
    """One layer applied to the input twice (its gradient is the sum of two calls' terms)."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return torch.tanh(self.layer(x)) * self.layer(x)


def tilted_loss(output, target, index=None):
    """A per-sample loss with a non-trivial output gradient for any output shape."""
    flat = output.flatten(1)
    weights = torch.linspace(-1, 2, flat.shape[1], dtype=flat.dtype)
    return (torch.tanh(flat) * weights).sum(1) + 0.1 * flat.square().sum(1) + 0 * target


CASES = {
    "linear on vectors": (nn.Linear, lambda: nn.Linear(6, 4), (7, 6)),
    "linear on vectors, no bias": (nn.Linear, lambda: nn.Linear(6, 4, bias=False), (7, 6)),
    "linear on sequences": (nn.Linear, lambda: nn.Linear(5, 3), (7, 4, 5)),
    "linear called twice": (nn.Linear, lambda: TwoCalls(nn.Linear(4, 4)), (7, 4)),
    "conv, one input channel": (nn.Conv2d, lambda: nn.Conv2d(1, 3, 3, stride=2), (6, 1, 9, 8)),
    "conv, strides and dilation": (
        nn.Conv2d, lambda: nn.Conv2d(3, 4, (3, 2), stride=(2, 1), dilation=(1, 2), padding=1),
        (6, 3, 9, 8),
    ),
    "conv, no bias": (nn.Conv2d, lambda: nn.Conv2d(2, 3, 2, bias=False), (6, 2, 5, 5)),
    "conv called twice": (nn.Conv2d, lambda: TwoCalls(nn.Conv2d(2, 2, 3, padding=1)), (6, 2, 5, 5)),
}


def case(name):
    torch.manual_seed(0)
    _, make, shape = CASES[name]
    model = make().double()
    x = torch.randn(shape, dtype=torch.float64)
    return model, x, torch.zeros(shape[0], dtype=torch.long)


def test_every_built_in_layer_type_has_exactness_cases():
    built_in = {t for t in registered_layers() if t.__module__.startswith("torch.")}
    assert built_in == {layer_type for layer_type, _, _ in CASES.values()} == {nn.Linear, nn.Conv2d}


def variants():
    """(case, strategy, forced convolution kernel or None) for every path a case can take."""
    for name, (layer_type, _, _) in CASES.items():
        yield name, "gram", None
        for strategy in ("auto", "outer"):
            kernels = list(CONV_KERNELS) if layer_type is nn.Conv2d else [None]
            yield from ((name, strategy, kernel) for kernel in kernels)


@pytest.mark.parametrize(("name", "strategy", "conv_kernel"), list(variants()))
def test_every_registered_function_and_kernel_equals_the_loop(name, strategy, conv_kernel,
                                                               monkeypatch):
    if conv_kernel is not None:
        monkeypatch.setattr(layers_module, "conv_kernel_for", lambda layer: conv_kernel)
    model, x, y = case(name)
    expected = per_sample_grad_norms_loop(model, x, y, tilted_loss)
    fast = per_sample_grad_norms(model, x, y, tilted_loss, method="hooks", strategy=strategy)
    assert relative_error(fast, expected) < 1e-12
    # the summed-loss gradients a training step takes from the same functions
    expected_grads = torch.autograd.grad(tilted_loss(model(x), y).mean(), list(model.parameters()))
    with TrainingStepRecorder(model, strategy) as recorder:
        recorder.step(tilted_loss(model(x), y)).backward()
        measured = recorder.measurements()
    assert relative_error(measured.grad_norms, expected) < 1e-12
    for parameter, grad in zip(model.parameters(), expected_grads):
        assert torch.allclose(parameter.grad, grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    ("positions", "d_in", "d_out", "gram"),
    [
        (576, 25, 10, False),  # SmallConv's first convolution: 576 * 35 >= 250
        (64, 250, 20, False),  # SmallConv's second: 64 * 270 >= 5000
        (1, 576, 64, True),  # a 3x3 convolution on a 3x3 input: 640 < 36864
        (4, 512, 512, True),  # a Linear layer on 4 positions: 4096 < 262144
        (300, 100, 100, False),  # 60000 >= 10000
        (50, 100, 100, False),  # the tie T (d_in + d_out) == d_in d_out materialises
    ],
)
def test_gram_is_cheaper_compares_the_multiplication_counts(positions, d_in, d_out, gram):
    assert gram_is_cheaper(positions, d_in, d_out) is gram


@pytest.mark.parametrize(("in_channels", "kernel"), [(1, "forward"), (2, "weight"), (10, "weight")])
def test_conv_kernel_for_depends_on_the_input_channels_only(in_channels, kernel):
    for out_channels, size, stride in [(10, 5, 1), (64, 3, 2)]:
        layer = nn.Conv2d(in_channels, out_channels, size, stride=stride)
        assert conv_kernel_for(layer) == kernel


@pytest.mark.parametrize(
    ("layer", "input_shape", "used"),
    [
        (nn.Conv2d(1, 10, 5), (4, 1, 28, 28), "forward"),  # SmallConv's conv1 materialises
        (nn.Conv2d(10, 20, 5), (4, 10, 12, 12), "weight"),  # SmallConv's conv2
        (nn.Conv2d(64, 64, 3), (4, 64, 3, 3), None),  # T = 1: the Gram form, no kernel
    ],
)
def test_conv2d_auto_uses_what_the_rules_name(layer, input_shape, used, monkeypatch):
    calls = []
    for name, kernel in CONV_KERNELS.items():
        def spy(*args, name=name, kernel=kernel):
            calls.append(name)
            return kernel(*args)

        monkeypatch.setitem(CONV_KERNELS, name, spy)
    model = layer.double()
    x, y = torch.randn(input_shape, dtype=torch.float64), torch.zeros(4, dtype=torch.long)
    fast = per_sample_grad_norms(model, x, y, tilted_loss, method="hooks")
    assert calls == ([] if used is None else [used])
    assert relative_error(fast, per_sample_grad_norms_loop(model, x, y, tilted_loss)) < 1e-12


def make_scale_layer():
    """A fresh layer type (so every test registers its own): y = x * w, w of shape [d]."""

    class Scale(nn.Module):
        def __init__(self, size):
            super().__init__()
            self.weight = nn.Parameter(torch.linspace(0.5, 1.5, size, dtype=torch.float64))

        def forward(self, x):
            return x * self.weight

    return Scale


def scale_sq_norms(layer, inputs, out_grads, *, strategy, batch_grads):
    """Sample b's gradient of w is the sum over calls of x_b * g_b."""
    per_sample = sum(x * g for x, g in zip(inputs, out_grads))
    if batch_grads is not None:
        batch_grads[layer.weight] = per_sample.sum(0)
    return per_sample.square().sum(1)


def scale_model(scale_type):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), scale_type(4), nn.Linear(4, 3)).double()


def test_a_registered_custom_layer_is_measured_by_one_backward():
    scale_type = make_scale_layer()
    model = scale_model(scale_type)
    x, y = torch.randn(9, 5, dtype=torch.float64), torch.randint(0, 3, (9,))
    with pytest.raises(TypeError, match=r"'2' \(Scale\).*register_layer\(Scale\)"):
        per_sample_grad_norms(model, x, y, method="hooks")
    assert not TrainingStepRecorder(model).supported
    assert register_layer(scale_type)(scale_sq_norms) is scale_sq_norms
    assert scale_type in registered_layers()
    expected = per_sample_grad_norms_loop(model, x, y)
    assert relative_error(per_sample_grad_norms(model, x, y, method="hooks"), expected) < 1e-12
    expected_grads = torch.autograd.grad(
        F.cross_entropy(model(x), y), list(model.parameters())
    )
    with TrainingStepRecorder(model) as recorder:
        recorder.step(F.cross_entropy(model(x), y, reduction="none")).backward()
        measured = recorder.measurements()
    assert recorder.book_keeping
    assert relative_error(measured.grad_norms, expected) < 1e-12
    for parameter, grad in zip(model.parameters(), expected_grads):
        assert torch.allclose(parameter.grad, grad, rtol=1e-12, atol=1e-14)


def test_register_layer_refuses_what_it_cannot_use():
    scale_type = make_scale_layer()
    with pytest.raises(TypeError, match="layer_type"):
        register_layer(torch.Tensor)
    with pytest.raises(TypeError, match="check"):
        register_layer(scale_type, check="groups")
    with pytest.raises(TypeError, match="decorates a function"):
        register_layer(scale_type)(42)
    register_layer(scale_type)(scale_sq_norms)
    with pytest.raises(ValueError, match="replace=True"):
        register_layer(scale_type)(scale_sq_norms)
    register_layer(scale_type, check=lambda layer: "not this one", replace=True)(scale_sq_norms)
    x, y = torch.randn(3, 5, dtype=torch.float64), torch.randint(0, 3, (3,))
    with pytest.raises(TypeError, match="not this one"):
        per_sample_grad_norms(scale_model(scale_type), x, y, method="hooks")


def test_a_registered_function_that_breaks_its_contract_is_named():
    wrong_shape, no_batch_grads = make_scale_layer(), make_scale_layer()
    register_layer(wrong_shape)(lambda layer, inputs, out_grads, **_: out_grads[0])
    register_layer(no_batch_grads)(
        lambda layer, inputs, out_grads, **_: (inputs[0] * out_grads[0]).square().sum(1)
    )
    x, y = torch.randn(3, 5, dtype=torch.float64), torch.randint(0, 3, (3,))
    with pytest.raises(ValueError, match="Scale must return one squared norm per sample"):
        per_sample_grad_norms(scale_model(wrong_shape), x, y, method="hooks")
    model = scale_model(no_batch_grads)
    assert relative_error(
        per_sample_grad_norms(model, x, y, method="hooks"), per_sample_grad_norms_loop(model, x, y)
    ) < 1e-12
    with TrainingStepRecorder(model) as recorder, pytest.raises(ValueError, match="batch_grads"):
        recorder.step(F.cross_entropy(model(x), y, reduction="none"))


def test_unsupported_convolutions_are_named_with_the_reason():
    x, y = torch.randn(3, 2, 6, 6, dtype=torch.float64), torch.zeros(3, dtype=torch.long)
    for layer, reason in [
        (nn.Conv2d(2, 2, 3, groups=2), "groups=2"),
        (nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"), "reflect"),
        (nn.Conv2d(2, 2, 3, padding="same"), "same"),
    ]:
        model = layer.double()
        with pytest.raises(TypeError, match=reason):
            per_sample_grad_norms(model, x, y, tilted_loss, method="hooks")
        expected = per_sample_grad_norms_loop(model, x, y, tilted_loss)
        assert relative_error(per_sample_grad_norms(model, x, y, tilted_loss), expected) < 1e-12
