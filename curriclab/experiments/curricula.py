"""Notebook 11's study: curricula, anti-curricula and random curricula against standard training.

Wu, Dyer & Neyshabur (ICLR 2021) compare three orderings under one pacing function: the
curriculum (easiest samples first), the anti-curriculum (hardest first) and the random
curriculum (the same pacing over a fixed random order), against standard training. This module
builds those arms for the experiment harness:

- the arm method "curriculum" (params `order`, `pacing`, `start`, `full_at`, `score`, ...): a
  `CurriculumSampler` that trains exactly the run's step budget (`TrainSpec.steps`), ordered by
  a per-sample score. `score="reference_loss"` (or `"reference_el2n"`) scores every training
  sample with a reference model, the same network trained by standard training for
  `reference_steps` steps on the same training split; its cost (back-propagated samples plus one
  scoring pass) is charged to the arm (`ArmSetup.cost`), except for the random order, which
  ignores scores. `score="current"` starts from the fresh model's losses and re-sorts by the
  latest recorded losses every epoch: a curriculum by the current model's loss, as self-paced
  learning;
- the arm method "spl_traced": self-paced learning (`SPLLoss`, hard regularizer) that records,
  at the end of every epoch, the share of samples it selects (`selected_fraction`): SPL's own
  pacing function;
- `curricula_arms` and `curricula_study`, the spec of one condition (data set, budget, noise).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from curriclab.core.data import make_loader
from curriclab.core.protocol import SampleMethod
from curriclab.core.stats import interval_side
from curriclab.core.training import per_sample_losses, seed_everything, train_epoch
from curriclab.experiments.harness.arms import ArmContext, ArmSetup, arm_method
from curriclab.experiments.harness.results import Results, paired_table
from curriclab.experiments.harness.runner import build_model, build_optimizer
from curriclab.experiments.harness.spec import Arm, DataSpec, ModelSpec, Study, TrainSpec
from curriclab.experiments.harness.splits import load_splits
from curriclab.methods.curriculum import (
    ORDERS,
    CurriculumSampler,
    pacing_function,
    selected_fraction,
)
from curriclab.methods.pruning.scores import score_dataset
from curriclab.methods.spl import SPLLoss
from curriclab.ui.report import interval

__all__ = [
    "ARM_LABELS",
    "chosen_rates",
    "condition_label",
    "condition_studies",
    "curricula_arms",
    "curricula_study",
    "describe_findings",
    "describe_gaps",
    "Finding",
    "gap_table",
    "gap_text",
    "gap_verdicts",
    "headline_numbers",
    "REFERENCE_SEED",
    "reference_model",
    "reference_scores",
    "SCORES",
    "SelectionTrace",
    "SOURCE_LABELS",
    "takeaways",
    "verdict",
    "verdict_text",
    "WU_FINDINGS",
    "wu_findings",
]

SCORES = ("reference_loss", "reference_el2n", "current")
"""What a "curriculum" arm orders by: a reference model's loss or EL2N, or the current loss."""

REFERENCE_SEED = 10_000
"""The reference model's seed: none of a study's run seeds, so it shares no initialisation."""

ARM_LABELS = {"easy": "curriculum", "hard": "anti-curriculum", "random": "random curriculum"}
"""The arm name of each order in `curricula_arms`."""

SOURCE_LABELS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
"""How prose names each data set."""


@dataclasses.dataclass(frozen=True)
class Finding:
    """One of Wu et al.'s findings, as a test on `gap_table`'s verdicts.

    Attributes:
        condition: the condition kind it is about ("standard", "limited" or "noisy"); it is
            tested on "<source> <condition>" for every data set.
        claim: the finding in words.
        arms: the arms it makes a claim about.
        expected: the `verdict` against standard training it predicts for every one of `arms`.
    """

    condition: str
    claim: str
    arms: tuple[str, ...]
    expected: str


