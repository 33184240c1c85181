"""Notebook 09's study: score every training sample from its training dynamics, then train on a
pruned subset and compare with a random subset of the same size.

The scores (`curriclab.methods.pruning`) are computed on the study's *training split* only, by
runs of the harness that never read the test split:

- forgetting events (Toneva et al. 2019), counted over full training runs (`forgetting_runs`);
- EL2N (Paul et al. 2021), after a few epochs, averaged over several short runs;
- GraNd (Paul et al. 2021), the full per-sample gradient norm at initialisation, averaged over
  initialisations;
- random, the control.

`training_scores` computes one of them (cached per spec) and records what it cost: samples
forwarded or back-propagated and seconds. The arm method "pruned" trains on
`prune_by_score(...)`'s kept indices and charges that cost to the run (`ArmSetup.cost`), so the
result record holds the scoring beside the training it saves. `pruning_study` builds the whole
comparison (every score x keep-hard / keep-easy x kept fraction, random at each fraction, all the
data, and all the data for as many steps as each pruned run); `pruning_frame` and `cost_frame`
turn its record into the tables the notebook shows.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from curriclab.core.stats import PairedComparison, paired_comparison
from curriclab.core.training import seed_everything
from curriclab.experiments.harness.arms import ArmContext, ArmSetup, arm_method
from curriclab.experiments.harness.results import Results
from curriclab.experiments.harness.runner import build_model, run_arm
from curriclab.experiments.harness.spec import Arm, DataSpec, ModelSpec, Study, TrainSpec
from curriclab.experiments.harness.splits import load_splits
from curriclab.methods.pruning import (
    KEEP,
    ForgettingEvents,
    averaged_scores,
    kept_count,
    prune_by_score,
    random_scores,
    score_dataset,
)

__all__ = [
    "EQUAL_STEPS",
    "FASHION_MNIST_CLASSES",
    "SCORES",
    "SCORE_LABELS",
    "Scoring",
    "TrainingScores",
    "arm_label",
    "cost_frame",
    "forgetting_runs",
    "forgetting_summary",
    "keep_contrast",
    "pruning_frame",
    "pruning_study",
    "training_scores",
]

SCORES = ("forgetting", "el2n", "grand", "random")
"""The scores `training_scores` computes (every one "higher = harder")."""

SCORE_LABELS = {"forgetting": "forgetting", "el2n": "EL2N", "grand": "GraNd", "random": "random"}
"""How tables and figures name each score."""

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
"""Fashion-MNIST's class names by label (Xiao et al. 2017)."""

EQUAL_STEPS = "all data, same steps"
"""The score column of the arms that train on all the data for a pruned run's steps."""


@dataclass(frozen=True)
class Scoring:
    """How the scores are computed (every run on the training split; test is never read).

    Attributes:
        el2n_epochs: epochs of each short run EL2N is read after.
        el2n_runs: short runs averaged for EL2N.
        grand_inits: initialisations averaged for GraNd.
        forgetting_epochs: epochs of each forgetting run; None: the study's own epochs (a full
            training run).
        forgetting_runs: training runs whose forgetting scores are averaged.
        seed: the scoring runs use seeds seed, seed + 1, ... (apart from the training seeds).
    """

    el2n_epochs: int = 2
    el2n_runs: int = 3
    grand_inits: int = 3
    forgetting_epochs: int | None = None
    forgetting_runs: int = 1
    seed: int = 1000

    def __post_init__(self) -> None:
        for name in ("el2n_epochs", "el2n_runs", "grand_inits", "forgetting_runs"):
            _check_count(name, getattr(self, name))
        if self.forgetting_epochs is not None:
            _check_count("forgetting_epochs", self.forgetting_epochs)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int, got {type(self.seed).__name__}")

    def seeds(self, count: int) -> tuple[int, ...]:
        """The first `count` scoring seeds: seed, seed + 1, ..., seed + count - 1.

        Args:
            count: how many seeds (>= 0; 0 gives none), e.g. `el2n_runs`.

        Returns:
            The seeds, ascending.
        """
        return tuple(range(self.seed, self.seed + count))


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


