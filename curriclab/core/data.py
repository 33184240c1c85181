"""Indexed, in-memory datasets: every item is `(index, x, y)`.

Per-sample state (SPL weights, recorded losses, data parameters) is keyed by the dataset index,
never by a position inside a batch or a sampler draw, so every batch carries the indices of its
samples. Data sets that fit in memory live as tensors and a whole batch is gathered with one
tensor index (`__getitems__`), which keeps the data path cheap on a small CPU.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = [
    "check_idx_files",
    "corrupt_labels",
    "DATA_ENV",
    "default_data_root",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "IMAGE_SOURCES",
    "ImageSource",
    "IndexedDataset",
    "load_fashion_mnist",
    "load_images",
    "load_mnist",
    "make_loader",
    "missing_mnist_files",
    "relabel_into_classes",
    "MNIST_MEAN",
    "MNIST_STD",
    "spl_toy_data",
    "stratified_positions",
    "stratified_split",
    "stratified_subset",
]

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530
DATA_ENV = "CURRICLAB_DATA"
MNIST_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

IDX_LAYOUT = {"images": (0x0803, (28, 28)), "labels": (0x0801, ())}
"""Each IDX file kind's magic number (unsigned bytes, 3 or 1 dimensions) and per-item shape."""
SPLIT_SIZES = {True: 60000, False: 10000}
"""Items in the training and the test split of MNIST and Fashion-MNIST."""
NUM_LABELS = 10

Batch = tuple[Tensor, Tensor, Tensor]


class IndexedDataset(Dataset):
    """Tensors `inputs[N, ...]` and `targets[N]` whose items are `(index, x, y)`.

    `source_indices[i]` is the index of item `i` in the data set it was taken from (for a data set
    built directly from tensors it is `i`), so a subset's samples can always be traced back.

    Args:
        inputs: [N, ...], any dtype (held, not copied).
        targets: [N] labels (int64 class indices for the package's losses).
        source_indices: [N] int64; default 0..N-1.

    Raises:
        TypeError: `inputs` or `targets` is not a tensor.
        ValueError: `targets` is not 1-D, its length differs from `inputs`', or `source_indices`
            does not have `targets`' shape.
    """

    def __init__(self, inputs: Tensor, targets: Tensor, source_indices: Tensor | None = None):
        if not isinstance(inputs, Tensor) or not isinstance(targets, Tensor):
            raise TypeError("inputs and targets must be torch tensors")
        if targets.ndim != 1 or len(inputs) != len(targets):
            raise ValueError(
                f"targets must be 1-D with one entry per input; got inputs {tuple(inputs.shape)} "
                f"and targets {tuple(targets.shape)}"
            )
        if source_indices is None:
            source_indices = torch.arange(len(targets))
        if source_indices.shape != targets.shape:
            raise ValueError("source_indices must have one entry per sample")
        self.inputs = inputs
        self.targets = targets
        self.source_indices = source_indices

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> Batch:
        index = int(index)
        return torch.tensor(index), self.inputs[index], self.targets[index]

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        """Gather a whole batch with one tensor index (used by DataLoader's batched fetch)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return index, self.inputs[index], self.targets[index]

    @property
    def num_classes(self) -> int:
        """Number of classes, taken as the largest target + 1."""
        return int(self.targets.max()) + 1 if len(self) else 0

    def subset(self, indices: Sequence[int] | Tensor) -> IndexedDataset:
        """A new data set of the given items, re-indexed 0..n-1, that remembers their source
        indices.

        Args:
            indices: positions in this data set, each in [0, len(self)) (repeats allowed).

        Returns:
            The subset, in the order of `indices` (its tensors are copies, by tensor indexing).

        Raises:
            ValueError: a position outside [0, len(self)).
        """
        index = torch.as_tensor(indices, dtype=torch.long)
        if index.numel() and (index.min() < 0 or index.max() >= len(self)):
            raise ValueError(f"indices must lie in [0, {len(self)}); got "
                             f"{index.min()}..{index.max()}")
        return IndexedDataset(self.inputs[index], self.targets[index], self.source_indices[index])

    def with_targets(self, targets: Tensor) -> IndexedDataset:
        """The same inputs with other labels (e.g. corrupted ones); inputs are shared, not copied.

        Args:
            targets: [len(self)] labels.

        Returns:
            A data set with the same inputs and source indices.

        Raises:
            ValueError: `targets` is not 1-D with one entry per input.
        """
        return IndexedDataset(self.inputs, torch.as_tensor(targets), self.source_indices)


def collate_batch(batch: Batch) -> Batch:
    """`collate_fn` for IndexedDataset: `__getitems__` already returns a stacked batch.

    Args:
        batch: (index [B], x [B, ...], y [B]) from `IndexedDataset.__getitems__`.

    Returns:
        `batch` itself.
    """
    return batch


def make_loader(
    dataset: IndexedDataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    sampler: Sampler | Iterable[int] | None = None,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader yielding `(index, x, y)` batches gathered by one tensor index each.

    Pass `sampler` to draw dataset indices your own way (e.g. an SGD-S sampler); otherwise
    `shuffle` picks a random permutation every epoch (seeded by `generator`).

    Args:
        dataset: the data set (its `__getitems__` gathers each batch).
        batch_size: samples per batch (>= 1); the last batch may be smaller unless `drop_last`.
        shuffle: a fresh random order every epoch (not with `sampler`).
        sampler: yields data set indices; its order is the loader's.
        generator: seeds the shuffling (the global generator if None).
        drop_last: drop a last, incomplete batch.

    Returns:
        The DataLoader (index int64 [B], x [B, ...], y [B] per batch).

    Raises:
        ValueError: `batch_size` < 1, or both `sampler` and `shuffle=True`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if sampler is not None and shuffle:
        raise ValueError("give either sampler or shuffle=True, not both")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        generator=generator,
        drop_last=drop_last,
        collate_fn=collate_batch,
    )


def default_data_root() -> Path:
    """`$CURRICLAB_DATA` if set, else a per-user cache directory (~/.cache/curriclab).

    Returns:
        The data root (`~` expanded); it need not exist.
    """
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "curriclab"


@dataclass(frozen=True)
class ImageSource:
    """An MNIST-format image data set on disk: its torchvision folder name under the data root,
    the torchvision class that reads it, and the per-pixel mean and std used to normalise it.

    Attributes:
        folder: the torchvision class name, which is also its folder ("MNIST", "FashionMNIST").
        mean: the training images' per-pixel mean, in [0, 1] units.
        std: their per-pixel standard deviation (> 0).
    """

    folder: str
    mean: float
    std: float

    def torchvision_class(self) -> type:
        """The torchvision data set class that reads (and downloads) these files.

        Returns:
            `torchvision.datasets.<folder>` (imported on first use).
        """
        from torchvision import datasets

        return getattr(datasets, self.folder)


IMAGE_SOURCES = {
    "mnist": ImageSource("MNIST", MNIST_MEAN, MNIST_STD),
    "fashion_mnist": ImageSource("FashionMNIST", FASHION_MNIST_MEAN, FASHION_MNIST_STD),
}
"""The image data sets curriclab loads, by name; both use MNIST's four IDX file names."""


