"""A short, index-aware training loop, evaluation and seeding.

Every batch is `(index, x, y)`. The loop computes per-sample losses, hands `(index, losses)` to the
plugged-in methods and back-propagates the objective one of them returns (or the plain mean). The
protocol the methods speak is `curriclab.core.protocol.SampleMethod`.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm as _text_tqdm
from tqdm.auto import tqdm as _tqdm

from curriclab.core.checkpoint import (
    agree_on_epoch,
    generators_of,
    load_checkpoint,
    restore_training_state,
    save_checkpoint,
    training_state,
)
from curriclab.core.data import IndexedDataset
from curriclab.core.protocol import (
    SampleMethod,
    combined_losses,
    combined_objective,
    selecting_method,
)

__all__ = [
    "cross_entropy_per_sample",
    "EpochRecord",
    "EpochResult",
    "error_rate",
    "eval_outputs",
    "evaluate",
    "Evaluation",
    "fit",
    "LossFn",
    "per_sample_losses",
    "progress_bar",
    "PROGRESS_ENV",
    "seed_everything",
    "train_epoch",
]

LossFn = Callable[[Tensor, Tensor, Tensor], Tensor]
"""(output, target, index) -> per-sample losses [B]."""

PROGRESS_ENV = "CURRICLAB_PROGRESS"
"""Set to "text" to draw progress bars as text even in Jupyter, and only those that stay when done
(a notebook stored with its outputs then keeps each bar's final line, not a widget that no longer
updates)."""


def progress_bar(
    iterable: Iterable | None = None, desc: str = "", enabled: bool = True, *, leave: bool = True,
    total: int | None = None,
) -> Iterable | _tqdm:
    """A tqdm.auto bar (a widget in Jupyter, text in a terminal) that redraws at most once a second,
    so a long loop does not flood a notebook's output channel (nbval waits on it). Every loop in
    curriclab that shows progress uses this one helper; `enabled=False` switches it off.

    With `CURRICLAB_PROGRESS=text` the bar is plain text everywhere (see `PROGRESS_ENV`).

    Args:
        iterable: what to loop over (None: a bare bar, advanced with `update`).
        desc: the bar's label.
        enabled: False shows nothing (the iterable is still iterated).
        leave: keep the finished bar (False: a transient bar, e.g. an epoch inside a run).
        total: the expected number of items (default `len(iterable)` where it has one).

    Returns:
        With an iterable, a wrapper that iterates it exactly once (tqdm.auto's own wrapper calls
        `iter()` eagerly and again when looped over, which starts a DataLoader twice and draws
        an extra shuffling seed). Without one, the bar itself.
    """
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if os.environ.get(PROGRESS_ENV) == "text":
        # a transient (leave=False) bar would only leave cursor-movement codes in stored output
        bar = _text_tqdm(desc=desc, disable=not (enabled and leave), leave=leave, total=total,
                         mininterval=1.0)
    else:
        bar = _tqdm(desc=desc, disable=not enabled, leave=leave, total=total, mininterval=1.0)
    return bar if iterable is None else _advance(iterable, bar)


def _advance(iterable: Iterable, bar: _tqdm) -> Iterator:
    with bar:
        for item in iterable:
            yield item
            bar.update(1)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global random generators in one call.

    Args:
        seed: any int (NumPy gets `seed % 2**32`).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cross_entropy_per_sample(output: Tensor, target: Tensor, index: Tensor | None = None) -> Tensor:
    """Per-sample cross-entropy of logits (or log-probabilities) against integer targets.

    Args:
        output: [B, C] logits.
        target: [B] int64 labels in [0, C).
        index: the dataset indices (unused; the `LossFn` signature).

    Returns:
        [B] losses (>= 0), with their gradient.
    """
    return F.cross_entropy(output, target, reduction="none")


@dataclass
class EpochResult:
    """What one pass over a loader did, measured on the fly (before each step).

    With selection, `samples` counts only the chosen samples.

    Attributes:
        loss: the mean training loss of the samples used.
        accuracy: their share classified right, in [0, 1].
        samples: how many samples were back-propagated.
        steps: optimizer steps taken.
        seconds: wall time of the pass.
        candidates: samples forwarded (without gradients) for a selecting method to choose from;
            0 when no method selects.
    """

    loss: float
    accuracy: float
    samples: int
    steps: int
    seconds: float
    candidates: int = 0


@dataclass
class Evaluation:
    """Mean loss and accuracy of a model over a data set (`evaluate`).

    Attributes:
        loss: the mean per-sample loss.
        accuracy: the share classified right, in [0, 1].
    """
    loss: float
    accuracy: float

    @property
    def error(self) -> float:
        """1 - accuracy: the share of misclassified samples."""
        return 1.0 - self.accuracy


def _as_list(optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer]) -> list:
    return [optimizer] if isinstance(optimizer, torch.optim.Optimizer) else list(optimizer)


def train_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer],
    *,
    methods: Sequence[SampleMethod] = (),
    progress: bool = True,
    desc: str = "train",
) -> EpochResult:
    """One pass over `loader` of `(index, x, y)` batches with one optimizer step per batch.

    Per-sample losses come from the method that defines them (else cross-entropy); every method
    sees `(index, losses)`, and the objective one of them returns is minimised (else the mean).
    All optimizers are zeroed and stepped together; then every method's `after_step()` runs.

    Selection: when one method overrides `select` (`curriclab.core.protocol`), each batch is a
    candidate batch: the model (in train mode, as OATML/RHO-Loss selects by default) forwards it
    without gradients, the method returns the positions to keep, and the step above runs on those
    samples only (a batch with none chosen is skipped: no step). Without a selecting method
    nothing of this runs.

    Args:
        model: the model (put in train mode).
        loader: yields `(index [B], x [B, ...], y [B])` batches (e.g. `make_loader`).
        optimizer: one optimizer or a list (e.g. the model's SGD plus the SparseSGD of data
            parameters).
        methods: the plugged-in per-sample methods.
        progress: show a transient progress bar.
        desc: the bar's label.

    Returns:
        The pass's `EpochResult`.

    Raises:
        ValueError: if more than one method selects, or a selection is not a 1-D integer tensor
            of distinct positions within the candidate batch; more than one method returns losses
            or an objective.
    """
    optimizers = _as_list(optimizer)
    selector = selecting_method(methods)
    model.train()
    start = time.perf_counter()
    total_loss, correct, samples, steps, candidates = 0.0, 0, 0, 0, 0
    for index, x, y in progress_bar(loader, desc, progress, leave=False):
        if selector is not None:
            candidates += len(y)
            chosen = _chosen_positions(selector, model, index, x, y)
            if chosen is not None:
                if len(chosen) == 0:
                    continue
                index, x, y = index[chosen], x[chosen], y[chosen]
        output = model(x)
        losses = combined_losses(methods, output, y, index)
        if losses is None:
            losses = cross_entropy_per_sample(output, y)
        objective = combined_objective(methods, index, losses)
        if objective is None:
            objective = losses.mean()
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        objective.backward()
        for opt in optimizers:
            opt.step()
        for method in methods:
            method.after_step()
        total_loss += float(losses.detach().sum())
        correct += int((output.detach().argmax(1) == y).sum())
        samples += len(y)
        steps += 1
    return EpochResult(
        loss=total_loss / max(samples, 1),
        accuracy=correct / max(samples, 1),
        samples=samples,
        steps=steps,
        seconds=time.perf_counter() - start,
        candidates=candidates,
    )


def _chosen_positions(
    selector: SampleMethod, model: nn.Module, index: Tensor, x: Tensor, y: Tensor
) -> Tensor | None:
    """Ask `selector` which positions of the candidate batch to train on (checked), after a
    no-grad forward of the batch; an empty batch is not forwarded and yields no positions."""
    if len(y) == 0:
        return torch.empty(0, dtype=torch.long)
    with torch.no_grad():
        output = model(x)
    chosen = selector.select(index, output, y)
    if chosen is None:
        return None
    name = type(selector).__name__
    if not isinstance(chosen, Tensor) or chosen.ndim != 1 or chosen.dtype not in (
        torch.int64, torch.int32
    ):
        raise ValueError(f"{name}.select must return a 1-D int64 tensor of positions or None")
    if chosen.numel() and (int(chosen.min()) < 0 or int(chosen.max()) >= len(y)):
        raise ValueError(f"{name}.select returned positions outside [0, {len(y)})")
    if len(torch.unique(chosen)) != len(chosen):
        raise ValueError(f"{name}.select returned a position more than once")
    return chosen


def eval_outputs(
    model: nn.Module, data: IndexedDataset | DataLoader, batch_size: int = 1000
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """The model's outputs batch by batch, in eval mode and without gradients; the model's
    train/eval mode is restored afterwards. The one evaluation loop: `evaluate`,
    `per_sample_losses` and validation metrics all use it.

    Args:
        model: the model.
        data: an in-memory data set (read in index order) or a loader of `(index, x, y)`.
        batch_size: samples per batch for a data set (>= 1); a loader keeps its own.

    Yields:
        `(index [B], output [B, C], target [B])` per batch.
    """
    batches = _slices(data, batch_size) if isinstance(data, IndexedDataset) else data
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for index, x, y in batches:
                yield index, model(x), y
    finally:
        model.train(was_training)


def _slices(data: IndexedDataset, batch_size: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Consecutive `(index, x, y)` batches of an in-memory data set, without a DataLoader."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(data), batch_size):
        stop = min(start + batch_size, len(data))
        yield torch.arange(start, stop), data.inputs[start:stop], data.targets[start:stop]


def error_rate(logits: Tensor, targets: Tensor) -> float:
    """Share of samples whose highest-scoring class is not their label.

    Args:
        logits: [N, C] scores.
        targets: [N] labels (N >= 1).

    Returns:
        The error rate, in [0, 1].

    Raises:
        ValueError: `targets` is empty.
    """
    if len(targets) == 0:
        raise ValueError("targets must not be empty")
    return float((logits.argmax(1) != targets).float().mean())


def per_sample_losses(
    model: nn.Module,
    data: IndexedDataset | DataLoader,
    *,
    loss_fn: LossFn = cross_entropy_per_sample,
    batch_size: int = 1000,
    num_samples: int | None = None,
) -> Tensor:
    """Every sample's loss under the current model (eval mode, no gradients), by dataset index.

    Args:
        model: the model.
        data: a data set, or a loader over (part of) one.
        loss_fn: per-sample loss of (output, target, index).
        batch_size: samples per forward pass for a data set (>= 1).
        num_samples: the result's size when `data` is a loader over a larger data set (default
            the data set's size).

    Returns:
        float32 [num_samples]; entries `data` never visits stay NaN.
    """
    if num_samples is None:
        num_samples = len(data.dataset if isinstance(data, DataLoader) else data)
    result = torch.full((num_samples,), float("nan"))
    for index, output, y in eval_outputs(model, data, batch_size):
        result[index] = loss_fn(output, y, index).float()
    return result


def evaluate(
    model: nn.Module,
    data: IndexedDataset | DataLoader,
    *,
    loss_fn: LossFn = cross_entropy_per_sample,
    batch_size: int = 1000,
) -> Evaluation:
    """Mean loss and accuracy of `model` (in eval mode) over a data set or loader.

    Args:
        model: the model.
        data: a data set or a loader of `(index, x, y)`.
        loss_fn: per-sample loss of (output, target, index).
        batch_size: samples per forward pass for a data set (>= 1).

    Returns:
        The `Evaluation` (mean loss, accuracy in [0, 1]).

    Raises:
        ValueError: `data` is empty.
    """
    total_loss, correct, count = 0.0, 0, 0
    for index, output, y in eval_outputs(model, data, batch_size):
        total_loss += float(loss_fn(output, y, index).sum())
        correct += int((output.argmax(1) == y).sum())
        count += len(y)
    if count == 0:
        raise ValueError("data must not be empty")
    return Evaluation(loss=total_loss / count, accuracy=correct / count)


@dataclass
class EpochRecord:
    """One epoch of `fit`.

    Attributes:
        epoch: the epoch (0-based).
        train: what the training pass did.
        test: the evaluation on `fit`'s `test_data` afterwards, or None without test data.
    """
    epoch: int
    train: EpochResult
    test: Evaluation | None


def fit(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer],
    epochs: int,
    *,
    test_data: IndexedDataset | DataLoader | None = None,
    methods: Sequence[SampleMethod] = (),
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
) -> list[EpochRecord]:
    """Train for `epochs` epochs, evaluating on `test_data` after each.

    Before each epoch the loader's sampler gets `set_epoch(epoch)` (as DistributedSampler expects);
    after it every method's `after_epoch(epoch)` runs (SPL's threshold, a sampler's next plan, ...).

    Checkpoints (`curriclab.core.checkpoint`): with `checkpoint=path`, the run is saved to `path`
    after every epoch (model, optimizers, every method's `state_dict()`, the torch, NumPy and
    Python random states, the loader's generators, the epochs done and the history; written
    atomically). If `path` already exists when `fit` starts, the run resumes from it: pass the
    same kind of objects, freshly built, and the resumed run is bitwise the one that never
    stopped. Under torch.distributed give every rank its own path (e.g. with the rank in the
    name); the ranks check that they resume at the same epoch.

    Args:
        model, loader, optimizer, methods: as in `train_epoch`.
        epochs: the total number of epochs (>= 0), counting those a checkpoint already holds.
        test_data: evaluated after every epoch (None: no evaluation).
        progress: show a progress bar over the epochs.
        checkpoint: the checkpoint file (its folder must exist), or None.

    Returns:
        One `EpochRecord` per epoch, `epochs` in all (after a resume, the earlier ones from the
        file).

    Raises:
        ValueError: `epochs` < 0, a checkpoint path in a folder that does not exist, a
            checkpoint that does not fit this run (more epochs done than `epochs`, other
            methods or optimizers, a state a method refuses; nothing is restored then), or
            ranks that would resume at different epochs.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if checkpoint is not None and not os.path.isdir(os.path.dirname(os.path.abspath(checkpoint))):
        raise ValueError(f"checkpoint: the folder of {os.fspath(checkpoint)!r} does not exist")
    optimizers = _as_list(optimizer)
    generators = generators_of(loader)
    history: list[EpochRecord] = []
    start = 0
    if checkpoint is not None and os.path.exists(checkpoint):
        start, saved = restore_training_state(
            load_checkpoint(checkpoint), epochs=epochs, model=model, optimizers=optimizers,
            methods=methods, generators=generators)
        history = [_record_from_plain(record) for record in saved]
    if checkpoint is not None:
        agree_on_epoch(start)
    for epoch in progress_bar(range(start, epochs), "epochs", progress):
        if hasattr(loader, "sampler") and hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        result = train_epoch(
            model, loader, optimizers, methods=methods, progress=progress, desc=f"epoch {epoch}"
        )
        test = evaluate(model, test_data) if test_data is not None else None
        history.append(EpochRecord(epoch, result, test))
        for method in methods:
            method.after_epoch(epoch)
        if checkpoint is not None:
            save_checkpoint(checkpoint, training_state(
                epoch=epoch + 1, model=model, optimizers=optimizers, methods=methods,
                generators=generators, history=[dataclasses.asdict(r) for r in history]))
    return history


def _record_from_plain(record: dict) -> EpochRecord:
    """An EpochRecord back from `dataclasses.asdict` (as a checkpoint stores it)."""
    try:
        test = None if record["test"] is None else Evaluation(**record["test"])
        return EpochRecord(record["epoch"], EpochResult(**record["train"]), test)
    except (KeyError, TypeError) as error:
        raise ValueError(f"checkpoint: state key 'history' holds a malformed record: {error}"
                         ) from None