@dataclass(frozen=True)
class TrainingScores:
    """One score of every training sample and what computing it cost.

    Attributes:
        name: a key of `SCORES`.
        scores: float64 [N], keyed by training-split index ("higher = harder").
        samples: samples forwarded or back-propagated to compute it (training runs included).
        seconds: wall seconds spent on it (training and measuring; evaluation left out).
    """

    name: str
    scores: Tensor
    samples: float
    seconds: float


# ----------------------------------------------------------------------------- arm methods


@arm_method("forgetting_events")
def _forgetting_events(context: ArmContext) -> ArmSetup:
    """Plain training with a `ForgettingEvents` observer; collects the scores, the raw event
    counts, which samples were learned, and the never-forgotten / never-learned shares."""
    observer = ForgettingEvents(len(context.train))

    def collect() -> dict[str, Any]:
        return {"forgetting_scores": observer.scores(),
                "forgetting_events": observer.forgetting_events.clone(),
                "learned": observer.learned.clone(),
                "never_forgotten": observer.never_forgotten_fraction(),
                "never_learned": observer.never_learned_fraction()}
    return ArmSetup(methods=[observer], collect=collect)


@arm_method("el2n_run")
def _el2n_run(context: ArmContext) -> ArmSetup:
    """Plain training; collects the final model's EL2N on the training split and its seconds."""
    def collect() -> dict[str, Any]:
        started = time.perf_counter()
        scores = score_dataset(context.model, context.train, "el2n")
        return {"el2n_scores": scores, "scoring_seconds": time.perf_counter() - started}
    return ArmSetup(collect=collect)


@arm_method("pruned")
def _pruned(context: ArmContext, score: str = "random", fraction: float = 1.0,
            keep: str = "hard", scoring: Mapping[str, Any] | None = None) -> ArmSetup:
    """Train on the `fraction` of the training split that `score` ranks hardest (`keep="hard"`)
    or easiest; the scores' cost is charged to the run. Random scores are drawn per seed (a new
    random subset for every seed); ties at the cut are broken by a generator seeded by the seed."""
    spec = context.study
    if score == "random":
        scores = random_scores(len(context.train), context.seed)
        cost = {"samples": 0.0, "seconds": 0.0}
    else:
        record = training_scores(spec.data, spec.model, spec.train, score,
                                 Scoring(**dict(scoring or {})))
        scores, cost = record.scores, {"samples": record.samples, "seconds": record.seconds}
    kept = prune_by_score(scores, fraction, keep, torch.Generator().manual_seed(context.seed))
    if kept.numel() == 0:
        raise ValueError(f"fraction {fraction} keeps no sample of {len(context.train)}")
    return ArmSetup(train_indices=kept, cost=cost)


# ----------------------------------------------------------------------------- scoring runs


def _scoring_study(name: str, data: DataSpec, model: ModelSpec, train: TrainSpec, method: str,
                   epochs: int, seeds: tuple[int, ...]) -> Study:
    return Study(name, data, model, dataclasses.replace(train, epochs=epochs, steps=None),
                 arms=(Arm(name, method),), seeds=seeds, track=())


@functools.lru_cache(maxsize=16)
def forgetting_runs(data: DataSpec, model: ModelSpec, train: TrainSpec,
                    seeds: tuple[int, ...]) -> Results:
    """Full training runs (`train.epochs` epochs) with a `ForgettingEvents` observer, one per
    seed, on the training split of `data` (cached per arguments; test is never read).

    Args:
        data: the data spec.
        model: the model spec.
        train: the train spec; `train.epochs` sets each run's length.
        seeds: one run per seed (a tuple, so the arguments can be cached).

    Returns:
        A result record whose final rows hold `never_forgotten` and `never_learned` (shares of
        the training split) and whose artifacts hold each run's `forgetting_scores`.
    """
    study = _scoring_study("forgetting", data, model, train, "forgetting_events", train.epochs,
                           tuple(seeds))
    results = Results(study, [], [], {})
    for seed in study.seeds:
        curve, final, artifacts = run_arm(study, study.arms[0], seed, read_test=False)
        results.curves.extend(curve)
        results.finals.append(final)
        results.artifacts[("forgetting", seed)] = artifacts
    return results


