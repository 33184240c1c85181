"""Notebook 10's study: RHO-LOSS against top-loss selection and uniform training, under label noise.

Arm methods registered here (see `curriclab.experiments.harness.arms`):

- "uniform_observed": plain shuffled training (batch k), with the mislabelled-share observer;
- "top_loss": the k highest-loss candidates of each candidate batch (`TopLossSelection`);
- "rho_loss": the k highest reducible-loss candidates (`RhoLossSelection`), with an irreducible-loss
  model trained on the study's holdout split (once per data spec and seed: `irreducible_model`);
- "uniform_selection": k candidates at random (`UniformSelection`), the same forward cost as the
  loss-based selectors.

A selection arm's candidate batch n_B is its loader batch, `TrainSpec.batch_size` (the arm's train
override); `k` is its param. Every arm records, step by step, how many of the samples it trained on
carry a corrupted label (`MislabelledShare`), and collects that history.

Compute is counted in forward+backward "sample-passes": a back-propagated sample costs 1 and a
forward without gradients `forward_cost` (1/3 by default: a backward pass costs about two forwards).
A selection step of k out of n_B costs k + forward_cost * n_B, which `equal_compute_steps` turns
into the step budget of a uniform run of batch k with the same compute. RHO-LOSS also pays for its
irreducible-loss model: trained on the holdout (back-propagated samples) and scoring every training
sample once (forwards); `passes_to_target` adds that bill, and the arm reports it to the harness as
`ArmSetup.cost` (samples = the model's back-propagated samples, seconds = its wall time).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from curriclab.core.models import MLP
from curriclab.core.protocol import SampleMethod
from curriclab.experiments.harness.arms import ArmContext, ArmSetup, arm_method
from curriclab.experiments.harness.results import Results, cost_to_target, paired_costs
from curriclab.experiments.harness.spec import Arm, DataSpec, ModelSpec, Study, TrainSpec
from curriclab.experiments.harness.splits import load_splits
from curriclab.methods.batch_selection import RhoLossSelection, TopLossSelection, UniformSelection
from curriclab.methods.irreducible_loss import IrreducibleLosses, irreducible_losses

__all__ = [
    "FORWARD_COST",
    "GRID_METHODS",
    "MislabelledShare",
    "cost_tables",
    "equal_compute_steps",
    "grid_arm_name",
    "irreducible_model",
    "mislabelled_curve",
    "passes_to_target",
    "per_seed_costs",
    "rho_loss_study",
    "selection_cost",
    "selection_grid_study",
]

FORWARD_COST = 1.0 / 3.0
"""Cost of a forward pass without gradients, in forward+backward passes (backward ~ 2 forwards)."""


class MislabelledShare(SampleMethod):
    """Observer: per optimizer step, how many trained samples there were and how many of them
    carry a corrupted label. Returns no objective (it changes nothing).

    Args:
        corrupted: bool [N], by training-split index: the samples whose label was moved.

    Raises:
        ValueError: naming `corrupted` when it is not a 1-D bool tensor.
    """

    def __init__(self, corrupted: Tensor):
        if not isinstance(corrupted, Tensor) or corrupted.ndim != 1 or (
                corrupted.dtype != torch.bool):
            raise ValueError("corrupted must be a 1-D bool tensor (one flag per training sample)")
        self.corrupted = corrupted.clone()
        self.trained: list[int] = []
        self.mislabelled: list[int] = []

    def objective(self, index: Tensor, losses: Tensor) -> None:
        """Record the step's trained and mislabelled counts.

        Args:
            index: [B] training-split indices of the step's trained samples (repeats count).
            losses: [B] their losses (unused).

        Returns:
            None: the observer adds nothing to the loss.

        Raises:
            ValueError: an index outside [0, N).
        """
        n = len(self.corrupted)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
            raise ValueError(f"index must lie in [0, {n})")
        self.trained.append(len(index))
        self.mislabelled.append(int(self.corrupted[index].sum()))
        return None

    def per_step(self) -> Tensor:
        """Share of each step's trained samples that are mislabelled.

        Returns:
            float64 [steps] in [0, 1], one per recorded step (0 for a step with no samples).
        """
        trained = torch.tensor(self.trained, dtype=torch.float64)
        return torch.tensor(self.mislabelled, dtype=torch.float64) / trained.clamp(min=1)

    def overall(self) -> float:
        """Share of all trained samples (with repeats) that are mislabelled.

        Returns:
            The share in [0, 1], or NaN before any sample was trained.
        """
        total = sum(self.trained)
        return sum(self.mislabelled) / total if total else math.nan

    def state_dict(self) -> dict:
        """The recorded counts.

        Returns:
            {"trained": int64 [steps], "mislabelled": int64 [steps]}, what `load_state_dict`
            takes.
        """
        return {"trained": torch.tensor(self.trained, dtype=torch.long),
                "mislabelled": torch.tensor(self.mislabelled, dtype=torch.long)}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict`; checks every entry before changing anything.

        Args:
            state: {"trained": int64 [steps] counts, "mislabelled": int64 [steps] counts, each in
                [0, trained] at its step}.

        Raises:
            ValueError: naming a missing or unexpected key, a wrong dtype or shape, or counts
                out of range (mislabelled > trained, or negative).
        """
        if not isinstance(state, dict) or set(state) != {"trained", "mislabelled"}:
            keys = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state keys must be ['mislabelled', 'trained'], got {keys}")
        for key in ("trained", "mislabelled"):
            value = state[key]
            if not isinstance(value, Tensor) or value.dtype != torch.long or value.ndim != 1:
                raise ValueError(f"state {key!r} must be a 1-D int64 tensor")
        trained, mislabelled = state["trained"], state["mislabelled"]
        if trained.shape != mislabelled.shape:
            raise ValueError("state 'trained' and 'mislabelled' must have the same length")
        if bool((mislabelled < 0).any()) or bool((mislabelled > trained).any()):
            raise ValueError("state 'mislabelled' must lie in [0, trained] at every step")
        self.trained, self.mislabelled = trained.tolist(), mislabelled.tolist()


