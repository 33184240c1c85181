"""Loss-driven samplers: SGD-S resampling and pruning, and the machinery they share.

SGD-S ("SGD on steroids", from Zakka's 2018 blog post) trains a few transient epochs on
all data, then, at the start of every later epoch, prunes the lowest-loss share of the active
samples, brings back a few pruned ones at random, and draws the epoch's samples with replacement
with probability proportional to each sample's latest loss. Every quantity is keyed by DATASET
index; Zakka's pr-lr/mini_batch.py keyed the weights by sampler position (see
`position_keyed_weights`).

A sampler here is a torch `Sampler` that yields dataset indices and also a `SampleMethod` that
hands out one loss weight per index (1 unless the method reweights), so a loop uses it twice:

    sampler = SGDSSampler(len(train))
    loader = make_loader(train, 64, sampler=sampler)
    fit(model, loader, optimizer, epochs, methods=[sampler])   # fit calls sampler.set_epoch

`objective` records the batch's per-sample losses and returns their weighted mean to minimise.

Under torch.distributed the sampler shards each epoch's plan like `DistributedSampler`: every rank
makes the same plan (same seed, the same gathered losses through
`curriclab.core.distributed.Synchronized`) and yields every `num_replicas`-th entry of it from
position `rank`. With `drop_last=False` the plan is padded by repeating its first entries until
its length divides by `num_replicas` (a few samples are then used twice); with `drop_last=True`
its tail is dropped instead. Either way the shards are disjoint slices of the (padded or cut)
plan and together cover it exactly; weights stay keyed by dataset index, so they are unchanged.
The first `set_epoch` of every epoch then checks that all ranks made the same plan
(`check_plans_agree`: two all-gathers of one int64 each; `verify_across_ranks=False` skips it).

Plans are made only at construction, by `set_epoch` and by `load_state_dict`; `len`, iteration,
`weights` and `state_dict` just read the current one. They read `plan_losses`: with `momentum` m
each sample's exponential moving average of its recorded losses, with m = 0 (the default, as in
mini_batch.py) its latest loss.

Learning-rate schedules: the number of draws per epoch changes as samples are pruned. Step a
schedule once per epoch, or size a per-step schedule with `SGDSSampler.epoch_sizes(epochs)`, which
gives the exact number of draws of every future epoch without running anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import Sampler

from curriclab.core.distributed import (
    check_distinct_ranks,
    check_identical,
    check_num_replicas,
    rank_and_world,
)
from curriclab.core.protocol import SampleMethod
from curriclab.core.state import (
    check_equal,
    check_generator_state,
    check_int,
    check_keys,
    check_tensor,
)
from curriclab.core.tracking import LossTracker

__all__ = [
    "EpochPlan",
    "importance_weights",
    "loss_probabilities",
    "LossDrivenSampler",
    "prune_and_reintroduce",
    "SGDSSampler",
    "ShardedPlans",
]


def check_fraction(name: str, value: float) -> float:
    """Check a fraction argument.

    Args:
        name: the argument's name, for the message.
        value: the value given.

    Returns:
        `value` as a float in [0, 1).

    Raises:
        TypeError: `value` is not an int or float (bools are refused).
        ValueError: `value` is NaN or outside [0, 1); the message names `name`.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1), got {type(value).__name__}")
    if math.isnan(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value}")
    return float(value)


