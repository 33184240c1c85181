"""The named splits of a study's data: train / validation / holdout carved from the official
training split, test from the official test split (for the toy blobs: one seeded draw each);
loaded once per `DataSpec` (cached)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor

from curriclab.core.data import (
    IndexedDataset,
    corrupt_labels,
    load_images,
    relabel_into_classes,
    spl_toy_data,
    stratified_split,
    stratified_subset,
)
from curriclab.experiments.harness.spec import BLOBS, DataSpec

__all__ = ["Splits", "load_splits"]


@dataclass(frozen=True)
class Splits:
    """The data sets of a study.

    Attributes:
        train: the training split.
        validation: the split every choice is made on (may be empty).
        holdout: a further split for methods that need one (e.g. RHO-LOSS's irreducible-loss
            model); empty unless the spec asks for one.
        test: read once per final model.
        corrupted: bool [len(train)], the training samples whose label `label_noise` moved (all
            False without noise).
    """

    train: IndexedDataset
    validation: IndexedDataset
    holdout: IndexedDataset
    test: IndexedDataset
    corrupted: Tensor

    @property
    def num_classes(self) -> int:
        """Classes of the source (the test split holds every class)."""
        return self.test.num_classes

    def named(self, split: str) -> IndexedDataset:
        """The split called `split`.

        Args:
            split: "train", "validation", "holdout" or "test".

        Returns:
            That data set.

        Raises:
            ValueError: any other name.
        """
        if split not in ("train", "validation", "holdout", "test"):
            raise ValueError(f"split must be train, validation, holdout or test, got {split!r}")
        return getattr(self, split)


def _carve(pool: IndexedDataset, size: int, seed: int) -> tuple[IndexedDataset, IndexedDataset]:
    """A stratified part of `size` items and the rest (both re-indexed; sources kept)."""
    if size == 0:
        return pool.subset(torch.empty(0, dtype=torch.long)), pool
    if size >= len(pool):
        raise ValueError(f"cannot carve {size} samples from a pool of {len(pool)}")
    return stratified_split(pool, size, seed)


@functools.lru_cache(maxsize=8)
def load_splits(spec: DataSpec) -> Splits:
    """The splits `spec` describes (cached per spec: loading MNIST takes seconds).

    Args:
        spec: the data spec; its `split_seed` seeds every split and the label noise.

    Returns:
        Splits whose data sets are indexed 0..n-1, each remembering its source indices.

    Raises:
        ValueError: the sizes do not fit in the official splits.
        FileNotFoundError: the data files are missing (see `curriclab.core.data.load_images`).
    """
    if spec.source == BLOBS:
        return _blob_splits(spec)
    pool = load_images(spec.source, train=True)
    validation, pool = _carve(pool, spec.validation_size, spec.split_seed)
    holdout, pool = _carve(pool, spec.holdout_size, spec.split_seed + 1)
    if spec.train_size is not None:
        if spec.train_size > len(pool):
            raise ValueError(f"train_size {spec.train_size} exceeds the {len(pool)} samples left "
                             f"after validation and holdout")
        pool = stratified_subset(pool, spec.train_size, spec.split_seed + 2)
    test = load_images(spec.source, train=False)
    if spec.test_size is not None:
        test = stratified_subset(test, spec.test_size, spec.split_seed + 3)
    num_classes = test.num_classes
    train, corrupted = pool, torch.zeros(len(pool), dtype=torch.bool)
    if spec.label_noise > 0:
        noisy, corrupted = _noisy_labels(pool.targets, spec, num_classes, spec.split_seed + 4)
        train = pool.with_targets(noisy)
        if spec.noisy_holdout:
            validation = _noisy(validation, spec, num_classes, spec.split_seed + 5)
            holdout = _noisy(holdout, spec, num_classes, spec.split_seed + 6)
    return Splits(train, validation, holdout, test, corrupted)


BLOB_TRAIN_SIZE = 10_000
"""Training (and test) points of the toy blobs when the spec leaves the size open."""


def _blob_splits(spec: DataSpec) -> Splits:
    """Every split its own draw of the blobs: train with seed `split_seed`, validation, holdout
    and test with `split_seed` + 1, 2, 3; the label noise only on train (and on validation and
    holdout with `noisy_holdout`). Train is exactly `spl_toy_data(train_size // 2, count, seed)`
    with count = round(label_noise * train_size) farthest points flipped (pattern "farthest")."""
    train, corrupted = _blobs(spec.train_size or BLOB_TRAIN_SIZE, spec, spec.split_seed, True)
    validation = _blobs(spec.validation_size, spec, spec.split_seed + 1, spec.noisy_holdout)[0]
    holdout = _blobs(spec.holdout_size, spec, spec.split_seed + 2, spec.noisy_holdout)[0]
    test = _blobs(spec.test_size or BLOB_TRAIN_SIZE, spec, spec.split_seed + 3, False)[0]
    return Splits(train, validation, holdout, test, corrupted)


def _blobs(size: int, spec: DataSpec, seed: int, noisy: bool) -> tuple[IndexedDataset, Tensor]:
    """`size` blob points (half per class) drawn with `seed`, with the spec's noise if `noisy`."""
    if size == 0:
        return IndexedDataset(torch.empty(0, 2), torch.empty(0, dtype=torch.long)), torch.empty(
            0, dtype=torch.bool)
    share = spec.label_noise if noisy else 0.0
    farthest = round(share * size) if spec.noise_pattern == "farthest" else 0
    data, flipped = spl_toy_data(size // 2, n_anomalies=farthest, seed=seed)
    if share > 0 and spec.noise_pattern == "uniform":
        targets, flipped = corrupt_labels(data.targets, share, num_classes=2, seed=seed + 4)
        data = data.with_targets(targets)
    return data, flipped


def _noisy_labels(targets: Tensor, spec: DataSpec, num_classes: int,
                  seed: int) -> tuple[Tensor, Tensor]:
    """Uniform noise (`corrupt_labels`), or class-dependent noise into `spec.noise_classes`."""
    if spec.noise_classes:
        return relabel_into_classes(targets, spec.noise_classes, spec.label_noise, seed)
    return corrupt_labels(targets, spec.label_noise, num_classes, seed)


def _noisy(data: IndexedDataset, spec: DataSpec, num_classes: int, seed: int) -> IndexedDataset:
    if len(data) == 0:
        return data
    return data.with_targets(_noisy_labels(data.targets, spec, num_classes, seed)[0])
