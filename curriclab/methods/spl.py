"""Self-paced learning (Kumar et al. 2010): train on the samples that are easy *now*, then on more.

SPL minimises `sum_i v_i * loss_i + f(v_i; lambda)` jointly over the model and per-sample weights
`v_i` in [0, 1]. For a fixed model the best `v_i` has a closed form that depends only on `loss_i`
and lambda (`spl_weights`); lambda grows during training so that harder samples join in.
`SPLLoss` holds the state a training loop needs: lambda, its schedule and every sample's latest
loss and weight, keyed by dataset index.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from curriclab.core.data import IndexedDataset
from curriclab.core.protocol import SampleMethod
from curriclab.core.distributed import gathered_per_sample_losses
from curriclab.core.state import (
    check_equal,
    check_float,
    check_int,
    check_keys,
    check_tensor,
    finite_or_raise,
)

__all__ = [
    "linear_pace",
    "LOGARITHMIC_MAX_LAMBDA",
    "Pace",
    "REDUCTIONS",
    "REGULARIZERS",
    "spl_objective",
    "spl_weights",
    "SPLLoss",
    "threshold_for_fraction",
]

REGULARIZERS = ("hard", "linear", "logarithmic", "mixture")
REDUCTIONS = ("mean", "selected")
LOGARITHMIC_MAX_LAMBDA = 0.99
"""The logarithmic regularizer needs lambda < 1; SPLLoss caps its schedule here by default."""

Pace = Callable[[int], float]
"""epoch -> fraction of the data set to select in that epoch."""


def _check_lambda(regularizer: str, lam: float, lam_low: float | None) -> None:
    if regularizer not in REGULARIZERS:
        raise ValueError(f"regularizer must be one of {REGULARIZERS}, got {regularizer!r}")
    if not lam > 0:  # also rejects NaN
        raise ValueError(f"lam must be > 0, got {lam}")
    if regularizer == "logarithmic" and not lam < 1:
        raise ValueError(f"lam must lie in (0, 1) for the logarithmic regularizer, got {lam}")
    if regularizer == "mixture" and (lam_low is None or not 0 < lam_low < lam):
        raise ValueError(f"lam_low must lie in (0, lam={lam}) for the mixture regularizer, "
                         f"got {lam_low}")


def spl_weights(
    losses: Tensor, lam: float, regularizer: str = "hard", lam_low: float | None = None
) -> Tensor:
    """The weights v in [0, 1] that minimise `v * loss + f(v)` for each sample, in closed form.

    Regularizers f(v) (every one gives v = 0 once loss >= lam, so "selected" means loss < lam):
      hard:        -lam * v                         -> v = [loss < lam]
      linear:      lam * (v^2 / 2 - v)              -> v = max(0, 1 - loss / lam)
      logarithmic: zeta * v - zeta^v / log(zeta),  zeta = 1 - lam, 0 < lam < 1
                                                    -> v = log(loss + zeta) / log(zeta)
      mixture:     -zeta * log(v + zeta / lam),  zeta = lam * lam_low / (lam - lam_low)
                                                    -> v = 1 below lam_low, zeta / loss - zeta / lam

    Args:
        losses: per-sample losses of any shape, >= 0 and not NaN (ints are made float32).
        lam: the threshold lambda > 0; `math.inf` gives every weight 1 (plain training);
            in (0, 1) for the logarithmic regularizer.
        regularizer: one of `REGULARIZERS`.
        lam_low: the mixture's lower threshold, in (0, lam); unused by the others.

    Returns:
        Weights in [0, 1], the shape and float dtype of `losses`, detached.

    Raises:
        ValueError: an unknown `regularizer`, `lam` or `lam_low` out of range, or a negative
            or NaN loss.
    """
    _check_lambda(regularizer, lam, lam_low)
    losses = torch.as_tensor(losses).detach()
    if not losses.is_floating_point():
        losses = losses.float()
    if losses.numel() and not bool((losses >= 0).all()):  # False for NaN too
        raise ValueError("losses must be >= 0 and not NaN")
    if regularizer == "hard":
        return (losses < lam).to(losses.dtype)
    if regularizer == "linear":
        return (1.0 - losses / lam).clamp(0.0, 1.0)
    if regularizer == "logarithmic":
        zeta = 1.0 - lam  # log(loss + zeta) >= 0 once loss >= lam, so the clamp gives v = 0 there
        return (torch.log(losses + zeta) / math.log(zeta)).clamp(0.0, 1.0)
    zeta = lam * lam_low / (lam - lam_low)
    soft = zeta / losses.clamp_min(lam_low) - zeta / lam  # clamp: no division by a zero loss
    return soft.clamp(0.0, 1.0)


def spl_objective(
    weights: Tensor, losses: Tensor, lam: float, regularizer: str = "hard",
    lam_low: float | None = None,
) -> Tensor:
    """Per-sample SPL objective `v * loss + f(v)`; `spl_weights` is its minimiser over v in [0, 1].

    Args:
        weights: v, per-sample weights in [0, 1].
        losses: per-sample losses >= 0, broadcastable against `weights`.
        lam, regularizer, lam_low: as `spl_weights`.

    Returns:
        float64 per-sample objective values, the broadcast shape.

    Raises:
        ValueError: as `spl_weights` for `regularizer`, `lam` and `lam_low`.
    """
    _check_lambda(regularizer, lam, lam_low)
    v = torch.as_tensor(weights, dtype=torch.float64)
    loss = torch.as_tensor(losses, dtype=torch.float64)
    if regularizer == "hard":
        f = -lam * v
    elif regularizer == "linear":
        f = lam * (v**2 / 2 - v)
    elif regularizer == "logarithmic":
        zeta = 1.0 - lam
        f = zeta * v - zeta**v / math.log(zeta)
    else:
        zeta = lam * lam_low / (lam - lam_low)
        f = -zeta * torch.log(v + zeta / lam)
    return v * loss + f


def threshold_for_fraction(losses: Tensor, fraction: float) -> float:
    """A lambda that selects (loss < lambda) the `fraction` of `losses` with the smallest losses.

    At least one sample is always selected (never an empty curriculum); tied losses are selected
    together, so the share may come out a little larger. Lambda lies half-way between the last
    selected and the first unselected loss (just above the largest loss when everything is
    selected).

    Args:
        losses: per-sample losses of any shape; NaN entries (never seen) are ignored.
        fraction: the share to select, in (0, 1].

    Returns:
        lambda, a float: ceil(fraction * seen) samples (at least 1, plus ties) lie below it.

    Raises:
        ValueError: `fraction` outside (0, 1], or no loss is seen.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    losses = torch.as_tensor(losses).detach().double()
    ordered = losses[~losses.isnan()].sort().values
    if ordered.numel() == 0:
        raise ValueError("losses must contain at least one seen (non-NaN) value")
    count = max(1, math.ceil(fraction * len(ordered) - 1e-9))
    last = float(ordered[count - 1])
    above = ordered[ordered > last]
    if above.numel() == 0:
        return float(torch.nextafter(torch.tensor(last), torch.tensor(math.inf)))
    return (last + float(above[0])) / 2.0