def missing_mnist_files(root: str | Path, train: bool, name: str = "mnist") -> list[str]:
    """Names of the raw IDX files of data set `name` (a key of `IMAGE_SOURCES`) that are absent
    from `<root>/<folder>/raw` (e.g. `<root>/MNIST/raw`, `<root>/FashionMNIST/raw`).

    Args:
        root: the data root.
        train: the training split's two files, else the test split's.
        name: a key of `IMAGE_SOURCES`.

    Returns:
        The missing file names (uncompressed IDX, e.g. "train-images-idx3-ubyte"); [] if none.

    Raises:
        ValueError: an unknown `name`.
    """
    raw = Path(root) / _source(name).folder / "raw"
    return [file for file in MNIST_FILES[train] if not (raw / file).is_file()]


def _source(name: str) -> ImageSource:
    if name not in IMAGE_SOURCES:
        raise ValueError(f"name must be one of {sorted(IMAGE_SOURCES)}, got {name!r}")
    return IMAGE_SOURCES[name]


def check_idx_files(root: str | Path, train: bool, name: str = "mnist") -> None:
    """Check the two raw IDX files of a split before torchvision reads them: each must hold
    the IDX header of its kind (magic number 0x0803 for images, 0x0801 for labels), the split's
    item count (60 000 or 10 000), 28 x 28 images, exactly as many bytes as the header promises,
    and labels in 0..9.

    Args:
        root: the data root (the files are in `<root>/<folder>/raw/`).
        train: the training split or the test split.
        name: a key of `IMAGE_SOURCES`.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a file is damaged; the message names the file, what was expected and what
            it holds, and how to replace it.
    """
    source = _source(name)
    raw = Path(root) / source.folder / "raw"
    images, labels = MNIST_FILES[train]
    count = SPLIT_SIZES[train]
    _check_idx_file(raw / images, "images", count, source)
    label_bytes = _check_idx_file(raw / labels, "labels", count, source)
    if label_bytes.numel() and int(label_bytes.max()) >= NUM_LABELS:
        position = int(torch.argmax((label_bytes >= NUM_LABELS).int()))
        _refuse(raw / labels, f"labels in 0..{NUM_LABELS - 1}",
                f"label {int(label_bytes[position])} at item {position}", source)


