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
]


def check_fraction(name: str, value: float) -> float:
    """`value` as a float if it lies in [0, 1), else a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1), got {type(value).__name__}")
    if math.isnan(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value}")
    return float(value)


def check_count(name: str, value: int, minimum: int = 0) -> int:
    """`value` if it is an int >= `minimum`, else a TypeError/ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_losses(losses: Tensor) -> Tensor:
    """Detached float losses on the CPU; a ValueError if any is NaN, infinite or negative."""
    losses = torch.as_tensor(losses).detach().reshape(-1).float().cpu()
    if losses.numel() and not bool(torch.isfinite(losses).all()):
        raise ValueError("losses must be finite (got NaN or inf): did training diverge?")
    if losses.numel() and bool((losses < 0).any()):
        raise ValueError(f"losses must be >= 0, got a minimum of {float(losses.min())}")
    return losses


def fill_unseen(losses: Tensor, active: Tensor) -> Tensor:
    """Losses with never-seen (NaN) entries replaced by the largest seen loss among `active`.

    A sample nobody has measured yet is treated as hard, so it is drawn soon and pruned last.
    With no seen active sample at all every loss becomes 1 (a uniform distribution).
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
    """
    active = torch.as_tensor(active, dtype=torch.bool)
    if losses.shape != active.shape:
        raise ValueError(f"losses {tuple(losses.shape)} and active {tuple(active.shape)} must match")
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
    the samples with p_i > 0 (the active ones); 0 where p_i = 0 (such samples are never drawn)."""
    count = int((probabilities > 0).sum())
    safe = torch.where(probabilities > 0, probabilities, 1.0)
    return torch.where(probabilities > 0, 1.0 / (count * safe), 0.0).float()


def prune_counts(active_count: int, inactive_count: int, prune_fraction: float,
                 reintroduce_fraction: float) -> tuple[int, int]:
    """(how many to prune, how many to bring back) at one SGD-S epoch boundary.

    Prune floor(prune_fraction * active); bring back floor(reintroduce_fraction * active) of the
    pruned pool (the samples pruned now and before), at most the pool's size.
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
    `reintroduce_fraction` (of the active count) of all inactive samples."""
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
    """A generator seeded from torch's global RNG, so `seed_everything` makes samplers repeatable."""
    return torch.Generator().manual_seed(int(torch.randint(0, 2**62, ()).item()))


@dataclass
class EpochPlan:
    """What a sampler does in one epoch: the dataset indices it yields, in order, and the loss
    weight of every dataset index."""

    indices: Tensor
    weights: Tensor