def linear_pace(start: float, stop: float = 1.0, epochs: int = 10) -> Pace:
    """A pace selecting `start` of the data in epoch 0, rising linearly to `stop` at `epochs - 1`.

    Args:
        start: the fraction of epoch 0, in (0, 1].
        stop: the fraction from epoch `epochs - 1` on, in (0, 1] (may be below `start`).
        epochs: epochs >= 1 over which the fraction moves.

    Returns:
        The pace epoch -> fraction (negative epochs count as 0).

    Raises:
        ValueError: `start` or `stop` outside (0, 1], or `epochs` < 1.
    """
    for name, value in (("start", start), ("stop", stop)):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{name} must lie in (0, 1], got {value}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")

    def pace(epoch: int) -> float:
        progress = min(max(epoch, 0) / max(epochs - 1, 1), 1.0)
        return start + (stop - start) * progress

    return pace


class SPLLoss(SampleMethod):
    """Self-paced cross-entropy that keeps each sample's latest loss and weight by dataset index.

    Defaults follow the wenig/spl demo: hard weights, lambda 0.1 grown x1.35 per `after_epoch`,
    `reduction="mean"` = sum(v * loss) / batch size. Beyond that demo:
      - `regularizer`: hard, linear, logarithmic or mixture (`spl_weights`); for the mixture,
        lam_low = `low_fraction * lambda`, so it keeps its ratio while lambda grows;
      - `reduction="selected"`: sum(v * loss) / sum(v), so the step size does not shrink with
        the selected share (an empty selection gives a zero loss that still back-propagates);
      - `pace`: epoch -> target fraction; `after_epoch` (and `follow_pace()`) then set
        lambda from the latest recorded losses so that this fraction is selected, instead of
        multiplying it (`threshold_for_fraction`);
      - `refresh(model, data)`: re-measure every sample's loss with the current model
        (otherwise a sample's loss and weight date from its last batch, under older weights);
      - `max_threshold`: a cap for lambda (default inf, and 0.99 for the logarithmic
        regularizer, which needs lambda < 1; a capped pace then selects less than its target).
    `weights[i]` is always sample i's weight at the current lambda given its latest recorded
    loss (0 while it has none). It speaks `SampleMethod`: plug it into `train_epoch`/`fit`, or
    call `objective(index, losses)` on a batch's per-sample losses and `after_epoch(epoch)`.

    Args:
        num_samples: N >= 0, the dataset size.
        threshold: the initial lambda > 0 (capped at `max_threshold`).
        growing_factor: >= 1, lambda's factor per `after_epoch` without a `pace`.
        regularizer: one of `REGULARIZERS`.
        low_fraction: in (0, 1): the mixture's lam_low / lambda.
        reduction: "mean" or "selected" (see above).
        pace: epoch -> fraction in (0, 1] to select, or None to grow lambda instead.
        max_threshold: the cap for lambda (default: see above).

    Raises:
        ValueError: naming the argument out of range (or a lambda the regularizer cannot take).
    """

    def __init__(
        self,
        num_samples: int,
        *,
        threshold: float = 0.1,
        growing_factor: float = 1.35,
        regularizer: str = "hard",
        low_fraction: float = 0.5,
        reduction: str = "mean",
        pace: Pace | None = None,
        max_threshold: float | None = None,
    ):
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        if not growing_factor >= 1.0:
            raise ValueError(f"growing_factor must be >= 1, got {growing_factor}")
        if not 0.0 < low_fraction < 1.0:
            raise ValueError(f"low_fraction must lie in (0, 1), got {low_fraction}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if max_threshold is None:
            max_threshold = LOGARITHMIC_MAX_LAMBDA if regularizer == "logarithmic" else math.inf
        self.regularizer = regularizer
        self.low_fraction = low_fraction
        self.growing_factor = growing_factor
        self.reduction = reduction
        self.pace = pace
        self.max_threshold = max_threshold
        self.threshold = math.nan
        self.epoch = 0
        self.sample_losses = torch.full((num_samples,), math.nan)
        self.weights = torch.zeros(num_samples)
        self._set_threshold(threshold)

    @property
    def lam_low(self) -> float | None:
        """The mixture regularizer's lower threshold (None for the others)."""
        return self.low_fraction * self.threshold if self.regularizer == "mixture" else None

    @property
    def selected(self) -> Tensor:
        """Boolean mask of the samples whose weight is > 0."""
        return self.weights > 0

    def weigh(self, losses: Tensor) -> Tensor:
        """The weights of `losses` at the current lambda (no state change, no gradient).

        Args:
            losses: per-sample losses >= 0, not NaN.

        Returns:
            Weights in [0, 1], the shape and dtype of `losses`.

        Raises:
            ValueError: a negative or NaN loss.
        """
        return spl_weights(losses.detach(), self.threshold, self.regularizer, self.lam_low)

    def _set_threshold(self, value: float) -> None:
        """Change lambda (capped at max_threshold) and reweigh every recorded loss."""
        value = min(value, self.max_threshold)
        _check_lambda(self.regularizer, value, self.low_fraction * value)
        self.threshold = value
        seen = ~self.sample_losses.isnan()
        self.weights = torch.zeros_like(self.weights)
        self.weights[seen] = self.weigh(self.sample_losses[seen]).float()

    def objective(self, index: Tensor, losses: Tensor) -> Tensor:
        """Weigh a batch's per-sample `losses`, record loss and weight by `index`, return the loss.

        Args:
            index: [B] integer dataset indices in [0, N).
            losses: [B] finite per-sample losses >= 0 (with their graph).

        Returns:
            A scalar: sum(v * loss) / B ("mean"), or / sum(v) ("selected"; the plain weighted
            sum, 0, when nothing is selected). The weights carry no gradient.

        Raises:
            TypeError: `index` or `losses` is not a tensor, or `index` is not an integer tensor.
            ValueError: `losses` is not 1-D with one loss per index, a loss is NaN, infinite or
                negative, or an index lies outside [0, num_samples); nothing is recorded then.
        """
        self._check_batch(index, losses)
        weights = self.weigh(losses)
        self.sample_losses[index] = losses.detach().float().cpu()
        self.weights[index] = weights.float().cpu()
        weighted = (weights.to(losses.dtype) * losses).sum()
        if self.reduction == "mean":
            return weighted / max(len(losses), 1)
        mass = weights.sum()
        return weighted / mass if mass > 0 else weighted  # nothing selected: a zero loss

    def _check_batch(self, index: Tensor, losses: Tensor) -> None:
        if not isinstance(index, Tensor) or not isinstance(losses, Tensor):
            raise TypeError("SPLLoss.objective: index and losses must be tensors")
        if index.dtype.is_floating_point or index.dtype.is_complex or index.dtype == torch.bool:
            raise TypeError("SPLLoss.objective: index must be an integer tensor, got "
                            f"{index.dtype}")
        if losses.ndim != 1 or index.shape != losses.shape:
            raise ValueError("SPLLoss.objective: losses and index must be 1-D of equal length, got "
                             f"{tuple(losses.shape)} and {tuple(index.shape)}")
        finite_or_raise("losses", losses.detach(), "SPLLoss.objective")
        size = len(self.sample_losses)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= size):
            raise ValueError(f"SPLLoss.objective: index must lie in [0, {size}), got "
                             f"{int(index.min())}..{int(index.max())}")

    @torch.no_grad()
    def refresh(self, model: nn.Module, data: IndexedDataset) -> Tensor:
        """Record every sample's loss under `model` (so no weight is stale).

        Under torch.distributed each rank measures a share of the samples and the losses are
        gathered, so every rank gets the same losses (a collective: call it on every rank).

        Args:
            model: the current model (evaluated without gradients).
            data: the N training samples, yielding (index, x, y).

        Returns:
            The [N] float32 weights at the current lambda (the `weights` attribute itself).

        Raises:
            ValueError: `data` has another size, or a loss is NaN or infinite (nothing changes).
        """
        if len(data) != len(self.sample_losses):
            raise ValueError(f"data has {len(data)} samples, this SPLLoss has "
                             f"{len(self.sample_losses)}")
        losses = gathered_per_sample_losses(model, data).float()
        finite_or_raise("the model's losses on data", losses, "SPLLoss.refresh")
        self.sample_losses = losses
        self._set_threshold(self.threshold)
        return self.weights

    def follow_pace(self) -> float:
        """Set lambda so that pace(epoch) of the samples with a recorded loss is selected.

        Before the first epoch, call `refresh` first so that every sample has a loss.

        Returns:
            The new lambda (capped at `max_threshold`).

        Raises:
            ValueError: there is no `pace`, no loss is recorded yet, or the pace returns a
                fraction outside (0, 1].
        """
        if self.pace is None:
            raise ValueError("follow_pace needs a pace: pass pace=... to SPLLoss")
        if bool(self.sample_losses.isnan().all()):
            raise ValueError("no loss recorded yet: call refresh(model, data) first")
        self._set_threshold(threshold_for_fraction(self.sample_losses, self.pace(self.epoch)))
        return self.threshold

    def after_epoch(self, epoch: int) -> None:
        """Epoch `epoch` ended: lambda x growing_factor, or the pace's fraction for the next epoch.

        Args:
            epoch: the epoch that ended; the next one is `epoch + 1`.

        Raises:
            ValueError: as `follow_pace` (with a pace).
        """
        self.epoch = epoch + 1
        if self.pace is not None:
            self.follow_pace()
        else:
            self._set_threshold(self.threshold * self.growing_factor)

    def state_dict(self) -> dict:
        """The state that decides the weights from here on, as copies.

        Returns:
            {"regularizer", "threshold", "epoch", "losses": [N] float32 (NaN where never seen)}.
        """
        return {
            "regularizer": self.regularizer,
            "threshold": self.threshold,
            "epoch": self.epoch,
            "losses": self.sample_losses.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict()`, validated completely before anything changes.

        Args:
            state: what `state_dict()` returned, for the same N and regularizer.

        Raises:
            TypeError: `state` is not a dict.
            ValueError: naming the key that is missing, unexpected, of the wrong type, shape or
                dtype, or out of range (another regularizer, a threshold this SPLLoss could not
                take, a negative or infinite loss).
        """
        owner = "SPLLoss"
        check_keys(state, ("regularizer", "threshold", "epoch", "losses"), owner)
        check_equal(state, "regularizer", owner, self.regularizer)
        threshold = check_float(state, "threshold", owner, low=0.0, low_open=True,
                                allow_inf=True)
        capped = min(threshold, self.max_threshold)
        try:
            _check_lambda(self.regularizer, capped, self.low_fraction * capped)
        except ValueError as error:
            raise ValueError(f"{owner}.load_state_dict: state key 'threshold': {error}") from None
        epoch = check_int(state, "epoch", owner, low=0)
        losses = check_tensor(state, "losses", owner, shape=tuple(self.sample_losses.shape),
                              dtype=self.sample_losses.dtype, low=0.0, allow_nan=True)
        self.epoch = epoch
        self.sample_losses = losses.clone()
        self._set_threshold(threshold)