WU_FINDINGS = (
    Finding("standard", "at a standard budget, curricula, anti-curricula and random curricula "
            "perform like standard training", tuple(ARM_LABELS.values()), "alike"),
    Finding("limited", "under a limited training budget, curricula beat standard training",
            ("curriculum",), "better"),
    Finding("noisy", "with noisy labels, curricula beat standard training",
            ("curriculum",), "better"),
)
"""Wu, Dyer & Neyshabur's (ICLR 2021) three findings, as this notebook tests them."""

VERDICTS = ("better", "alike", "worse")
"""What `verdict` can say of an arm against the baseline."""


@functools.lru_cache(maxsize=16)
def _trained_reference(data: DataSpec, model: ModelSpec, train: TrainSpec, steps: int,
                       seed: int) -> tuple[nn.Module, float]:
    splits = load_splits(data)
    with torch.random.fork_rng(devices=[]):
        seed_everything(seed)
        network = build_model(model, splits)
        optimizer = build_optimizer(train, network)
        generator = torch.Generator().manual_seed(seed)
        loader = make_loader(splits.train, train.batch_size, shuffle=True, generator=generator)
        started = time.perf_counter()
        done = 0
        while done < steps:
            batches = itertools.islice(loader, steps - done)
            done += train_epoch(network, batches, optimizer, progress=False).steps
        seconds = time.perf_counter() - started
    return network.eval(), seconds


def reference_model(data: DataSpec, model: ModelSpec, train: TrainSpec, steps: int,
                    seed: int = REFERENCE_SEED) -> tuple[nn.Module, float]:
    """The scoring network: `model` trained by standard training (shuffled batches, mean
    cross-entropy, `train`'s optimizer and learning rate, constant) for `steps` steps on the
    training split of `data`, from seed `seed`. Cached per arguments, and trained under a forked
    RNG, so asking for it never moves the caller's random numbers.

    Args:
        data: the study's data spec (the model trains on its training split).
        model: the study's model spec.
        train: the study's train spec; its optimizer settings and batch size are used, its
            `steps`, `epochs` and `schedule` are not (the learning rate stays constant).
        steps: optimizer steps >= 1.
        seed: the reference model's seed.

    Returns:
        (the model in eval mode, the wall seconds its training took when it was trained).

    Raises:
        ValueError: `steps` < 1.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    train = dataclasses.replace(train, steps=None, epochs=1, schedule="constant")
    return _trained_reference(data, model, train, steps, seed)


def reference_scores(data: DataSpec, model: ModelSpec, train: TrainSpec, steps: int,
                     measure: str = "loss", seed: int = REFERENCE_SEED) -> Tensor:
    """Every training sample's score under `reference_model(...)` (lower = easier), keyed by
    training-split index: "loss" (cross-entropy) or "el2n" (||softmax - onehot||).

    Args:
        data: the study's data spec.
        model: the study's model spec.
        train: the study's train spec (as in `reference_model`).
        steps: the reference model's optimizer steps (>= 1).
        measure: "loss" or "el2n".
        seed: the reference model's seed.

    Returns:
        float64 scores [len(train split)].

    Raises:
        ValueError: an unknown measure or `steps` < 1.
    """
    if measure not in ("loss", "el2n"):
        raise ValueError(f"measure must be 'loss' or 'el2n', got {measure!r}")
    network, _ = reference_model(data, model, train, steps, seed)
    return score_dataset(network, load_splits(data).train, measure)


@arm_method("curriculum")
def _curriculum(context: ArmContext, order: str = "easy", pacing: str = "linear",
                start: float = 0.2, full_at: float = 0.8, score: str = "reference_loss",
                reference_steps: int = 40, min_samples: int = 1) -> ArmSetup:
    """A `CurriculumSampler` over the run's step budget, ordered by `score` (see the module
    docstring); collects the final scores and order."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    spec, train = context.train_spec, context.train
    steps_per_epoch = math.ceil(len(train) / spec.batch_size)
    total = spec.steps if spec.steps is not None else spec.epochs * steps_per_epoch
    cost: dict[str, float] = {}
    if score == "current":
        scores = per_sample_losses(context.model, train)
        cost = {"samples": float(len(train))}
    else:
        study = context.study
        scores = reference_scores(study.data, study.model, spec, reference_steps,
                                  "loss" if score == "reference_loss" else "el2n")
        if order != "random":
            _, seconds = reference_model(study.data, study.model, spec, reference_steps)
            cost = {"samples": float(reference_steps * spec.batch_size + len(train)),
                    "seconds": seconds}
    seed = int(torch.randint(0, 2**62, (), generator=context.generator))
    sampler = CurriculumSampler(
        scores, pacing_function(pacing, total, start=start, full_at=full_at), total,
        spec.batch_size, order, seed=seed, steps_per_epoch=steps_per_epoch,
        min_samples=min_samples, update_scores=score == "current")
    return ArmSetup(methods=[sampler], sampler=sampler, cost=cost,
                    collect=lambda: {"scores": sampler.scores.clone(),
                                     "order": sampler.order.clone()})


