"""Curriculum learning by a scoring function and a pacing function, with its two controls.

A curriculum sorts the training set by a per-sample score (lower = easier: a reference model's
loss, forgetting counts, the current model's loss, ...) and, at training step t, draws the batch
uniformly from the `g(t) * N` easiest samples, where the pacing function g grows from a starting
fraction b to 1 (Hacohen & Weinshall, ICML 2019; Wu, Dyer & Neyshabur, ICLR 2021). Wu et al.'s
two controls use the same pacing over another order: the anti-curriculum over the reversed order
(hardest first) and the random curriculum over a fixed random order.

Pacing functions (`pacing_fraction`): Wu et al. parametrise a pacing function by b, the fraction
of the data available at step 0, and a, the fraction of the T training steps after which all data
is available. With x = t / (a T) and c = 10 (the constant of their code,
google-research/understanding-curricula, utils/utils.py `get_pacing_function`):

    linear       g(t) = b + (1 - b) x
    quadratic    g(t) = b + (1 - b) x^2
    root         g(t) = b + (1 - b) x^(1/2)
    exponential  g(t) = b + (1 - b) (e^(c x) - 1) / (e^c - 1)
    logarithmic  g(t) = b + (1 - b) (1 + log(x + e^(-c)) / c)
    step         g(t) = b + floor(x)

each clipped to [b, 1] (their code multiplies by N and truncates to an int; here the clipped
fraction is returned and `available_count` turns it into a count). Every one gives g(0) = b and
g(a T) = 1 (the logarithmic one exceeds 1 by log(1 + e^-c) / c ~ 5e-6 there, so the clip makes it
1); "step" is Hacohen & Weinshall's single-step pacing. Their fixed exponential pacing,
g(t) = min(b * increase^floor(t / step_length), 1), is `fixed_exponential_pacing`
(GuyHacohen/curriculum_learning, main_train_networks.py `exponent_data_function_generator`).

The sampler (`CurriculumSampler`): the whole budget of `total_steps` batches is split into
"epochs" of `steps_per_epoch` steps (default: ceil(N / batch_size), one pass's worth of samples),
so `fit(model, loader, optimizer, sampler.num_epochs, methods=[sampler])` trains exactly
`total_steps` steps; the pacing is a function of the global step, so the epoch length changes
only when the loop's per-epoch hooks (evaluation, a score refresh) run. The batch of step t is a
pure function of (seed, t, the order): `batch_size` distinct positions drawn uniformly from the
available prefix (with replacement only if the prefix holds fewer than `batch_size` samples).
Wu et al.'s code instead shuffles the prefix into a pass and re-reads the pacing after each pass;
drawing every step anew follows the pacing exactly at every step.

Under torch.distributed every rank computes the same global batch (same seed) and yields every
`num_replicas`-th entry of it from position `rank`, so the ranks' shares of a step are disjoint
and together are the one-process batch; `batch_size` must divide by `num_replicas`, and each
rank's loader uses `local_batch_size`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.data import Sampler

from curriclab.core.distributed import (
    check_distinct_ranks,
    check_identical,
    rank_and_world,
)
from curriclab.core.protocol import SampleMethod
from curriclab.core.state import check_keys
from curriclab.methods.sampling import ShardedPlans, check_count

__all__ = [
    "available_count",
    "CurriculumSampler",
    "curriculum_order",
    "fixed_exponential_pacing",
    "ORDERS",
    "pacing_fraction",
    "pacing_function",
    "PACINGS",
    "Pacing",
    "selected_fraction",
]

PACINGS = ("linear", "quadratic", "root", "exponential", "logarithmic", "step")
"""Wu et al.'s pacing families, by the names `pacing_fraction` takes."""

ORDERS = ("easy", "hard", "random")
"""Curriculum (easiest first), anti-curriculum (hardest first), random curriculum."""

GROWTH = 10.0
"""The constant c of Wu et al.'s exponential and logarithmic pacing."""