def forgetting_summary(results: Results) -> dict[str, float]:
    """Mean never-forgotten and never-learned shares over the runs of `forgetting_runs`, and the
    share never forgotten in *every* run (learned in each, no event in any: Toneva et al. count
    a sample unforgettable across their seeds).

    Args:
        results: a record from the forgetting scoring runs (`training_scores` with score
            "forgetting"): final rows with "never_forgotten" and "never_learned", artifacts
            holding each run's "learned" and "forgetting_events" [N] tensors.

    Returns:
        {"never_forgotten", "never_learned": mean shares over the runs, in [0, 1];
        "never_forgotten_every_run": share of samples learned and never forgotten in every
        run, in [0, 1]; "runs": the number of runs (as a float)}.

    Raises:
        ValueError: the record holds no forgetting run.
    """
    runs = [artifacts for artifacts in results.artifacts.values() if "learned" in artifacts]
    if not runs:
        raise ValueError("results hold no forgetting run (use forgetting_runs)")
    finals = results.final_frame()
    in_every_run = torch.stack([run["learned"] & (run["forgetting_events"] == 0)
                                for run in runs]).all(dim=0)
    return {"never_forgotten": float(finals["never_forgotten"].mean()),
            "never_learned": float(finals["never_learned"].mean()),
            "never_forgotten_every_run": float(in_every_run.double().mean()),
            "runs": float(len(runs))}


