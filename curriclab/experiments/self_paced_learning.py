"""The self-paced learning demo as one function: logistic regression on the 2-D toy blobs.

`train_spl` runs the wenig/spl demo (or a variant of it) and returns, per epoch, lambda, how
many samples were selected, how many batches selected nothing, accuracies and a copy of the model,
which is what the notebook's tables, plots and the GIF need.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd
import torch
from torch import Tensor, nn

from curriclab.core.protocol import SampleMethod
from curriclab.core.data import IndexedDataset, corrupt_labels, make_loader, spl_toy_data
from curriclab.core.models import LogisticRegression
from curriclab.core.training import evaluate, seed_everything, train_epoch
from curriclab.methods.spl import Pace, SPLLoss, linear_pace

__all__ = [
    "accuracy_by_method",
    "seed_outcomes",
    "demo_runs",
    "explore",
    "history_table",
    "noisy_blobs",
    "noisy_label_runs",
    "outcome",
    "paced_options",
    "SPLEpoch",
    "summarise",
    "train_spl",
]

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


class EmptyBatchCounter(SampleMethod):
    """Counts the batches in which SPL selected nothing; plug it in after the `SPLLoss`."""

    def __init__(self, spl: SPLLoss):
        self.spl = spl
        self.count = 0

    def objective(self, index: Tensor, losses: Tensor) -> None:
        self.count += int(not self.spl.weights[index].any())


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
    """Train `LogisticRegression` on `data` with an `SPLLoss`, as the wenig/spl demo does.

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
    empty = EmptyBatchCounter(spl)

    history = []
    for epoch in range(epochs):
        warming_up = epoch < warmup_epochs
        if epoch == warmup_epochs and pace is not None:
            spl.refresh(model, data)
            spl.follow_pace()
        empty.count = 0
        result = train_epoch(
            model, loader, opt, methods=() if warming_up else (spl, empty), progress=progress,
            desc=f"epoch {epoch}",
        )
        if refresh and not warming_up:
            spl.refresh(model, data)
        history.append(
            SPLEpoch(
                epoch=epoch,
                threshold=math.inf if warming_up else spl.threshold,
                selected=len(data) if warming_up else int(spl.selected.sum()),
                empty_batches=empty.count,
                batches=result.steps,
                train_accuracy=evaluate(model, data).accuracy,
                test_accuracy=(evaluate(model, test_data).accuracy if test_data is not None
                               else math.nan),
                weights=torch.ones(len(data)) if warming_up else spl.weights.clone(),
                model=copy.deepcopy(model),
            )
        )
        if not warming_up:
            spl.after_epoch(epoch - warmup_epochs)
    return history


def paced_options(epochs: int = 10, start: float = 0.2) -> dict:
    """The fixes in one place: a pace from `start` to all data over `epochs`, per-epoch refresh,
    and the mean over the selected weight mass."""
    return {"pace": linear_pace(start, 1.0, epochs), "refresh": True, "reduction": "selected"}


def demo_runs(
    data: IndexedDataset, *, epochs: int = 10, seed: int = 1, **options
) -> dict[str, list[SPLEpoch]]:
    """The wenig/spl demo's schedule and the paced, refreshed one, same data and initialisation."""
    return {
        "wenig/spl: lambda 0.1 x 1.35": train_spl(data, epochs=epochs, seed=seed, **options),
        "paced from 20 %, refreshed": train_spl(
            data, epochs=epochs, seed=seed, **paced_options(epochs), **options
        ),
    }