def check_count(name: str, value: int, minimum: int = 0) -> int:
    """Check a count argument.

    Args:
        name: the argument's name, for the message.
        value: the value given.
        minimum: the smallest allowed value.

    Returns:
        `value`, an int >= `minimum`.

    Raises:
        TypeError: `value` is not an int (bools are refused).
        ValueError: `value` < `minimum`; the message names `name`.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_losses(losses: Tensor) -> Tensor:
    """Check per-sample losses before they are recorded.

    Args:
        losses: per-sample losses of any shape (a tensor or anything `torch.as_tensor` takes).

    Returns:
        [B] float32 losses, flattened, detached and on the CPU.

    Raises:
        ValueError: a loss is NaN, infinite or negative.
    """
    losses = torch.as_tensor(losses).detach().reshape(-1).float().cpu()
    if losses.numel() and not bool(torch.isfinite(losses).all()):
        raise ValueError("losses must be finite (got NaN or inf): did training diverge?")
    if losses.numel() and bool((losses < 0).any()):
        raise ValueError(f"losses must be >= 0, got a minimum of {float(losses.min())}")
    return losses


def fill_unseen(losses: Tensor, active: Tensor) -> Tensor:
    """Losses with never-seen (NaN) entries replaced by the largest seen loss among `active`.

    A sample nobody has measured yet is treated as hard, so it is drawn soon and pruned last.
    With no seen active sample at all every unseen loss becomes 1 (a uniform distribution).

    Args:
        losses: [N] per-sample losses, NaN where never seen.
        active: [N] bool mask of the samples whose seen losses set the fill value.

    Returns:
        [N] losses (a new tensor, same dtype) without NaN.
    """
    seen = active & ~torch.isnan(losses)
    fill = float(losses[seen].max()) if bool(seen.any()) else 1.0
    return torch.where(torch.isnan(losses), torch.full_like(losses, fill), losses)


def loss_probabilities(
    losses: Tensor, active: Tensor, power: float = 1.0, uniform_mix: float = 0.0
) -> Tensor:
    """Per-index draw probabilities: proportional to `loss ** power` on `active`, 0 elsewhere.

    `uniform_mix` blends in the uniform distribution over the active samples (a floor: every active
    sample keeps at least `uniform_mix / n_active`), which also bounds importance weights by
    `1 / uniform_mix`. `power` < 1 flattens the distribution, > 1 sharpens it; mini_batch.py uses 1.
    Never-seen samples count as the largest seen loss (`fill_unseen`). If every active loss is 0
    the result is uniform over the active samples; with no active sample it is all zeros.

    Args:
        losses: [N] per-sample losses >= 0, NaN where never seen.
        active: [N] bool mask (or anything convertible) of the samples that can be drawn.
        power: the exponent, > 0.
        uniform_mix: the share of the uniform distribution, in [0, 1).

    Returns:
        [N] float64 probabilities, summing to 1 unless no sample is active.

    Raises:
        ValueError: the shapes of `losses` and `active` differ, `power` <= 0, or
            `uniform_mix` outside [0, 1).
        TypeError: `uniform_mix` is not a number.
    """
    active = torch.as_tensor(active, dtype=torch.bool)
    if losses.shape != active.shape:
        raise ValueError(f"losses {tuple(losses.shape)} and active {tuple(active.shape)} "
                         "must match")
    if not power > 0:
        raise ValueError(f"power must be > 0, got {power}")
    check_fraction("uniform_mix", uniform_mix)
    count = int(active.sum())
    probabilities = torch.zeros(losses.shape, dtype=torch.float64)
    if count == 0:
        return probabilities
    uniform = active.double() / count
    scores = torch.where(active, fill_unseen(losses, active).double().pow(power), 0.0)
    total = float(scores.sum())
    if total <= 0.0:
        return uniform
    return (1.0 - uniform_mix) * scores / total + uniform_mix * uniform


def importance_weights(probabilities: Tensor) -> Tensor:
    """Weights 1 / (n_active p_i) that make a p-weighted draw an unbiased estimate of the mean over
    the samples with p_i > 0 (the active ones); 0 where p_i = 0 (such samples are never drawn).

    Args:
        probabilities: [N] draw probabilities >= 0 (as `loss_probabilities` returns).

    Returns:
        [N] float32 weights >= 0 (all zeros if every probability is 0).
    """
    count = int((probabilities > 0).sum())
    safe = torch.where(probabilities > 0, probabilities, 1.0)
    return torch.where(probabilities > 0, 1.0 / (count * safe), 0.0).float()


def prune_counts(active_count: int, inactive_count: int, prune_fraction: float,
                 reintroduce_fraction: float) -> tuple[int, int]:
    """(how many to prune, how many to bring back) at one SGD-S epoch boundary.

    Prune floor(prune_fraction * active); bring back floor(reintroduce_fraction * active) of the
    pruned pool (the samples pruned now and before), at most the pool's size.

    Args:
        active_count: active samples >= 0 before the boundary.
        inactive_count: samples >= 0 pruned at earlier boundaries.
        prune_fraction, reintroduce_fraction: shares in [0, 1) of `active_count`.

    Returns:
        (pruned, brought back), two ints >= 0.
    """
    pruned = math.floor(prune_fraction * active_count)
    back = min(math.floor(reintroduce_fraction * active_count), inactive_count + pruned)
    return pruned, back


def prune_and_reintroduce(
    losses: Tensor, active: Tensor, prune_fraction: float, reintroduce_fraction: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The next active mask: drop the lowest-loss `prune_fraction` of `active` (never-seen samples
    count as the hardest, ties broken by index), then re-activate a uniformly random
    `reintroduce_fraction` (of the active count) of all inactive samples.

    Args:
        losses: [N] per-sample losses, NaN where never seen.
        active: [N] bool mask of the samples active so far (not modified).
        prune_fraction, reintroduce_fraction: shares in [0, 1) of the active count (counts as
            `prune_counts`).
        generator: draws which inactive samples come back (default: torch's global one).

    Returns:
        [N] bool mask: the new active set.
    """
    active = torch.as_tensor(active, dtype=torch.bool).clone()
    members = torch.nonzero(active).squeeze(1)
    n_prune, n_back = prune_counts(len(members), len(active) - len(members), prune_fraction,
                                   reintroduce_fraction)
    order = torch.argsort(fill_unseen(losses, active)[members], stable=True)
    active[members[order[:n_prune]]] = False
    pool = torch.nonzero(~active).squeeze(1)
    active[pool[torch.randperm(len(pool), generator=generator)[:n_back]]] = True
    return active