@functools.lru_cache(maxsize=32)
def training_scores(data: DataSpec, model: ModelSpec, train: TrainSpec, score: str,
                    scoring: Scoring = Scoring()) -> TrainingScores:
    """Score every sample of the training split of `data` (cached per arguments).

    Args:
        data: the study's data spec (its training split is scored).
        model: the study's model spec.
        train: the study's train spec; the scoring runs train like the study (its optimizer,
            lr, batch size), for the epochs `scoring` gives.
        score: a key of `SCORES`.
        scoring: how many runs, epochs and initialisations.

    Returns:
        The scores with their cost. Forgetting: training samples of its runs. EL2N: training
        samples of the short runs plus one forward pass of the split per run. GraNd: one
        forward and backward pass of each sample per initialisation. Random: nothing.

    Raises:
        ValueError: an unknown score.
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    splits = load_splits(data)
    size = len(splits.train)
    if score == "random":
        return TrainingScores(score, random_scores(size, scoring.seed), 0.0, 0.0)
    if score == "forgetting":
        epochs = scoring.forgetting_epochs or train.epochs
        runs = forgetting_runs(data, model, dataclasses.replace(train, epochs=epochs, steps=None),
                               scoring.seeds(scoring.forgetting_runs))
        scores = torch.stack([a["forgetting_scores"] for a in runs.artifacts.values()])
        finals = runs.final_frame()
        return TrainingScores(score, scores.mean(0), float(finals["samples"].sum()),
                              float(finals["seconds"].sum()))
    if score == "el2n":
        study = _scoring_study("el2n", data, model, train, "el2n_run", scoring.el2n_epochs,
                               scoring.seeds(scoring.el2n_runs))
        total, samples, seconds = torch.zeros(size, dtype=torch.float64), 0.0, 0.0
        for seed in study.seeds:
            _, final, artifacts = run_arm(study, study.arms[0], seed, read_test=False)
            total += artifacts["el2n_scores"]
            samples += final["samples"] + size
            seconds += final["seconds"] + artifacts["scoring_seconds"]
        return TrainingScores(score, total / len(study.seeds), samples, seconds)
    started = time.perf_counter()
    initialised = _initialised_models(model, splits, scoring.seeds(scoring.grand_inits))
    scores = averaged_scores(initialised, splits.train, "grand")
    return TrainingScores(score, scores, float(size * scoring.grand_inits),
                          time.perf_counter() - started)


def _initialised_models(model: ModelSpec, splits: Any, seeds: Sequence[int]):
    """One freshly initialised model per seed (seeded as the harness seeds a run)."""
    for seed in seeds:
        seed_everything(seed)
        yield build_model(model, splits)


# ----------------------------------------------------------------------------- the study


def arm_label(score: str, keep: str, fraction: float) -> str:
    """The arm name of a pruned run, e.g. "EL2N hard 30%" or "random 30%".

    Args:
        score: a key of `SCORES` (shown by its label in `SCORE_LABELS`, if it has one).
        keep: "hard" or "easy" (left out for "random").
        fraction: the kept fraction, shown as a whole percentage.

    Returns:
        The name.
    """
    percent = f"{100 * fraction:.0f}%"
    if score == "random":
        return f"random {percent}"
    return f"{SCORE_LABELS.get(score, score)} {keep} {percent}"


def pruning_study(name: str, data: DataSpec, model: ModelSpec, train: TrainSpec, *,
                  fractions: Sequence[float], scores: Sequence[str] = SCORES,
                  keeps: Sequence[str] = KEEP, seeds: Sequence[int] = (0, 1, 2),
                  scoring: Scoring = Scoring(), equal_steps: bool = True) -> Study:
    """The pruning comparison as one study.

    Arms: "all data"; then for every kept fraction: random, every other score with every
    `keeps` value, and (if `equal_steps`) all the data trained for as many optimizer steps as a
    pruned run of that fraction takes (`EQUAL_STEPS`). Every pruned run of a fraction trains the
    same number of epochs on the same number of samples, so arms of one fraction have equal
    budgets (in epochs, steps and samples).

    Args:
        name: the study's label.
        data: the data spec (validation_size > 0: choices are made on validation).
        model: the model spec.
        train: the train spec of every arm (by epochs: `train.epochs` sets the equal-steps
            budgets).
        fractions: the kept fractions, each in (0, 1).
        scores: keys of `SCORES` to prune by ("random" always runs).
        keeps: which ends to keep, among `KEEP`.
        seeds: the seeds every arm runs.
        scoring: how the scores are computed (passed to each pruned arm).
        equal_steps: add the all-data arms at a pruned run's step count.

    Returns:
        The `Study`; "all data" is its first arm.

    Raises:
        ValueError: no fractions, a fraction outside (0, 1), an unknown score or keep, or a
            spec with no validation split.
    """
    if not fractions:
        raise ValueError("fractions must not be empty")
    for fraction in fractions:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
                0.0 < fraction < 1.0):
            raise ValueError(f"fractions must lie in (0, 1), got {fraction!r}")
    for score in scores:
        if score not in SCORES:
            raise ValueError(f"scores must be among {SCORES}, got {score!r}")
    for keep in keeps:
        if keep not in KEEP:
            raise ValueError(f"keeps must be among {KEEP}, got {keep!r}")
    if data.validation_size == 0:
        raise ValueError("the pruning study makes its choices on validation: "
                         "data.validation_size must be > 0")
    size = len(load_splits(data).train)
    plain_scoring = dataclasses.asdict(scoring)
    arms = [Arm("all data")]
    for fraction in fractions:
        arms.append(Arm(arm_label("random", "hard", fraction), "pruned",
                        {"score": "random", "fraction": fraction}))
        for score in (s for s in scores if s != "random"):
            for keep in keeps:
                arms.append(Arm(arm_label(score, keep, fraction), "pruned",
                                {"score": score, "fraction": fraction, "keep": keep,
                                 "scoring": plain_scoring}))
        if equal_steps:
            steps = train.epochs * math.ceil(kept_count(size, fraction) / train.batch_size)
            arms.append(Arm(f"{EQUAL_STEPS} {100 * fraction:.0f}%", train={"steps": steps}))
    return Study(name, data, model, train, arms=tuple(arms), seeds=tuple(seeds))


def _arm_roles(study: Study) -> dict[str, tuple[str, str, float]]:
    """arm name -> (score, keep, fraction) for the pruned and equal-steps arms."""
    roles = {}
    for arm in study.arms:
        if arm.method == "pruned":
            score = arm.params.get("score", "random")
            keep = "-" if score == "random" else arm.params.get("keep", "hard")
            roles[arm.name] = (SCORE_LABELS.get(score, score), keep, arm.params["fraction"])
        elif arm.name.startswith(EQUAL_STEPS):
            roles[arm.name] = (EQUAL_STEPS, "-", float(arm.name.split()[-1][:-1]) / 100)
    return roles


def pruning_frame(results: Results, metric: str = "test_accuracy", scale: float = 100.0,
                  confidence: float = 0.95) -> pd.DataFrame:
    """Every pruned (and equal-steps) arm against random at the same kept fraction, paired by
    seed.

    Args:
        results: a `pruning_study` record.
        metric: a column of the final rows.
        scale: multiplies means and differences (100 gives percentage points).
        confidence: of the two-sided Student-t interval.

    Returns:
        One row per arm: score, keep ("hard", "easy", "-"), fraction, arm, seeds, mean (times
        `scale`), and for arms other than random: difference from random, low, high (the paired
        t interval), lower / higher (seeds below / above random).

    Raises:
        ValueError: a fraction has no random arm, or the arms ran on different seeds.
    """
    values = results.final_values(metric)
    roles = _arm_roles(results.study)
    randoms = {fraction: arm for arm, (score, _, fraction) in roles.items() if score == "random"}
    rows = []
    for arm, (score, keep, fraction) in roles.items():
        if arm not in values:
            continue
        if fraction not in randoms or randoms[fraction] not in values:
            raise ValueError(f"fraction {fraction} has no random arm to compare {arm!r} with")
        column = values[arm]
        row: dict[str, Any] = {"score": score, "keep": keep, "fraction": fraction, "arm": arm,
                               "seeds": len(column), "mean": scale * sum(column) / len(column)}
        if score != "random" and len(column) >= 2:
            comparison = paired_comparison(column, values[randoms[fraction]], confidence)
            row |= {"difference": scale * comparison.difference, "low": scale * comparison.low,
                    "high": scale * comparison.high, "lower": comparison.a_lower,
                    "higher": comparison.a_higher}
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["score", "keep", "fraction"], ignore_index=True)


def cost_frame(results: Results, baseline: str = "all data") -> pd.DataFrame:
    """What each score cost beside the training it saved, per score and kept fraction (means
    over seeds; samples are forwarded or back-propagated samples).

    Args:
        results: a `pruning_study` record.
        baseline: the arm whose mean training cost the savings are measured against.

    Returns:
        One row per (score, fraction) of the pruned arms (keep-hard and keep-easy pooled, as
        they cost the same): scoring samples and seconds, training samples and seconds saved
        against `baseline`, and the net saving (saved minus scoring), in samples and seconds.

    Raises:
        ValueError: the baseline arm has no runs.
    """
    finals = results.final_frame()
    base = finals[finals["arm"] == baseline]
    if base.empty:
        raise ValueError(f"baseline {baseline!r} has no runs")
    base_samples, base_seconds = base["samples"].mean(), base["seconds"].mean()
    rows = []
    roles = {arm: role for arm, role in _arm_roles(results.study).items()
             if role[0] != EQUAL_STEPS}
    frame = finals[finals["arm"].isin(roles)].copy()
    frame["score"] = [roles[arm][0] for arm in frame["arm"]]
    frame["fraction"] = [roles[arm][2] for arm in frame["arm"]]
    for (score, fraction), group in frame.groupby(["score", "fraction"], sort=True):
        saved_samples = base_samples - group["samples"].mean()
        saved_seconds = base_seconds - group["seconds"].mean()
        rows.append({"score": score, "fraction": fraction,
                     "scoring samples": group["extra_samples"].mean(),
                     "scoring seconds": group["extra_seconds"].mean(),
                     "samples saved": saved_samples, "seconds saved": saved_seconds,
                     "net samples": saved_samples - group["extra_samples"].mean(),
                     "net seconds": saved_seconds - group["extra_seconds"].mean()})
    return pd.DataFrame(rows)


def keep_contrast(results: Results, score: str, fraction: float, metric: str = "test_accuracy",
                  confidence: float = 0.95) -> PairedComparison:
    """Keeping the easy samples minus keeping the hard ones, by `score` at `fraction`, paired by
    seed (positive: keeping easy is better).

    Args:
        results: a `pruning_study` record.
        score: a key of `SCORES` other than "random".
        fraction: the kept fraction (as in the arm names).
        metric: a column of the final rows.
        confidence: of the two-sided Student-t interval.

    Returns:
        The paired comparison (easy minus hard), in `metric`'s units.

    Raises:
        ValueError: the study has no such pair of arms.
    """
    values = results.final_values(metric)
    easy, hard = arm_label(score, "easy", fraction), arm_label(score, "hard", fraction)
    if easy not in values or hard not in values:
        raise ValueError(f"no arms {easy!r} and {hard!r} in the results")
    return paired_comparison(values[easy], values[hard], confidence)
