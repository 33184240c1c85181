"""The hypergradient at notebook 06's horizon (T = 100 unrolled steps, and twice that) in float32
against float64, and the memory meter of the unrolled graph."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from curriclab.core.models import MLP
from curriclab.methods.dynamic_loss import dynamic_loss, expected_error
from curriclab.methods.hypergradient import saved_tensor_bytes, sgd_step, unrolled_hypergradient
from curriclab.methods.teacher import LossTeacher

HORIZONS = (100, 200)  # notebook 06's T (every taught step of a student run is unrolled), and 2T
TOLERANCE = 1e-4  # relative error of the float32 hypergradient (float64 as the reference)


def _problem(horizon: int) -> tuple:
    """Clustered 64-dimensional inputs in 10 classes, minibatches of 32 for `horizon` steps, a dev
    batch, the teacher's states, and a 64-32-10 MLP warmed up by 100 cross-entropy steps in
    float64 (as notebook 06's students start their taught steps from a warm start)."""
    generator = torch.Generator().manual_seed(0)
    centres = 2.0 * torch.randn(10, 64, generator=generator, dtype=torch.float64)
    ys = torch.randint(0, 10, (horizon + 1, 32), generator=generator)
    xs = centres[ys] + torch.randn(horizon + 1, 32, 64, generator=generator, dtype=torch.float64)
    states = torch.rand(horizon, 4, generator=generator)
    torch.manual_seed(1)
    model = MLP(64, (32,), 10).double()
    weights = {name: p.detach().clone().requires_grad_() for name, p in model.named_parameters()}
    for t in range(100):
        loss = F.cross_entropy(functional_call(model, weights, (xs[t % horizon],)), ys[t % horizon])
        weights = sgd_step(weights, loss, 0.4)
        weights = {name: value.requires_grad_() for name, value in weights.items()}
    return model, {n: w.detach() for n, w in weights.items()}, xs, ys, states


def _hypergradient(dtype: torch.dtype, horizon: int) -> list[torch.Tensor]:
    """The hypergradient of the expected dev error through `horizon` plain SGD steps (lr 0.4) of
    the warmed-up student, for a state-gated teacher, all computed in `dtype`."""
    model, start, xs, ys, states = _problem(horizon)
    model, xs = model.to(dtype), xs.to(dtype)
    params = {name: value.to(dtype) for name, value in start.items()}
    teacher = LossTeacher(10, hidden=2)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(2)
        teacher.directions.normal_(0.0, 0.1, generator=generator)
        teacher.bias.normal_(0.0, 0.2, generator=generator)
    teacher = teacher.to(dtype)

    def inner(weights, t):
        return dynamic_loss(functional_call(model, weights, (xs[t],)), ys[t], *teacher(states[t]))

    def outer(weights):
        return expected_error(functional_call(model, weights, (xs[-1],)), ys[-1])

    result = unrolled_hypergradient(params, inner, outer, list(teacher.parameters()), horizon, 0.4)
    return [grad.double() for grad in result.grads]


@pytest.mark.parametrize("horizon", HORIZONS)
def test_float32_hypergradient_at_the_notebooks_horizon_agrees_with_float64(horizon):
    single, double = _hypergradient(torch.float32, horizon), _hypergradient(torch.float64, horizon)
    flat_single, flat_double = (
        torch.cat([g.reshape(-1) for g in single]),
        torch.cat([g.reshape(-1) for g in double]),
    )
    assert flat_double.norm() > 1e-4  # the reference is not (nearly) zero
    relative = float((flat_single - flat_double).norm() / flat_double.norm())
    print(f"float32 vs float64 at T = {horizon}: relative error {relative:.2e}")
    assert relative < TOLERANCE
    # and entry by entry for the larger entries (those at least 1 % of the largest)
    large = flat_double.abs() > 0.01 * flat_double.abs().max()
    assert (
        (flat_single - flat_double)[large].abs() / flat_double[large].abs()
    ).max() < 10 * TOLERANCE


def test_saved_tensor_bytes_counts_each_saved_storage_once():
    x = torch.randn(50, 20, requires_grad=True)
    w = torch.randn(20, 30, requires_grad=True)
    with saved_tensor_bytes() as meter:
        y = x @ w  # saves x and w
        z = (y * y).sum()  # saves y (twice: counted once)
    assert meter.bytes == 4 * (50 * 20 + 20 * 30 + 50 * 30)
    assert meter.mebibytes == meter.bytes / 2**20
    z.backward()  # the graph still works through the hooks
    torch.testing.assert_close(w.grad, x.detach().T @ (2 * y.detach()))


def test_unrolled_graph_memory_grows_linearly_with_the_horizon():
    model = MLP(16, (8,), 3)
    params = {name: p.detach().clone().requires_grad_() for name, p in model.named_parameters()}
    phi = torch.eye(3, requires_grad=True)
    x, y = torch.randn(10, 16), torch.randint(0, 3, (10,))
    sizes = []
    for steps in (5, 10, 20):
        with saved_tensor_bytes() as meter:
            weights = params
            for _ in range(steps):
                loss = dynamic_loss(functional_call(model, weights, (x,)), y, phi)
                grads = torch.autograd.grad(loss, list(weights.values()), create_graph=True)
                weights = {n: w - 0.1 * g for (n, w), g in zip(weights.items(), grads)}
        sizes.append(meter.bytes)
        del weights
    assert sizes[0] > 0 and sizes[2] - sizes[1] == 2 * (sizes[1] - sizes[0])
