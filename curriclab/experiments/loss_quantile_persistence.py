"""Notebook 03's runner: train SmallConv on MNIST, shuffled or not, and record every sample's loss per epoch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from curriclab.core.protocol import AfterEpoch
from curriclab.core.data import IndexedDataset, make_loader
from curriclab.core.models import SmallConv
from curriclab.core.training import EpochRecord, fit, per_sample_losses, seed_everything
from curriclab.methods.persistence import LossRecorder

__all__ = ["RecordedRun", "train_and_record"]


@dataclass
class RecordedRun:
    """Losses of one persistence run, one row per epoch (epoch 1 first).

    `losses`: each sample's loss when it was trained on (what Zakka's Loss Patterns notebook
    recorded; later batches of an epoch see a better model than earlier ones). `end_of_epoch`: each
    sample's loss under the model as it stands at the end of the epoch (one model for all samples),
    or None if not asked for.
    """

    losses: Tensor
    end_of_epoch: Tensor | None
    history: list[EpochRecord]


def train_and_record(
    dataset: IndexedDataset,
    *,
    shuffle: bool,
    epochs: int = 5,
    batch_size: int = 64,
    lr: float = 1e-3,
    momentum: float = 0.99,
    seed: int = 42,
    end_of_epoch: bool = False,
    model_factory: Callable[[], nn.Module] = SmallConv,
    progress: bool = True,
) -> RecordedRun:
    """Zakka's (2018) persistence run: SGD with momentum on `dataset`, recording every loss.

    Defaults follow his pr-lr/Loss Patterns.ipynb (SmallConv, SGD lr 1e-3 momentum 0.99, batch 64,
    seed 42).
    `end_of_epoch=True` also evaluates every sample after each epoch (costs about a third of an epoch).
    """
    seed_everything(seed)
    model = model_factory()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    loader = make_loader(dataset, batch_size, shuffle=shuffle, generator=generator)
    recorder = LossRecorder(len(dataset))
    snapshots: list[Tensor] = []

    def snapshot(epoch: int) -> None:
        if end_of_epoch:
            snapshots.append(per_sample_losses(model, dataset))

    history = fit(model, loader, optimizer, epochs, methods=[recorder, AfterEpoch(snapshot)],
                  progress=progress)
    final = torch.stack(snapshots) if end_of_epoch else None
    return RecordedRun(recorder.by_epoch, final, history)
