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
    """The samples InfoBatch may prune: seen ones whose loss is below the mean seen loss.

    Args:
        losses: [N] per-sample losses, NaN for never-seen samples.

    Returns:
        [N] bool mask (all False if no sample is seen).
    """
    seen = ~torch.isnan(losses)
    if not bool(seen.any()):
        return torch.zeros_like(seen)
    return seen & (torch.nan_to_num(losses, nan=math.inf) < losses[seen].mean())


class InfoBatchSampler(LossDrivenSampler):
    """Random pruning of below-mean-loss samples with 1 / (1 - r) rescaling; full data once
    `epoch >= delta * total_epochs`. Yields a random permutation of the kept samples.

    The below-mean test reads `plan_losses`: the latest losses, or with `momentum` > 0 their
    exponential moving average.

    Args:
        num_samples: N >= 0, the dataset size.
        total_epochs: the run's epochs (>= 1), which `delta` is a share of.
        prune_ratio: r in [0, 1), the probability of dropping a below-mean sample.
        delta: in [0, 1]: epochs below `delta * total_epochs` prune, the rest anneal (all
            data, weight 1).
        generator: the private generator (default: seeded from torch's global RNG).
        momentum, num_replicas, rank, drop_last, verify_across_ranks: as `LossDrivenSampler`.

    Raises:
        TypeError: `num_samples` or `total_epochs` is not an int, or `prune_ratio` not a number.
        ValueError: naming the argument out of range (as listed above, and those of
            `LossDrivenSampler`).
    """

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
        verify_across_ranks: bool = True,
    ):
        self.total_epochs = check_count("total_epochs", total_epochs, minimum=1)
        self.prune_ratio = check_fraction("prune_ratio", prune_ratio)
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 <= delta <= 1:
            raise ValueError(f"delta must lie in [0, 1], got {delta}")
        self.delta = float(delta)
        super().__init__(num_samples, generator, momentum, num_replicas=num_replicas, rank=rank,
                         drop_last=drop_last, verify_across_ranks=verify_across_ranks)

    @property
    def pruning_epochs(self) -> int:
        """How many epochs prune: the integers below `delta * total_epochs`, counted in integers so
        that float rounding cannot add one (0.55 * 100 is 55.00000000000001 in floats, yet epoch
        55 must anneal)."""
        return math.ceil(self.delta * self.total_epochs - 1e-9)

    def prunes_in(self, epoch: int) -> bool:
        """Whether `epoch` prunes (comes before the final full-data annealing epochs).

        Args:
            epoch: an epoch number (any int; negative ones prune too).

        Returns:
            True iff `epoch < pruning_epochs`.
        """
        return epoch < self.pruning_epochs

    def _make_plan(self, epoch: int) -> EpochPlan:
        weights = torch.ones(self.num_samples)
        candidates = below_mean(self.plan_losses) if self.prunes_in(epoch) else torch.zeros(
            self.num_samples, dtype=torch.bool)
        dropped = candidates & (torch.rand(self.num_samples, generator=self.generator)
                                < self.prune_ratio)
        weights[candidates & ~dropped] = 1.0 / (1.0 - self.prune_ratio)
        kept = torch.nonzero(~dropped).squeeze(1)
        order = torch.randperm(len(kept), generator=self.generator)
        return EpochPlan(kept[order], weights)
