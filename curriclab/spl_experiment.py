"""The self-paced learning demo as one function: logistic regression on the 2-D toy blobs.

`train_spl` runs the source's experiment (or a variant of it) and returns, per epoch, lambda, how
many samples were selected, how many batches selected nothing, accuracies and a copy of the model,
which is what the notebook's tables, plots and the GIF need.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from curriclab.data import IndexedDataset, make_loader
from curriclab.models import LogisticRegression
from curriclab.spl import Pace, SPLLoss, linear_pace
from curriclab.training import evaluate, seed_everything, train_epoch

OPTIMIZERS = ("adam", "sgd")


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: a 2-class linear model on batches of 32 gains nothing from
    intra-op threads, and on a shared CPU their spinning made it 5-20x slower (measured)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class SPLEpoch:
    """One epoch of a self-paced run (after its training steps, before lambda moves on)."""

    epoch: int
    threshold: float
    """lambda used during this epoch"""
    selected: int
    """samples with weight > 0 at the end of the epoch (as last weighed, or refreshed)"""
    empty_batches: int
    """batches in which no sample was selected (zero loss, zero gradient)"""
    batches: int
    train_accuracy: float
    """on the (possibly noisy) training labels"""
    test_accuracy: float
    """on `test_data` (NaN without it)"""
    weights: Tensor
    model: nn.Module


@one_thread()
def train_spl(
    data: IndexedDataset,
    *,
    epochs: int = 10,
    threshold: float = 0.1,
    growing_factor: float = 1.35,
    regularizer: str = "hard",
    reduction: str = "mean",
    pace: Pace | None = None,
    refresh: bool = False,
    warmup_epochs: int = 0,
    optimizer: str = "adam",
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    test_data: IndexedDataset | None = None,
    progress: bool = False,
) -> list[SPLEpoch]:
    """Train `LogisticRegression` on `data` with an `SPLLoss`, as the source's demo does by default.

    Defaults: hard SPL, lambda 0.1 x 1.35 per epoch, mean over the batch, Adam lr 1e-3, batch 32,
    shuffled. `threshold=math.inf` is plain training (every weight is 1). `refresh=True` re-measures
    every sample's loss after each epoch, so the recorded selection is that of the current model;
    a `pace` also refreshes once before its first epoch to set the first lambda. The first
    `warmup_epochs` train on every sample (weights 1, lambda reported as inf); SPL, its lambda
    schedule and its pace start afterwards.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not 0 <= warmup_epochs <= epochs:
        raise ValueError(f"warmup_epochs must lie in [0, epochs={epochs}], got {warmup_epochs}")
    seed_everything(seed)
    model = LogisticRegression(data.inputs.shape[1], max(data.num_classes, 2))
    make_optimizer = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    opt = make_optimizer(model.parameters(), lr=lr)
    loader = make_loader(
        data, batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    spl = SPLLoss(
        len(data), threshold=threshold, growing_factor=growing_factor, regularizer=regularizer,
        reduction=reduction, pace=pace,
    )
    empty = 0

    def hook(index: Tensor, losses: Tensor) -> Tensor:
        nonlocal empty
        loss = spl.hook(index, losses)
        empty += int(not spl.weights[index].any())
        return loss

    history = []
    for epoch in range(epochs):
        warming_up = epoch < warmup_epochs
        if epoch == warmup_epochs and pace is not None:
            spl.refresh(model, data)
            spl.follow_pace()
        empty = 0
        result = train_epoch(
            model, loader, opt, hook=None if warming_up else hook, progress=progress,
            desc=f"epoch {epoch}",
        )
        if refresh and not warming_up:
            spl.refresh(model, data)
        history.append(
            SPLEpoch(
                epoch=epoch,
                threshold=math.inf if warming_up else spl.threshold,
                selected=len(data) if warming_up else int(spl.selected.sum()),
                empty_batches=empty,
                batches=result.steps,
                train_accuracy=evaluate(model, data).accuracy,
                test_accuracy=evaluate(model, test_data).accuracy if test_data is not None else math.nan,
                weights=torch.ones(len(data)) if warming_up else spl.weights.clone(),
                model=copy.deepcopy(model),
            )
        )
        if not warming_up:
            spl.increase_threshold()
    return history


def paced_options(epochs: int = 10, start: float = 0.2) -> dict:
    """The fixes in one place: a pace from `start` to all data over `epochs`, per-epoch refresh,
    and the mean over the selected weight mass."""
    return {"pace": linear_pace(start, 1.0, epochs), "refresh": True, "reduction": "selected"}


def demo_runs(
    data: IndexedDataset, *, epochs: int = 10, seed: int = 1, **options
) -> dict[str, list[SPLEpoch]]:
    """The source's schedule and the paced, refreshed one on the same data and initialisation."""
    return {
        "source: lambda 0.1 x 1.35": train_spl(data, epochs=epochs, seed=seed, **options),
        "paced from 20 %, refreshed": train_spl(
            data, epochs=epochs, seed=seed, **paced_options(epochs), **options
        ),
    }
