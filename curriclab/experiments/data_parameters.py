"""Experiments of notebook 05: train on noisy labels with and without data parameters, record the
learnt temperatures, and score them as a label-noise detector (ROC / AUC).

`run_noisy_training(train, test, DataParameterSetup(...))` is the one entry point; the setup is a
frozen (hashable) dataclass so notebooks can cache runs with `functools.lru_cache`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from curriclab.core.protocol import AfterEpoch, SampleMethod
from curriclab.core.data import IndexedDataset, corrupt_labels, make_loader, stratified_subset
from curriclab.core.models import MLP
from curriclab.core.training import fit, per_sample_losses, seed_everything
from curriclab.methods.data_parameters import DataParameters

__all__ = [
    "DataParameterSetup",
    "final_accuracy",
    "make_data_parameters",
    "MODES",
    "noisy_subset",
    "NoisyRun",
    "relabel_into_classes",
    "run_noisy_training",
]

MODES = ("baseline", "class", "instance", "joint")


@dataclass(frozen=True)
class DataParameterSetup:
    """Everything a run depends on. mode: 'baseline' (plain cross-entropy), 'class', 'instance'
    or 'joint'. The data-parameter learning rates are never decayed (as in
    apple/ml-data-parameters)."""

    mode: str = "instance"
    epochs: int = 10
    seed: int = 0
    batch_size: int = 128
    model_lr: float = 0.1
    model_momentum: float = 0.9
    hidden: tuple[int, ...] = (256,)
    init_class: float = 1.0
    init_instance: float = 1.0
    lr_class: float = 0.1
    lr_instance: float = 0.2
    weight_decay_class: float = 0.0
    weight_decay_instance: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")


@dataclass
class NoisyRun:
    """What a run recorded after each epoch (row e = after epoch e + 1; row 0 of the sigma
    histories is the initial state). Sigma histories are empty for the baseline."""

    setup: DataParameterSetup
    test_accuracy: list[float]
    train_loss: list[float]
    plain_losses: Tensor  # [epochs, N] cross-entropy of the unscaled logits on the (noisy) labels
    sample_sigma: Tensor  # [epochs + 1, N]
    class_sigma: Tensor  # [epochs + 1, C]
    seconds: float = field(default=0.0)


def final_accuracy(run: NoisyRun, last: int = 3) -> float:
    """Mean clean test accuracy over the last `last` epochs (steadier than the very last epoch)."""
    if last < 1:
        raise ValueError(f"last must be >= 1, got {last}")
    tail = run.test_accuracy[-last:]
    return sum(tail) / len(tail)


def make_data_parameters(setup: DataParameterSetup, num_classes: int, num_samples: int) -> DataParameters:
    """The DataParameters a setup asks for (not for the baseline)."""
    if setup.mode == "baseline":
        raise ValueError("the baseline has no data parameters")
    return DataParameters(
        num_classes,
        num_samples,
        learn_class=setup.mode in ("class", "joint"),
        learn_instance=setup.mode in ("instance", "joint"),
        init_class=setup.init_class,
        init_instance=setup.init_instance,
        weight_decay_class=setup.weight_decay_class,
        weight_decay_instance=setup.weight_decay_instance,
    )


def run_noisy_training(
    train: IndexedDataset, test: IndexedDataset, setup: DataParameterSetup, progress: bool = False
) -> NoisyRun:
    """Train an MLP with momentum SGD on `train` (labels as given, noisy or not) under `setup`.

    After each epoch it records the clean test accuracy, every training sample's plain loss and
    (with data parameters) every sample's and class's sigma.
    """
    if len(train) == 0 or len(test) == 0:
        raise ValueError("train and test must not be empty")
    seed_everything(setup.seed)
    num_classes = max(train.num_classes, test.num_classes)
    model = MLP(train.inputs[0].numel(), setup.hidden, num_classes)
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.SGD(model.parameters(), lr=setup.model_lr, momentum=setup.model_momentum)
    ]
    loader = make_loader(
        train, setup.batch_size, shuffle=True, generator=torch.Generator().manual_seed(setup.seed)
    )
    methods: list[SampleMethod] = []
    data_parameters = None
    if setup.mode != "baseline":
        data_parameters = make_data_parameters(setup, num_classes, len(train))
        optimizers.append(data_parameters.make_optimizer(setup.lr_class, setup.lr_instance))
        methods.append(data_parameters)

    losses: list[Tensor] = []
    sample_sigmas: list[Tensor] = []
    class_sigmas: list[Tensor] = []

    def record_sigma() -> None:
        if data_parameters is not None:
            sample_sigmas.append(data_parameters.sample_sigma(train.targets))
            class_sigmas.append(data_parameters.class_sigma())

    def on_epoch_end(epoch: int) -> None:
        losses.append(per_sample_losses(model, train))
        record_sigma()

    record_sigma()
    history = fit(
        model, loader, optimizers, setup.epochs, test_data=test,
        methods=[*methods, AfterEpoch(on_epoch_end)], progress=progress,
    )
    empty = torch.empty(0, 0)
    return NoisyRun(
        setup=setup,
        test_accuracy=[record.test.accuracy for record in history],
        train_loss=[record.train.loss for record in history],
        plain_losses=torch.stack(losses),
        sample_sigma=torch.stack(sample_sigmas) if sample_sigmas else empty,
        class_sigma=torch.stack(class_sigmas) if class_sigmas else empty,
        seconds=sum(record.train.seconds for record in history),
    )


def noisy_subset(
    pool: IndexedDataset, size: int, noise: float, seed: int = 0
) -> tuple[IndexedDataset, Tensor]:
    """A stratified random subset of `size` samples with a share `noise` of its labels moved to
    another class uniformly; returns (data set with noisy labels, mask of corrupted samples)."""
    subset = stratified_subset(pool, size, seed)
    noisy, corrupted = corrupt_labels(subset.targets, noise, pool.num_classes, seed)
    return subset.with_targets(noisy), corrupted


def relabel_into_classes(
    targets: Tensor, noisy_classes: list[int], fraction: float, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Class-dependent noise: give each class in `noisy_classes` extra samples taken at random from
    the other (clean) classes, so that a share `fraction` of the samples labelled with that class
    are wrong. Returns (new targets, mask of the relabelled samples)."""
    targets = torch.as_tensor(targets)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must lie in [0, 1), got {fraction}")
    classes = torch.unique(targets).tolist()
    if not noisy_classes or any(c not in classes for c in noisy_classes):
        raise ValueError(f"noisy_classes must be a non-empty list of labels among {classes}")
    generator = torch.Generator().manual_seed(seed)
    donors = torch.nonzero(~torch.isin(targets, torch.tensor(noisy_classes))).squeeze(1)
    donors = donors[torch.randperm(len(donors), generator=generator)]
    noisy = targets.clone()
    start = 0
    for label in noisy_classes:
        count = round(int((targets == label).sum()) * fraction / (1.0 - fraction))
        if start + count > len(donors):
            raise ValueError("fraction too large: not enough samples in the clean classes to relabel")
        noisy[donors[start:start + count]] = label
        start += count
    return noisy, noisy != targets