def default_generator() -> torch.Generator:
    """A private generator for a sampler, seeded from torch's global RNG.

    Returns:
        A new CPU `torch.Generator`; one draw from the global RNG seeds it, so
        `seed_everything` makes samplers repeatable.
    """
    return torch.Generator().manual_seed(int(torch.randint(0, 2**62, ()).item()))


@dataclass
class EpochPlan:
    """What a sampler does in one epoch.

    Attributes:
        indices: int64 dataset indices the epoch yields, in order (all ranks, before sharding).
        weights: [N] the loss weight of every dataset index.
    """

    indices: Tensor
    weights: Tensor


class ShardedPlans:
    """What `LossDrivenSampler` and `CurriculumSampler` share about shards: the `num_replicas`
    / `rank` arguments and `set_epoch`'s once-per-epoch call of `check_plans_agree()`.

    A subclass calls `_init_sharding` in its constructor, `_verify_plans_once(epoch)` at the end
    of `set_epoch`, sets `_checked_epoch = None` when it loads a state, and defines
    `check_plans_agree`.
    """

    def _init_sharding(self, num_replicas: int | None, rank: int | None,
                       verify_across_ranks: bool) -> None:
        group_rank, group_world = rank_and_world()
        self.num_replicas = check_count(
            "num_replicas", group_world if num_replicas is None else num_replicas, minimum=1)
        self.rank = check_count("rank", group_rank if rank is None else rank)
        if self.rank >= self.num_replicas:
            raise ValueError(f"rank must lie in [0, num_replicas={self.num_replicas}), "
                             f"got {self.rank}")
        check_num_replicas(self.num_replicas)
        self.verify_across_ranks = bool(verify_across_ranks)
        self._checked_epoch: int | None = None

    def check_plans_agree(self) -> None:
        """Collective check that every rank draws the same plan (subclasses)."""
        raise NotImplementedError

    def _verify_plans_once(self, epoch: int) -> None:
        check_num_replicas(self.num_replicas)
        if (self.verify_across_ranks and self._checked_epoch != epoch
                and rank_and_world()[1] > 1):
            self.check_plans_agree()
            self._checked_epoch = epoch


