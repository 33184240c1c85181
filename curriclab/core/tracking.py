"""Per-sample loss records keyed by dataset index.

Several methods need "the loss of sample i": SGD-S samples by it, persistence compares it across
epochs, noise detectors rank by it. One small class keeps it, so they all agree on what it means.
"""

from __future__ import annotations

import torch
from torch import Tensor

from curriclab.core.protocol import SampleMethod
from curriclab.core.state import (
    check_float,
    check_int,
    check_keys,
    check_tensor,
    finite_or_raise,
    nested,
)

__all__ = ["LossTracker", "check_momentum"]


def check_momentum(value: float, name: str = "momentum") -> float:
    """Check a moving average's momentum argument.

    Args:
        value: the momentum given.
        name: the argument's name, for the message.

    Returns:
        `value`, in [0, 1).

    Raises:
        ValueError: `value` outside [0, 1) (or NaN); the message names `name`.
    """
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")
    return value


class LossTracker(SampleMethod):
    """Latest loss, exponential moving average and epoch last seen, for each of `num_samples`.

    Samples never seen have `latest = unseen_value` (default NaN, so they cannot be mistaken for
    a real loss), `average = unseen_value` and `last_epoch = -1`. The moving average starts at
    the first observed loss and then follows `average = momentum * average + (1 - momentum) * loss`
    (momentum 0 makes it equal to the latest loss).

    Non-finite losses are refused: `update` raises a ValueError and records nothing, so a NaN
    or inf can never stand in for a sample's loss (a diverged step should stop the run, not
    hide among the records).

    Args:
        num_samples: the data set's size N (>= 0); the tables are [N], keyed by dataset index.
        momentum: the moving average's momentum, in [0, 1).
        unseen_value: what `latest` and `average` hold for a sample never seen.

    Raises:
        ValueError: `num_samples` < 0 or `momentum` outside [0, 1).
    """

    def __init__(self, num_samples: int, momentum: float = 0.0, unseen_value: float = float("nan")):
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        self.num_samples = num_samples
        self.momentum = check_momentum(momentum)
        self.unseen_value = unseen_value
        self.latest = torch.full((num_samples,), unseen_value)
        self.average = torch.full((num_samples,), unseen_value)
        self.last_epoch = torch.full((num_samples,), -1, dtype=torch.long)
        self.epoch = 0

    @property
    def seen(self) -> Tensor:
        """Boolean mask of samples with at least one recorded loss."""
        return self.last_epoch >= 0

    def update(self, indices: Tensor, losses: Tensor) -> None:
        """Record per-sample `losses` for dataset `indices` in the current epoch.

        If an index occurs several times in one call, the last occurrence wins.

        Args:
            indices: B dataset indices (any shape, flattened), each in [0, num_samples).
            losses: B finite losses (any shape, flattened; detached and stored as float32 on CPU).

        Raises:
            ValueError: the counts differ, an index lies outside [0, num_samples) or a loss is
                NaN or infinite (nothing is recorded then).
        """
        indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        losses = torch.as_tensor(losses).detach().reshape(-1).to(self.latest.dtype).cpu()
        if indices.shape != losses.shape:
            raise ValueError(
                f"indices and losses must match: got {indices.numel()} indices and "
                f"{losses.numel()} losses"
            )
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.num_samples):
            raise ValueError(f"indices must lie in [0, {self.num_samples})")
        finite_or_raise("losses", losses, "LossTracker.update")
        new = ~self.seen[indices]
        previous = torch.where(new, losses, self.average[indices])
        self.average[indices] = self.momentum * previous + (1.0 - self.momentum) * losses
        self.latest[indices] = losses
        self.last_epoch[indices] = self.epoch

    def objective(self, index: Tensor, losses: Tensor) -> None:
        """As a plugged-in method: record the batch's losses (`update`); an observer, so None.

        Args:
            index: the batch's dataset indices [B].
            losses: its per-sample losses [B].

        Raises:
            ValueError: as in `update`.
        """
        self.update(index, losses)

    def after_epoch(self, epoch: int) -> None:
        """As a plugged-in method: record later losses under the next epoch.

        Args:
            epoch: the epoch that ended (0-based); later losses count for `epoch + 1`.
        """
        self.set_epoch(epoch + 1)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch number that subsequent updates are recorded under.

        Args:
            epoch: the epoch (an int >= 0).
        """
        self.epoch = int(epoch)

    def state_dict(self) -> dict:
        """Everything `load_state_dict` needs to resume.

        Returns:
            {"momentum", "unseen_value", "epoch": numbers; "latest", "average": float [N];
            "last_epoch": int64 [N]}, the tensors copied.
        """
        return {
            "momentum": self.momentum,
            "unseen_value": self.unseen_value,
            "latest": self.latest.clone(),
            "average": self.average.clone(),
            "last_epoch": self.last_epoch.clone(),
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict, prefix: str = "") -> None:
        """Restore a `state_dict()`, validated completely before anything changes.

        Args:
            state: what `state_dict` returned.
            prefix: this tracker's dotted key inside an outer state (for messages only).

        Raises:
            TypeError: `state` is not a dict.
            ValueError: naming the key that is missing, unexpected, of the wrong type, shape or
                dtype, or out of range (momentum outside [0, 1), an infinite loss, a recorded
                sample without a loss, a last_epoch below -1).
        """
        owner = "LossTracker"
        check_keys(state, ("momentum", "unseen_value", "latest", "average", "last_epoch", "epoch"),
                   owner, prefix)

        def key(name: str) -> str:
            return nested(prefix, name)

        momentum = check_float(state, "momentum", owner, low=0.0, high=1.0, high_open=True,
                               name=key("momentum"))
        unseen = check_float(state, "unseen_value", owner, allow_nan=True, allow_inf=True,
                             name=key("unseen_value"))
        epoch = check_int(state, "epoch", owner, low=0, name=key("epoch"))
        shape = (self.num_samples,)
        last_epoch = check_tensor(state, "last_epoch", owner, shape=shape, dtype=torch.long,
                                  low=-1, name=key("last_epoch"))
        seen = last_epoch >= 0
        tables = {}
        for name in ("latest", "average"):
            table = check_tensor(state, name, owner, shape=shape, dtype=self.latest.dtype,
                                 allow_nan=True, allow_inf=True, name=key(name))
            if not bool(torch.isfinite(table[seen]).all()):
                raise ValueError(f"{owner}.load_state_dict: state key '{key(name)}' must be "
                                 "finite for every recorded sample (last_epoch >= 0)")
            tables[name] = table
        self.momentum = momentum
        self.unseen_value = unseen
        self.latest = tables["latest"].clone()
        self.average = tables["average"].clone()
        self.last_epoch = last_epoch.clone()
        self.epoch = epoch