def _hidden(hidden: Sequence[int]) -> tuple[int, ...]:
    hidden = tuple(int(h) for h in hidden)
    if not hidden or min(hidden) < 1:
        raise ValueError(f"il_hidden must be a non-empty sequence of positive widths, got {hidden}")
    return hidden


@functools.lru_cache(maxsize=64)
def irreducible_model(data: DataSpec, seed: int, hidden: tuple[int, ...] = (256,),
                      epochs: int = 10, lr: float = 1e-3,
                      batch_size: int = 128) -> IrreducibleLosses:
    """The irreducible losses of `data`'s training split, from an MLP trained with AdamW on its
    holdout split; trained once per argument set (cached), its cost measured when it was trained.

    The model is initialised from `torch.manual_seed(seed)` inside a forked RNG, so training it
    (or finding it in the cache) leaves the caller's global RNG untouched.

    Args:
        data: the study's data spec; `holdout_size` must be > 0.
        seed: seeds the model's initialisation and the holdout shuffling.
        hidden: the MLP's hidden widths (non-empty, each >= 1).
        epochs: passes over the holdout split.
        lr: AdamW's learning rate.
        batch_size: the holdout batch size.

    Returns:
        `IrreducibleLosses` (losses by training-split index, steps, samples, seconds).

    Raises:
        ValueError: the spec has no holdout split, or `hidden` is empty or holds a width < 1.
    """
    splits = load_splits(data)
    if len(splits.holdout) == 0:
        raise ValueError("RHO-LOSS needs a holdout split: set DataSpec.holdout_size > 0")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = MLP(splits.train.inputs[0].numel(), _hidden(hidden), splits.num_classes)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        return irreducible_losses(model, splits.holdout, splits.train, optimizer, epochs=epochs,
                                  batch_size=batch_size, seed=seed)


def _observed(context: ArmContext, selector: SampleMethod | None = None,
              extra: dict[str, float] | None = None,
              cost: dict[str, float] | None = None) -> ArmSetup:
    """An arm's setup: the mislabelled-share observer, the selector (if any), and a collect that
    returns the observer's history, whether the arm selects, and `extra` scalars."""
    recorder = MislabelledShare(context.splits.corrupted)
    methods = [recorder] if selector is None else [recorder, selector]

    def collect() -> dict[str, Any]:
        return {"mislabelled_per_step": recorder.per_step(),
                "selected_mislabelled": recorder.overall(),
                "selects": float(selector is not None), **(extra or {})}
    return ArmSetup(methods=methods, collect=collect, cost=dict(cost or {}))


@arm_method("uniform_observed")
def _uniform_observed(context: ArmContext) -> ArmSetup:
    """Shuffled training on every sample of the batch, with the mislabelled-share observer."""
    return _observed(context)


@arm_method("top_loss")
def _top_loss(context: ArmContext, k: int) -> ArmSetup:
    """Top-loss selection of k of each candidate batch (n_B = the arm's batch size)."""
    return _observed(context, TopLossSelection(k, context.train_spec.batch_size))


