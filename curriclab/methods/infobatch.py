"""An InfoBatch-style pruner (Qin et al., ICLR 2024) in the same shape as `SGDSSampler`.

Each epoch, every sample whose latest loss is below the mean recorded loss is dropped at random
with probability `prune_ratio`; the well-learned samples that stay get loss weight
1 / (1 - prune_ratio), so the expected gradient equals the full-data gradient. The final
(1 - delta) share of the epochs uses all data with weight 1 (annealing). Never-seen samples are
never pruned, so the first epoch is a plain pass over all data.
"""

from __future__ import annotations

import math

import torch

from curriclab.methods.sampling import EpochPlan, LossDrivenSampler, check_count, check_fraction

__all__ = ["below_mean", "InfoBatchSampler"]


def below_mean(losses: torch.Tensor) -> torch.Tensor:
    """Mask of seen samples (non-NaN loss) whose loss is below the mean of the seen losses."""
    seen = ~torch.isnan(losses)
    if not bool(seen.any()):
        return torch.zeros_like(seen)
    return seen & (torch.nan_to_num(losses, nan=math.inf) < losses[seen].mean())


class InfoBatchSampler(LossDrivenSampler):
    """Random pruning of below-mean-loss samples with 1 / (1 - r) rescaling; full data once
    `epoch >= delta * total_epochs`. Yields a random permutation of the kept samples."""

    def __init__(
        self,
        num_samples: int,
        total_epochs: int,
        prune_ratio: float = 0.5,
        delta: float = 0.875,
        generator: torch.Generator | None = None,
        *,
        momentum: float = 0.0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ):
        super().__init__(num_samples, generator, momentum, num_replicas=num_replicas, rank=rank,
                         drop_last=drop_last)
        self.total_epochs = check_count("total_epochs", total_epochs, minimum=1)
        self.prune_ratio = check_fraction("prune_ratio", prune_ratio)
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 <= delta <= 1:
            raise ValueError(f"delta must lie in [0, 1], got {delta}")
        self.delta = float(delta)

    @property
    def pruning_epochs(self) -> int:
        """How many epochs prune: the integers below `delta * total_epochs`, counted in integers so
        that float rounding cannot add one (0.55 * 100 is 55.00000000000001 in floats, yet epoch
        55 must anneal)."""
        return math.ceil(self.delta * self.total_epochs - 1e-9)

    def prunes_in(self, epoch: int) -> bool:
        """Whether `epoch` is a pruning epoch (before the final full-data annealing epochs)."""
        return epoch < self.pruning_epochs

    def _make_plan(self, epoch: int) -> EpochPlan:
        weights = torch.ones(self.num_samples)
        candidates = below_mean(self.sample_losses) if self.prunes_in(epoch) else torch.zeros(
            self.num_samples, dtype=torch.bool)
        dropped = candidates & (torch.rand(self.num_samples, generator=self.generator)
                                < self.prune_ratio)
        weights[candidates & ~dropped] = 1.0 / (1.0 - self.prune_ratio)
        kept = torch.nonzero(~dropped).squeeze(1)
        order = torch.randperm(len(kept), generator=self.generator)
        return EpochPlan(kept[order], weights)
