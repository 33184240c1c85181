"""Loss persistence: do the samples that are hard (or easy) in one epoch stay hard (or easy) later?

Each epoch's per-sample training losses are ranked and cut into `q` equal-size quantiles;
the *percent match* of quantile j over an epoch range is the share of its members that sit in
quantile j in every epoch of the range. The *chance level* is what that share would be if each
epoch's ranking were an independent random shuffle, so persistence means "well above chance".

Epochs are numbered from 1, as in Zakka's (2018) figures ("epochs 2-5" are rows 1..4 of a
`losses[E, N]` table). Quantile 0 holds the highest losses when `descending=True` (the default,
as in Zakka's Loss Patterns notebook) and the lowest losses otherwise.

Losses are recorded by dataset index (`LossRecorder`, a `train_epoch` hook), so shuffled epochs
need no bookkeeping of which permutation fed which batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from curriclab.core.protocol import SampleMethod
from curriclab.core.state import check_keys, check_tensor
from curriclab.core.tracking import LossTracker

__all__ = [
    "chance_percent_match",
    "LossRecorder",
    "percent_match",
    "quantile_bins",
    "quantile_sizes",
    "quantile_transitions",
]


def _check_losses(losses: Tensor, ndim: tuple[int, ...] = (1, 2)) -> Tensor:
    if not isinstance(losses, Tensor):
        raise TypeError(f"losses must be a torch tensor, got {type(losses).__name__}")
    if losses.ndim not in ndim:
        shapes = " or ".join({1: "[N]", 2: "[epochs, N]"}[n] for n in ndim)
        raise ValueError(f"losses must have shape {shapes}, got {tuple(losses.shape)}")
    if not losses.is_floating_point():
        raise TypeError(f"losses must be a floating-point tensor, got {losses.dtype}")
    if torch.isnan(losses).any():
        raise ValueError("losses contain NaN (a sample that was never recorded?)")
    return losses.detach().cpu()


def _check_num_quantiles(num_quantiles: int, num_samples: int) -> None:
    if isinstance(num_quantiles, bool) or not isinstance(num_quantiles, int):
        raise TypeError(f"num_quantiles must be an int, got {type(num_quantiles).__name__}")
    if num_samples < 1:
        raise ValueError("losses must hold at least one sample per epoch")
    if not 1 <= num_quantiles <= num_samples:
        raise ValueError(
            f"num_quantiles must lie in [1, {num_samples}] (no more quantiles than samples), "
            f"got {num_quantiles}"
        )


def _check_epoch(epoch: int, num_epochs: int, name: str) -> None:
    if not 1 <= epoch <= num_epochs:
        raise ValueError(
            f"{name} must lie in [1, {num_epochs}] (epochs are numbered from 1), got {epoch}"
        )


def _epoch_rows(num_epochs: int, first_epoch: int, last_epoch: int | None) -> slice:
    """Rows of epochs `first_epoch..last_epoch` (1-based, inclusive; None = the last)."""
    last_epoch = num_epochs if last_epoch is None else last_epoch
    _check_epoch(first_epoch, num_epochs, "first_epoch")
    _check_epoch(last_epoch, num_epochs, "last_epoch")
    if first_epoch > last_epoch:
        raise ValueError(f"first_epoch ({first_epoch}) must not exceed last_epoch ({last_epoch})")
    return slice(first_epoch - 1, last_epoch)


def quantile_bins(losses: Tensor, num_quantiles: int, descending: bool = True) -> Tensor:
    """Quantile number (0..q-1) of every sample, per epoch.

    Samples are ranked by loss (highest first when `descending`); rank r goes to quantile
    floor(r * q / N), so quantile sizes differ by at most one when q does not divide N. Equal
    losses are ranked by dataset index (lower index first), so the result is deterministic.

    Args:
        losses: [N] or [E, N] float losses without NaN, keyed by dataset index.
        num_quantiles: q, an int in [1, N].
        descending: quantile 0 holds the highest losses (else the lowest).

    Returns:
        int64 quantile numbers, the shape of `losses` (each row binned on its own).

    Raises:
        TypeError: `losses` is not a float tensor, or `num_quantiles` not an int.
        ValueError: `losses` is not 1-D or 2-D, holds NaN or no sample, or `num_quantiles`
            lies outside [1, N].
    """
    losses = _check_losses(losses)
    num_samples = losses.shape[-1]
    _check_num_quantiles(num_quantiles, num_samples)
    order = torch.sort(losses, dim=-1, descending=descending, stable=True).indices
    rank_bins = torch.arange(num_samples) * num_quantiles // num_samples
    bins = torch.empty_like(order)
    bins.scatter_(-1, order, rank_bins.expand_as(order).contiguous())
    return bins


def quantile_sizes(num_samples: int, num_quantiles: int) -> Tensor:
    """How many samples each quantile holds when `quantile_bins` splits `num_samples` losses.

    Args:
        num_samples: N >= 1.
        num_quantiles: q, an int in [1, N].

    Returns:
        [q] int64 sizes, floor or ceil of N / q each, summing to N.

    Raises:
        TypeError: `num_quantiles` is not an int.
        ValueError: N < 1 or `num_quantiles` outside [1, N].
    """
    _check_num_quantiles(num_quantiles, num_samples)
    ranks = torch.arange(num_samples)
    return torch.bincount(ranks * num_quantiles // num_samples, minlength=num_quantiles)


def percent_match(
    losses: Tensor,
    num_quantiles: int = 10,
    first_epoch: int = 1,
    last_epoch: int | None = None,
    descending: bool = True,
) -> Tensor:
    """Percent of each quantile's members that stay in that quantile in every epoch of the range.

    For quantile j this is 100 * |members_j(first) ∩ ... ∩ members_j(last)| / size_j; a range
    of one epoch gives 100.

    Args:
        losses: [E, N] float per-sample losses without NaN, one row per epoch.
        num_quantiles: q, an int in [1, N].
        first_epoch, last_epoch: the range, 1-based and inclusive (`last_epoch` None: E).
        descending: quantile 0 holds the highest losses (else the lowest).

    Returns:
        [q] float64 percentages in [0, 100].

    Raises:
        TypeError, ValueError: as `quantile_bins` (but `losses` must be 2-D), or an epoch
            outside [1, E], or `first_epoch` > `last_epoch`.
    """
    losses = _check_losses(losses, ndim=(2,))
    rows = _epoch_rows(len(losses), first_epoch, last_epoch)
    bins = quantile_bins(losses[rows], num_quantiles, descending)
    stayed = (bins == bins[0]).all(dim=0)
    kept = torch.bincount(bins[0][stayed], minlength=num_quantiles)
    return 100.0 * kept.double() / quantile_sizes(losses.shape[1], num_quantiles).double()


def chance_percent_match(num_samples: int, num_quantiles: int = 10, num_epochs: int = 2) -> Tensor:
    """Expected `percent_match` over `num_epochs` epochs if each epoch's ranking were random.

    With independent uniformly random rankings, a sample lies in quantile j (size s_j) in one
    epoch with probability s_j / N, so a member of quantile j in the first epoch stays there in
    the other k - 1 epochs with probability (s_j / N)^(k-1): exactly 100 * (s_j / N)^(k-1)
    percent ((1/q)^(k-1) when q divides N).

    Args:
        num_samples: N >= 1.
        num_quantiles: q, an int in [1, N].
        num_epochs: k >= 1 epochs in the range.

    Returns:
        [q] float64 percentages in (0, 100].

    Raises:
        TypeError: `num_quantiles` is not an int.
        ValueError: `num_epochs` < 1, N < 1 or `num_quantiles` outside [1, N].
    """
    if num_epochs < 1:
        raise ValueError(f"num_epochs must be >= 1, got {num_epochs}")
    share = quantile_sizes(num_samples, num_quantiles).double() / num_samples
    return 100.0 * share ** (num_epochs - 1)


def quantile_transitions(
    losses: Tensor,
    num_quantiles: int = 10,
    from_epoch: int = 1,
    to_epoch: int | None = None,
    descending: bool = True,
) -> Tensor:
    """Where each quantile's members went between two epochs.

    The diagonal is the two-epoch percent match / 100; mass far from the diagonal means samples
    swapped from hard to easy (or back).

    Args:
        losses: [E, N] float per-sample losses without NaN, one row per epoch.
        num_quantiles: q, an int in [1, N].
        from_epoch, to_epoch: 1-based epochs in [1, E] (`to_epoch` None: E).
        descending: quantile 0 holds the highest losses (else the lowest).

    Returns:
        [q, q] float64: entry [i, j] is the fraction of quantile i in `from_epoch` that lies in
        quantile j in `to_epoch`; every row sums to 1.

    Raises:
        TypeError, ValueError: as `percent_match`.
    """
    losses = _check_losses(losses, ndim=(2,))
    to_epoch = len(losses) if to_epoch is None else to_epoch
    _check_epoch(from_epoch, len(losses), "from_epoch")
    _check_epoch(to_epoch, len(losses), "to_epoch")
    bins = quantile_bins(losses[[from_epoch - 1, to_epoch - 1]], num_quantiles, descending)
    counts = torch.bincount(bins[0] * num_quantiles + bins[1], minlength=num_quantiles**2)
    counts = counts.reshape(num_quantiles, num_quantiles).double()
    return counts / counts.sum(dim=1, keepdim=True)


class LossRecorder(SampleMethod):
    """Keeps every sample's training loss, one row per epoch: `fit(..., methods=[recorder])`.

    Losses are stored by dataset index (through a `LossTracker`), so the order batches come in
    does not matter. A loss is the one computed in the forward pass of the training step, before
    that step's update, as in Zakka's Loss Patterns notebook (kevinzakka/blog-code, pr-lr).

    Args:
        num_samples: N >= 0, the dataset size.

    Raises:
        ValueError: `num_samples` < 0.
    """

    def __init__(self, num_samples: int):
        self.tracker = LossTracker(num_samples)
        self.rows: list[Tensor] = []

    def objective(self, index: Tensor, losses: Tensor) -> None:
        """Record the batch's losses (an observer: the loop minimises what another method says).

        Args:
            index: [B] dataset indices in [0, N).
            losses: [B] finite per-sample losses (detached before they are stored).

        Returns:
            None.

        Raises:
            ValueError: the counts differ, an index is out of range or a loss is not finite.
        """
        self.tracker.update(index, losses)

    def after_epoch(self, epoch: int) -> None:
        """Store the epoch's losses as a new row of `by_epoch`.

        Args:
            epoch: the epoch that ended (unused: rows are counted, not numbered by the loop).

        Raises:
            ValueError: a sample got no loss in this epoch (persistence needs every sample once
                per epoch: drop_last=False, no subsampling); nothing is stored then.
        """
        missed = int((self.tracker.last_epoch != self.tracker.epoch).sum())
        if missed:
            raise ValueError(
                f"{missed} of {self.tracker.num_samples} samples got no loss in epoch "
                f"{len(self.rows) + 1}; persistence needs every sample once per epoch "
                f"(drop_last=False, no subsampling)"
            )
        self.rows.append(self.tracker.latest.clone())
        self.tracker.set_epoch(self.tracker.epoch + 1)

    @property
    def by_epoch(self) -> Tensor:
        """Recorded losses [epochs, N] (empty [0, N] before the first `after_epoch`)."""
        if not self.rows:
            return torch.empty(0, self.tracker.num_samples)
        return torch.stack(self.rows)

    def state_dict(self) -> dict:
        """The recorder's state, as copies.

        Returns:
            {"tracker": `LossTracker.state_dict()`, "losses": [epochs, N] float32 `by_epoch`}.
        """
        return {"tracker": self.tracker.state_dict(), "losses": self.by_epoch.clone()}

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict()`, validated completely before anything changes.

        Args:
            state: what `state_dict()` returned, for the same N.

        Raises:
            TypeError: `state` is not a dict.
            ValueError: naming the key that is missing, unexpected, mis-shaped, of another dtype
                or not finite (`losses` must be float32 [epochs, num_samples]; `tracker` as
                `LossTracker.load_state_dict` checks it).
        """
        owner = "LossRecorder"
        check_keys(state, ("tracker", "losses"), owner)
        losses = check_tensor(state, "losses", owner, shape=(None, self.tracker.num_samples),
                              dtype=torch.float32)
        self.tracker.load_state_dict(state["tracker"], prefix="tracker")
        self.rows = [row.clone() for row in losses]