class SelectionTrace(SampleMethod):
    """Records, at the end of every epoch, the share of samples an `SPLLoss` selects
    (`selected_fraction` of its recorded losses at its threshold). Plug it in *before* the
    `SPLLoss`, so it reads the threshold the epoch was trained with. Observes only.

    Args:
        spl: the self-paced loss to watch.

    Raises:
        TypeError: `spl` is not an `SPLLoss`.

    Attributes:
        fractions: one selected share per finished epoch.
        thresholds: the threshold of each finished epoch.
    """

    def __init__(self, spl: SPLLoss):
        if not isinstance(spl, SPLLoss):
            raise TypeError(f"spl must be an SPLLoss, got {type(spl).__name__}")
        self.spl = spl
        self.fractions: list[float] = []
        self.thresholds: list[float] = []

    def objective(self, index: Tensor, losses: Tensor) -> None:
        """Observe nothing per step: the trace reads the `SPLLoss` at the end of each epoch.

        Args:
            index: [B] training-split indices of the step's samples (unused).
            losses: [B] their losses (unused).

        Returns:
            None: the trace adds nothing to the loss.
        """
        return None

    def after_epoch(self, epoch: int) -> None:
        """Append the `SPLLoss`'s current selected share and threshold.

        Args:
            epoch: the finished epoch's number (unused: entries are appended in order).
        """
        self.fractions.append(selected_fraction(self.spl.sample_losses, self.spl.threshold))
        self.thresholds.append(self.spl.threshold)

    def state_dict(self) -> dict:
        """The recorded shares and thresholds.

        Returns:
            {"fractions": [selected share in [0, 1] per epoch], "thresholds": [lambda per
            epoch]}, copies of the lists (what `load_state_dict` takes).
        """
        return {"fractions": list(self.fractions), "thresholds": list(self.thresholds)}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`'s output.

        Args:
            state: {"fractions": floats in [0, 1], "thresholds": floats, one per fraction}.

        Raises:
            ValueError: a missing or extra key, a fraction that is not a float in [0, 1], or
                thresholds that are not floats or not one per fraction.
        """
        if not isinstance(state, dict) or set(state) != {"fractions", "thresholds"}:
            raise ValueError("state must have the keys ['fractions', 'thresholds']")
        fractions, thresholds = list(state["fractions"]), list(state["thresholds"])
        if not all(isinstance(f, float) and 0.0 <= f <= 1.0 for f in fractions):
            raise ValueError("fractions must be floats in [0, 1]")
        if len(thresholds) != len(fractions) or not all(isinstance(t, float) for t in thresholds):
            raise ValueError("thresholds must be floats, one per fraction")
        self.fractions, self.thresholds = fractions, thresholds


@arm_method("spl_traced")
def _spl_traced(context: ArmContext, threshold: float = 0.1,
                growing_factor: float = 1.35) -> ArmSetup:
    """Hard self-paced learning (`SPLLoss`, mean reduction) with a `SelectionTrace`; collects
    the selected share per epoch, the final losses and the final threshold."""
    spl = SPLLoss(len(context.train), threshold=threshold, growing_factor=growing_factor)
    trace = SelectionTrace(spl)

    def collect() -> dict[str, Any]:
        return {"fractions": torch.tensor(trace.fractions, dtype=torch.float64),
                "thresholds": torch.tensor(trace.thresholds, dtype=torch.float64),
                "losses": spl.sample_losses.clone(), "threshold": spl.threshold,
                "selected": spl.selected.clone()}
    return ArmSetup(methods=[trace, spl], collect=collect)


def curricula_arms(pacing: str = "linear", start: float = 0.2, full_at: float = 0.8,
                   reference_steps: int = 40, self_paced: bool = True,
                   extra_standard_steps: int | None = None) -> tuple[Arm, ...]:
    """The arms of one condition: "standard" (shuffled epochs), "curriculum", "anti-curriculum"
    and "random curriculum" (one pacing, ordered by a reference model's loss), and
    "self-paced curriculum" (the same pacing, ordered by the current loss) if `self_paced`.

    Args:
        pacing: one of `PACINGS`, shared by every ordered arm.
        start: b of `pacing_fraction`, the fraction available at step 0.
        full_at: a of `pacing_fraction`, the share of the budget after which all is available.
        reference_steps: the reference model's training steps.
        self_paced: add the current-loss curriculum.
        extra_standard_steps: if given, add "standard + scoring budget", standard training
            with this many steps (the budget plus the reference model's steps: equal cost).

    Returns:
        The arms; the first ("standard") is the baseline.
    """
    shared = {"pacing": pacing, "start": start, "full_at": full_at}
    arms = [Arm("standard")]
    arms += [Arm(ARM_LABELS[order], "curriculum",
                 {**shared, "order": order, "reference_steps": reference_steps})
             for order in ORDERS]
    if self_paced:
        arms.append(Arm("self-paced curriculum", "curriculum",
                        {**shared, "order": "easy", "score": "current"}))
    if extra_standard_steps is not None:
        arms.append(Arm("standard + scoring budget", train={"steps": extra_standard_steps}))
    return tuple(arms)


def curricula_study(name: str, source: str = "mnist", *, steps: int, label_noise: float = 0.0,
                    train_size: int = 5000, validation_size: int = 1000,
                    test_size: int | None = 5000, hidden: tuple[int, ...] = (256,),
                    lr: float = 0.05, batch_size: int = 128, seeds: tuple[int, ...] = (0, 1, 2),
                    eval_every: int = 20, arms: tuple[Arm, ...] | None = None) -> Study:
    """One condition of notebook 11: a data set, a step budget and a label-noise share.

    An MLP (`hidden` layers) trained with momentum SGD (0.9) at a constant learning rate `lr`
    (each arm's own after `tune`), for exactly `steps` steps of `batch_size`; the final model
    is kept (`select="last"`); validation is tracked every `eval_every` steps.

    Args:
        name: the study's label.
        source: "mnist" or "fashion_mnist".
        steps: the budget in optimizer steps (>= 1).
        label_noise: the share of wrong training labels (validation and test stay clean).
        train_size: training samples.
        validation_size: validation samples carved from the official training split.
        test_size: test samples (None: the whole official test split).
        hidden: the MLP's hidden widths.
        lr: the learning rate before tuning.
        batch_size: samples per step.
        seeds: the seeds every arm runs.
        eval_every: steps between validation evaluations.
        arms: the arms (default `curricula_arms()`).

    Returns:
        The `Study`.
    """
    data = DataSpec(source=source, train_size=train_size, validation_size=validation_size,
                    test_size=test_size, label_noise=label_noise)
    return Study(name, data, ModelSpec("mlp", tuple(hidden)),
                 TrainSpec(lr=lr, batch_size=batch_size, steps=steps),
                 arms=arms if arms is not None else curricula_arms(), seeds=tuple(seeds),
                 eval_every=eval_every, track=("validation",), select="last")


def condition_studies(sources: Sequence[str], *, steps: int, limited_steps: int,
                      reference_steps: int, label_noise: float = 0.2,
                      **sizes: Any) -> dict[str, Study]:
    """The conditions of notebook 11, per data set: "<source> standard" (the full `steps`),
    "<source> limited" (`limited_steps`, plus the equal-cost "standard + scoring budget" arm with
    `limited_steps + reference_steps` steps) and "<source> noisy" (`steps`, `label_noise` of the
    training labels wrong).

    Args:
        sources: data sets ("mnist", "fashion_mnist").
        steps: the budget of the standard and noisy conditions.
        limited_steps: the budget of the limited condition.
        reference_steps: the reference model's training steps.
        label_noise: the noisy condition's share of wrong training labels.
        **sizes: further `curricula_study` arguments (split sizes, seeds, lr, ...).

    Returns:
        The studies by condition name, in that order.
    """
    studies = {}
    for source in sources:
        arms = curricula_arms(reference_steps=reference_steps)
        studies[f"{source} standard"] = curricula_study(
            f"{source} standard", source, steps=steps, arms=arms, **sizes)
        studies[f"{source} limited"] = curricula_study(
            f"{source} limited", source, steps=limited_steps, **sizes,
            arms=curricula_arms(reference_steps=reference_steps,
                                extra_standard_steps=limited_steps + reference_steps))
        studies[f"{source} noisy"] = curricula_study(
            f"{source} noisy", source, steps=steps, label_noise=label_noise, arms=arms, **sizes)
    return studies


def gap_table(results: Mapping[str, Results], metric: str = "test_accuracy",
              scale: float = 100.0, baseline: str = "standard") -> pd.DataFrame:
    """Every condition's `paired_table` against `baseline`, stacked with a "condition" column.

    Args:
        results: condition name -> its record (each with a `baseline` arm).
        metric: a column of the final rows.
        scale: multiplies means and differences (100 gives percentage points).
        baseline: the arm every other arm is compared with.

    Returns:
        Columns condition, arm, seeds, mean, difference, low, high, lower, higher (the last
        five empty on the baseline's row).

    Raises:
        ValueError: a record without a `baseline` arm (as `paired_table`).
    """
    frames = [paired_table(record, metric, baseline, scale=scale).assign(condition=name)
              for name, record in results.items()]
    table = pd.concat(frames, ignore_index=True)
    return table[["condition", *[c for c in table.columns if c != "condition"]]]


def verdict(low: float, high: float) -> str:
    """What a paired interval says of an arm against its baseline.

    Args:
        low: the interval's lower end.
        high: the interval's upper end (>= low).

    Returns:
        "better" if the whole interval lies above 0, "worse" if it lies below 0, else "alike"
        (the interval holds 0: no difference the seeds can tell apart).

    Raises:
        ValueError: an end that is not finite, or `low` above `high`.
    """
    return {1: "better", 0: "alike", -1: "worse"}[interval_side(low, high)]


def gap_verdicts(gaps: pd.DataFrame) -> pd.DataFrame:
    """`gaps` with a "verdict" column: `verdict(low, high)` on every row with an interval.

    Args:
        gaps: a `gap_table`.

    Returns:
        A copy of `gaps`; "verdict" is missing (NaN) on the baseline's rows.
    """
    verdicts = [verdict(row.low, row.high) if pd.notna(row.difference) else None
                for row in gaps.itertuples()]
    return gaps.assign(verdict=verdicts)


def _gap_row(gaps: pd.DataFrame, condition: str, arm: str) -> pd.Series:
    row = gaps[(gaps["condition"] == condition) & (gaps["arm"] == arm)]
    if row.empty or pd.isna(row["difference"].iloc[0]):
        raise ValueError(f"gaps has no difference for condition {condition!r}, arm {arm!r}")
    return row.iloc[0]


def gap_text(gaps: pd.DataFrame, condition: str, arm: str) -> str:
    """`arm`'s paired difference from the baseline in `condition`, with its interval, as text
    ("+0.55 points [+0.43, +0.66]").

    Args:
        gaps: the `gap_table`.
        condition: the condition's name.
        arm: an arm other than the baseline.

    Returns:
        `report.interval` of the row's difference, low and high.

    Raises:
        ValueError: no such row in `gaps`, or it is the baseline's (no difference).
    """
    row = _gap_row(gaps, condition, arm)
    return interval(row["difference"], row["low"], row["high"])


def verdict_text(gaps: pd.DataFrame, condition: str, arm: str) -> str:
    """`arm`'s verdict against the baseline in `condition`, with the numbers that decide it:
    "worse, -2.55 points [-3.52, -1.59], lower in 5 of 5 seeds".

    Args:
        gaps: the `gap_table`.
        condition: the condition's name.
        arm: an arm other than the baseline.

    Returns:
        The `verdict` ("better", "alike" or "worse"), `gap_text`, and in how many seeds the arm
        was lower (for "worse" and "alike" with a negative mean) or higher.

    Raises:
        ValueError: no such row in `gaps`, or it is the baseline's (no difference).
    """
    row = _gap_row(gaps, condition, arm)
    said = verdict(row["low"], row["high"])
    side = "higher" if row["difference"] > 0 else "lower"
    return (f"{said}, {interval(row['difference'], row['low'], row['high'])}, {side} in "
            f"{int(row[side])} of {int(row['seeds'])} seeds")


def condition_label(condition: str) -> str:
    """A condition's name for prose: "fashion_mnist limited" -> "Fashion-MNIST limited".

    Args:
        condition: "<source> <kind>", as `condition_studies` names it.

    Returns:
        The name with the data set as `SOURCE_LABELS` spells it (unknown sources unchanged).
    """
    source, _, kind = condition.partition(" ")
    return f"{SOURCE_LABELS.get(source, source)} {kind}".strip()


def describe_gaps(gaps: pd.DataFrame, conditions: Sequence[str],
                  arms: Sequence[str] = tuple(ARM_LABELS.values()),
                  baseline: str = "standard") -> str:
    """Markdown bullets, one per condition: each arm's `verdict_text` against the baseline, in
    test-accuracy points.

    Args:
        gaps: the `gap_table` (scaled to points) against `baseline`.
        conditions: the conditions, one bullet each, in order.
        arms: the arms named in each bullet, in order.
        baseline: the arm the table compares with; its mean opens each bullet.

    Returns:
        The bullets, one per line.

    Raises:
        ValueError: a condition or arm without a row in `gaps`.
    """
    lines = []
    for condition in conditions:
        base = gaps[(gaps["condition"] == condition) & (gaps["arm"] == baseline)]
        if base.empty:
            raise ValueError(f"condition {condition!r} has no {baseline!r} row in gaps")
        parts = [f"{arm}: {verdict_text(gaps, condition, arm)}" for arm in arms]
        lines.append(f"- **{condition_label(condition)}** ({baseline} "
                     f"{float(base['mean'].iloc[0]):.2f} %): " + "; ".join(parts))
    return "\n".join(lines)


def wu_findings(gaps: pd.DataFrame, sources: Sequence[str],
                findings: Sequence[Finding] = WU_FINDINGS) -> pd.DataFrame:
    """Test each finding on each data set against `gap_table`'s verdicts.

    A finding is reproduced on a data set when every arm it names gets the `verdict` it
    predicts in "<source> <finding.condition>".

    Args:
        gaps: the `gap_table` against standard training.
        sources: the data sets ("mnist", "fashion_mnist").
        findings: the findings to test.

    Returns:
        One row per (finding, data set): condition, claim, expected, observed (each arm's
        verdict, "curriculum worse, ..."), reproduced (bool).

    Raises:
        ValueError: a condition or arm the findings need without a row in `gaps`.
    """
    rows = []
    for finding in findings:
        for source in sources:
            condition = f"{source} {finding.condition}"
            said = {arm: verdict(*_gap_row(gaps, condition, arm)[["low", "high"]])
                    for arm in finding.arms}
            rows.append({"condition": condition, "claim": finding.claim,
                         "expected": finding.expected,
                         "observed": ", ".join(f"{arm} {v}" for arm, v in said.items()),
                         "reproduced": all(v == finding.expected for v in said.values())})
    return pd.DataFrame(rows)


def describe_findings(table: pd.DataFrame) -> str:
    """Markdown bullets, one per row of `wu_findings`: the claim, where, and what was seen.

    Args:
        table: the `wu_findings` table.

    Returns:
        The bullets, one per line, each saying "reproduced" or "not reproduced".
    """
    lines = []
    for row in table.itertuples():
        said = "reproduced" if row.reproduced else "not reproduced"
        lines.append(f"- *{row.claim}* — {condition_label(row.condition)}: **{said}** "
                     f"(expected {row.expected}; observed {row.observed})")
    return "\n".join(lines)


_KIND_TITLES = {"standard": "Standard budget", "limited": "Limited budget",
                "noisy": "Wrong labels"}


def takeaways(gaps: pd.DataFrame, findings: pd.DataFrame, sources: Sequence[str]) -> str:
    """The notebook's takeaways as Markdown bullets, every verdict read off `gaps`.

    One bullet for how many of `findings` held, then one per condition kind (standard, limited,
    noisy) naming, per data set, every ordering's verdict and mean difference from standard
    training (and, for the limited budget, the equal-cost "standard + scoring budget" arm's).

    Args:
        gaps: the `gap_table` against standard training, in points.
        findings: the `wu_findings` table.
        sources: the data sets, in the order to name them.

    Returns:
        The bullets, one per line.

    Raises:
        ValueError: a condition or arm without a row in `gaps`.
    """
    held = int(findings["reproduced"].sum())
    lines = [f"- **Wu et al.'s findings** held in {held} of {len(findings)} (finding, data set) "
             "pairs at this scale (section 4.4)."]
    for kind, title in _KIND_TITLES.items():
        arms = [*ARM_LABELS.values(), *(["standard + scoring budget"] if kind == "limited"
                                        else [])]
        parts = []
        for source in sources:
            condition = f"{source} {kind}"
            rows = [(arm, _gap_row(gaps, condition, arm)) for arm in arms]
            said = ", ".join(f"{arm} {verdict(row['low'], row['high'])} ({row['difference']:+.2f})"
                             for arm, row in rows)
            parts.append(f"{condition_label(source)}: {said}")
        lines.append(f"- **{title}.** " + "; ".join(parts) + ".")
    return "\n".join(lines)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


def headline_numbers(gaps: pd.DataFrame) -> dict[str, float]:
    """Flat headline keys from `gap_table`'s rows: `<condition>__<arm>__mean` for every arm and
    `__difference`, `__low`, `__high` for every arm but the baseline (names lower-cased, other
    characters as "_"), e.g. "mnist_noisy__curriculum__difference".

    Args:
        gaps: the `gap_table`.

    Returns:
        A flat dict of plain floats.
    """
    numbers = {}
    for _, row in gaps.iterrows():
        key = f"{_slug(row['condition'])}__{_slug(row['arm'])}"
        numbers[f"{key}__mean"] = float(row["mean"])
        if "difference" in row and pd.notna(row["difference"]):
            for field in ("difference", "low", "high"):
                numbers[f"{key}__{field}"] = float(row[field])
    return numbers


def chosen_rates(tuning: Mapping[str, Sequence[Mapping[str, Any]]],
                 field: str = "lr") -> pd.DataFrame:
    """The value of `field` that `tune` chose for every arm, one row per condition.

    Args:
        tuning: per condition, the rows `tune` returned (arm, `field`, validation_accuracy,
            chosen).
        field: the tuned knob's key in those rows.

    Returns:
        A frame indexed by condition with one column per arm.

    Raises:
        ValueError: an arm of a condition with no chosen row, or more than one.
    """
    table: dict[str, dict[str, float]] = {}
    for condition, rows in tuning.items():
        arms = list(dict.fromkeys(row["arm"] for row in rows))
        picked = {arm: [row[field] for row in rows if row["arm"] == arm and row["chosen"]]
                  for arm in arms}
        for arm, values in picked.items():
            if len(values) != 1:
                raise ValueError(f"condition {condition!r}, arm {arm!r}: expected one chosen "
                                 f"{field}, got {len(values)}")
        table[condition] = {arm: values[0] for arm, values in picked.items()}
    return pd.DataFrame.from_dict(table, orient="index")