@arm_method("uniform_selection")
def _uniform_selection(context: ArmContext, k: int) -> ArmSetup:
    """k random candidates of each candidate batch, seeded by the run's seed."""
    return _observed(context, UniformSelection(k, context.train_spec.batch_size,
                                               seed=context.seed))


@arm_method("rho_loss")
def _rho_loss(context: ArmContext, k: int, il_hidden: Sequence[int] = (256,), il_epochs: int = 10,
              il_lr: float = 1e-3, il_batch_size: int = 128) -> ArmSetup:
    """RHO-LOSS selection of k of each candidate batch, with the (cached) irreducible-loss model
    of this data spec and seed; its cost goes to the harness and into the final row."""
    model = irreducible_model(context.study.data, context.seed, _hidden(il_hidden), il_epochs,
                              il_lr, il_batch_size)
    selector = RhoLossSelection(model.losses, k, context.train_spec.batch_size)
    extra = {"il_steps": float(model.steps),
             "il_backpropagated": float(model.samples_backpropagated),
             "il_forwarded": float(model.samples_forwarded), "il_seconds": model.seconds}
    cost = {"samples": float(model.samples_backpropagated), "seconds": model.seconds}
    return _observed(context, selector, extra, cost)


def selection_cost(k: int, candidates: int, forward_cost: float = FORWARD_COST) -> float:
    """Sample-passes of one selection step: k forward+backward passes plus `candidates` forwards
    without gradients (the candidate batch n_B).

    Args:
        k: samples selected and back-propagated per step.
        candidates: the candidate batch n_B, forwarded without gradients.
        forward_cost: a gradient-free forward's cost, in forward+backward passes.

    Returns:
        k + forward_cost * candidates.

    Raises:
        ValueError: k or candidates < 1, k > candidates, or forward_cost outside [0, 1].
    """
    if k < 1 or candidates < k:
        raise ValueError(f"need 1 <= k <= candidates, got k={k}, candidates={candidates}")
    if not 0.0 <= forward_cost <= 1.0:
        raise ValueError(f"forward_cost must lie in [0, 1], got {forward_cost}")
    return k + forward_cost * candidates


