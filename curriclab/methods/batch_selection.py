"""Online batch selection: train on the k most useful of each candidate batch of n_B samples.

The loop forwards every candidate batch without gradients and asks the selector (a `SampleMethod`
that defines `select`, see `curriclab.core.protocol`) which positions to keep; it then runs the
usual step on those samples only. Three selectors share one shape:

- `TopLossSelection`: the k candidates of highest current training loss (Loshchilov & Hutter
  2015, "Online batch selection"; Selective-Backprop, Jiang et al. 2019, selects by loss too, but
  at random with a loss-percentile probability: here the choice is deterministic top-k).
- `RhoLossSelection`: the k candidates of highest reducible holdout loss, training loss minus
  the "irreducible" loss a model trained on a holdout split assigns to the sample (Mindermann et
  al., ICML 2022; `curriclab.methods.irreducible_loss` trains that model).
- `UniformSelection`: k candidates at random (seeded), the control with the same forward cost.

Scores are the selector's own per-sample loss of the no-grad output (cross-entropy unless a
`loss_fn` is given), computed with the model in train mode, as OATML/RHO-Loss does by default
(`selection_train_mode=True`). Ties: among equal scores the lower dataset index comes first
(a stable sort by index, then a stable descending sort by score, `selection_order`).

Candidate batches of fewer than `batch_size` samples (an epoch's last batch) keep
ceil(k * n / batch_size) of their n samples (`chosen_count`), so k / n_B is the kept share in
every batch; a larger batch is refused. An empty batch selects nothing (the loop skips it).

Under torch.distributed each rank selects from its own shard of the candidates: `batch_size` and
`k` are per rank (the global step trains k x world of n_B x world candidates), with no exchange.
This is what the reference code does under Lightning's DDP (every rank runs its own training
step) and keeps the step's samples equal on all ranks, so DDP's gradient average stays the mean
over the global selection. RHO-LOSS's per-sample state (the irreducible losses) must be identical
on every rank; `irreducible_losses` checks it when it computes them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from curriclab.core.protocol import SampleMethod
from curriclab.core.training import LossFn, cross_entropy_per_sample

__all__ = [
    "BatchSelector",
    "RhoLossSelection",
    "TopLossSelection",
    "UniformSelection",
    "chosen_count",
    "reducible_losses",
    "selection_order",
]


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def chosen_count(candidates: int, k: int, batch_size: int) -> int:
    """How many of `candidates` samples a selector of k per `batch_size` keeps: ceil(k n / n_B).

    Args:
        candidates: n, the size of this candidate batch, 0 <= n <= batch_size.
        k: how many a full candidate batch keeps, 1 <= k <= batch_size.
        batch_size: n_B, the size of a full candidate batch.

    Returns:
        k for a full batch, 0 for an empty one, otherwise the rounded-up share (at least 1).

    Raises:
        ValueError: naming the argument out of range (k > batch_size, candidates > batch_size).
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    k = _check_int("k", k, 1)
    if k > batch_size:
        raise ValueError(f"k must lie in [1, batch_size={batch_size}], got {k}")
    candidates = _check_int("candidates", candidates, 0)
    if candidates > batch_size:
        raise ValueError(f"a candidate batch holds at most batch_size={batch_size} samples, "
                         f"got {candidates}: give the selector the loader's batch size")
    return (k * candidates + batch_size - 1) // batch_size


def selection_order(scores: Tensor, index: Tensor) -> Tensor:
    """Positions of `scores` from the highest to the lowest score; equal scores in ascending order
    of their dataset `index` (so a selection does not depend on the order of the batch).

    Args:
        scores: finite float scores [n].
        index: the candidates' dataset indices [n].

    Returns:
        int64 positions [n], a permutation of 0..n-1.
    """
    by_index = torch.argsort(index, stable=True)
    by_score = torch.sort(scores[by_index], descending=True, stable=True).indices
    return by_index[by_score]


def reducible_losses(training_losses: Tensor, irreducible: Tensor) -> Tensor:
    """RHO-LOSS's score: training loss minus irreducible (holdout-model) loss, sample by sample.

    Args:
        training_losses: [n] float training losses.
        irreducible: [n] the same samples' irreducible losses (cast to the losses' dtype).

    Returns:
        [n] reducible losses (may be negative), in the dtype of `training_losses`.
    """
    return training_losses - irreducible.to(training_losses.dtype)


def _check_batch(index: Tensor, output: Tensor, target: Tensor) -> None:
    if not all(isinstance(t, Tensor) for t in (index, output, target)):
        raise TypeError("index, output and target must be tensors")
    if index.ndim != 1 or target.ndim != 1 or not len(output) == len(index) == len(target):
        raise ValueError("index [n], output [n, ...] and target [n] must have one row per sample; "
                         f"got {tuple(index.shape)}, {tuple(output.shape)}, {tuple(target.shape)}")
    if index.dtype.is_floating_point or index.dtype.is_complex or index.dtype == torch.bool:
        raise ValueError(f"index must be an integer tensor, got {index.dtype}")