def _check_idx_file(path: Path, kind: str, count: int, source: ImageSource) -> Tensor:
    """Check one IDX file's header and size; return its payload for a labels file (else empty)."""
    magic, item_shape = IDX_LAYOUT[kind]
    dims = (count, *item_shape)
    header_size = 4 + 4 * len(dims)
    expected = f"an IDX {kind} file of {header_size + math.prod(dims)} bytes: magic number " \
               f"0x{magic:08x}, dimensions {list(dims)}"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: expected {expected}. {_supply(path, source)}")
    size = path.stat().st_size
    with path.open("rb") as file:
        header = file.read(header_size)
        payload = file.read() if kind == "labels" else b""
    if len(header) < header_size:
        _refuse(path, expected, f"only {size} bytes (no complete header)", source)
    found_magic = int.from_bytes(header[:4], "big")
    if found_magic != magic:
        _refuse(path, expected, f"magic number 0x{found_magic:08x}", source)
    found_dims = [int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big") for i in range(len(dims))]
    if found_dims != list(dims):
        _refuse(path, expected, f"dimensions {found_dims}", source)
    if size != header_size + math.prod(dims):
        _refuse(path, expected, f"{size} bytes (truncated or with extra bytes)", source)
    return torch.frombuffer(bytearray(payload), dtype=torch.uint8) if payload else torch.empty(0)


def _supply(path: Path, source: ImageSource) -> str:
    """How to supply a good copy of `path`."""
    mirror = getattr(source.torchvision_class(), "mirrors", [""])[0]
    return (f"Replace it with the official uncompressed file ({mirror}{path.name}.gz, gunzipped), "
            f"or delete it and load with download allowed; set {DATA_ENV} to the root that holds "
            f"{source.folder}/raw/.")


def _refuse(path: Path, expected: str, found: str, source: ImageSource) -> None:
    raise ValueError(f"{path} is damaged: expected {expected}; it holds {found}. "
                     f"{_supply(path, source)}")


def load_images(
    name: str, train: bool = True, root: str | Path | None = None, download: bool | None = None
) -> IndexedDataset:
    """An MNIST-format data set as an IndexedDataset of normalised float images [N, 1, 28, 28]
    and int64 labels.

    Args:
        name: a key of `IMAGE_SOURCES` ("mnist" or "fashion_mnist").
        train: the training split (60 000 images) or the test split (10 000).
        root: the data root; else `$CURRICLAB_DATA`, else a per-user cache directory. The files
            are read from torchvision's layout `<root>/<folder>/raw/` (uncompressed IDX).
        download: None tries torchvision's download only when files are missing; False never
            downloads.

    Returns:
        The data set, indexed 0..N-1 in file order.

    Raises:
        ValueError: an unknown `name`, or a damaged file (`check_idx_files`: the message names
            the file, what was expected and how to replace it).
        FileNotFoundError: files are missing and could not be fetched; the message names the
            missing files, the directory searched and `CURRICLAB_DATA`.
    """
    source = _source(name)
    reader = source.torchvision_class()
    root = Path(root).expanduser() if root is not None else default_data_root()
    missing = missing_mnist_files(root, train, name)
    if missing:
        reason = "download=False" if download is False else None
        if download is not False:
            try:
                reader(str(root), train=train, download=True)
            except Exception as error:  # noqa: BLE001 - no network, no write access, a mirror down...
                reason = f"download failed: {error}"
        missing = missing_mnist_files(root, train, name)
        if missing:
            raise FileNotFoundError(
                f"{source.folder} files {missing} are missing from {root / source.folder / 'raw'} "
                f"({reason}). Put the four official files (uncompressed IDX) in "
                f"<root>/{source.folder}/raw/ and set {DATA_ENV}=<root>, or pass root=..., or "
                f"allow the download."
            )
    check_idx_files(root, train, name)
    data = reader(str(root), train=train, download=False)
    images = data.data.unsqueeze(1).float().div_(255.0).sub_(source.mean).div_(source.std)
    return IndexedDataset(images, data.targets.long())


def load_mnist(
    train: bool = True, root: str | Path | None = None, download: bool | None = None
) -> IndexedDataset:
    """MNIST as an IndexedDataset: `load_images("mnist", train, root, download)`.

    Args:
        train, root, download: as in `load_images`.

    Returns:
        Normalised float images [N, 1, 28, 28] and int64 labels in 0..9 (N = 60 000 or 10 000).

    Raises:
        ValueError, FileNotFoundError: as in `load_images`.
    """
    return load_images("mnist", train, root, download)


def load_fashion_mnist(
    train: bool = True, root: str | Path | None = None, download: bool | None = None
) -> IndexedDataset:
    """Fashion-MNIST (Xiao et al. 2017) as an IndexedDataset: `load_images("fashion_mnist",
    train, root, download)`, the same shapes and file names as `load_mnist`.

    Args:
        train, root, download: as in `load_images`; the files are read from
            `<root>/FashionMNIST/raw/`.

    Returns:
        Normalised float images [N, 1, 28, 28] and int64 labels 0..9 (ten kinds of clothing);
        N = 60 000 or 10 000.

    Raises:
        FileNotFoundError: Fashion-MNIST's files are missing (the message names them).
        ValueError: a damaged file.
    """
    return load_images("fashion_mnist", train, root, download)


def stratified_positions(targets: Tensor, size: int, seed: int = 0) -> Tensor:
    """Sorted positions of a seeded random sample of `size` items that keeps each class's share.

    Class quotas are rounded by largest remainders, so they add up to `size` exactly.

    Args:
        targets: [N] class labels.
        size: how many positions, in [0, N].
        seed: seeds the draw (the same seed gives the same positions).

    Returns:
        int64 [size], sorted and distinct, in [0, N).

    Raises:
        ValueError: `size` outside [0, N].
    """
    n = len(targets)
    if not 0 <= size <= n:
        raise ValueError(f"size must lie in [0, {n}], got {size}")
    generator = torch.Generator().manual_seed(seed)
    classes, counts = torch.unique(targets, return_counts=True)
    exact = counts.double() * size / n
    quota = exact.floor().long()
    quota[torch.argsort(exact - quota, descending=True)[: size - int(quota.sum())]] += 1
    chosen = [torch.empty(0, dtype=torch.long)]
    for label, take in zip(classes.tolist(), quota.tolist()):
        members = torch.nonzero(targets == label).squeeze(1)
        chosen.append(members[torch.randperm(len(members), generator=generator)[:take]])
    return torch.cat(chosen).sort().values


def stratified_subset(dataset: IndexedDataset, size: int, seed: int = 0) -> IndexedDataset:
    """A seeded, class-balanced random subset of `size` items (see `stratified_positions`).

    The result is indexed 0..size-1; `result.source_indices` maps back to the items of the data
    set the input was built from.

    Args:
        dataset: the data set to draw from.
        size: how many items, in [0, len(dataset)].
        seed: seeds the draw.

    Returns:
        The subset, its items in their order in `dataset`.

    Raises:
        ValueError: `size` outside [0, len(dataset)].
    """
    return dataset.subset(stratified_positions(dataset.targets, size, seed))


def stratified_split(
    dataset: IndexedDataset, first_size: int, seed: int = 0
) -> tuple[IndexedDataset, IndexedDataset]:
    """Split into a stratified random part of `first_size` items and the rest (e.g. dev / train).

    Args:
        dataset: the data set to split.
        first_size: items in the first part, in [0, len(dataset)].
        seed: seeds the draw.

    Returns:
        (first part, the rest): disjoint, together every item once, each in `dataset`'s order.

    Raises:
        ValueError: `first_size` outside [0, len(dataset)].
    """
    first = stratified_positions(dataset.targets, first_size, seed)
    rest = torch.ones(len(dataset), dtype=torch.bool)
    rest[first] = False
    return dataset.subset(first), dataset.subset(torch.nonzero(rest).squeeze(1))


def spl_toy_data(
    n_per_class: int = 5000, n_anomalies: int = 1, seed: int = 0
) -> tuple[IndexedDataset, Tensor]:
    """Two unit-variance Gaussian blobs centred at (0, 0) (label 0) and (3, 3) (label 1).

    The `n_anomalies` points farthest from (3, 3) get their label flipped (the SPL demo uses one).

    Args:
        n_per_class: points per blob (>= 1).
        n_anomalies: flipped labels, in [0, 2 * n_per_class].
        seed: seeds the points.

    Returns:
        (data set of float inputs [2 * n_per_class, 2] and int64 labels, class 0 first; bool mask
        [2 * n_per_class] of the flipped points).

    Raises:
        ValueError: `n_per_class` < 1 or `n_anomalies` out of range.
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    if not 0 <= n_anomalies <= 2 * n_per_class:
        raise ValueError(f"n_anomalies must lie in [0, {2 * n_per_class}], got {n_anomalies}")
    generator = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [3.0, 3.0]])
    targets = torch.arange(2).repeat_interleave(n_per_class)
    inputs = centres[targets] + torch.randn(2 * n_per_class, 2, generator=generator)
    distance = (inputs - centres[1]).norm(dim=1)
    flipped = torch.zeros(len(targets), dtype=torch.bool)
    flipped[torch.argsort(distance, descending=True)[:n_anomalies]] = True
    targets = torch.where(flipped, 1 - targets, targets)
    return IndexedDataset(inputs, targets), flipped


def corrupt_labels(
    targets: Tensor, fraction: float, num_classes: int, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Move exactly round(fraction * N) labels, chosen at random, to a different class (uniformly).

    Args:
        targets: [N] labels in [0, num_classes) (not modified).
        fraction: the share of labels to move, in [0, 1].
        num_classes: the number of classes (>= 2).
        seed: seeds which labels move and where.

    Returns:
        (noisy targets [N], bool mask [N] of the corrupted samples); every masked label differs
        from its original.

    Raises:
        ValueError: `targets` not 1-D or outside [0, num_classes), `fraction` outside [0, 1] or
            NaN, or `num_classes` < 2.
    """
    targets = torch.as_tensor(targets)
    if targets.ndim != 1:
        raise ValueError(f"targets must be 1-D, got shape {tuple(targets.shape)}")
    if not (isinstance(fraction, (int, float)) and 0.0 <= fraction <= 1.0) or math.isnan(fraction):
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    if num_classes < 2:
        raise ValueError("num_classes must be >= 2 to move a label to another class, got "
                         f"{num_classes}")
    if targets.numel() and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(f"targets must lie in [0, {num_classes}) for num_classes={num_classes}")
    generator = torch.Generator().manual_seed(seed)
    n = len(targets)
    count = round(fraction * n)
    chosen = torch.randperm(n, generator=generator)[:count]
    shift = torch.randint(1, num_classes, (count,), generator=generator)
    noisy = targets.clone()
    noisy[chosen] = (targets[chosen] + shift) % num_classes
    mask = torch.zeros(n, dtype=torch.bool)
    mask[chosen] = True
    return noisy, mask


def relabel_into_classes(
    targets: Tensor, noisy_classes: Sequence[int], fraction: float, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Class-dependent label noise: give each class in `noisy_classes` extra samples taken at
    random from the other classes, so that a share `fraction` of the samples labelled with that
    class are wrong; every other class keeps only its own, correct labels.

    Args:
        targets: 1-D integer labels (not modified).
        noisy_classes: the labels that receive wrong samples (each must occur in `targets`).
        fraction: the share of wrong labels within each noisy class, in [0, 1).
        seed: seeds which samples are moved.

    Returns:
        (new targets, boolean mask of the relabelled samples).

    Raises:
        ValueError: `fraction` outside [0, 1), `noisy_classes` empty or naming an absent label,
            or too few samples in the other classes to relabel.
    """
    targets = torch.as_tensor(targets)
    if not isinstance(fraction, (int, float)) or not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must lie in [0, 1), got {fraction}")
    classes = torch.unique(targets).tolist()
    if not noisy_classes or any(c not in classes for c in noisy_classes):
        raise ValueError(f"noisy_classes must be a non-empty list of labels among {classes}")
    generator = torch.Generator().manual_seed(seed)
    donors = torch.nonzero(~torch.isin(targets, torch.tensor(list(noisy_classes)))).squeeze(1)
    donors = donors[torch.randperm(len(donors), generator=generator)]
    noisy = targets.clone()
    start = 0
    for label in noisy_classes:
        count = round(int((targets == label).sum()) * fraction / (1.0 - fraction))
        if start + count > len(donors):
            raise ValueError("fraction too large: too few samples in the other classes to relabel")
        noisy[donors[start:start + count]] = label
        start += count
    return noisy, noisy != targets
