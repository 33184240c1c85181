"""Scores of every training sample from models: EL2N, GraNd, the loss, and random (the control).

- EL2N (Paul et al., NeurIPS 2021): ||softmax(f(x)) - onehot(y)||_2, averaged over models from
  several short training runs. This is exactly notebook 02's logit-gradient proxy
  `output_grad_norms` with per-sample cross-entropy: the gradient of sample i's own loss (the
  summed loss, not the batch mean, so no 1/B factor) with respect to its logits z is
  softmax(z) - onehot(y). It also holds for log-probability outputs, since log_softmax leaves
  log-probabilities unchanged.
- GraNd (Paul et al.): the norm of the full per-sample loss gradient over all trainable
  parameters, at (or near) initialisation, averaged over initialisations: `per_sample_grad_norms`.
  (DeepCore uses only the last layer's gradient after 40 epochs instead.)
- loss: the per-sample cross-entropy, a further score.
- random: seeded uniform scores, the control every score is compared with.

Models are scored in eval mode (restored afterwards) with their parameters and `.grad` untouched,
the data set in index order; the training of the short runs is the caller's (the harness's) job.
Under torch.distributed each rank scores every world-size-th sample and one exchange shares the
results, so every rank returns the same tensor at 1 / world of the cost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from curriclab.core.data import IndexedDataset
from curriclab.core.distributed import gather_observations, rank_and_world
from curriclab.core.training import cross_entropy_per_sample
from curriclab.methods.importance import output_grad_norms, per_sample_grad_norms

__all__ = [
    "averaged_scores",
    "el2n_norms",
    "grand_norms",
    "loss_values",
    "Measure",
    "MEASURES",
    "random_scores",
    "score_dataset",
]

Measure = Callable[[nn.Module, Tensor, Tensor], Tensor]
"""(model, x [B, ...], y [B]) -> one score per sample [B]."""


def el2n_norms(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """EL2N of a batch: ||softmax(model(x)) - onehot(y)||_2 per sample.

    Args:
        model: a model whose samples do not interact (see `check_samples_independent`).
        x: [B, ...] inputs.
        y: [B] integer classes.

    Returns:
        [B] norms in [0, sqrt(2)], detached (parameters and .grad untouched).

    Raises:
        TypeError, ValueError: as `output_grad_norms` (a bad batch, a batch-coupling layer).
    """
    return output_grad_norms(model, x, y)


def grand_norms(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """GraNd of a batch: the L2 norm over all trainable parameters of each sample's cross-entropy
    gradient.

    Args:
        model, x, y: as in `el2n_norms`.

    Returns:
        [B] norms >= 0, detached (parameters and .grad untouched).

    Raises:
        TypeError, ValueError: as `per_sample_grad_norms`.
    """
    return per_sample_grad_norms(model, x, y)


def loss_values(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Per-sample cross-entropy of a batch, without gradients.

    Args:
        model, x, y: as in `el2n_norms`.

    Returns:
        [B] losses >= 0.
    """
    with torch.no_grad():
        return cross_entropy_per_sample(model(x), y)


MEASURES: dict[str, Measure] = {"el2n": el2n_norms, "grand": grand_norms, "loss": loss_values}
"""The named per-batch measures `score_dataset` accepts."""


def _measure(measure: str | Measure) -> tuple[str, Measure]:
    if isinstance(measure, str):
        if measure not in MEASURES:
            raise ValueError(f"measure must be one of {sorted(MEASURES)} or a callable, "
                             f"got {measure!r}")
        return measure, MEASURES[measure]
    if not callable(measure):
        raise TypeError(f"measure must be a name or a callable, got {type(measure).__name__}")
    return getattr(measure, "__name__", "custom"), measure


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def _measured(model: nn.Module, data: IndexedDataset, function: Measure, name: str,
              batch_size: int) -> Tensor:
    """`function` over `data` in slices of `batch_size`, model in eval mode: float64 [len(data)]."""
    was_training = model.training
    model.eval()
    parts = []
    try:
        for start in range(0, len(data), batch_size):
            x = data.inputs[start : start + batch_size]
            y = data.targets[start : start + batch_size]
            values = function(model, x, y)
            if not isinstance(values, Tensor) or values.shape != y.shape:
                got = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
                raise ValueError(f"measure {name!r} must return one score per sample, shape "
                                 f"{tuple(y.shape)}; got {got}")
            parts.append(values.detach().to("cpu", torch.float64))
    finally:
        model.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def score_dataset(
    model: nn.Module, data: IndexedDataset, measure: str | Measure = "el2n", *,
    batch_size: int = 500, group: dist.ProcessGroup | None = None,
) -> Tensor:
    """Score every sample of `data` with one model, keyed by dataset index.

    Collective under torch.distributed (every rank of `group` calls it with the same model and
    data): each rank measures the samples rank, rank + world, ... and one exchange shares them.

    Args:
        model: the model (put in eval mode while scoring, then restored; parameters untouched).
        data: the in-memory data set; sample i's score lands at position i.
        measure: "el2n", "grand", "loss" (see `MEASURES`) or a callable (model, x, y) -> [B].
        batch_size: samples per measured batch (>= 1).
        group: the process group sharing the work (default group; none: one process).

    Returns:
        float64 scores [len(data)], identical on every rank.

    Raises:
        TypeError: data is not an IndexedDataset, measure not a name or callable, batch_size
            not an int.
        ValueError: an unknown measure name, batch_size < 1, a measure returning the wrong shape,
            or (on every rank alike) a score that is not finite.
    """
    if not isinstance(data, IndexedDataset):
        raise TypeError(f"data must be an IndexedDataset, got {type(data).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    name, function = _measure(measure)
    _check_batch_size(batch_size)
    rank, world = rank_and_world(group)
    mine = torch.arange(rank, len(data), world)
    values = _measured(model, data if world == 1 else data.subset(mine), function, name,
                       batch_size)
    try:
        gathered = gather_observations(mine, values, num_samples=len(data), group=group)
    except ValueError as error:
        raise ValueError(f"score_dataset: the {name!r} scores must be finite on every rank "
                         f"(did training diverge?): {error}") from None
    scores = torch.empty(len(data), dtype=torch.float64)
    scores[gathered.index] = gathered.losses
    return scores


def averaged_scores(
    models: Iterable[nn.Module], data: IndexedDataset, measure: str | Measure = "el2n", *,
    batch_size: int = 500, group: dist.ProcessGroup | None = None,
) -> Tensor:
    """The mean over `models` of `score_dataset(model, data, measure)`.

    Args:
        models: the models (e.g. after several short runs, or several initialisations); a
            generator is consumed one model at a time, so only one needs to exist at once.
        data, measure, batch_size, group: as in `score_dataset`.

    Returns:
        float64 mean scores [len(data)], identical on every rank.

    Raises:
        ValueError: `models` is empty; otherwise as `score_dataset`.
    """
    total, count = None, 0
    for model in models:
        scores = score_dataset(model, data, measure, batch_size=batch_size, group=group)
        total = scores if total is None else total + scores
        count += 1
    if total is None:
        raise ValueError("models must hold at least one model")
    return total / count


def random_scores(num_samples: int, seed: int) -> Tensor:
    """The control: scores drawn uniformly from [0, 1) by a generator seeded with `seed`.

    Args:
        num_samples: N >= 0.
        seed: the generator's seed (the same scores on every rank and every call).

    Returns:
        [N] float64 scores in [0, 1).

    Raises:
        TypeError: num_samples or seed is not an int.
        ValueError: num_samples < 0.
    """
    for name, value in (("num_samples", num_samples), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(num_samples, generator=generator, dtype=torch.float64)