def noisy_blobs(
    share: float, structured: bool, n_per_class: int = 5000, seed: int = 0
) -> tuple[IndexedDataset, Tensor]:
    """Toy blobs with `share` of the labels flipped; returns (data, flipped mask).

    structured=True flips the points farthest from (3, 3), like the wenig/spl demo's single anomaly
    but many of them (a compact group of class-0 points labelled 1); False flips points chosen
    uniformly at random (`corrupt_labels`).
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must lie in [0, 1], got {share}")
    count = round(share * 2 * n_per_class)
    if structured:
        return spl_toy_data(n_per_class, n_anomalies=count, seed=seed)
    clean, _ = spl_toy_data(n_per_class, n_anomalies=0, seed=seed)
    noisy, flipped = corrupt_labels(clean.targets, share, num_classes=2, seed=seed)
    return clean.with_targets(noisy), flipped


def noisy_label_runs(
    methods: dict[str, dict], share: float, structured: bool, seeds: Sequence[int],
    n_per_class: int = 5000, **options,
) -> list[dict]:
    """Train each method (train_spl keyword arguments) on noisy blobs for each seed.

    Returns one row per (seed, method): the final test accuracy on clean labels (a fresh sample
    of the blobs, no flips) and the share of the flipped and of the clean samples still selected.
    """
    rows = []
    for seed in seeds:
        data, flipped = noisy_blobs(share, structured, n_per_class, seed)
        test, _ = spl_toy_data(n_per_class, n_anomalies=0, seed=10_000 + seed)
        for name, method in methods.items():
            final = train_spl(data, seed=seed, test_data=test, **method, **options)[-1]
            selected = final.weights > 0
            rows.append({
                "seed": seed,
                "method": name,
                "test_accuracy": final.test_accuracy,
                "flipped_selected": (float(selected[flipped].float().mean()) if flipped.any()
                                     else 0.0),
                "clean_selected": float(selected[~flipped].float().mean()),
            })
    return rows


def history_table(history: list[SPLEpoch]) -> pd.DataFrame:
    """One row per epoch: lambda, selected count, empty batches (of all batches), accuracy."""
    return pd.DataFrame(
        {
            "lambda": [r.threshold for r in history],
            "selected": [r.selected for r in history],
            "empty batches": [f"{r.empty_batches}/{r.batches}" for r in history],
            "train accuracy": [r.train_accuracy for r in history],
        },
        index=pd.Index([r.epoch for r in history], name="epoch"),
    ).round(3)


def outcome(history: list[SPLEpoch]) -> dict:
    """What a run's table says in three numbers.

    They are the epoch-0 selection, the fully empty epochs and the final accuracy.
    """
    return {
        "selected_first_epoch": history[0].selected,
        "empty_epochs": sum(r.empty_batches == r.batches for r in history),
        "final_accuracy": history[-1].train_accuracy,
    }


def summarise(rows: list[dict]) -> dict[str, dict]:
    """Per method: mean, min and max test accuracy and mean share of flipped samples selected."""
    summary = {}
    for method in dict.fromkeys(row["method"] for row in rows):
        accuracies = [row["test_accuracy"] for row in rows if row["method"] == method]
        flipped = [row["flipped_selected"] for row in rows if row["method"] == method]
        summary[method] = {
            "mean_accuracy": sum(accuracies) / len(accuracies),
            "min_accuracy": min(accuracies),
            "max_accuracy": max(accuracies),
            "flipped_selected": sum(flipped) / len(flipped),
        }
    return summary


def seed_outcomes(runs_by_seed: dict[int, dict[str, list[SPLEpoch]]], source: str,
                  paced: str) -> pd.DataFrame:
    """One row per seed: the source schedule's first-epoch selection, empty epochs and final
    accuracy beside the paced schedule's first-epoch selection and final accuracy."""
    rows = []
    for seed, runs in runs_by_seed.items():
        ours, fixed = outcome(runs[source]), outcome(runs[paced])
        rows.append({"seed": seed,
                     f"{source}: selected after epoch 0": ours["selected_first_epoch"],
                     f"{source}: empty epochs": ours["empty_epochs"],
                     f"{source}: final accuracy": ours["final_accuracy"],
                     "paced: selected after epoch 0": fixed["selected_first_epoch"],
                     "paced: final accuracy": fixed["final_accuracy"]})
    return pd.DataFrame(rows).set_index("seed")


def accuracy_by_method(rows: list[dict]) -> dict[str, list[float]]:
    """Test accuracy per method, in the rows' (seed) order, ready for `paired_comparison`."""
    methods = dict.fromkeys(row["method"] for row in rows)
    return {method: [row["test_accuracy"] for row in rows if row["method"] == method]
            for method in methods}


@lru_cache(maxsize=64)
def explore(
    threshold: float, growing_factor: float, regularizer: str, noise_share: float,
    epochs: int = 10, seed: int = 1,
) -> tuple[IndexedDataset, Tensor, list[SPLEpoch]]:
    """One cached run for the notebook's sliders: structured label noise, SPL from epoch 0.

    Uses batch 128 and lr 4e-3 (4x fewer steps than the wenig/spl demo, a similar trajectory).
    Returns (data, flipped mask, history).
    """
    data, flipped = noisy_blobs(noise_share, structured=True, seed=seed)
    history = train_spl(
        data, epochs=epochs, threshold=threshold, growing_factor=growing_factor,
        regularizer=regularizer, refresh=True, batch_size=128, lr=4e-3, seed=seed,
    )
    return data, flipped, history
