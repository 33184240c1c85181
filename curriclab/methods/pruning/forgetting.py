"""Forgetting events (Toneva et al., ICLR 2019): how often training forgets a sample it had learned.

Every time a sample is presented during training, the training-time output of its mini-batch
(train mode, before the optimizer step, as in the authors' `run_mnist.py`) says whether it is
classified correctly (arg-max = label). A *forgetting event* is a transition from correct to
incorrect between two consecutive presentations of the same sample. A sample is *learned* once it
has been classified correctly at some presentation; it is *never forgotten* ("unforgettable") when
it was learned and has no forgetting event, and *never learned* when it was presented but never
classified correctly. A sample learned only at its last presentation is never forgotten.

The score (`ForgettingEvents.scores`) is the number of forgetting events, except that a
never-learned sample gets the largest number of presentations of any sample, as in the authors'
`order_examples_by_forgetting.py`, which adds `npresentations` (the number of epochs) for a run in
which a sample was never learned. That value exceeds every learned sample's count (a learned sample
with p presentations has at most p // 2 events), so never-learned samples rank as the most
forgettable and are pruned last when the hard samples are kept. (DeepCore's forgetting score
gives them 0 events, ranking them with the unforgettable ones.)

Why `compute_losses`: the protocol's `objective(index, losses)` does not see the model's output,
`compute_losses(output, target, index)` does. `ForgettingEvents.compute_losses` records the
correctness and returns None, so the loss stays cross-entropy (or whatever another plugged-in
method defines) and the observer composes with every other method.

Under torch.distributed every rank sees only its shard of a batch; the observer then exchanges the
`(index, correct)` pairs itself with `curriclab.core.distributed.gather_observations` (one
exchange per step, correctness carried as 0.0/1.0 floats, the process group's timeout applies), so
its state is identical on every rank and equals what one process records from the same
presentations. It may be plugged in directly or inside `Synchronized`: `Synchronized` passes
`compute_losses` on unchanged, and the observer's own exchange does the rest.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from curriclab.core.distributed import gather_observations
from curriclab.core.protocol import SampleMethod
from curriclab.core.state import check_equal, check_keys, check_tensor

__all__ = ["ForgettingEvents"]

_STATE_DTYPES = {
    "presentations": torch.int64,
    "forgetting_events": torch.int64,
    "last_correct": torch.bool,
    "learned": torch.bool,
}


def _correctness_values(output: Tensor, target: Tensor) -> Tensor:
    """1.0 where the arg-max of `output` is `target`, 0.0 where it is not, and NaN for a row whose
    output is not finite or whose target is no class of `output` (so that the exchange refuses
    the batch on every rank, not only on the rank that saw the bad row)."""
    finite = torch.isfinite(output).all(1)
    valid = finite & (target >= 0) & (target < output.shape[1])
    correct = (output.argmax(1) == target).float()
    return torch.where(valid, correct, torch.full_like(correct, float("nan")))


class ForgettingEvents(SampleMethod):
    """Counts every sample's forgetting events from training-time outputs, keyed by dataset index.

    Plug it into `fit`/`train_epoch` (`methods=[ForgettingEvents(len(train))]`); read the result
    with `scores()`, `never_forgotten_fraction()` and `never_learned_fraction()`.

    Args:
        num_samples: size of the training set; indices must lie in [0, num_samples).
        group: the torch.distributed process group whose ranks share the observations (default:
            the default group; nothing is exchanged without a process group).

    Raises:
        TypeError: num_samples is not an int.
        ValueError: num_samples < 0.
    """

    def __init__(self, num_samples: int, group: dist.ProcessGroup | None = None):
        if isinstance(num_samples, bool) or not isinstance(num_samples, int):
            raise TypeError(f"num_samples must be an int, got {type(num_samples).__name__}")
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        self.num_samples = num_samples
        self.group = group
        self.capacity = 0  # the exchange's index capacity (equal on every rank)
        self.presentations = torch.zeros(num_samples, dtype=torch.int64)
        self.forgetting_events = torch.zeros(num_samples, dtype=torch.int64)
        self.last_correct = torch.zeros(num_samples, dtype=torch.bool)
        self.learned = torch.zeros(num_samples, dtype=torch.bool)

    # ------------------------------------------------------------------ observing

    def compute_losses(self, output: Tensor, target: Tensor, index: Tensor) -> None:
        """Record the batch's presentations (every rank's, under torch.distributed); returns None.

        Collective under torch.distributed: every rank's loop calls it once per step.

        Args:
            output: the training-time outputs [B, C] (logits or log-probabilities).
            target: integer labels [B].
            index: dataset indices [B].

        Returns:
            None: the loss is left to cross-entropy or to another method.

        Raises:
            TypeError: an argument is not a tensor, or target is not an integer tensor.
            ValueError: shapes do not match, or (on every rank alike) some rank's output is not
                finite, a target is no class of the output or an index lies outside
                [0, num_samples); the state is then unchanged.
        """
        if not all(isinstance(t, Tensor) for t in (output, target, index)):
            raise TypeError("output, target and index must be torch tensors")
        if output.ndim != 2 or target.shape != (len(output),) or index.shape != target.shape:
            raise ValueError(
                f"output must be [B, C] with target and index [B]; got output "
                f"{tuple(output.shape)}, target {tuple(target.shape)}, index {tuple(index.shape)}"
            )
        if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
            raise TypeError(f"target must be an integer tensor, got {target.dtype}")
        values = _correctness_values(output.detach(), target)
        try:
            gathered = gather_observations(index, values, num_samples=self.num_samples,
                                           group=self.group, capacity=self.capacity)
        except ValueError as error:
            raise ValueError(
                "ForgettingEvents: every rank's training output must be finite, its targets "
                f"classes of the output and its indices in [0, {self.num_samples}): {error}"
            ) from None
        self.capacity = gathered.capacity
        self.record(gathered.index.cpu(), gathered.losses.cpu() == 1)
        return None

    def record(self, index: Tensor, correct: Tensor) -> None:
        """Record presentations in order: sample `index[k]` was classified correctly iff
        `correct[k]`. A sample repeated within one call is presented once per occurrence, in
        the order given. (The loop calls this through `compute_losses`; call it directly to
        replay presentations measured elsewhere.)

        Args:
            index: integer dataset indices [K].
            correct: booleans [K].

        Raises:
            TypeError: index is not an integer tensor or correct not a bool tensor.
            ValueError: shapes differ or an index lies outside [0, num_samples); the state is
                then unchanged.
        """
        if not isinstance(index, Tensor) or not isinstance(correct, Tensor):
            raise TypeError("index and correct must be torch tensors")
        if index.dtype.is_floating_point or index.dtype.is_complex or index.dtype == torch.bool:
            raise TypeError(f"index must be an integer tensor, got {index.dtype}")
        if correct.dtype != torch.bool:
            raise TypeError(f"correct must be a bool tensor, got {correct.dtype}")
        if index.ndim != 1 or correct.shape != index.shape:
            raise ValueError(
                f"index and correct must be 1-D of equal length; got {tuple(index.shape)}, "
                f"{tuple(correct.shape)}"
            )
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_samples):
            raise ValueError(f"index must lie in [0, {self.num_samples}), got "
                             f"{int(index.min())}..{int(index.max())}")
        if not index.numel():
            return
        index = index.long()
        occurrence = _occurrence_numbers(index)
        for round_ in range(int(occurrence.max()) + 1):  # each round holds distinct indices
            chosen = occurrence == round_
            self._present(index[chosen], correct[chosen])

    def _present(self, index: Tensor, correct: Tensor) -> None:
        """One presentation of each of the distinct samples `index`."""
        self.forgetting_events[index] += (self.last_correct[index] & ~correct).long()
        self.presentations[index] += 1
        self.last_correct[index] = correct
        self.learned[index] |= correct

    # ------------------------------------------------------------------ results

    def _presented(self) -> Tensor:
        presented = self.presentations > 0
        if not bool(presented.any()):
            raise ValueError("no sample has been presented yet: train with this observer first")
        return presented

    def scores(self) -> Tensor:
        """Each sample's forgetting score.

        Its number of forgetting events, or, for a never-learned sample, the largest number of
        presentations of any sample (the number of epochs in plain epoch-wise training; see the
        module docstring).

        Returns:
            [num_samples] float64 scores >= 0.

        Raises:
            ValueError: some sample has never been presented (its score would be unknown).
        """
        unseen = int((self.presentations == 0).sum())
        if unseen:
            raise ValueError(
                f"{unseen} of {self.num_samples} samples were never presented, so they have no "
                "forgetting score: train on every sample (or score a data set of the seen ones)"
            )
        never_learned_score = float(self.presentations.max()) if self.num_samples else 0.0
        events = self.forgetting_events.double()
        return torch.where(self.learned, events, torch.full_like(events, never_learned_score))

    def never_forgotten_fraction(self) -> float:
        """Share of the presented samples that were learned and never forgotten.

        Returns:
            A float in [0, 1].

        Raises:
            ValueError: no sample has been presented.
        """
        presented = self._presented()
        never_forgotten = presented & self.learned & (self.forgetting_events == 0)
        return float(never_forgotten.sum()) / float(presented.sum())

    def never_learned_fraction(self) -> float:
        """Share of the presented samples never classified correctly at any presentation.

        Returns:
            A float in [0, 1].

        Raises:
            ValueError: no sample has been presented.
        """
        presented = self._presented()
        return float((presented & ~self.learned).sum()) / float(presented.sum())

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """`num_samples` and the four per-sample tensors (copies).

        Returns:
            {"num_samples", "presentations", "forgetting_events", "last_correct", "learned"}, each
            tensor [num_samples].
        """
        state = {name: getattr(self, name).clone() for name in _STATE_DTYPES}
        return {"num_samples": self.num_samples, **state}

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict()`, validated completely before anything changes.

        Args:
            state: what `state_dict()` returned, for the same `num_samples`.

        Raises:
            TypeError: `state` is not a dict.
            ValueError: a key is missing or unexpected, or a value has the wrong type, shape,
                dtype or range (the message names the key).
        """
        owner = "ForgettingEvents"
        check_keys(state, ("num_samples", *_STATE_DTYPES), owner)
        check_equal(state, "num_samples", owner, self.num_samples)
        for name, dtype in _STATE_DTYPES.items():
            check_tensor(state, name, owner, shape=(self.num_samples,), dtype=dtype)
        presentations, events = state["presentations"], state["forgetting_events"]
        if bool((presentations < 0).any()):
            raise ValueError("presentations must be >= 0")
        if bool((events < 0).any()) or bool((events > presentations // 2).any()):
            raise ValueError("forgetting_events must lie in [0, presentations // 2] (each event "
                             "follows a correct presentation)")
        if bool((state["learned"] & (presentations == 0)).any()):
            raise ValueError("learned: a sample never presented cannot have been learned")
        if bool((state["last_correct"] & ~state["learned"]).any()):
            raise ValueError("last_correct: a sample last classified correctly must be learned")
        if bool(((events > 0) & ~state["learned"]).any()):
            raise ValueError("forgetting_events: only a learned sample can be forgotten")
        for name in _STATE_DTYPES:
            setattr(self, name, state[name].clone())


def _occurrence_numbers(index: Tensor) -> Tensor:
    """For each position k, how many earlier positions hold the same index (0 for the first)."""
    order = torch.argsort(index, stable=True)
    _, counts = torch.unique_consecutive(index[order], return_counts=True)
    starts = torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    occurrence = torch.empty_like(index)
    occurrence[order] = torch.arange(len(index)) - starts
    return occurrence