class LossDrivenSampler(Sampler[int], SampleMethod):
    """Base class: a LossTracker fed by `update`/`objective`, a private generator, and one `EpochPlan`
    per epoch, made once by `_make_plan(epoch)` (subclasses) when the epoch is first used.

    Epochs must not go back: `set_epoch(e)` with `e` below the current epoch raises. A plan, once
    made, is fixed, so iterating twice in one epoch yields the same indices.

    `num_replicas`, `rank` (default: the default process group's world size and rank, or 1 and 0
    without one) and `drop_last` shard the plan across ranks (see the module docstring): `plan`
    is the whole epoch's plan, identical on every rank, and iterating yields this rank's shard.
    Under a process group, `num_replicas` must be its world size (ValueError otherwise), and
    `set_epoch` checks (one tiny all-gather each, with `collective_timeout()`) that every rank
    passed a different `rank` (the first time) and made the same plan, and raises on every rank
    if not.
    """

    def __init__(self, num_samples: int, generator: torch.Generator | None = None,
                 momentum: float = 0.0, *, num_replicas: int | None = None,
                 rank: int | None = None, drop_last: bool = False):
        self.num_samples = check_count("num_samples", num_samples)
        self.tracker = LossTracker(num_samples, momentum=momentum)
        self.generator = generator if generator is not None else default_generator()
        self.epoch = 0
        self.plan: EpochPlan | None = None
        group_rank, group_world = rank_and_world()
        self.num_replicas = check_count(
            "num_replicas", group_world if num_replicas is None else num_replicas, minimum=1)
        self.rank = check_count("rank", group_rank if rank is None else rank)
        if self.rank >= self.num_replicas:
            raise ValueError(f"rank must lie in [0, num_replicas={self.num_replicas}), got {self.rank}")
        check_num_replicas(self.num_replicas)
        self.drop_last = bool(drop_last)
        self._checked_epoch: int | None = None

    def _make_plan(self, epoch: int) -> EpochPlan:
        raise NotImplementedError

    def _current_plan(self) -> EpochPlan:
        if self.plan is None:
            self.plan = self._make_plan(self.epoch)
        return self.plan

    def set_epoch(self, epoch: int) -> None:
        """Move to `epoch` (>= the current one) and make its plan; the same epoch again is a no-op."""
        epoch = check_count("epoch", epoch)
        if epoch < self.epoch:
            raise ValueError(f"epoch must be >= the current epoch {self.epoch}, got {epoch}")
        if epoch != self.epoch:
            self.plan = None
        self.epoch = epoch
        self.tracker.set_epoch(epoch)
        plan = self._current_plan()
        check_num_replicas(self.num_replicas)
        if self._checked_epoch is None and self.num_replicas > 1:
            check_distinct_ranks(self.rank, type(self).__name__)
        if self._checked_epoch != epoch and rank_and_world()[1] == self.num_replicas > 1:
            check_identical(f"{type(self).__name__}'s plan for epoch {epoch} (seed every rank "
                            "alike and feed the losses through Synchronized)",
                            plan.indices, plan.weights)
            self._checked_epoch = epoch

    def shard(self, indices: Tensor) -> Tensor:
        """This rank's entries of an epoch's `indices`: padded by repetition to a multiple of
        `num_replicas` (or cut to one when `drop_last`), then every `num_replicas`-th from `rank`."""
        size = len(indices)
        if self.drop_last:
            indices = indices[: size - size % self.num_replicas]
        elif size and size % self.num_replicas:
            padding = self.num_replicas - size % self.num_replicas
            indices = torch.cat([indices, indices.repeat(math.ceil(padding / size))[:padding]])
        return indices[self.rank :: self.num_replicas]

    def __iter__(self):
        return iter(self.shard(self._current_plan().indices).tolist())

    def __len__(self) -> int:
        size = len(self._current_plan().indices)
        if self.drop_last:
            return size // self.num_replicas
        return math.ceil(size / self.num_replicas)

    @property
    def sample_losses(self) -> Tensor:
        """The latest recorded loss of every sample (NaN if never seen)."""
        return self.tracker.latest

    def update(self, indices: Tensor, losses: Tensor) -> None:
        """Record per-sample `losses` for dataset `indices` (ValueError on NaN, negative or
        out-of-range input)."""
        self.tracker.update(torch.as_tensor(indices, dtype=torch.long), check_losses(losses))

    def weights(self, indices: Tensor) -> Tensor:
        """The current epoch's loss weight of each dataset index."""
        indices = torch.as_tensor(indices, dtype=torch.long).cpu()
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.num_samples):
            raise ValueError(f"indices must lie in [0, {self.num_samples})")
        return self._current_plan().weights[indices]

    def objective(self, indices: Tensor, losses: Tensor) -> Tensor:
        """Record the batch's losses, return their weighted mean to minimise.

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
        """Epoch `epoch` ended: make the next epoch's plan from the losses recorded so far."""
        self.set_epoch(epoch + 1)

    def state_dict(self) -> dict:
        plan = self._current_plan()
        return {
            "num_samples": self.num_samples,
            "tracker": self.tracker.state_dict(),
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
            "plan": {"indices": plan.indices.clone(), "weights": plan.weights.clone()},
        }

    def _state_keys(self) -> set[str]:
        return {"num_samples", "tracker", "generator", "epoch", "plan"}

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict()`, validated completely before anything changes.

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
    ):
        super().__init__(num_samples, generator, momentum, num_replicas=num_replicas, rank=rank,
                         drop_last=drop_last)
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

    def probabilities(self) -> Tensor:
        """The draw probability of every dataset index this epoch (0 for pruned samples;
        uniform over all samples in a transient epoch)."""
        if self.epoch < self.transient_epochs:
            return loss_probabilities(torch.zeros(self.num_samples), self.active)
        return loss_probabilities(self.sample_losses, self.active, self.power, self.uniform_mix)

    def _make_plan(self, epoch: int) -> EpochPlan:
        ones = torch.ones(self.num_samples)
        if epoch < self.transient_epochs:
            return EpochPlan(torch.randperm(self.num_samples, generator=self.generator), ones)
        self.active = prune_and_reintroduce(self.sample_losses, self.active, self.prune_fraction,
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
        """Number of draws in each of epochs 0..epochs-1 of a fresh run with this configuration
        (exact: pruning counts do not depend on the losses). Use it to size per-step schedules.
        These are whole plans: each of `num_replicas` ranks draws ceil(size / num_replicas) of
        them (size // num_replicas with `drop_last`)."""
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
