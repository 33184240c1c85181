"""RHO-LOSS's irreducible-loss model: trained on a holdout split, it scores every training sample.

Mindermann et al. (ICML 2022) approximate a sample's irreducible loss by the loss of a model
trained on a holdout split of the *training* data (never the test set): a point that model cannot
fit either is noise or ambiguous, not worth learning. Draw the holdout from the training data,
e.g. `holdout, train = stratified_split(data, holdout_size, seed)`, then

    result = irreducible_losses(model, holdout, train, optimizer, epochs=5, batch_size=64)
    selector = RhoLossSelection(result.losses, k=32, batch_size=320)

`result` carries what training and scoring the model cost (steps, samples back-propagated and
forwarded, seconds), so a comparison against uniform training can add it to RHO-LOSS's bill.
The losses are computed as the reference code does: model in eval mode, no gradients.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from curriclab.core.data import IndexedDataset, make_loader
from curriclab.core.distributed import check_identical, gathered_per_sample_losses, rank_and_world
from curriclab.core.protocol import SampleMethod
from curriclab.core.training import LossFn, cross_entropy_per_sample, fit

__all__ = ["IrreducibleLosses", "irreducible_losses"]


@dataclass
class IrreducibleLosses:
    """What `irreducible_losses` returns.

    Attributes:
        losses: float losses [len(train)] of every training sample, by its index in `train`.
        steps: optimizer steps of the irreducible-loss model.
        samples_backpropagated: holdout samples it was trained on (with repeats over epochs).
        samples_forwarded: samples this process forwarded: the training forwards plus its share
            of the scoring pass over `train` (all of it in one process, 1 / world under DDP).
        seconds: wall time of training and scoring.
    """

    losses: Tensor
    steps: int
    samples_backpropagated: int
    samples_forwarded: int
    seconds: float


def irreducible_losses(
    model: nn.Module,
    holdout: IndexedDataset,
    train: IndexedDataset,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    batch_size: int = 64,
    seed: int = 0,
    loss_fn: LossFn = cross_entropy_per_sample,
    progress: bool = False,
) -> IrreducibleLosses:
    """Train `model` on `holdout` with the curriclab loop, then score every sample of `train`.

    Training: `epochs` epochs of `fit` over a loader shuffled by a generator seeded with `seed`
    (the global RNG is not touched by the shuffling). Scoring: `loss_fn` of the trained model in
    eval mode without gradients, ordered by `train`'s index.

    Under torch.distributed (collective): every rank trains the same model on the whole holdout
    (same initial weights and seed, so the same steps); the trained weights are checked to be
    bitwise identical across ranks, each rank scores every world-size-th training sample and
    one exchange shares the scores, so every rank returns the same losses.

    Args:
        model: the irreducible-loss model (trained in place), typically small.
        holdout: the holdout split drawn from the training data (not the test set).
        train: the training samples to score (the ones the selector will see).
        optimizer: optimizer over `model`'s parameters.
        epochs: training epochs, >= 0.
        batch_size: holdout batch size, >= 1.
        seed: seeds the holdout shuffling.
        loss_fn: per-sample loss used for training and scoring (cross-entropy).
        progress: show progress bars.

    Returns:
        IrreducibleLosses with the losses [len(train)] and the cost.

    Raises:
        ValueError: for an empty holdout, bad `epochs`/`batch_size`, non-finite scores (did the
            model diverge?) or weights that differ across ranks.
    """
    if len(holdout) == 0:
        raise ValueError("holdout must not be empty")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be an int >= 0, got {epochs!r}")
    start = time.perf_counter()
    loader = make_loader(holdout, batch_size, shuffle=True,
                         generator=torch.Generator().manual_seed(seed))
    history = fit(model, loader, optimizer, epochs, methods=[_LossFrom(loss_fn)],
                  progress=progress)
    check_identical("the irreducible-loss model's weights", *model.state_dict().values())
    losses = gathered_per_sample_losses(model, train, loss_fn=loss_fn)
    if not bool(torch.isfinite(losses).all()):
        raise ValueError("the irreducible-loss model gives non-finite losses: did it diverge?")
    rank, world = rank_and_world()
    backpropagated = sum(record.train.samples for record in history)
    scored = len(range(rank, len(train), world))
    return IrreducibleLosses(
        losses=losses,
        steps=sum(record.train.steps for record in history),
        samples_backpropagated=backpropagated,
        samples_forwarded=backpropagated + scored,
        seconds=time.perf_counter() - start,
    )


class _LossFrom(SampleMethod):
    """Hands the loop `loss_fn`'s per-sample losses."""

    def __init__(self, loss_fn: LossFn):
        self.loss_fn = loss_fn

    def compute_losses(self, output: Tensor, target: Tensor, index: Tensor) -> Tensor:
        return self.loss_fn(output, target, index)
