"""Hypergradients through unrolled SGD, checked against central finite differences in float64."""

import pytest
import torch
from torch.func import functional_call

from curriclab.core.models import MLP
from curriclab.methods.dynamic_loss import dynamic_loss, expected_error
from curriclab.methods.hypergradient import (
    finite_difference_gradient,
    hypergradient,
    reverse_hypergradient,
    sgd_trajectory,
    unrolled_hypergradient,
)
from curriclab.methods.teacher import LossTeacher

CLASSES, FEATURES, BATCH = 3, 4, 6


def _problem(steps: int, seed: int = 0):
    """A tiny float64 MLP student, `steps` fixed minibatches, a dev batch, and hyperparameters
    Phi, bias."""
    torch.manual_seed(seed)
    model = MLP(FEATURES, (5,), CLASSES).double()
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    xs = torch.randn(steps, BATCH, FEATURES, dtype=torch.float64)
    ys = torch.randint(0, CLASSES, (steps, BATCH))
    dev_x = torch.randn(20, FEATURES, dtype=torch.float64)
    dev_y = torch.randint(0, CLASSES, (20,))
    phi = (torch.eye(CLASSES) + 0.3 * torch.randn(CLASSES, CLASSES)).double().requires_grad_()
    bias = (0.2 * torch.randn(CLASSES)).double().requires_grad_()

    def inner(weights, t, phi=phi, bias=bias):
        return dynamic_loss(functional_call(model, weights, (xs[t],)), ys[t], phi, bias)

    def outer(weights):
        return expected_error(functional_call(model, weights, (dev_x,)), dev_y)

    return model, params, inner, outer, phi, bias


def _finite_differences(params, inner, outer, phi, bias, steps, lr, eps=1e-6):
    """Central differences of M(w_T(phi, bias)) in every coordinate of phi and bias."""
    def objective(p, b):
        trajectory = sgd_trajectory(params, lambda w, t: inner(w, t, p, b), steps, lr)
        return float(outer(trajectory[-1]))

    grads = []
    for which in (0, 1):
        base = [phi.detach().clone(), bias.detach().clone()]
        grad = torch.zeros_like(base[which])
        for i in range(base[which].numel()):
            plus, minus = [t.clone() for t in base], [t.clone() for t in base]
            plus[which].view(-1)[i] += eps
            minus[which].view(-1)[i] -= eps
            grad.view(-1)[i] = (objective(*plus) - objective(*minus)) / (2 * eps)
        grads.append(grad)
    return grads


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("method", [hypergradient, unrolled_hypergradient])
def test_hypergradient_matches_central_finite_differences(steps, method):
    _, params, inner, outer, phi, bias = _problem(steps)
    lr = 0.5
    result = method(params, inner, outer, [phi, bias], steps, lr)
    reference = _finite_differences(params, inner, outer, phi, bias, steps, lr)
    for grad, expected in zip(result.grads, reference):
        assert expected.norm() > 1e-4  # the check is not vacuous
        assert _relative_error(grad, expected) < 1e-4


def test_reverse_and_autograd_agree_on_value_weights_and_gradients():
    _, params, inner, outer, phi, bias = _problem(4, seed=3)
    reverse = hypergradient(params, inner, outer, [phi, bias], 4, 0.3)
    autograd = unrolled_hypergradient(params, inner, outer, [phi, bias], 4, 0.3)
    assert reverse.value == pytest.approx(autograd.value, rel=1e-12)
    for name in params:
        torch.testing.assert_close(reverse.final[name], autograd.final[name])
    for a, b in zip(reverse.grads, autograd.grads):
        torch.testing.assert_close(a, b)


def test_hypergradient_through_a_teacher_matches_finite_differences():
    model, params, _, outer, _, _ = _problem(2, seed=4)
    torch.manual_seed(5)
    teacher = LossTeacher(num_classes=CLASSES, hidden=2).double()
    with torch.no_grad():
        teacher.directions.normal_(0.0, 0.3)
    states = torch.rand(2, 4, dtype=torch.float64)
    xs = torch.randn(2, BATCH, FEATURES, dtype=torch.float64)
    ys = torch.randint(0, CLASSES, (2, BATCH))

    def inner(weights, t):
        return dynamic_loss(functional_call(model, weights, (xs[t],)), ys[t], *teacher(states[t]))

    weights = list(teacher.parameters())
    result = hypergradient(params, inner, outer, weights, 2, 0.5)
    eps = 1e-6
    for parameter, grad in zip(weights, result.grads):
        reference = torch.zeros_like(parameter)
        for i in range(parameter.numel()):
            values = []
            for sign in (1, -1):
                with torch.no_grad():
                    parameter.view(-1)[i] += sign * eps
                values.append(float(outer(sgd_trajectory(params, inner, 2, 0.5)[-1])))
                with torch.no_grad():
                    parameter.view(-1)[i] -= sign * eps
            reference.view(-1)[i] = (values[0] - values[1]) / (2 * eps)
        assert _relative_error(grad, reference) < 1e-4


def test_sgd_trajectory_equals_torch_sgd():
    model, params, inner, _, _, _ = _problem(3, seed=6)
    trajectory = sgd_trajectory(params, inner, 3, 0.2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    for t in range(3):
        optimizer.zero_grad()
        inner(dict(model.named_parameters()), t).backward()
        optimizer.step()
    for name, p in model.named_parameters():
        torch.testing.assert_close(trajectory[-1][name], p.detach())
    assert len(trajectory) == 4


def test_unused_hyperparameter_gets_a_zero_gradient():
    _, params, inner, outer, phi, _ = _problem(2)
    unused = torch.ones(3, dtype=torch.float64, requires_grad=True)
    for method in (hypergradient, unrolled_hypergradient):
        result = method(params, inner, outer, [phi, unused], 2, 0.1)
        assert torch.equal(result.grads[1], torch.zeros(3, dtype=torch.float64))
        assert result.grads[0].abs().sum() > 0


def test_bad_input_raises():
    _, params, inner, outer, phi, _ = _problem(1)
    for method in (hypergradient, unrolled_hypergradient):
        with pytest.raises(ValueError, match="T"):
            method(params, inner, outer, [phi], 0, 0.1)
        with pytest.raises(ValueError, match="lr"):
            method(params, inner, outer, [phi], 1, 0.0)
    with pytest.raises(ValueError, match="trajectory"):
        reverse_hypergradient([params], inner, outer, [phi], 0.1)


def test_finite_difference_gradient_of_a_cubic_and_restores_the_tensor():
    x = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    grad = finite_difference_gradient(lambda: float((x**3).sum()), x, eps=1e-5)
    torch.testing.assert_close(grad, 3 * x**2)
    assert torch.equal(x, torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="eps"):
        finite_difference_gradient(lambda: 0.0, x, eps=0.0)
