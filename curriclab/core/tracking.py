"""Per-sample loss records keyed by dataset index.

Several methods need "the loss of sample i": SGD-S samples by it, persistence compares it across
epochs, noise detectors rank by it. One small class keeps it, so they all agree on what it means.
"""

from __future__ import annotations

import torch
from torch import Tensor

from curriclab.core.protocol import SampleMethod

__all__ = ["LossTracker"]


class LossTracker(SampleMethod):
    """Latest loss, exponential moving average and epoch last seen, for each of `num_samples`.

    Samples never seen have `latest = unseen_value` (default NaN, so they cannot be mistaken for
    a real loss), `average = unseen_value` and `last_epoch = -1`. The moving average starts at
    the first observed loss and then follows `average = momentum * average + (1 - momentum) * loss`
    (momentum 0 makes it equal to the latest loss).
    """

    def __init__(self, num_samples: int, momentum: float = 0.0, unseen_value: float = float("nan")):
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        self.num_samples = num_samples
        self.momentum = momentum
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
        """Record per-sample `losses` (any shape [B]) for dataset `indices` in the current epoch.

        If an index occurs several times in one call, the last occurrence wins.
        """
        indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        losses = torch.as_tensor(losses).detach().reshape(-1).to(self.latest.dtype).cpu()
        if indices.shape != losses.shape:
            raise ValueError(
                f"indices and losses must match: got {indices.numel()} indices and {losses.numel()} losses"
            )
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.num_samples):
            raise ValueError(f"indices must lie in [0, {self.num_samples})")
        new = ~self.seen[indices]
        previous = torch.where(new, losses, self.average[indices])
        self.average[indices] = self.momentum * previous + (1.0 - self.momentum) * losses
        self.latest[indices] = losses
        self.last_epoch[indices] = self.epoch

    def objective(self, index: Tensor, losses: Tensor) -> None:
        """As a plugged-in method: record the batch's losses (an observer, so None)."""
        self.update(index, losses)

    def after_epoch(self, epoch: int) -> None:
        """As a plugged-in method: record later losses under the next epoch."""
        self.set_epoch(epoch + 1)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch number that subsequent updates are recorded under."""
        self.epoch = int(epoch)

    def state_dict(self) -> dict:
        return {
            "momentum": self.momentum,
            "unseen_value": self.unseen_value,
            "latest": self.latest.clone(),
            "average": self.average.clone(),
            "last_epoch": self.last_epoch.clone(),
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["latest"].shape != (self.num_samples,):
            raise ValueError(
                f"state is for {state['latest'].numel()} samples, this tracker has {self.num_samples}"
            )
        self.momentum = state["momentum"]
        self.unseen_value = state["unseen_value"]
        self.latest = state["latest"].clone()
        self.average = state["average"].clone()
        self.last_epoch = state["last_epoch"].clone()
        self.epoch = state["epoch"]
