"""Shared by the sampler, statistics and study tests of SGD-S and InfoBatch."""

import torch

SEED_ALPHA = 1e-3  # fixed seeds: a false alarm would need a 1-in-1000 draw


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _feed(sampler, losses: torch.Tensor) -> None:
    """Record every sample's fixed loss, as a full pass would."""
    sampler.update(torch.arange(len(losses)), losses)


def _counts(indices: torch.Tensor, n: int) -> torch.Tensor:
    return torch.bincount(indices, minlength=n)

