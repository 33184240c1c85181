"""The one plug-in protocol between the training loop and a per-sample method.

The loop (`curriclab.core.training.train_epoch`) computes every sample's loss, keyed by dataset
index, and calls each plugged-in method at up to five points of a step:

| when                    | method                                  | returns                     |
| ----------------------- | --------------------------------------- | --------------------------- |
| a candidate batch comes | `select(index, output, target)`         | positions to keep, or None  |
| the loss is computed    | `compute_losses(output, target, index)` | losses [B], or None (CE)    |
| the losses are known    | `objective(index, losses)`              | scalar to minimise, or None |
| the optimizer stepped   | `after_step()`                          | nothing (react to the step) |
| the epoch has ended     | `after_epoch(epoch)`                    | nothing (move schedules on) |

Every method also has `state_dict()` / `load_state_dict(state)` (the default: `{}`, and a
non-empty state is refused), so `fit(..., checkpoint=path)` can save and resume a run.

Who uses what: dynamic losses, ALA, the teacher and data parameters define `compute_losses`; SPL,
the SGD-S and InfoBatch samplers and data parameters' decay return an `objective`; loss recorders
and trackers return None from `objective` (they only observe); ALA's agent and data parameters'
clamp act in `after_step`; SPL's threshold, samplers and recorders move on in `after_epoch`.

Why these names: fastai's `Callback` has 14 events (`after_loss`, `after_step`, `after_epoch`, ...),
Lightning's `Callback` about 30 (`on_train_batch_end`, `on_train_epoch_end`, ...) and Hugging Face's
`TrainerCallback` about 20 (`on_step_end`, `on_epoch_end`, ...); all of them observe a loop and
return nothing. A per-sample method needs four events, and two of them must *return* something,
so those two say what they give (`compute_losses`, `objective`) and the two pure events keep
fastai's `after_*` spelling. At most one plugged-in method may return losses and at most one an
objective; every method's `objective` is still called, so observers see every batch.

Selection (online batch selection: top loss, RHO-LOSS) is the one optional event: only when a
plugged-in method overrides `select` does the loop run a no-grad forward of each candidate batch
(with the model in train mode, as OATML/RHO-Loss does by default), ask the method which positions
of the batch to keep, and then run the usual step on those samples only; every other event then
sees the chosen samples alone. At most one plugged-in method may select. Without a selecting
method the loop does exactly what it did before the event existed (no extra forward, no RNG use).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor

from curriclab.core.state import check_keys

__all__ = [
    "AfterEpoch",
    "SampleMethod",
    "combined_losses",
    "combined_objective",
    "defines_selection",
    "selecting_method",
]


class SampleMethod:
    """Base class of per-sample methods: override what the method needs; the rest does nothing."""

    def select(self, index: Tensor, output: Tensor, target: Tensor) -> Tensor | None:
        """Which samples of a candidate batch to train on. Override it only in a selecting method:
        the loop pays the extra forward only then.

        Args:
            index: the candidate batch's dataset indices [B].
            output: the model's no-grad output on the whole candidate batch, [B, C].
            target: its labels [B].

        Returns:
            Positions (int64, within the candidate batch, each in [0, B)) of the samples to train
            on, or None (this default) to keep them all.
        """
        return None

    def compute_losses(self, output: Tensor, target: Tensor, index: Tensor) -> Tensor | None:
        """Per-sample training losses of this batch, or None to leave the loss as it is.

        Args:
            output: the model's output [B, C] (with its gradient).
            target: the labels [B].
            index: the dataset indices [B].

        Returns:
            [B] losses with their gradient, or None (this default: the loop's cross-entropy).
        """
        return None

    def objective(self, index: Tensor, losses: Tensor) -> Tensor | None:
        """The scalar to minimise given the batch's per-sample losses, or None to only observe.

        Args:
            index: the dataset indices [B].
            losses: the per-sample losses [B] (with their gradient).

        Returns:
            A scalar tensor, or None (this default: the loop minimises the mean loss).
        """
        return None

    def after_step(self) -> None:
        """Called after every optimizer step."""

    def after_epoch(self, epoch: int) -> None:
        """Called after epoch `epoch` has ended.

        Args:
            epoch: the epoch that ended (0-based).
        """

    def state_dict(self) -> dict:
        """Everything needed to resume this method at an epoch boundary.

        A method that keeps state overrides both this and `load_state_dict`.

        Returns:
            Plain values (tensors, numbers, strings, lists, dicts) that
            `torch.load(..., weights_only=True)` restores; `{}` for a stateless method (this
            default).
        """
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned, validated before anything changes.

        Args:
            state: what `state_dict()` returned.

        Raises:
            TypeError: `state` is not a dict.
            ValueError: for this stateless default, a non-empty state (naming its keys): a
                method that keeps state must override both methods.
        """
        check_keys(state, (), type(self).__name__)


class AfterEpoch(SampleMethod):
    """Runs `function(epoch)` after every epoch (e.g. to record something about the model).

    Args:
        function: called with the 0-based epoch that ended; its result is ignored.
    """

    def __init__(self, function: Callable[[int], object]):
        self.function = function

    def after_epoch(self, epoch: int) -> None:
        """Call `function(epoch)`.

        Args:
            epoch: the epoch that ended (0-based).
        """
        self.function(epoch)


def _single(results: list[tuple[SampleMethod, Tensor | None]], what: str) -> Tensor | None:
    given = [(method, value) for method, value in results if value is not None]
    if len(given) > 1:
        names = ", ".join(type(method).__name__ for method, _ in given)
        raise ValueError(f"methods: at most one may return {what}, got {len(given)} ({names})")
    return given[0][1] if given else None


def combined_losses(
    methods: Sequence[SampleMethod], output: Tensor, target: Tensor, index: Tensor
) -> Tensor | None:
    """The per-sample losses the plugged-in methods define.

    Args:
        methods: the plugged-in methods; each one's `compute_losses` is called.
        output, target, index: the batch, as in `SampleMethod.compute_losses`.

    Returns:
        The one method's [B] losses, or None when none defines them.

    Raises:
        ValueError: more than one method returns losses (naming them).
    """
    return _single([(m, m.compute_losses(output, target, index)) for m in methods], "losses")


def combined_objective(methods: Sequence[SampleMethod], index: Tensor, losses: Tensor
                       ) -> Tensor | None:
    """Ask every method for an objective (observers see the batch).

    Args:
        methods: the plugged-in methods; each one's `objective` is called, in order.
        index, losses: the batch, as in `SampleMethod.objective`.

    Returns:
        The one method's scalar objective, or None when none gives one.

    Raises:
        ValueError: more than one method returns an objective (naming them).
    """
    return _single([(m, m.objective(index, losses)) for m in methods], "an objective")


def defines_selection(method: SampleMethod) -> bool:
    """Whether `method` overrides `SampleMethod.select` (and so asks for a candidate forward).

    Args:
        method: a plugged-in method.

    Returns:
        True if its class overrides `select`.
    """
    return getattr(type(method), "select", SampleMethod.select) is not SampleMethod.select


def selecting_method(methods: Sequence[SampleMethod]) -> SampleMethod | None:
    """The one plugged-in method that selects.

    Args:
        methods: the plugged-in methods.

    Returns:
        The method that overrides `select`, or None when none does.

    Raises:
        ValueError: if more than one method overrides `select`.
    """
    selecting = [method for method in methods if defines_selection(method)]
    if len(selecting) > 1:
        names = ", ".join(type(method).__name__ for method in selecting)
        raise ValueError(f"methods: at most one may select, got {len(selecting)} ({names})")
    return selecting[0] if selecting else None