Pacing = Callable[[int], float]
"""step -> fraction of the ordered data available at that step, in (0, 1]."""


def _check_number(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


def _check_start(start: float) -> float:
    start = _check_number("start", start)
    if not 0.0 < start <= 1.0:
        raise ValueError(f"start must lie in (0, 1], got {start}")
    return start


def pacing_fraction(name: str, step: int, total_steps: int, *, start: float = 0.2,
                    full_at: float = 0.8) -> float:
    """Wu et al.'s pacing function `name` at `step`: the fraction of the ordered data available.

    Args:
        name: one of `PACINGS` (formulas in the module docstring).
        step: the training step t >= 0.
        total_steps: the budget T >= 1.
        start: b, the fraction available at step 0, in (0, 1].
        full_at: a > 0, the fraction of T after which all data is available (a > 1: never).

    Returns:
        g(t) clipped to [start, 1].

    Raises:
        ValueError/TypeError naming the argument that is out of range or of the wrong type.
    """
    if name not in PACINGS:
        raise ValueError(f"name must be one of {PACINGS}, got {name!r}")
    step = check_count("step", step, 0)
    total_steps = check_count("total_steps", total_steps, 1)
    start = _check_start(start)
    full_at = _check_number("full_at", full_at)
    if not (full_at > 0 and math.isfinite(full_at)):
        raise ValueError(f"full_at must be a finite number > 0, got {full_at}")
    x = step / (full_at * total_steps)
    if name == "linear":
        grown = x
    elif name == "quadratic":
        grown = x**2
    elif name == "root":
        grown = math.sqrt(x)
    elif name == "exponential":
        grown = math.expm1(min(GROWTH * x, 700.0)) / math.expm1(GROWTH)
    elif name == "logarithmic":
        grown = 1.0 + math.log(x + math.exp(-GROWTH)) / GROWTH
    else:
        return min(start + math.floor(x + 1e-12), 1.0)
    return min(max(start + (1.0 - start) * grown, start), 1.0)


def pacing_function(name: str, total_steps: int, *, start: float = 0.2,
                    full_at: float = 0.8) -> Pacing:
    """`pacing_fraction(name, step, total_steps, start=..., full_at=...)` as a function of step.

    Arguments are checked here, once. The defaults b = 0.2, a = 0.8 are illustrative, not a
    recommendation.

    Args:
        name, total_steps, start, full_at: as `pacing_fraction`.

    Returns:
        The pacing function step -> fraction in [start, 1] (a `step` that is not an int >= 0
        raises there).

    Raises:
        ValueError/TypeError: as `pacing_fraction`, naming the argument.
    """
    pacing_fraction(name, 0, total_steps, start=start, full_at=full_at)

    def pace(step: int) -> float:
        return pacing_fraction(name, step, total_steps, start=start, full_at=full_at)

    return pace


def fixed_exponential_pacing(start: float, increase: float, step_length: int) -> Pacing:
    """Hacohen & Weinshall's fixed exponential pacing: g(t) = min(b * increase^floor(t / L), 1).

    Args:
        start: b in (0, 1], the fraction available during the first `step_length` steps.
        increase: the factor > 1 by which the fraction grows every `step_length` steps.
        step_length: L >= 1 steps between increases.

    Returns:
        The pacing function step -> fraction in [start, 1].

    Raises:
        ValueError/TypeError naming the argument out of range.
    """
    start = _check_start(start)
    increase = _check_number("increase", increase)
    if not (increase > 1 and math.isfinite(increase)):
        raise ValueError(f"increase must be a finite number > 1, got {increase}")
    step_length = check_count("step_length", step_length, 1)
    enough = math.ceil(math.log(1.0 / start) / math.log(increase)) if start < 1 else 0

    def pace(step: int) -> float:
        rises = min(check_count("step", step, 0) // step_length, enough)
        return min(start * increase**rises, 1.0)

    return pace


def available_count(fraction: float, num_samples: int, min_samples: int = 1) -> int:
    """How many of `num_samples` ordered samples a pacing `fraction` makes available.

    floor(fraction * N) (as Wu et al.'s code truncates), with a 1e-9 tolerance so that a float
    product such as 0.29 * 100 = 28.999999999999996 counts as 29, and at least
    min(min_samples, N) so that no step draws from an empty set.

    Args:
        fraction: the pacing value, in (0, 1].
        num_samples: N >= 0 ordered samples.
        min_samples: the floor, >= 0.

    Returns:
        An int in [min(min_samples, N), N].

    Raises:
        TypeError: an argument of the wrong type (a bool, a non-number), naming it.
        ValueError: `fraction` outside (0, 1], or `num_samples` or `min_samples` < 0.
    """
    fraction = _check_number("fraction", fraction)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    check_count("num_samples", num_samples, 0)
    check_count("min_samples", min_samples, 0)
    return min(max(math.floor(fraction * num_samples + 1e-9), min_samples), num_samples)


def _check_scores(scores: Tensor) -> Tensor:
    scores = torch.as_tensor(scores).detach()
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D (one per dataset index), got {tuple(scores.shape)}")
    if scores.dtype == torch.bool or scores.is_complex():
        raise TypeError(f"scores must be real numbers, got {scores.dtype}")
    scores = scores.double().cpu().clone()  # never alias (and later update) the caller's tensor
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores must be finite (got NaN or inf)")
    return scores


def curriculum_order(scores: Tensor, order: str = "easy",
                     generator: torch.Generator | None = None) -> Tensor:
    """Dataset indices in the order a curriculum makes them available.

    Args:
        scores: [N] finite per-sample scores, lower = easier, keyed by dataset index.
        order: "easy" (ascending score, ties by index), "hard" (the reverse of "easy") or
            "random" (a permutation from `generator`; the scores are ignored).
        generator: the random order's generator (default: torch's global one).

    Returns:
        [N] int64 dataset indices.

    Raises:
        ValueError naming `scores` (not 1-D, non-finite) or `order` (unknown).
    """
    scores = _check_scores(scores)
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if order == "random":
        return torch.randperm(len(scores), generator=generator)
    easy = torch.argsort(scores, stable=True)
    return easy if order == "easy" else easy.flip(0)


def selected_fraction(losses: Tensor, threshold: float) -> float:
    """The share of samples that hard self-paced learning selects (loss < threshold).

    SPL (`curriclab.methods.spl`) is a curriculum whose score is the current model's loss: its
    threshold lambda selects the easiest samples, so the fraction selected plays the part of
    g(t); `spl.threshold_for_fraction` is the inverse map (fraction -> lambda).

    Args:
        losses: per-sample losses of any shape; NaN entries (never seen) are left out.
        threshold: lambda, any number but NaN (inf selects every seen sample).

    Returns:
        A float in [0, 1]: the share of the seen losses below `threshold`.

    Raises:
        TypeError: `threshold` is not a number.
        ValueError: `threshold` is NaN or no loss is seen (not NaN).
    """
    threshold = _check_number("threshold", threshold)
    if math.isnan(threshold):
        raise ValueError("threshold must not be NaN")
    losses = torch.as_tensor(losses).detach().double().reshape(-1)
    seen = losses[~losses.isnan()]
    if seen.numel() == 0:
        raise ValueError("losses must contain at least one seen (non-NaN) value")
    return float((seen < threshold).double().mean())


def _step_seed(seed: int, step: int) -> int:
    """The 63-bit seed of step `step`'s draw: an affine mix of the sampler's seed and the step."""
    return (seed * 6364136223846793005 + step * 1442695040888963407 + 1) % 2**63


class CurriculumSampler(Sampler[int], SampleMethod, ShardedPlans):
    """Draws each step's batch uniformly from the `pacing(step)` share of the ordered samples.

    Args:
        scores: [N] finite per-sample scores keyed by dataset index (lower = easier).
        pacing: step -> fraction in (0, 1] (`pacing_function`, `fixed_exponential_pacing`, or
            your own); checked at every step.
        total_steps: the budget T >= 1 of global batches.
        batch_size: the global batch size >= 1 (divisible by `num_replicas`).
        order: "easy" (curriculum), "hard" (anti-curriculum) or "random" (random curriculum).
        seed: the seed of the random order and of every step's draw; identical on every rank
            (default: drawn from torch's global RNG, so `seed_everything` makes it repeatable,
            and under a process group every rank must have been seeded alike).
        steps_per_epoch: steps per `set_epoch` epoch (default ceil(N / batch_size)).
        min_samples: the fewest samples any step draws from (Wu et al.'s code uses 256).
        update_scores: if True, `objective` records each batch's per-sample losses as the new
            scores of their samples and every new epoch re-sorts the order by them (a
            curriculum by the current model's loss, as SPL); needs order "easy" or "hard". Feed
            it the gathered losses under DDP (`Synchronized`) so every rank sorts alike.
        num_replicas, rank: the shard (default: the default process group's, or 1 and 0).
        verify_across_ranks: let `set_epoch` call `check_plans_agree()` once per epoch under a
            process group of more than one rank (default True).

    Raises:
        ValueError/TypeError naming the argument that is out of range or of the wrong type.

    Every weight is 1: `objective` only observes (returns None). `len(sampler)` is the number of
    indices this rank yields in the current epoch; `plan_of_step(t)` is step t's global batch.
    """

    def __init__(
        self,
        scores: Tensor,
        pacing: Pacing,
        total_steps: int,
        batch_size: int,
        order: str = "easy",
        *,
        seed: int | None = None,
        steps_per_epoch: int | None = None,
        min_samples: int = 1,
        update_scores: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
        verify_across_ranks: bool = True,
    ):
        self.scores = _check_scores(scores)
        self.num_samples = len(self.scores)
        if self.num_samples == 0:
            raise ValueError("scores must not be empty")
        if not callable(pacing):
            raise TypeError("pacing must be callable (step -> fraction), got "
                            f"{type(pacing).__name__}")
        self.pacing = pacing
        self.total_steps = check_count("total_steps", total_steps, 1)
        self.batch_size = check_count("batch_size", batch_size, 1)
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        self.order_name = order
        if seed is None:
            seed = int(torch.randint(0, 2**62, ()).item())
        self.seed = check_count("seed", seed, 0)
        default_epoch = math.ceil(self.num_samples / self.batch_size)
        self.steps_per_epoch = check_count(
            "steps_per_epoch", default_epoch if steps_per_epoch is None else steps_per_epoch, 1)
        self.min_samples = check_count("min_samples", min_samples, 1)
        self.update_scores = bool(update_scores)
        if self.update_scores and order == "random":
            raise ValueError("update_scores needs order 'easy' or 'hard' (a random order ignores "
                             "scores)")
        self._init_sharding(num_replicas, rank, verify_across_ranks)
        if self.batch_size % self.num_replicas:
            raise ValueError(f"batch_size ({self.batch_size}) must be divisible by num_replicas "
                             f"({self.num_replicas})")
        self.epoch = 0
        self.order = curriculum_order(self.scores, order, torch.Generator().manual_seed(self.seed))

    @property
    def local_batch_size(self) -> int:
        """Indices per step on this rank: the batch size of this rank's DataLoader."""
        return self.batch_size // self.num_replicas

    @property
    def num_epochs(self) -> int:
        """Epochs that cover the budget: ceil(total_steps / steps_per_epoch)."""
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def epoch_steps(self, epoch: int) -> range:
        """The global steps of `epoch`.

        Args:
            epoch: an int >= 0.

        Returns:
            range(first, last) within [0, total_steps): `steps_per_epoch` steps, fewer in the last
            epoch, none once the budget is spent.

        Raises:
            TypeError, ValueError: `epoch` is not an int >= 0.
        """
        first = min(check_count("epoch", epoch, 0) * self.steps_per_epoch, self.total_steps)
        return range(first, min(first + self.steps_per_epoch, self.total_steps))

    def available(self, step: int) -> int:
        """How many ordered samples step `step` draws from.

        Args:
            step: the global step, an int >= 0.

        Returns:
            `available_count(pacing(step), N, min_samples)`, an int in [1, N].

        Raises:
            TypeError, ValueError: `step` is not an int >= 0.
            ValueError: naming `pacing`, if it returns anything but a number in (0, 1] there.
        """
        fraction = self.pacing(check_count("step", step, 0))
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
                0.0 < fraction <= 1.0):
            raise ValueError(f"pacing must return a fraction in (0, 1], returned {fraction!r} at "
                             f"step {step}")
        return available_count(fraction, self.num_samples, self.min_samples)

    def plan_of_step(self, step: int) -> Tensor:
        """Step `step`'s global batch: a pure function of (seed, step, the current order).

        Args:
            step: the global step, an int >= 0.

        Returns:
            [batch_size] int64 dataset indices drawn uniformly from the first `available(step)`
            entries of the order: distinct when there are enough, else with replacement.

        Raises:
            TypeError, ValueError: as `available`.
        """
        count = self.available(step)
        generator = torch.Generator().manual_seed(_step_seed(self.seed, step))
        if count >= self.batch_size:
            positions = torch.randperm(count, generator=generator)[: self.batch_size]
        else:
            positions = torch.randint(0, count, (self.batch_size,), generator=generator)
        return self.order[positions]

    def set_epoch(self, epoch: int) -> None:
        """Move to `epoch` (>= the current one); with `update_scores`, re-sort by the scores.

        With `verify_across_ranks`, under a process group of more than one rank, the first call
        for each epoch (on a fresh or restored sampler too) then runs `check_plans_agree()`, a
        collective that every rank must reach.

        Args:
            epoch: an int >= the current epoch; the same epoch again keeps the order.

        Raises:
            TypeError: `epoch` is not an int.
            ValueError: `epoch` < the current epoch; `num_replicas` differs from the process
                group's world size; or, from `check_plans_agree`, the ranks disagree.
            PeerTimeoutError: from `check_plans_agree`, a peer did not answer in time.
        """
        epoch = check_count("epoch", epoch, 0)
        if epoch < self.epoch:
            raise ValueError(f"epoch must be >= the current epoch {self.epoch}, got {epoch}")
        if epoch != self.epoch and self.update_scores:
            self.order = curriculum_order(self.scores, self.order_name)
        self.epoch = epoch
        self._verify_plans_once(epoch)

    def check_plans_agree(self) -> None:
        """Collective: check that every rank draws the same steps, and raise on every rank if not.

        Every step's global batch is a pure function of (seed, step, order), so this compares
        those. Two all-gathers of one int64 each, both waiting at most `collective_timeout()`
        (`$CURRICLAB_DIST_TIMEOUT` seconds, default 30) for the other ranks: every rank's
        `rank` (0..world-1, each once, so the shares are disjoint), then a 60-bit SHA-256
        digest of the order and the seed (bitwise identical everywhere). A no-op without a
        process group (or with one rank). `set_epoch` calls it once per epoch when
        `verify_across_ranks` is True.

        Raises:
            ValueError: on every rank, naming `rank` if two ranks passed the same one, or
                "CurriculumSampler's order and seed for epoch <e> ... differs across ranks"
                with every rank's digest (seed every rank alike and feed the losses through
                `Synchronized`).
            PeerTimeoutError: a peer did not answer within the timeout.
        """
        if rank_and_world()[1] == 1:
            return
        check_distinct_ranks(self.rank, "CurriculumSampler")
        check_identical(f"CurriculumSampler's order and seed for epoch {self.epoch} (seed every "
                        "rank alike and feed the losses through Synchronized)",
                        self.order, torch.tensor([self.seed]))

    def __iter__(self):
        for step in self.epoch_steps(self.epoch):
            yield from self.plan_of_step(step)[self.rank :: self.num_replicas].tolist()

    def __len__(self) -> int:
        return len(self.epoch_steps(self.epoch)) * self.local_batch_size

    def objective(self, index: Tensor, losses: Tensor) -> None:
        """With `update_scores`, record the batch's losses as its samples' scores.

        Args:
            index: [B] integer dataset indices in [0, N).
            losses: [B] finite per-sample losses (detached before they are stored).

        Returns:
            None (an observer: every weight is 1).

        Raises:
            TypeError: `index` is not an integer tensor.
            ValueError: the counts differ, an index is out of range or a loss is not finite; the
                scores are unchanged then. (Without `update_scores` nothing is checked.)
        """
        if not self.update_scores:
            return None
        index = torch.as_tensor(index).reshape(-1)
        losses = torch.as_tensor(losses).detach().reshape(-1)
        if index.dtype.is_floating_point or index.dtype == torch.bool or index.is_complex():
            raise TypeError(f"index must be an integer tensor, got {index.dtype}")
        if len(index) != len(losses):
            raise ValueError(f"index ({len(index)}) and losses ({len(losses)}) must match")
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_samples):
            raise ValueError(f"index must lie in [0, {self.num_samples})")
        if losses.numel() and not bool(torch.isfinite(losses).all()):
            raise ValueError("losses must be finite (got NaN or inf): did training diverge?")
        self.scores[index.long().cpu()] = losses.double().cpu()
        return None

    def after_epoch(self, epoch: int) -> None:
        """Epoch `epoch` ended: `set_epoch(epoch + 1)` (re-sorting if `update_scores`).

        Args:
            epoch: the epoch that ended.

        Raises:
            ValueError, PeerTimeoutError: as `set_epoch`.
        """
        self.set_epoch(epoch + 1)

    def state_dict(self) -> dict:
        """Everything that decides the stream from here on, as copies.

        Returns:
            {"num_samples", "seed", "epoch", "scores": [N] float64, "order": [N] int64}.
        """
        return {
            "num_samples": self.num_samples,
            "seed": self.seed,
            "epoch": self.epoch,
            "scores": self.scores.clone(),
            "order": self.order.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`'s output (e.g. from `torch.load(..., weights_only=True)`).

        The next `set_epoch` checks the plans across ranks again (with `verify_across_ranks`).

        Args:
            state: what `state_dict()` returned, for the same N.

        Raises:
            TypeError: `state` is not a dict.
            ValueError: naming the key that is missing, unexpected, of the wrong shape, dtype or
                range (the sampler is unchanged then).
        """
        check_keys(state, ("num_samples", "seed", "epoch", "scores", "order"),
                   "CurriculumSampler")
        if state["num_samples"] != self.num_samples:
            raise ValueError(f"num_samples: state is for {state['num_samples']} samples, this "
                             f"sampler has {self.num_samples}")
        for key in ("seed", "epoch"):
            value = state[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key} must be an int >= 0, got {value!r}")
        scores, order = state["scores"], state["order"]
        if not isinstance(scores, Tensor) or scores.dtype != torch.float64 or scores.shape != (
                self.num_samples,):
            raise ValueError(f"scores must be a float64 tensor of shape ({self.num_samples},)")
        if not bool(torch.isfinite(scores).all()):
            raise ValueError("scores must be finite")
        if not isinstance(order, Tensor) or order.dtype != torch.int64 or order.shape != (
                self.num_samples,):
            raise ValueError(f"order must be an int64 tensor of shape ({self.num_samples},)")
        if not torch.equal(torch.sort(order).values, torch.arange(self.num_samples)):
            raise ValueError("order must be a permutation of the dataset indices")
        self.seed = state["seed"]
        self.epoch = state["epoch"]
        self.scores = scores.clone()
        self.order = order.clone()
        self._checked_epoch = None