class LossDrivenSampler(Sampler[int], SampleMethod, ShardedPlans):
    """Base class: a LossTracker fed by `update`/`objective`, a private generator, and one
    `EpochPlan` per epoch.

    Plans are made at three moments only: at construction (epoch 0's, by `_make_plan(0)`), by
    `set_epoch` when the epoch changes, and by `load_state_dict` (which restores the saved one).
    Everything else (`len`, iteration, `weights`, `state_dict`) only reads `plan`, so it changes
    neither the plan nor the generator, however often it is called. A plan is made from the
    losses recorded so far, smoothed with `momentum` (`plan_losses`); in the usual order
    (`set_epoch(e)`, iterate, record, `after_epoch(e)`) epoch e + 1's plan therefore sees every
    loss of epochs 0..e. Epochs must not go back: `set_epoch(e)` with `e` below the current
    epoch raises; the same epoch again keeps its plan, so iterating twice in one epoch yields the
    same indices.

    A subclass sets every attribute its `_make_plan(epoch) -> EpochPlan` reads before calling
    `super().__init__`, which ends by making epoch 0's plan.

    Sharding (see the module docstring): `plan` is the whole epoch's plan, identical on every
    rank, and iterating yields this rank's shard. Under a process group `num_replicas` must be
    its world size. With `verify_across_ranks`, the first `set_epoch` of every epoch calls
    `check_plans_agree()`, a collective that raises on every rank if the ranks' plans differ.

    Args:
        num_samples: N >= 0, the dataset size; indices and weights are keyed by dataset index.
        generator: the private generator every plan draws from (default: one seeded from
            torch's global RNG, so `seed_everything` makes the sampler repeatable).
        momentum: in [0, 1): plans read the exponential moving average of each sample's
            recorded losses, `average = momentum * average + (1 - momentum) * loss` once per
            `update` call that holds the sample (a sample drawn into two batches moves twice),
            started at its first loss; 0 (the default) reads the latest loss, bit for bit.
        num_replicas: ranks the plan is sharded over (default: the process group's world
            size, or 1 without one).
        rank: this rank's shard in [0, num_replicas) (default: the process group's rank, or 0).
        drop_last: cut each plan to a multiple of `num_replicas` instead of padding it.
        verify_across_ranks: let `set_epoch` call `check_plans_agree()` once per epoch under
            a process group of more than one rank (default True).

    Raises:
        TypeError: `num_samples`, `num_replicas` or `rank` is not an int.
        ValueError: `num_samples` < 0, `num_replicas` < 1, `rank` outside
            [0, num_replicas), `momentum` outside [0, 1), or `num_replicas` that differs from
            the process group's world size.
    """

    def __init__(self, num_samples: int, generator: torch.Generator | None = None,
                 momentum: float = 0.0, *, num_replicas: int | None = None,
                 rank: int | None = None, drop_last: bool = False,
                 verify_across_ranks: bool = True):
        self.num_samples = check_count("num_samples", num_samples)
        self.tracker = LossTracker(num_samples, momentum=momentum)
        self.generator = generator if generator is not None else default_generator()
        self.epoch = 0
        self._init_sharding(num_replicas, rank, verify_across_ranks)
        self.drop_last = bool(drop_last)
        self.plan: EpochPlan = self._make_plan(0)

    def _make_plan(self, epoch: int) -> EpochPlan:
        """Epoch `epoch`'s plan from `plan_losses` and the generator (subclasses)."""
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Move to `epoch` and make its plan; the same epoch again keeps the plan it has.

        The plan is made from the losses recorded until now, so call it after the previous
        epoch's losses were recorded (as `fit` does: `after_epoch(e)` moves to e + 1). With
        `verify_across_ranks`, under a process group of more than one rank, the first call for
        each epoch (on a fresh or restored sampler too) then runs `check_plans_agree()`, a
        collective that every rank must reach.

        Args:
            epoch: an int >= the current epoch.

        Raises:
            TypeError: `epoch` is not an int.
            ValueError: `epoch` < the current epoch; `num_replicas` differs from the process
                group's world size; or, from `check_plans_agree`, the ranks' `rank`s or plans
                disagree (on every rank).
            PeerTimeoutError: from `check_plans_agree`, a peer did not answer in time.
        """
        epoch = check_count("epoch", epoch)
        if epoch < self.epoch:
            raise ValueError(f"epoch must be >= the current epoch {self.epoch}, got {epoch}")
        self.tracker.set_epoch(epoch)
        if epoch != self.epoch:
            self.epoch = epoch
            self.plan = self._make_plan(epoch)
        self._verify_plans_once(epoch)

    def check_plans_agree(self) -> None:
        """Collective: check that every rank shards the same plan, and raise on every rank if not.

        Two all-gathers of one int64 each, both waiting at most `collective_timeout()`
        (`$CURRICLAB_DIST_TIMEOUT` seconds, default 30) for the other ranks: every rank's
        `rank` (they must be 0..world-1, each once, so the shards are disjoint and cover the
        plan), then a 60-bit SHA-256 digest of this epoch's plan (its indices and weights,
        which must be bitwise identical). A no-op without a process group (or with one rank).
        `set_epoch` calls it once per epoch when `verify_across_ranks` is True; call it
        yourself, on every rank, after changing the plan some other way.

        Raises:
            ValueError: on every rank, naming `rank` if two ranks passed the same one, or
                "<class>'s plan for epoch <e> ... differs across ranks" with every rank's
                digest (seed every rank alike and feed the losses through `Synchronized`).
            PeerTimeoutError: a peer did not answer within the timeout.
        """
        if rank_and_world()[1] == 1:
            return
        name = type(self).__name__
        check_distinct_ranks(self.rank, name)
        check_identical(f"{name}'s plan for epoch {self.epoch} (seed every rank alike and feed "
                        "the losses through Synchronized)", self.plan.indices, self.plan.weights)

    def shard(self, indices: Tensor) -> Tensor:
        """This rank's entries of an epoch's plan.

        Args:
            indices: [P] int64 dataset indices, a whole epoch's plan.

        Returns:
            [ceil(P / num_replicas)] entries (P // num_replicas with `drop_last`): `indices`
            padded by repeating its first entries to a multiple of `num_replicas` (or cut to
            one with `drop_last`), then every `num_replicas`-th entry from position `rank`.
        """
        size = len(indices)
        if self.drop_last:
            indices = indices[: size - size % self.num_replicas]
        elif size and size % self.num_replicas:
            padding = self.num_replicas - size % self.num_replicas
            indices = torch.cat([indices, indices.repeat(math.ceil(padding / size))[:padding]])
        return indices[self.rank :: self.num_replicas]

    def __iter__(self):
        return iter(self.shard(self.plan.indices).tolist())

    def __len__(self) -> int:
        size = len(self.plan.indices)
        if self.drop_last:
            return size // self.num_replicas
        return math.ceil(size / self.num_replicas)

    @property
    def sample_losses(self) -> Tensor:
        """[N] float32: the latest recorded loss of every sample (NaN if never seen)."""
        return self.tracker.latest

    @property
    def plan_losses(self) -> Tensor:
        """[N] float32: the losses plans are made from, each sample's exponential moving average
        with `momentum` (NaN if never seen; the latest loss at momentum 0)."""
        return self.tracker.average

    def update(self, indices: Tensor, losses: Tensor) -> None:
        """Record per-sample losses under the current epoch (the plan is not touched).

        Args:
            indices: [B] dataset indices in [0, N); a repeated index keeps its last loss.
            losses: [B] finite losses >= 0 (detached, moved to the CPU).

        Raises:
            ValueError: the counts differ, an index is out of range, or a loss is NaN,
                infinite or negative; nothing is recorded then.
        """
        self.tracker.update(torch.as_tensor(indices, dtype=torch.long), check_losses(losses))

    def weights(self, indices: Tensor) -> Tensor:
        """The current epoch's loss weights.

        Args:
            indices: [B] dataset indices in [0, N).

        Returns:
            [B] float32 weights >= 0, read from `plan` (1 unless the sampler reweights).

        Raises:
            ValueError: an index lies outside [0, N).
        """
        indices = torch.as_tensor(indices, dtype=torch.long).cpu()
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.num_samples):
            raise ValueError(f"indices must lie in [0, {self.num_samples})")
        return self.plan.weights[indices]

    def objective(self, indices: Tensor, losses: Tensor) -> Tensor:
        """Record the batch's losses, return their weighted mean to minimise.

        Args:
            indices: [B] dataset indices in [0, N).
            losses: [B] per-sample losses >= 0 (with their graph).

        Returns:
            A scalar: mean over the batch of `weights(indices) * losses` (0 for an empty
            batch), differentiable through `losses`.

        Raises:
            ValueError: `losses` is not 1-D with one loss per index (a [B, 1] tensor would
                broadcast against the weights to [B, B]), or is NaN, infinite or negative, or
                an index is out of range; nothing is recorded then.
        """
        shape, count = torch.as_tensor(losses).shape, torch.as_tensor(indices).numel()
        if len(shape) != 1 or shape[0] != count:
            raise ValueError(f"losses must be 1-D with one loss per index ([{count}]), got "
                             f"shape {tuple(shape)}")
        self.update(indices, losses)
        if losses.numel() == 0:
            return losses.sum()
        return (self.weights(indices).to(losses) * losses).mean()

    def after_epoch(self, epoch: int) -> None:
        """Epoch `epoch` ended: `set_epoch(epoch + 1)`, which makes the next epoch's plan from
        the losses recorded so far (and may run `check_plans_agree`, a collective).

        Args:
            epoch: the epoch that ended (>= the current epoch - 1).

        Raises:
            ValueError, PeerTimeoutError: as `set_epoch`.
        """
        self.set_epoch(epoch + 1)

    def state_dict(self) -> dict:
        """Everything that decides the stream from here on, as copies (reads only).

        Returns:
            A dict with "num_samples", "tracker" (`LossTracker.state_dict()`), "generator"
            (its uint8 state), "epoch", "plan" ({"indices": [P] int64, "weights": [N]
            float32}) and whatever a subclass adds (SGD-S: "active").
        """
        return {
            "num_samples": self.num_samples,
            "tracker": self.tracker.state_dict(),
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
            "plan": {"indices": self.plan.indices.clone(), "weights": self.plan.weights.clone()},
        }

    def _state_keys(self) -> set[str]:
        return {"num_samples", "tracker", "generator", "epoch", "plan"}

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict()`, validated completely before anything changes.

        The saved plan becomes the current one (nothing is drawn), and the next `set_epoch`
        checks the plans across ranks again (with `verify_across_ranks`).

        Args:
            state: what `state_dict()` returned (e.g. through `torch.load(...,
                weights_only=True)`), for the same `num_samples`.

        Raises:
            TypeError: `state` is not a dict.
            ValueError: naming the key that is missing, unexpected, of the wrong type, shape or
                dtype, or out of range (plan indices outside [0, num_samples), negative or
                non-finite weights, a tracker state that `LossTracker` refuses, ...).
        """
        self._check_state(state)
        self.tracker.load_state_dict(state["tracker"], prefix="tracker")
        self.generator.set_state(state["generator"])
        self.epoch = state["epoch"]
        self.plan = EpochPlan(state["plan"]["indices"].clone(), state["plan"]["weights"].clone())
        self._checked_epoch = None
        self._restore_own_state(state)

    def _check_state(self, state: dict) -> None:
        """Every check of `load_state_dict` (the tracker's too), without changing anything."""
        owner = type(self).__name__
        check_keys(state, self._state_keys(), owner)
        check_equal(state, "num_samples", owner, self.num_samples)
        check_generator_state(state, "generator", owner)
        check_int(state, "epoch", owner, low=0)
        check_keys(state["plan"], ("indices", "weights"), owner, "plan")
        check_tensor(state["plan"], "indices", owner, shape=(None,), dtype=torch.long, low=0,
                     high=self.num_samples - 1, name="plan.indices")
        check_tensor(state["plan"], "weights", owner, shape=(self.num_samples,),
                     dtype=torch.float32, low=0.0, name="plan.weights")
        probe = LossTracker(self.num_samples)  # the tracker's own checks, on a throw-away copy
        probe.load_state_dict(state["tracker"], prefix="tracker")
        self._check_own_state(state)

    def _check_own_state(self, state: dict) -> None:
        """A subclass checks the entries it adds to the state here (before anything changes)."""

    def _restore_own_state(self, state: dict) -> None:
        """A subclass restores the entries it adds to the state here (already checked)."""


class SGDSSampler(LossDrivenSampler):
    """SGD-S: uniform transient epochs, then per-epoch pruning and loss-proportional draws.

    - epochs < `transient_epochs`: a uniform random permutation of all samples;
    - each later epoch starts with `prune_and_reintroduce` on the active set, then draws
      `num_draws` (default: the active count) indices with replacement, with probabilities
      `probabilities()` (loss-proportional, see `loss_probabilities` for `power`/`uniform_mix`).
    - `unbiased=True`: `weights` are 1 / (n_active p_i), so the weighted loss is an unbiased
      estimate of the mean loss over the active samples; otherwise every weight is 1 (as in
      mini_batch.py).

    Pruning and the draws read `plan_losses`: the latest losses, or with `momentum` > 0 their
    exponential moving average (a sample's loss history, not one noisy measurement).

    Args:
        num_samples: N >= 0, the dataset size.
        transient_epochs: epochs >= 0 of plain permutations before pruning starts.
        prune_fraction: in [0, 1), the share of the active samples pruned each later epoch.
        reintroduce_fraction: in [0, 1), the share (of the active count) brought back from the
            pruned pool each later epoch, uniformly at random.
        num_draws: draws per later epoch (>= 0; default: the active count).
        generator: the private generator (default: seeded from torch's global RNG).
        unbiased: weight each sample by 1 / (n_active p_i) instead of 1.
        power: > 0; probabilities follow `loss ** power`.
        uniform_mix: in [0, 1), the share of the uniform distribution blended in.
        momentum, num_replicas, rank, drop_last, verify_across_ranks: as `LossDrivenSampler`.

    Raises:
        TypeError: a count (`num_samples`, `transient_epochs`, `num_draws`, ...) is not an int
            or a fraction is not a number.
        ValueError: naming the argument out of range (as listed above, and those of
            `LossDrivenSampler`).
    """

    def __init__(
        self,
        num_samples: int,
        transient_epochs: int = 2,
        prune_fraction: float = 0.1,
        reintroduce_fraction: float = 0.01,
        num_draws: int | None = None,
        generator: torch.Generator | None = None,
        *,
        unbiased: bool = False,
        power: float = 1.0,
        uniform_mix: float = 0.0,
        momentum: float = 0.0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
        verify_across_ranks: bool = True,
    ):
        num_samples = check_count("num_samples", num_samples)
        self.transient_epochs = check_count("transient_epochs", transient_epochs)
        self.prune_fraction = check_fraction("prune_fraction", prune_fraction)
        self.reintroduce_fraction = check_fraction("reintroduce_fraction", reintroduce_fraction)
        self.num_draws = None if num_draws is None else check_count("num_draws", num_draws)
        if not power > 0:
            raise ValueError(f"power must be > 0, got {power}")
        self.power = float(power)
        self.uniform_mix = check_fraction("uniform_mix", uniform_mix)
        self.unbiased = bool(unbiased)
        self.active = torch.ones(num_samples, dtype=torch.bool)
        super().__init__(num_samples, generator, momentum, num_replicas=num_replicas, rank=rank,
                         drop_last=drop_last, verify_across_ranks=verify_across_ranks)

    def probabilities(self) -> Tensor:
        """The draw probabilities of the current epoch, from the losses recorded so far.

        Returns:
            [N] float64 probabilities summing to 1 (all zeros with no active sample): uniform
            over all samples in a transient epoch, else `loss_probabilities(plan_losses,
            active, power, uniform_mix)`, 0 for pruned samples. Right after `set_epoch` these
            are the probabilities the plan was drawn with; losses recorded later change them.
        """
        if self.epoch < self.transient_epochs:
            return loss_probabilities(torch.zeros(self.num_samples), self.active)
        return loss_probabilities(self.plan_losses, self.active, self.power, self.uniform_mix)

    def _make_plan(self, epoch: int) -> EpochPlan:
        ones = torch.ones(self.num_samples)
        if epoch < self.transient_epochs:
            return EpochPlan(torch.randperm(self.num_samples, generator=self.generator), ones)
        self.active = prune_and_reintroduce(self.plan_losses, self.active, self.prune_fraction,
                                            self.reintroduce_fraction, self.generator)
        probabilities = self.probabilities()
        draws = int(self.active.sum()) if self.num_draws is None else self.num_draws
        if draws == 0 or self.num_samples == 0:
            indices = torch.empty(0, dtype=torch.long)
        else:
            indices = torch.multinomial(probabilities, draws, replacement=True,
                                        generator=self.generator)
        weights = importance_weights(probabilities) if self.unbiased else ones
        return EpochPlan(indices, weights)

    def epoch_sizes(self, epochs: int) -> list[int]:
        """The plan size of each epoch of a fresh run with this configuration, without running it.

        Exact, since pruning counts do not depend on the losses; use it to size per-step
        schedules. These are whole plans: each of `num_replicas` ranks draws
        ceil(size / num_replicas) of them (size // num_replicas with `drop_last`).

        Args:
            epochs: how many epochs (>= 0), counted from epoch 0.

        Returns:
            `epochs` ints: the draws of epochs 0..epochs-1.

        Raises:
            TypeError, ValueError: `epochs` is not an int >= 0.
        """
        check_count("epochs", epochs)
        sizes, active = [], self.num_samples
        for epoch in range(epochs):
            if epoch >= self.transient_epochs:
                pruned, back = prune_counts(active, self.num_samples - active,
                                            self.prune_fraction, self.reintroduce_fraction)
                active += back - pruned
            steady = epoch >= self.transient_epochs and self.num_draws is not None
            sizes.append(self.num_draws if steady else active)
        return sizes

    def state_dict(self) -> dict:
        """`LossDrivenSampler.state_dict()` plus "active", the [N] bool mask of unpruned samples.

        Returns:
            The state dict (copies; reading it changes nothing).
        """
        state = super().state_dict()
        state["active"] = self.active.clone()
        return state

    def _state_keys(self) -> set[str]:
        return super()._state_keys() | {"active"}

    def _check_own_state(self, state: dict) -> None:
        check_tensor(state, "active", type(self).__name__, shape=(self.num_samples,),
                     dtype=torch.bool)

    def _restore_own_state(self, state: dict) -> None:
        self.active = state["active"].clone()
