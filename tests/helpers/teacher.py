"""Toy data shared by the learning-to-teach tests."""

import torch

from curriclab.core.data import IndexedDataset


def _blobs(n: int, seed: int) -> IndexedDataset:
    generator = torch.Generator().manual_seed(seed)
    targets = torch.arange(3).repeat(n // 3 + 1)[:n]
    centres = torch.tensor([[0.0, 2.0], [2.0, 0.0], [-2.0, -2.0]])
    return IndexedDataset(centres[targets] + torch.randn(n, 2, generator=generator), targets)