def equal_compute_steps(steps: int, k: int, candidates: int,
                        forward_cost: float = FORWARD_COST) -> int:
    """Steps of batch k that cost what `steps` selection steps (k of `candidates`) cost:
    round(steps * (k + forward_cost * candidates) / k).

    Args:
        steps: selection steps (>= 1).
        k: samples selected per selection step, and the uniform run's batch size.
        candidates: the candidate batch n_B.
        forward_cost: a gradient-free forward's cost, in forward+backward passes.

    Returns:
        The uniform run's step budget.

    Raises:
        ValueError: steps < 1, or as `selection_cost`.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return round(steps * selection_cost(k, candidates, forward_cost) / k)


def rho_loss_study(source: str = "mnist", noise: float = 0.0, *, train_size: int = 10_000,
                   validation_size: int = 2_000, holdout_size: int = 2_000,
                   test_size: int | None = 5_000, k: int = 32, candidates: int = 320,
                   steps: int = 600, hidden: Sequence[int] = (256,),
                   lrs: dict[str, float] | None = None, seeds: Sequence[int] = (0, 1, 2),
                   eval_every: int = 20, il_epochs: int = 10, il_hidden: Sequence[int] = (256,),
                   forward_cost: float = FORWARD_COST, equal_compute: bool = True) -> Study:
    """The study of one (source, noise): uniform (batch k), uniform with the selection arms'
    compute, top-loss and RHO-LOSS (k of `candidates`), all with Adam and a constant lr.

    Args:
        source: "mnist" or "fashion_mnist".
        noise: share of training labels moved to another class; validation, holdout and test
            stay clean.
        train_size: training samples (`DataSpec.train_size`).
        validation_size: validation samples carved from the official training split.
        holdout_size: holdout samples for the irreducible-loss model (> 0 for RHO-LOSS).
        test_size: test samples (None: the whole official test split).
        k: selected samples per step (and uniform's batch size).
        candidates: the candidate batch n_B of the selection arms.
        steps: optimizer steps of uniform, top-loss and RHO-LOSS.
        hidden: the trained MLP's hidden widths.
        lrs: per arm name, its learning rate (e.g. from `tune`); 1e-3 otherwise.
        seeds: the seeds every arm runs.
        eval_every: steps between evaluations (as in `Study`).
        il_epochs: the irreducible-loss model's training epochs.
        il_hidden: the irreducible-loss model's hidden widths.
        forward_cost: a gradient-free forward's cost, which sets the equal-compute arm's steps
            (`equal_compute_steps`).
        equal_compute: include the "uniform, equal compute" arm.

    Returns:
        The `Study` (its arms: "uniform", ["uniform, equal compute"], "top-loss", "RHO-LOSS").

    Raises:
        ValueError: as `equal_compute_steps` for steps, k, candidates and forward_cost (the
            specs check the rest when built).
    """
    lrs = dict(lrs or {})
    long = equal_compute_steps(steps, k, candidates, forward_cost)
    arms = [Arm("uniform", "uniform_observed", train={"batch_size": k, "steps": steps})]
    if equal_compute:
        arms.append(Arm("uniform, equal compute", "uniform_observed",
                        train={"batch_size": k, "steps": long}))
    selection = {"batch_size": candidates, "steps": steps}
    arms += [Arm("top-loss", "top_loss", {"k": k}, train=selection),
             Arm("RHO-LOSS", "rho_loss", {"k": k, "il_epochs": il_epochs,
                                          "il_hidden": tuple(il_hidden)}, train=selection)]
    arms = [arm.with_train(lr=lrs.get(arm.name, 1e-3)) for arm in arms]
    data = DataSpec(source=source, train_size=train_size, validation_size=validation_size,
                    holdout_size=holdout_size, test_size=test_size, label_noise=noise)
    return Study(f"rho_loss/{source}/noise{noise:g}", data, ModelSpec("mlp", tuple(hidden)),
                 TrainSpec(optimizer="adam", lr=1e-3, batch_size=k, steps=steps),
                 arms=tuple(arms), seeds=tuple(seeds), eval_every=eval_every)


def passes_to_target(results: Results, target: float,
                     forward_cost: float = FORWARD_COST) -> pd.DataFrame:
    """Per (arm, seed): sample-passes spent when the validation accuracy first reaches `target`:
    back-propagated samples, plus `forward_cost` per candidate forward of a selecting arm, plus
    the irreducible-loss model's bill (its back-propagated samples and `forward_cost` per other
    forward). inf when the run never reaches it.

    Args:
        results: the record; its final rows may hold "selects", "il_backpropagated" and
            "il_forwarded" (the arms of this module collect them).
        target: the validation accuracy to reach.
        forward_cost: a gradient-free forward's cost, in forward+backward passes.

    Returns:
        Columns arm, seed, cost, reached (the frame `paired_costs` takes).
    """
    samples = cost_to_target(results, target, "samples", include_extra=False)
    forwarded = cost_to_target(results, target, "forwarded", include_extra=False)
    finals = {(r["arm"], r["seed"]): r for r in results.finals}
    costs = []
    for (_, row), forwards in zip(samples.iterrows(), forwarded["cost"]):
        final = finals[row["arm"], row["seed"]]
        candidate = forward_cost * forwards if final.get("selects", 0.0) else 0.0
        backpropagated = final.get("il_backpropagated", 0.0)
        bill = backpropagated + forward_cost * (final.get("il_forwarded", 0.0) - backpropagated)
        costs.append(row["cost"] + candidate + bill if row["reached"] else math.inf)
    return samples.assign(cost=costs)


COSTS = ("steps", "forwarded", "passes", "seconds")


def cost_tables(results: Results, target: float, baseline: str = "uniform",
                forward_cost: float = FORWARD_COST) -> pd.DataFrame:
    """Every arm's cost to `target` against `baseline`, paired by seed, in each of `COSTS`
    (steps; samples forwarded; sample-passes with the irreducible-loss bill; training seconds
    plus the irreducible-loss model's seconds).

    Args:
        results: the record.
        target: the validation accuracy to reach.
        baseline: the arm the others are paired with.
        forward_cost: a gradient-free forward's cost (for the "passes" measure).

    Returns:
        `paired_costs` rows with a `cost` column naming the measure.

    Raises:
        ValueError: `baseline` has no runs.
    """
    frames = []
    for measure in COSTS:
        if measure == "passes":
            costs = passes_to_target(results, target, forward_cost)
        else:
            costs = cost_to_target(results, target, measure)
        frames.append(paired_costs(costs, baseline).assign(cost=measure))
    return pd.concat(frames, ignore_index=True)


def mislabelled_curve(results: Results, arm: str, window: int = 20) -> Tensor:
    """The share of `arm`'s trained samples that are mislabelled, step by step, averaged over
    its seeds (truncated to the shortest run) and smoothed by a trailing mean of `window` steps.

    Args:
        results: the record, with its in-memory artifacts ("mislabelled_per_step").
        arm: the arm's name.
        window: the trailing mean's length in steps (>= 1); the first steps average what
            there is.

    Returns:
        float64 [S], S the shortest run's steps; entry s is the mean over steps s-window+1..s.

    Raises:
        ValueError: the arm has no recorded history, or window < 1.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    histories = [value["mislabelled_per_step"] for (name, _), value in results.artifacts.items()
                 if name == arm and "mislabelled_per_step" in value]
    if not histories or min(len(h) for h in histories) == 0:
        raise ValueError(f"arm {arm!r} has no mislabelled-share history")
    length = min(len(h) for h in histories)
    mean = torch.stack([h[:length] for h in histories]).mean(0)
    cumulative = torch.cat([torch.zeros(1, dtype=mean.dtype), mean.cumsum(0)])
    steps = torch.arange(1, length + 1)
    start = (steps - window).clamp(min=0)
    return (cumulative[steps] - cumulative[start]) / (steps - start)


GRID_METHODS = ("top_loss", "rho_loss", "uniform_selection")
"""The selection methods of the explorer grid (`selection_grid_study`)."""


def grid_arm_name(method: str, ratio: int) -> str:
    """The explorer grid's arm name of `method` at n_B / k = `ratio`.

    Args:
        method: the arm method, e.g. one of `GRID_METHODS`.
        ratio: the candidate batch over the selected samples, n_B / k.

    Returns:
        e.g. "rho_loss n_B/k=10".
    """
    return f"{method} n_B/k={ratio}"


def selection_grid_study(base: Study, ratios: Sequence[int], k: int, steps: int,
                         seeds: Sequence[int] = (0,)) -> Study:
    """A small study on `base`'s data and model: uniform (batch k) and every method of
    `GRID_METHODS` at every n_B / k of `ratios`, all for `steps` steps with the lr of `base`'s
    first arm of the same method (uniform's for uniform selection).

    Args:
        base: a study of `rho_loss_study` (it must hold a "uniform_observed" arm); its
            RHO-LOSS arm's irreducible-loss settings (il_*) carry over.
        ratios: the n_B / k values (each >= 1).
        k: selected samples per step (uniform's batch size).
        steps: optimizer steps of every arm.
        seeds: the seeds every arm runs.

    Returns:
        The study named "<base name>/grid": "uniform" then, per ratio, one arm per method,
        named by `grid_arm_name`.

    Raises:
        ValueError: an empty `ratios` or a ratio < 1.
    """
    if not ratios or min(ratios) < 1:
        raise ValueError(f"ratios must be a non-empty sequence of ints >= 1, got {ratios}")
    lr: dict[str, float] = {}
    for arm in base.arms:  # the first arm of each method (uniform before its equal-compute twin)
        lr.setdefault(arm.method, base.train_spec(arm).lr)
    rho = next((arm.params for arm in base.arms if arm.method == "rho_loss"), {})
    il = {key: value for key, value in rho.items() if key.startswith("il_")}
    arms = [Arm("uniform", "uniform_observed",
                train={"batch_size": k, "steps": steps, "lr": lr["uniform_observed"]})]
    for ratio in ratios:
        for method in GRID_METHODS:
            params = {"k": k, **(il if method == "rho_loss" else {})}
            rate = lr.get(method, lr["uniform_observed"])
            arms.append(Arm(grid_arm_name(method, ratio), method, params,
                            train={"batch_size": k * ratio, "steps": steps, "lr": rate}))
    return base.replace(name=f"{base.name}/grid", arms=tuple(arms), seeds=tuple(seeds))


def per_seed_costs(results: Results, target: float,
                   forward_cost: float = FORWARD_COST) -> pd.DataFrame:
    """One row per (arm, seed): steps, samples forwarded, sample-passes and seconds to `target`
    (inf when never reached; seconds and passes include the irreducible-loss model's bill), the
    final test accuracy and the share of trained samples that were mislabelled.

    Args:
        results: the record.
        target: the validation accuracy to reach.
        forward_cost: a gradient-free forward's cost (for the passes column).

    Returns:
        Columns arm, seed, steps, forwarded, passes, seconds, test_accuracy, mislabelled.
    """
    frame = cost_to_target(results, target, "steps")[["arm", "seed"]].copy()
    for measure in COSTS:
        costs = (passes_to_target(results, target, forward_cost) if measure == "passes"
                 else cost_to_target(results, target, measure))
        frame[measure] = costs["cost"].to_numpy()
    finals = {(r["arm"], r["seed"]): r for r in results.finals}
    keys = list(zip(frame["arm"], frame["seed"]))
    frame["test_accuracy"] = [finals[key]["test_accuracy"] for key in keys]
    frame["mislabelled"] = [finals[key].get("selected_mislabelled", math.nan) for key in keys]
    return frame
