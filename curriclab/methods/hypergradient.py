"""Reverse-mode hypergradients through T unrolled steps of plain SGD (L2T-DLF's Algorithm 1).

A student follows w_{t+1} = w_t - lr * grad_w L_t(w_t, theta), where the training loss of step t
depends on hyperparameters theta (here: a teacher that outputs the loss function). To get
dM(w_T)/dtheta for a dev objective M, the reverse pass walks the steps backwards:

    dw_T = grad M(w_T)
    dtheta -= lr * (d^2 L_t / dtheta dw) dw_{t+1}      (a vector-Jacobian product)
    dw_t    = dw_{t+1} - lr * (d^2 L_t / dw^2) dw_{t+1}  (a Hessian-vector product)

Only the T + 1 weight snapshots are kept (memory linear in T, one snapshot per step); each step's
graph is rebuilt during the reverse pass and freed at once. `unrolled_hypergradient` is the
plain-autograd alternative (keep every step's graph, one backward). Both are exact and both need
memory linear in T; plain autograd is the faster one (about 2x T plain steps against about
3.5-4x for the reverse pass, which first runs the trajectory and then repeats every step with a
second-order graph; see benchmarks/bench_hypergradient.py), so the L2T teacher's loop
(`curriclab.methods.l2t`) unrolls its episodes with autograd. The reverse pass (L2T-DLF's
Algorithm 1) stays available.

Student weights are dicts `{name: tensor}` as used by `torch.func.functional_call`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = [
    "finite_difference_gradient",
    "HyperGradient",
    "hypergradient",
    "Params",
    "reverse_hypergradient",
    "SavedTensors",
    "saved_tensor_bytes",
    "sgd_step",
    "sgd_trajectory",
    "unrolled_hypergradient",
]

Params = dict[str, Tensor]
InnerLoss = Callable[[Params, int], Tensor]
"""(student weights, step t) -> scalar training loss of step t (may depend on hyperparameters)."""
OuterLoss = Callable[[Params], Tensor]
"""(student weights) -> scalar objective to minimise, e.g. a smoothed dev error."""


@dataclass
class HyperGradient:
    """The objective at the final weights, its gradient per hyperparameter, the final weights.

    Attributes:
        value: M(w_T), a float.
        grads: dM(w_T)/dtheta, one tensor per hyperparameter, each of its shape (zeros for a
            hyperparameter the losses do not use).
        final: w_T, detached.
    """

    value: float
    grads: list[Tensor]
    final: Params


def _check_lr(lr: float) -> None:
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")


def _with_grad(params: Params) -> Params:
    return {name: value.detach().requires_grad_() for name, value in params.items()}


def sgd_step(params: Params, loss: Tensor, lr: float, create_graph: bool = False) -> Params:
    """One plain SGD step w - lr * dloss/dw.

    Args:
        params: the weights {name: tensor}, each requiring grad, that `loss` depends on.
        loss: a scalar computed from `params`.
        lr: the learning rate.
        create_graph: keep the step differentiable (for higher-order gradients).

    Returns:
        The new weights {name: tensor} (same names and shapes), detached unless `create_graph`.

    Raises:
        RuntimeError: from autograd, if `loss` does not depend on some weight.
    """
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
    new = {name: value - lr * grad for (name, value), grad in zip(params.items(), grads)}
    return new if create_graph else {name: value.detach() for name, value in new.items()}


def sgd_trajectory(params: Params, inner_loss: InnerLoss, steps: int, lr: float) -> list[Params]:
    """The weights w_0 .. w_T of `steps` plain SGD steps (detached snapshots, no graph kept).

    Args:
        params: w_0 {name: tensor}.
        inner_loss: (weights, step t) -> scalar training loss of step t.
        steps: T >= 1.
        lr: the learning rate, > 0.

    Returns:
        T + 1 weight dicts, w_0 (detached `params`) first.

    Raises:
        ValueError: `steps` < 1 or `lr` <= 0.
    """
    if steps < 1:
        raise ValueError(f"steps (T) must be >= 1, got {steps}")
    _check_lr(lr)
    trajectory = [{name: tensor.detach() for name, tensor in params.items()}]
    for t in range(steps):
        with torch.enable_grad():
            weights = _with_grad(trajectory[-1])
            trajectory.append(sgd_step(weights, inner_loss(weights, t), lr))
    return trajectory


def _accumulate(total: Tensor, grad: Tensor | None, lr: float) -> Tensor:
    return total if grad is None else total - lr * grad


def reverse_hypergradient(
    trajectory: Sequence[Params],
    inner_loss: InnerLoss,
    outer_loss: OuterLoss,
    hyperparameters: Sequence[Tensor],
    lr: float,
) -> HyperGradient:
    """dM(w_T)/dtheta by the reverse pass over a stored SGD trajectory w_0 .. w_T.

    `trajectory` must come from SGD with this `lr` and `inner_loss` (e.g. `sgd_trajectory`).
    Hyperparameters that the losses do not use get a zero gradient.

    Args:
        trajectory: the T + 1 >= 2 snapshots w_0 .. w_T.
        inner_loss: (weights, step t) -> scalar training loss of step t, depending on the
            hyperparameters.
        outer_loss: weights -> the scalar objective M.
        hyperparameters: theta, tensors that require grad.
        lr: the learning rate of the trajectory, > 0.

    Returns:
        A `HyperGradient` (value M(w_T), one gradient per hyperparameter, final = w_T).

    Raises:
        ValueError: fewer than 2 snapshots or `lr` <= 0.
    """
    if len(trajectory) < 2:
        raise ValueError("trajectory must hold w_0 .. w_T with T >= 1, got "
                         f"{len(trajectory)} snapshot(s)")
    _check_lr(lr)
    hyperparameters = list(hyperparameters)
    with torch.enable_grad():
        final = _with_grad(trajectory[-1])
        value = outer_loss(final)
        dw = list(torch.autograd.grad(value, list(final.values())))
        dtheta = [torch.zeros_like(h) for h in hyperparameters]
        for t in reversed(range(len(trajectory) - 1)):
            weights = _with_grad(trajectory[t])
            grads = torch.autograd.grad(inner_loss(weights, t), list(weights.values()),
                                        create_graph=True)
            products = torch.autograd.grad(
                grads, list(weights.values()) + hyperparameters, grad_outputs=dw, allow_unused=True
            )
            count = len(dw)
            dw = [_accumulate(d, hvp, lr) for d, hvp in zip(dw, products[:count])]
            dtheta = [_accumulate(d, mixed, lr) for d, mixed in zip(dtheta, products[count:])]
    return HyperGradient(float(value.detach()), dtheta, trajectory[-1])


def hypergradient(
    params: Params, inner_loss: InnerLoss, outer_loss: OuterLoss,
    hyperparameters: Sequence[Tensor], steps: int, lr: float,
) -> HyperGradient:
    """Run `steps` SGD steps from `params`, then return dM(w_T)/dtheta by the reverse pass.

    Args:
        params, inner_loss, steps, lr: as `sgd_trajectory`.
        outer_loss, hyperparameters: as `reverse_hypergradient`.

    Returns:
        A `HyperGradient`.

    Raises:
        ValueError: `steps` < 1 or `lr` <= 0.
    """
    trajectory = sgd_trajectory(params, inner_loss, steps, lr)
    return reverse_hypergradient(trajectory, inner_loss, outer_loss, hyperparameters, lr)


def unrolled_hypergradient(
    params: Params, inner_loss: InnerLoss, outer_loss: OuterLoss,
    hyperparameters: Sequence[Tensor], steps: int, lr: float,
) -> HyperGradient:
    """The same hypergradient by plain autograd: unroll with create_graph=True, one backward.

    Simpler, but every step's activations stay alive until the end (larger memory per step).

    Args:
        params, inner_loss, outer_loss, hyperparameters, steps, lr: as `hypergradient`.

    Returns:
        A `HyperGradient` (final weights detached) equal to `hypergradient`'s up to rounding.

    Raises:
        ValueError: as `hypergradient`.
    """
    if steps < 1:
        raise ValueError(f"steps (T) must be >= 1, got {steps}")
    _check_lr(lr)
    hyperparameters = list(hyperparameters)
    with torch.enable_grad():
        weights = _with_grad(params)
        for t in range(steps):
            weights = sgd_step(weights, inner_loss(weights, t), lr, create_graph=True)
        value = outer_loss(weights)
        grads = torch.autograd.grad(value, hyperparameters, allow_unused=True)
    grads = [torch.zeros_like(h) if g is None else g for h, g in zip(hyperparameters, grads)]
    final = {name: tensor.detach() for name, tensor in weights.items()}
    return HyperGradient(float(value.detach()), grads, final)


def finite_difference_gradient(objective: Callable[[], float], tensor: Tensor,
                               eps: float = 1e-6) -> Tensor:
    """Central differences (f(x + eps) - f(x - eps)) / 2 eps of `objective()` in every entry.

    Each entry is perturbed in place and restored; use float64 tensors for a meaningful check.

    Args:
        objective: () -> a number, reading `tensor`.
        tensor: the tensor to differentiate in (modified in place during the call, restored).
        eps: the step, > 0.

    Returns:
        The gradient estimate, the shape and dtype of `tensor`.

    Raises:
        ValueError: `eps` <= 0.
    """
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    grad = torch.zeros_like(tensor)
    flat = tensor.data.view(-1)
    for i in range(flat.numel()):
        original = float(flat[i])
        values = []
        for shifted in (original + eps, original - eps):
            flat[i] = shifted
            values.append(float(objective()))
        flat[i] = original
        grad.view(-1)[i] = (values[0] - values[1]) / (2 * eps)
    return grad


@dataclass
class SavedTensors:
    """What autograd kept for the backward pass while `saved_tensor_bytes` was open: the bytes of
    the distinct storages it saved (each counted once, however often it was saved).

    Attributes:
        bytes: the total so far, an int >= 0.
    """

    bytes: int = 0
    _seen: set[int] = field(default_factory=set, repr=False)

    @property
    def mebibytes(self) -> float:
        """`bytes` in MiB (2**20 bytes)."""
        return self.bytes / 2**20


@contextlib.contextmanager
def saved_tensor_bytes() -> Iterator[SavedTensors]:
    """Count the memory the autograd graph holds for its backward pass (e.g. an unrolled
    hypergradient): every tensor an operation saves inside the block, each storage once.

    Yields:
        A `SavedTensors` whose `bytes` grows as the block builds its graph.
    """
    meter = SavedTensors()

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in meter._seen:
            meter._seen.add(storage.data_ptr())
            meter.bytes += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield meter