class BatchSelector(SampleMethod):
    """Keeps the `chosen_count` candidates of highest `scores` (ties: lower dataset index first).

    Subclasses define `scores(index, output, target)`; `UniformSelection` overrides `select`.

    Args:
        k: how many samples a full candidate batch keeps, 1 <= k <= batch_size.
        batch_size: n_B, the loader's (per-rank) batch size.
        loss_fn: (output, target, index) -> per-sample training losses [n] (cross-entropy).

    Raises:
        ValueError: naming `k` or `batch_size` when out of range.
    """

    def __init__(self, k: int, batch_size: int, *, loss_fn: LossFn = cross_entropy_per_sample):
        chosen_count(0, k, batch_size)  # checks k and batch_size
        self.k, self.batch_size, self.loss_fn = k, batch_size, loss_fn

    def training_losses(self, index: Tensor, output: Tensor, target: Tensor) -> Tensor:
        """The candidates' current training losses, checked finite.

        Args:
            index, output, target: the candidates, as in `BatchSelector.select`.

        Returns:
            [n] detached losses from `loss_fn`.

        Raises:
            ValueError: `loss_fn` returns another shape, or a loss is NaN or infinite (nothing is
                selected, no state changes).
        """
        losses = self.loss_fn(output, target, index).detach()
        if losses.shape != index.shape:
            raise ValueError(f"loss_fn must return one loss per sample [{len(index)}], "
                             f"got {tuple(losses.shape)}")
        if not bool(torch.isfinite(losses).all()):
            raise ValueError("training losses of the candidate batch must be finite (got NaN or "
                             "inf): did training diverge?")
        return losses

    def scores(self, index: Tensor, output: Tensor, target: Tensor) -> Tensor:
        """Per-candidate scores; the highest are kept (subclasses).

        Args:
            index, output, target: the candidates, as in `BatchSelector.select`.

        Returns:
            [n] finite float scores.

        Raises:
            NotImplementedError: on the base class.
        """
        raise NotImplementedError

    def select(self, index: Tensor, output: Tensor, target: Tensor) -> Tensor:
        """Positions of the `chosen_count(n, k, batch_size)` candidates of highest score.

        Args:
            index: [n] integer dataset indices of the candidates.
            output: [n, ...] the model's no-grad output for them.
            target: [n] their targets.

        Returns:
            int64 positions into the batch (not dataset indices), distinct, highest score first
            (ties: lower dataset index first); empty for an empty batch.

        Raises:
            TypeError: an argument is not a tensor.
            ValueError: for a batch larger than `batch_size`, mismatched shapes, a non-integer
                `index`, or non-finite losses.
        """
        _check_batch(index, output, target)
        count = chosen_count(len(index), self.k, self.batch_size)
        if count == 0:
            return torch.empty(0, dtype=torch.long)
        return selection_order(self.scores(index, output, target), index)[:count]

    def state_dict(self) -> dict:
        """`k` and `batch_size` (and a subclass's per-sample state).

        Returns:
            {"k", "batch_size", ...} (tensors as copies).
        """
        return {"k": self.k, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict`; checks every key before changing anything.

        Args:
            state: what `state_dict()` returned.

        Raises:
            TypeError: `state` is not a dict.
            ValueError: naming a missing or unexpected key or a value out of range.
        """
        self._checked_state(state)
        self._check_own_state(state)
        self.k, self.batch_size = state["k"], state["batch_size"]
        self._restore_own_state(state)

    def _check_own_state(self, state: dict) -> None:
        """A subclass checks the entries of its own state here (before anything changes)."""

    def _restore_own_state(self, state: dict) -> None:
        """A subclass restores the entries of its own state here (already checked)."""

    def _checked_state(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        expected = set(self.state_dict())
        if set(state) != expected:
            raise ValueError(f"state keys must be {sorted(expected)}, got {sorted(state)}")
        for key in ("k", "batch_size"):
            _check_int(key, state[key], 1)
        if state["k"] > state["batch_size"]:
            raise ValueError(f"state 'k' must be <= 'batch_size', got {state['k']} > "
                             f"{state['batch_size']}")


class TopLossSelection(BatchSelector):
    """The k candidates of highest current training loss (Loshchilov & Hutter 2015).

    Args:
        k, batch_size, loss_fn: as for `BatchSelector`.

    Raises:
        ValueError: naming `k` or `batch_size` when out of range.
    """

    def scores(self, index: Tensor, output: Tensor, target: Tensor) -> Tensor:
        """`BatchSelector.scores` as the candidates' training losses.

        Args:
            index, output, target: the candidates, as in `BatchSelector.select`.

        Returns:
            [n] detached finite losses (`training_losses`, whose errors it raises).
        """
        return self.training_losses(index, output, target)


def _checked_irreducible(name: str, losses: object, num_samples: int | None = None) -> Tensor:
    if not isinstance(losses, Tensor) or losses.ndim != 1 or not losses.dtype.is_floating_point:
        raise ValueError(f"{name} must be a 1-D float tensor (one loss per training sample)")
    if num_samples is not None and len(losses) != num_samples:
        raise ValueError(f"{name} must hold {num_samples} losses, got {len(losses)}")
    if not bool(torch.isfinite(losses).all()):
        raise ValueError(f"{name} must be finite (got NaN or inf)")
    return losses


class RhoLossSelection(BatchSelector):
    """The k candidates of highest reducible holdout loss (RHO-LOSS, Mindermann et al. 2022):
    training loss minus `irreducible_losses[index]`.

    Args:
        irreducible_losses: finite float losses [N] of every training sample, by dataset index,
            from a model trained on a holdout split (`curriclab.methods.irreducible_loss`).
        k, batch_size, loss_fn: as for `BatchSelector`.

    Raises:
        ValueError: naming `irreducible_losses` when not 1-D, float and finite, or `k`/`batch_size`.
    """

    def __init__(self, irreducible_losses: Tensor, k: int, batch_size: int, *,
                 loss_fn: LossFn = cross_entropy_per_sample):
        super().__init__(k, batch_size, loss_fn=loss_fn)
        self.irreducible_losses = _checked_irreducible("irreducible_losses",
                                                       irreducible_losses).detach().clone()

    def scores(self, index: Tensor, output: Tensor, target: Tensor) -> Tensor:
        """Reducible losses of the candidates.

        Args:
            index, output, target: the candidates, as in `BatchSelector.select`.

        Returns:
            [n] training loss minus `irreducible_losses[index]`.

        Raises:
            ValueError: if an index lies outside [0, N) of the irreducible losses, or as
                `training_losses`.
        """
        n = len(self.irreducible_losses)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
            raise ValueError(f"index must lie in [0, {n}) (the irreducible losses' length)")
        irreducible = self.irreducible_losses.to(output.device)[index.to(output.device)]
        return reducible_losses(self.training_losses(index, output, target), irreducible)

    def state_dict(self) -> dict:
        """`BatchSelector.state_dict()` plus "irreducible_losses", a [N] copy.

        Returns:
            {"k", "batch_size", "irreducible_losses"}.
        """
        return {**super().state_dict(), "irreducible_losses": self.irreducible_losses.clone()}

    def _check_own_state(self, state: dict) -> None:
        _checked_irreducible("state 'irreducible_losses'", state["irreducible_losses"],
                             len(self.irreducible_losses))

    def _restore_own_state(self, state: dict) -> None:
        self.irreducible_losses = state["irreducible_losses"].detach().clone()


class UniformSelection(BatchSelector):
    """`chosen_count(n, k, batch_size)` candidates drawn without replacement, uniformly, from
    this selector's own seeded generator (the global RNG is not touched).

    It still asks the loop for the candidate forward, so it costs what the loss-based selectors
    cost: the control for "is selecting by loss worth it?". Under torch.distributed give each
    rank its own seed (e.g. `seed + rank`), or all ranks keep the same positions of their shards.

    Args:
        k, batch_size: as for `BatchSelector`.
        seed: seeds the generator.

    Raises:
        ValueError: naming `k` or `batch_size` when out of range.
    """

    def __init__(self, k: int, batch_size: int, *, seed: int = 0):
        super().__init__(k, batch_size)
        self.generator = torch.Generator().manual_seed(seed)

    def select(self, index: Tensor, output: Tensor, target: Tensor) -> Tensor:
        """Positions of `chosen_count(n, k, batch_size)` candidates in random order.

        Args:
            index, output, target: the candidates, as in `BatchSelector.select`.

        Returns:
            int64 distinct positions into the batch, on the device of `index`.

        Raises:
            TypeError: an argument is not a tensor.
            ValueError: for a batch larger than `batch_size` or mismatched shapes.
        """
        _check_batch(index, output, target)
        count = chosen_count(len(index), self.k, self.batch_size)
        if count == 0:
            return torch.empty(0, dtype=torch.long)
        return torch.randperm(len(index), generator=self.generator)[:count].to(index.device)

    def state_dict(self) -> dict:
        """`BatchSelector.state_dict()` plus "generator", the generator's uint8 state.

        Returns:
            {"k", "batch_size", "generator"}.
        """
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def _check_own_state(self, state: dict) -> None:
        generator = state["generator"]
        expected = self.generator.get_state().shape
        if not isinstance(generator, Tensor) or generator.dtype != torch.uint8 or (
                generator.shape != expected):
            raise ValueError("state 'generator' must be a CPU generator state (uint8 tensor "
                             f"of shape {tuple(expected)})")

    def _restore_own_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
