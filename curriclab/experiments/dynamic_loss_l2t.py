"""Notebook 06's study: L2T-DLF teachers against cross-entropy and the static Phi family.

Everything a student does is a harness arm (`curriclab.experiments.harness`), trained by the one
`run` and tuned by the one `tune`:

- "dlf_cross_entropy": cross-entropy, with the same warm start as the other arms;
- "dlf_static": the loss -sigmoid(Phi[y] . log p + b_y) with a static Phi = a I + c (1 - I) and
  bias b, after a cross-entropy warm start;
- "dlf_teacher": a frozen teacher registered with `register_teacher`, after the same warm start.

Each arm tunes its own lr for the taught steps; the warm start (`StudentProtocol`) is shared, its
lr chosen for plain cross-entropy (`tune_warmup`).

Only the teacher's own training needs a loop of its own (the unrolled student runs of Algorithm 1,
or the online variant): `train_teacher_arm` runs it on the study's splits. The teacher's dev data
is the holdout split; every choice (student lr, teacher optimiser and lr, the static member) is
made on the validation split, which no arm trains on; test is read once per final model.

The steps of the notebook: `tune_warmup`; `harness.tune` over cross-entropy, Phi = I and the
static grid (`static_phi_arms`, `static_grid_table`); `tune_teachers` (each kind's optimiser and
lr); `train_final_teachers`; `harness.tune` of their students' lr; `harness.run` of
`final_study`; `teacher_comparison`, which forms the intervals over independently trained
teachers x student seeds; `diagnostics_table`, `headlines` and the rendered summaries.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from scipy.stats import t as scipy_t
from torch.func import functional_call

from curriclab.core.models import MLP
from curriclab.core.stats import paired_comparison
from curriclab.experiments.harness.arms import ArmContext, ArmSetup, arm_method
from curriclab.experiments.harness.results import Results
from curriclab.experiments.harness.runner import run_arm, tune
from curriclab.experiments.harness.spec import Arm, DataSpec, ModelSpec, Study, TrainSpec
from curriclab.experiments.harness.splits import load_splits
from curriclab.methods.dynamic_loss import dynamic_loss, expected_error
from curriclab.methods.hypergradient import (
    Params,
    finite_difference_gradient,
    hypergradient,
    sgd_trajectory,
    unrolled_hypergradient,
)
from curriclab.methods.l2t import (
    Algorithm1Config,
    Algorithm1Log,
    TaughtLoss,
    TeachingConfig,
    train_teacher,
    train_teacher_algorithm1,
)
from curriclab.methods.teacher import LossTeacher, phi_summary

__all__ = [
    "TEACHERS",
    "StudentProtocol",
    "TeacherArm",
    "l2t_study",
    "online_log",
    "register_teacher",
    "registered_teacher",
    "static_phi",
    "static_grid_table",
    "static_phi_arms",
    "TeacherTuning",
    "teacher_comparison",
    "chosen_values",
    "comparison_summary",
    "crossed_interval",
    "diagnostics_summary",
    "diagnostics_table",
    "finite_difference_check",
    "headlines",
    "takeaways",
    "final_study",
    "tune_warmup",
    "teacher_arms",
    "train_final_teachers",
    "train_teacher_arm",
    "tune_teachers",
    "validation_scores",
    "verdict",
]

TEACHERS: dict[str, LossTeacher] = {}
"""Frozen teachers the "dlf_teacher" arm (and notebook 07's "l2t_teacher" arm) can name (filled
by `register_teacher`)."""


def register_teacher(name: str, teacher: LossTeacher) -> None:
    """Make `teacher` available to the teacher arms as `teacher=name` (replacing any teacher of
    that name).

    Args:
        name: the name an arm's `teacher` param gives.
        teacher: the frozen teacher.

    Raises:
        TypeError: teacher is not a `LossTeacher`.
    """
    if not isinstance(teacher, LossTeacher):
        raise TypeError(f"teacher must be a LossTeacher, got {type(teacher).__name__}")
    TEACHERS[name] = teacher


def registered_teacher(name: str) -> LossTeacher:
    """The teacher registered under `name` (`register_teacher`).

    Args:
        name: a registered name.

    Returns:
        The teacher itself (not copied).

    Raises:
        ValueError: no teacher is registered under `name` (the message lists the names).
    """
    if name not in TEACHERS:
        raise ValueError(f"teacher must be one of {sorted(TEACHERS)}, got {name!r}")
    return TEACHERS[name]


def static_phi(num_classes: int, diagonal: float = 1.0, off_diagonal: float = 0.0,
               bias: float = 0.0) -> LossTeacher:
    """A teacher that ignores the state: Phi = diagonal * I + off_diagonal * (1 - I), bias b.

    Args:
        num_classes: C (>= 2).
        diagonal, off_diagonal: Phi's entries on and off the diagonal (finite).
        bias: every class's bias b_y (finite).

    Returns:
        A frozen `LossTeacher` (hidden=0, no gradients) with that [C, C] Phi and bias.

    Raises:
        ValueError: num_classes < 2 or a non-finite value.
    """
    if not all(math.isfinite(v) for v in (diagonal, off_diagonal, bias)):
        raise ValueError(f"diagonal, off_diagonal and bias must be finite, got "
                         f"{diagonal}, {off_diagonal}, {bias}")
    teacher = LossTeacher(num_classes, hidden=0)
    eye = torch.eye(num_classes)
    with torch.no_grad():
        teacher.base.copy_(diagonal * eye + off_diagonal * (1 - eye))
        teacher.bias.fill_(bias)
    return teacher.requires_grad_(False)


def _steps(context: ArmContext) -> int:
    if context.train_spec.steps is None:
        raise ValueError("the L2T arms need a step budget (TrainSpec.steps)")
    return context.train_spec.steps


def _taught_setup(context: ArmContext, teacher: LossTeacher | None, warmup_steps: int,
                  warmup_lr: float | None, interval: int, dev_batch: int) -> ArmSetup:
    """A `TaughtLoss` on the holdout split (the teacher's dev data), its warm-up at `warmup_lr`
    (None: the arm's lr); collects the share of saturated minibatch samples over the taught steps
    and Phi's last summary."""
    spec = context.train_spec
    if spec.optimizer != "sgd" or spec.momentum or spec.weight_decay or spec.schedule != "constant":
        raise ValueError("the L2T arms need plain SGD: no momentum, weight decay or schedule")
    scale = 1.0 if warmup_lr is None else warmup_lr / spec.lr
    rule = TaughtLoss(teacher, context.splits.holdout, _steps(context), warmup_steps, interval,
                      dev_batch, seed=context.seed, model=context.model, warmup_scale=scale)

    def collect() -> dict[str, Any]:
        summary = phi_summary(rule.last_phi) if rule.last_phi is not None else {}
        saturated = sum(rule.saturated) / len(rule.saturated) if rule.saturated else math.nan
        return {"saturated": saturated, **summary}
    return ArmSetup(methods=[rule], collect=collect)


@arm_method("dlf_cross_entropy")
def _dlf_cross_entropy(context: ArmContext, warmup_steps: int = 0,
                       warmup_lr: float | None = None) -> ArmSetup:
    """Cross-entropy throughout: the shared warm-up (at `warmup_lr`), then at the arm's lr."""
    return _taught_setup(context, None, warmup_steps, warmup_lr, 20, 500)


@arm_method("dlf_static")
def _dlf_static(context: ArmContext, diagonal: float = 1.0, off_diagonal: float = 0.0,
                bias: float = 0.0, warmup_steps: int = 0, warmup_lr: float | None = None,
                interval: int = 20, dev_batch: int = 500) -> ArmSetup:
    """Cross-entropy for `warmup_steps` (at `warmup_lr`), then the static loss of `static_phi`."""
    teacher = static_phi(context.splits.num_classes, diagonal, off_diagonal, bias)
    return _taught_setup(context, teacher, warmup_steps, warmup_lr, interval, dev_batch)


@arm_method("dlf_teacher")
def _dlf_teacher(context: ArmContext, teacher: str = "", warmup_steps: int = 0,
                 warmup_lr: float | None = None, interval: int = 20,
                 dev_batch: int = 500) -> ArmSetup:
    """Cross-entropy for `warmup_steps` (at `warmup_lr`), then the frozen teacher `teacher`'s
    loss."""
    return _taught_setup(context, registered_teacher(teacher), warmup_steps, warmup_lr, interval,
                         dev_batch)


@dataclass(frozen=True)
class StudentProtocol:
    """One student run, the same for every arm and for every run a teacher is trained on.

    Attributes:
        hidden: the MLP's hidden layer sizes (784-hidden-10).
        warmup_steps: cross-entropy steps at `warmup_lr`, shared by every arm.
        horizon: the taught steps after them (T: Algorithm 1 unrolls all of them).
        warmup_lr: the warm-up's lr (each arm tunes only its taught-phase lr).
    """

    hidden: tuple[int, ...] = (100,)
    warmup_steps: int = 100
    horizon: int = 200
    warmup_lr: float = 0.4

    @property
    def steps(self) -> int:
        """The run's optimizer steps: `warmup_steps + horizon`."""
        return self.warmup_steps + self.horizon

    def arm(self, name: str, method: str, **params: Any) -> Arm:
        """An arm of `method` with this protocol's warm-up.

        Args:
            name: the arm's name.
            method: a "dlf_*" arm method.
            **params: the method's other params.

        Returns:
            The arm, its params extended by `warmup_steps` and `warmup_lr`.
        """
        return Arm(name, method, {**params, "warmup_steps": self.warmup_steps,
                                  "warmup_lr": self.warmup_lr})

    def teacher_config(self, lr: float, **changes: Any) -> Algorithm1Config:
        """Algorithm 1's config for this run with student lr `lr` in the taught steps.

        Args:
            lr: the student's lr in the taught steps.
            **changes: further `Algorithm1Config` fields (teacher steps, optimiser, lr, ...).

        Returns:
            The config (horizon, warm-up steps and warm-up lr from this protocol).

        Raises:
            ValueError, TypeError: a value or field `Algorithm1Config` refuses.
        """
        return Algorithm1Config(horizon=self.horizon, warmup_steps=self.warmup_steps, lr=lr,
                                warmup_lr=self.warmup_lr, **changes)


def l2t_study(data: DataSpec, protocol: StudentProtocol, seeds: Sequence[int],
              arms: Sequence[Arm] = (), eval_every: int = 25) -> Study:
    """Notebook 06's study: an MLP student trained by plain SGD (no momentum, constant lr, batch
    128) for `protocol.steps` steps; arm 0 is cross-entropy (with the same warm-up), then `arms`.
    The final model is kept (no early stopping): every arm gets exactly the run its teacher was
    trained for.

    Args:
        data: the splits (a holdout split for teachers' dev data, a validation split for choices).
        protocol: the student run.
        seeds: the student seeds.
        arms: the arms after cross-entropy (e.g. `static_phi_arms`, `teacher_arms`).
        eval_every: steps between evaluations.

    Returns:
        The `Study`.

    Raises:
        ValueError: through the spec classes (bad sizes, duplicate arm names, empty seeds).
    """
    return Study("06_dynamic_loss_l2t", data, ModelSpec("mlp", tuple(protocol.hidden)),
                 TrainSpec(optimizer="sgd", lr=protocol.warmup_lr, momentum=0.0,
                           batch_size=128, steps=protocol.steps),
                 arms=(protocol.arm("cross-entropy", "dlf_cross_entropy"), *arms),
                 seeds=tuple(seeds), eval_every=eval_every)


def static_phi_arms(protocol: StudentProtocol, diagonals: Sequence[float],
                    off_diagonals: Sequence[float], biases: Sequence[float]) -> list[Arm]:
    """One "dlf_static" arm per (a, c, b) of the grid.

    Args:
        protocol: the student run (its warm-up).
        diagonals, off_diagonals, biases: the grid's values of a, c and b.

    Returns:
        The arms, a varying slowest, named "static a=.. c=.. b=.."; Phi = I (a=1, c=0, b=0) is
        named "Phi = I".
    """
    def name(a: float, c: float, b: float) -> str:
        return "Phi = I" if (a, c, b) == (1, 0, 0) else f"static a={a:g} c={c:g} b={b:g}"
    return [protocol.arm(name(a, c, b), "dlf_static", diagonal=a, off_diagonal=c, bias=b)
            for a in diagonals for c in off_diagonals for b in biases]


@dataclass(frozen=True)
class TeacherArm:
    """How one kind of teacher is trained.

    Attributes:
        name: its label ("Algorithm 1", "Algorithm 1, diagonal Phi", "online ...").
        protocol: "algorithm1" (`train_teacher_algorithm1`) or "online" (`train_teacher`).
        diagonal_only: constrain Phi_t to its diagonal.
        hidden: the teacher's state-gated directions (0: a static learned Phi).
        episode: the online variant's episode length (its T).
        runs: the online variant's student runs.
    """

    name: str
    protocol: str = "algorithm1"
    diagonal_only: bool = False
    hidden: int = 2
    episode: int = 20
    runs: int = 3

    def __post_init__(self) -> None:
        if self.protocol not in ("algorithm1", "online"):
            raise ValueError(f"protocol must be 'algorithm1' or 'online', got {self.protocol!r}")


def online_log(logs: Sequence, seconds: float = math.nan) -> Algorithm1Log:
    """The online variant's per-update diagnostics in the shape of Algorithm 1's log: metric and
    0-1 error on the dev minibatch at each episode's end, the saturated share of its last
    minibatch, Phi's summary and mean bias.

    Args:
        logs: the `TeachingLog`s of the online variant's runs (taught episodes only are kept).
        seconds: the training's wall time.

    Returns:
        An `Algorithm1Log`, one entry per teacher update, runs in order.
    """
    log = Algorithm1Log(phi={key: [] for key in ("diagonal", "off_diagonal", "row_sum",
                                                 "off_diagonal_mass")}, seconds=seconds)
    for run in logs:
        taught = len(run.phi)
        log.metric += run.metric[-taught:] if taught else []
        log.dev_error += run.dev_error[-taught:] if taught else []
        log.saturated += run.saturated
        log.bias += [float(b.mean()) for b in run.bias]
        log.matrices += list(run.phi)
        for phi in run.phi:
            for key, value in phi_summary(phi).items():
                log.phi[key].append(value)
    return log


def train_teacher_arm(kind: TeacherArm, study: Study, config: Algorithm1Config, seed: int,
                      progress: bool = False) -> tuple[LossTeacher, Algorithm1Log]:
    """Train one teacher of `kind` on `study`'s splits (train: the training split; dev: the
    holdout split), with `config`'s sizes and rates (the online variant takes the same student
    run, warm start, student lr, teacher optimiser and lr, and `kind.episode` steps per update).

    Args:
        kind: which teacher and how it is trained.
        study: an `l2t_study` (its data and the student's hidden sizes).
        config: Algorithm 1's config (`StudentProtocol.teacher_config`).
        seed: seeds the teacher's initialisation and training.
        progress: show a progress bar.

    Returns:
        The teacher and its per-update diagnostics (`Algorithm1Log`).

    Raises:
        ValueError: the study has no holdout split.
    """
    splits = load_splits(study.data)
    if len(splits.holdout) == 0:
        raise ValueError("the study needs a holdout split (the teacher's dev data)")
    classes, features = splits.num_classes, splits.train.inputs[0].numel()
    hidden = study.model.hidden

    def make_student() -> MLP:
        return MLP(features, hidden, classes)

    torch.manual_seed(seed)
    teacher = LossTeacher(classes, hidden=kind.hidden, diagonal_only=kind.diagonal_only)
    if kind.protocol == "algorithm1":
        return train_teacher_algorithm1(make_student, splits.train, splits.holdout, config,
                                        seed=seed, teacher=teacher, progress=progress)
    online = TeachingConfig(steps=config.horizon, warmup_steps=config.warmup_steps, lr=config.lr,
                            batch_size=config.batch_size, episode=kind.episode,
                            dev_batch=config.dev_batch, teacher_lr=config.teacher_lr,
                            metric=config.metric, warmup_lr=config.warmup_lr)
    started = time.perf_counter()
    teacher, logs = train_teacher(make_student, splits.train, splits.holdout, online,
                                  runs=kind.runs, seed=seed, teacher=teacher,
                                  optimizer=config.teacher_optimizer)
    return teacher, online_log(logs, time.perf_counter() - started)


def validation_scores(study: Study, arms: Sequence[Arm], seeds: Sequence[int]) -> pd.DataFrame:
    """Mean final validation accuracy of each arm over `seeds` (test never read): the score every
    choice in the notebook is made on.

    Args:
        study: the study the arms run in.
        arms: the arms to score.
        seeds: the seeds to average over (at least one).

    Returns:
        One row per arm: arm, validation_accuracy (in [0, 1]), lr.
    """
    rows = []
    for arm in arms:
        scores = [run_arm(study, arm, seed, read_test=False)[1]["validation_accuracy"]
                  for seed in seeds]
        rows.append({"arm": arm.name, "validation_accuracy": sum(scores) / len(scores),
                     "lr": study.train_spec(arm).lr})
    return pd.DataFrame(rows)


def crossed_interval(differences: torch.Tensor, confidence: float = 0.95
                     ) -> tuple[float, float, float]:
    """The mean of a teachers x student-seeds table of paired differences and its interval, with
    teacher-training and student variance both counted.

    Every teacher is evaluated on the same seeds (a crossed design), so a t interval over the
    teachers' means alone would treat those seeds as fixed. Instead the two-way random-effects
    decomposition D_ij = m + t_i + s_j + e_ij estimates each variance from its mean square
    (MS_teacher, MS_seed, MS_residual; components truncated at 0) and gives
    Var(mean) = var_t / n_teachers + var_s / n_seeds + var_e / (n_teachers n_seeds); the
    Student-t quantile uses min(n_teachers, n_seeds) - 1 degrees of freedom (conservative).

    Args:
        differences: [n_teachers, n_seeds], n_teachers >= 2 and n_seeds >= 2.

    Returns:
        (mean, low, high).

    Raises:
        ValueError: fewer than 2 teachers or seeds, or confidence outside (0, 1).
    """
    d = torch.as_tensor(differences, dtype=torch.float64)
    if d.ndim != 2 or min(d.shape) < 2:
        raise ValueError(f"differences must be [teachers >= 2, seeds >= 2], got {tuple(d.shape)}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    teachers, seeds = d.shape
    mean = d.mean()
    rows, columns = d.mean(dim=1), d.mean(dim=0)
    ms_teacher = seeds * float(((rows - mean) ** 2).sum()) / (teachers - 1)
    ms_seed = teachers * float(((columns - mean) ** 2).sum()) / (seeds - 1)
    residual = d - rows[:, None] - columns[None, :] + mean
    ms_residual = float((residual ** 2).sum()) / ((teachers - 1) * (seeds - 1))
    var_teacher = max((ms_teacher - ms_residual) / seeds, 0.0)
    var_seed = max((ms_seed - ms_residual) / teachers, 0.0)
    variance = var_teacher / teachers + var_seed / seeds + ms_residual / (teachers * seeds)
    quantile = float(scipy_t.ppf(0.5 + confidence / 2.0, min(teachers, seeds) - 1))
    half = quantile * math.sqrt(variance)
    return float(mean), float(mean) - half, float(mean) + half


def teacher_comparison(results: Results, groups: Mapping[str, Sequence[str]],
                       baseline: str = "cross-entropy", metric: str = "test_accuracy",
                       confidence: float = 0.95) -> pd.DataFrame:
    """Every group of arms (one arm per independently trained teacher) against `baseline`, in
    error points (100 x (baseline accuracy - arm accuracy), positive: the arm errs more).

    Each difference is paired by seed (same initialisation, warm start and minibatches). A group
    of several teachers gets `crossed_interval` over its teachers x seeds table, which counts
    teacher-training and student variance; a group of one arm the paired t interval over seeds.

    Args:
        results: the record of the final study.
        groups: {label: the arms of that group}.
        baseline: the arm every group is compared with.
        metric: a final-row accuracy metric.
        confidence: the intervals' level, in (0, 1).

    Returns:
        One row per group, indexed by label: teachers, seeds, mean error %, difference, low,
        high, and the per-teacher mean differences.

    Raises:
        ValueError: `baseline` or an arm of a group has no runs, or as in `crossed_interval` /
            `paired_comparison`.
    """
    values = results.final_values(metric)
    if baseline not in values:
        raise ValueError(f"baseline {baseline!r} has no runs; arms are {sorted(values)}")
    base = values[baseline]
    rows = []
    for group, arms in groups.items():
        unknown = [arm for arm in arms if arm not in values]
        if unknown:
            raise ValueError(f"group {group!r} names arms without runs: {unknown}")
        per_teacher = [[100 * (b - a) for a, b in zip(values[arm], base)] for arm in arms]
        means = [sum(d) / len(d) for d in per_teacher]
        if len(arms) == 1:
            single = paired_comparison(per_teacher[0], [0.0] * len(base), confidence)
            difference, low, high = single.difference, single.low, single.high
        else:
            difference, low, high = crossed_interval(torch.tensor(per_teacher), confidence)
        errors = [100 * (1 - a) for arm in arms for a in values[arm]]
        rows.append({"arm": group, "teachers": len(arms), "seeds": len(base),
                     "mean error %": sum(errors) / len(errors), "difference": difference,
                     "low": low, "high": high, "per teacher": [round(m, 3) for m in means]})
    return pd.DataFrame(rows).set_index("arm")


def chosen_values(rows: Sequence[Mapping[str, Any]], field: str = "lr") -> dict[str, float]:
    """The values `harness.tune` chose.

    Args:
        rows: the rows `harness.tune` returns.
        field: the tuned field.

    Returns:
        {arm: chosen value}.
    """
    return {row["arm"]: row[field] for row in rows if row["chosen"]}


TeacherGrid = Sequence[tuple[str, float]]
"""(teacher optimiser, teacher lr) pairs, e.g. (("sgd", 0.01), ("adam", 0.001))."""


@dataclass
class TeacherTuning:
    """What `tune_teachers` found.

    Attributes:
        rows: one row per (kind, optimiser, lr) with the validation error of students taught by
            that teacher, its last dev metric, its seconds, and whether it was chosen.
        chosen: the chosen (optimiser, lr) per kind's name.
        logs: every teacher's `Algorithm1Log`, by (kind, optimiser, lr).
    """

    rows: pd.DataFrame
    chosen: dict[str, tuple[str, float]]
    logs: dict[tuple[str, str, float], Algorithm1Log]


def tune_teachers(kinds: Sequence[TeacherArm], grid: TeacherGrid, study: Study,
                  protocol: StudentProtocol, student_lr: float, teacher_steps: int, seed: int,
                  seeds: Sequence[int], progress: bool = False) -> TeacherTuning:
    """Choose each kind's teacher optimiser and lr on validation: for every (optimiser, lr) of
    `grid`, train one teacher (seed `seed`, student lr `student_lr` in its runs), then train
    students with it (at `student_lr`, seeds `seeds`) and score their validation accuracy. The
    test split is never read. Every teacher is registered as "<kind> | <optimiser> <lr>".

    Args:
        kinds: the teacher kinds.
        grid: the (optimiser, lr) pairs.
        study: an `l2t_study`.
        protocol: the student run.
        student_lr: the students' taught-phase lr.
        teacher_steps: each teacher's training steps.
        seed: the teachers' seed.
        seeds: the scoring students' seeds.
        progress: show progress bars.

    Returns:
        The `TeacherTuning` (ties go to the earliest grid entry).

    Raises:
        ValueError: an empty grid, or as in `train_teacher_arm`.
    """
    if not grid:
        raise ValueError("grid must not be empty")
    rows, logs, chosen = [], {}, {}
    for kind in kinds:
        scores = {}
        for optimizer, lr in grid:
            config = protocol.teacher_config(student_lr, teacher_steps=teacher_steps,
                                             teacher_optimizer=optimizer, teacher_lr=lr)
            teacher, log = train_teacher_arm(kind, study, config, seed, progress)
            name = f"{kind.name} | {optimizer} {lr:g}"
            register_teacher(name, teacher)
            arm = protocol.arm(name, "dlf_teacher", teacher=name).with_train(lr=student_lr)
            score = validation_scores(study, [arm], seeds)["validation_accuracy"].iloc[0]
            scores[optimizer, lr] = score
            logs[kind.name, optimizer, lr] = log
            rows.append({"teacher": kind.name, "optimizer": optimizer, "teacher lr": lr,
                         "validation error %": 100 * (1 - score),
                         "dev metric, last": log.metric[-1], "seconds": log.seconds})
        chosen[kind.name] = max(scores, key=scores.__getitem__)
    frame = pd.DataFrame(rows)
    frame["chosen"] = [chosen[r.teacher] == (r.optimizer, r["teacher lr"])
                       for _, r in frame.iterrows()]
    return TeacherTuning(frame, chosen, logs)


def train_final_teachers(kinds: Sequence[TeacherArm], chosen: Mapping[str, tuple[str, float]],
                         study: Study, protocol: StudentProtocol, student_lr: float,
                         teacher_steps: int, seeds: Sequence[int], progress: bool = False
                         ) -> dict[str, list[tuple[str, Algorithm1Log]]]:
    """For each kind, one teacher per seed of `seeds` with its chosen (optimiser, lr), each
    registered as "<kind> #i".

    Args:
        kinds: the teacher kinds.
        chosen: each kind's (optimiser, lr), by name (`TeacherTuning.chosen`).
        study, protocol, student_lr, teacher_steps, progress: as in `tune_teachers`.
        seeds: one teacher per seed.

    Returns:
        {kind: [(registered name, its log), ...]}.

    Raises:
        KeyError: a kind without a chosen (optimiser, lr).
    """
    trained: dict[str, list[tuple[str, Algorithm1Log]]] = {}
    for kind in kinds:
        optimizer, lr = chosen[kind.name]
        config = protocol.teacher_config(student_lr, teacher_steps=teacher_steps,
                                         teacher_optimizer=optimizer, teacher_lr=lr)
        for number, seed in enumerate(seeds):
            teacher, log = train_teacher_arm(kind, study, config, seed, progress)
            name = f"{kind.name} #{number}"
            register_teacher(name, teacher)
            trained.setdefault(kind.name, []).append((name, log))
    return trained


def teacher_arms(protocol: StudentProtocol, names: Sequence[str]) -> list[Arm]:
    """A "dlf_teacher" arm for every registered teacher name.

    Args:
        protocol: the student run (its warm-up).
        names: registered teacher names (`register_teacher`); each becomes an arm's name too.

    Returns:
        The arms, in the order of `names`.
    """
    return [protocol.arm(name, "dlf_teacher", teacher=name) for name in names]


def diagnostics_table(logs: Mapping[str, Sequence[Algorithm1Log]]) -> pd.DataFrame:
    """Per teacher kind, mean over its teachers of the first and last teacher step: smoothed dev
    metric, 0-1 dev error, Phi's row sum and off-diagonal mass, the saturated fraction.

    Args:
        logs: {kind: its teachers' logs (at least one, each with at least one step)}.

    Returns:
        One row per kind, indexed by "teacher"; columns "<quantity>, first" and ", last".
    """
    rows = []
    for kind, kind_logs in logs.items():
        row: dict[str, Any] = {"teacher": kind}
        series = {"dev metric": [log.metric for log in kind_logs],
                  "dev error %": [[100 * e for e in log.dev_error] for log in kind_logs],
                  "row sum": [log.phi["row_sum"] for log in kind_logs],
                  "off-diagonal mass": [log.phi["off_diagonal_mass"] for log in kind_logs],
                  "saturated %": [[100 * v for v in log.saturated] for log in kind_logs]}
        for label, values in series.items():
            row[f"{label}, first"] = sum(v[0] for v in values) / len(values)
            row[f"{label}, last"] = sum(v[-1] for v in values) / len(values)
        rows.append(row)
    return pd.DataFrame(rows).set_index("teacher")


def static_grid_table(rows: Sequence[Mapping[str, Any]], study: Study) -> pd.DataFrame:
    """The static-Phi members of `harness.tune`'s rows at their chosen lr.

    Args:
        rows: the rows `harness.tune` returned.
        study: the tuned study (its "dlf_static" arms' params).

    Returns:
        Columns arm, a, c, b, lr, "validation error %", best first.
    """
    params = {arm.name: arm.params for arm in study.arms if arm.method == "dlf_static"}
    table = pd.DataFrame([
        {"arm": row["arm"], "a": params[row["arm"]]["diagonal"],
         "c": params[row["arm"]]["off_diagonal"], "b": params[row["arm"]]["bias"],
         "lr": row["lr"], "validation error %": 100 * (1 - row["validation_accuracy"])}
        for row in rows if row["chosen"] and row["arm"] in params])
    return table.sort_values("validation error %").reset_index(drop=True)


def verdict(low: float, high: float) -> str:
    """How an interval of (arm - cross-entropy) error points reads.

    Args:
        low, high: the interval (low <= high).

    Returns:
        "worse than cross-entropy" (above 0), "better than cross-entropy" (below 0) or "not
        distinguishable from cross-entropy" (it holds 0).
    """
    if low > 0:
        return "worse than cross-entropy"
    if high < 0:
        return "better than cross-entropy"
    return "not distinguishable from cross-entropy"


def tune_warmup(data: DataSpec, protocol: StudentProtocol, grid: Sequence[float],
                seeds: Sequence[int]) -> tuple[StudentProtocol, list[dict[str, Any]]]:
    """The warm-up lr every arm shares: the lr of plain cross-entropy SGD over the whole run,
    chosen from `grid` on validation (`harness.tune`, test unread).

    Args:
        data: the study's data.
        protocol: the student run.
        grid: the candidate lrs.
        seeds: the tuning seeds.

    Returns:
        The protocol with that `warmup_lr`, and the tuning rows.

    Raises:
        ValueError: an empty grid or no validation split.
    """
    study = l2t_study(data, protocol, seeds)
    _, rows = tune(study.replace(arms=(Arm("cross-entropy"),)), grid, seeds=seeds,
                   progress=False)
    return dataclasses.replace(protocol, warmup_lr=chosen_values(rows)["cross-entropy"]), rows


def final_study(pool: Sequence[Arm], names: Sequence[str], lrs: Mapping[str, float],
                data: DataSpec, protocol: StudentProtocol, seeds: Sequence[int]) -> Study:
    """The comparison read on test: cross-entropy and the arms `names` (taken from `pool`, each
    once, in order), every one at its chosen lr from `lrs`.

    Args:
        pool: the candidate arms.
        names: the arms to compare (repeats and "cross-entropy" are dropped; it comes first).
        lrs: {arm name: chosen lr}, for every arm of the study.
        data, protocol: as in `l2t_study`.
        seeds: the student seeds.

    Returns:
        The `Study`.

    Raises:
        ValueError: a name that is not an arm of the pool.
        KeyError: an arm without an lr in `lrs`.
    """
    by_name = {arm.name: arm for arm in pool}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(f"names must be arms of the pool, got unknown {unknown}")
    study = l2t_study(data, protocol, seeds,
                      [by_name[name] for name in dict.fromkeys(names) if name != "cross-entropy"])
    return study.replace(arms=tuple(arm.with_train(lr=lrs[arm.name]) for arm in study.arms))


def finite_difference_check(steps: int = 3, lr: float = 0.5, seed: int = 0) -> dict[str, float]:
    """The hypergradient of the expected dev error with respect to Phi after `steps` SGD steps of
    a tiny float64 student (4 inputs, 5 hidden units, 3 classes, minibatches of 8), by the reverse
    pass and by unrolled autograd, each against central finite differences (every entry of Phi
    perturbed, the steps re-run).

    Args:
        steps: the unrolled SGD steps (>= 1).
        lr: the student's lr.
        seed: seeds the student, the data and Phi.

    Returns:
        {"reverse": relative error, "autograd": relative error}, each >= 0 (small: they agree).
    """
    torch.manual_seed(seed)
    tiny = MLP(4, (5,), 3).double()
    start = {name: p.detach().clone() for name, p in tiny.named_parameters()}
    xs, ys = torch.randn(steps, 8, 4, dtype=torch.float64), torch.randint(0, 3, (steps, 8))
    dev_x, dev_y = torch.randn(30, 4, dtype=torch.float64), torch.randint(0, 3, (30,))
    phi = (torch.eye(3) + 0.3 * torch.randn(3, 3)).double().requires_grad_()

    def inner(weights: Params, t: int) -> torch.Tensor:
        return dynamic_loss(functional_call(tiny, weights, (xs[t],)), ys[t], phi)

    def outer(weights: Params) -> torch.Tensor:
        return expected_error(functional_call(tiny, weights, (dev_x,)), dev_y)

    reference = finite_difference_gradient(
        lambda: outer(sgd_trajectory(start, inner, steps, lr)[-1]), phi)
    results = {"reverse": hypergradient(start, inner, outer, [phi], steps, lr).grads[0],
               "autograd": unrolled_hypergradient(start, inner, outer, [phi], steps, lr).grads[0]}
    return {name: float((grad - reference).norm() / reference.norm())
            for name, grad in results.items()}


def _kind_sentence(kind: str, row: pd.Series) -> str:
    proxy_fell = row["dev metric, last"] < row["dev metric, first"]
    error_fell = row["dev error %, last"] < row["dev error %, first"]
    if proxy_fell and not error_fell:
        reading = "it lowered its proxy but not the 0-1 error"
    elif proxy_fell:
        reading = "it lowered both its proxy and the 0-1 error"
    elif error_fell:
        reading = "its proxy did not fall, the 0-1 error did"
    else:
        reading = "neither its proxy nor the 0-1 error fell"
    return (f"- **{kind}**: smoothed dev metric {row['dev metric, first']:.4f} → "
            f"{row['dev metric, last']:.4f}, 0-1 dev error {row['dev error %, first']:.2f} → "
            f"{row['dev error %, last']:.2f} % ({reading}); row sum {row['row sum, first']:.2f} → "
            f"{row['row sum, last']:.2f}; off-diagonal mass "
            f"{row['off-diagonal mass, first']:.3f} → "
            f"{row['off-diagonal mass, last']:.3f}; saturated {row['saturated %, first']:.1f} → "
            f"{row['saturated %, last']:.1f} %.")


def diagnostics_summary(diagnostics: pd.DataFrame) -> str:
    """Markdown: per teacher kind, its first and last teacher step (mean over its teachers).

    Args:
        diagnostics: `diagnostics_table`'s table.

    Returns:
        A heading line and one bullet per kind.
    """
    return ("First → last teacher step, mean over each kind's teachers:\n"
            + "\n".join(_kind_sentence(kind, row) for kind, row in diagnostics.iterrows()))


def comparison_summary(table: pd.DataFrame, ce_test: float, lrs: Mapping[str, float],
                       groups: Mapping[str, Sequence[str]]) -> str:
    """Markdown: every arm's test error, its difference from cross-entropy with the interval, how
    the interval was formed, the chosen lrs, and the verdict (`verdict`).

    Args:
        table: `teacher_comparison`'s table.
        ce_test: cross-entropy's test error, in %.
        lrs: {arm name: chosen lr}, "cross-entropy" included.
        groups: the groups `teacher_comparison` was given.

    Returns:
        A heading line and one bullet per group.
    """
    lines = [f"Cross-entropy: **{ce_test:.2f} %** test error (lr {lrs['cross-entropy']:g}). "
             f"Differences are arm − cross-entropy in error points, 95 % t intervals:"]
    for arm, row in table.iterrows():
        rates = ", ".join(f"{lrs[name]:g}" for name in groups[arm])
        formed = (f"{row['teachers']} teachers x {row['seeds']} seeds, crossed; per teacher "
                  + ", ".join(f"{m:+.2f}" for m in row["per teacher"])
                  if row["teachers"] > 1 else f"paired over {row['seeds']} seeds")
        lines.append(f"- **{arm}** (lr {rates}): {row['mean error %']:.2f} %, "
                     f"{row['difference']:+.2f} points [{row['low']:+.2f}, {row['high']:+.2f}] "
                     f"({formed}): "
                     f"{verdict(row['low'], row['high'])}.")
    return "\n".join(lines)


def headlines(table: pd.DataFrame, ce_test: float, lrs: Mapping[str, float],
              grid: pd.DataFrame, ce_validation: float, tuning: TeacherTuning,
              diagnostics: pd.DataFrame, logs: Mapping[str, Sequence[Algorithm1Log]],
              protocol: StudentProtocol, teacher_steps: int, teachers: int,
              seeds: int) -> dict[str, Any]:
    """The numbers notebook 06 reports, as plain data for `save_headlines` and `takeaways`.

    Args:
        table: `teacher_comparison`'s table.
        ce_test: cross-entropy's test error, in %.
        lrs: {arm name: chosen lr}.
        grid: `static_grid_table`'s table (best first).
        ce_validation: cross-entropy's validation error, in %.
        tuning: `tune_teachers`' result.
        diagnostics: `diagnostics_table`'s table.
        logs: {kind: its final teachers' logs}.
        protocol: the student run.
        teacher_steps: each teacher's training steps.
        teachers: teachers per kind.
        seeds: student seeds.

    Returns:
        JSON-ready nested dicts: regime, cross-entropy's test error, chosen lrs, the static
        ceiling, teacher choices and tuning rows, per-arm results with verdicts, diagnostics,
        graph size, teacher seconds and the paper's numbers.
    """
    best = grid.iloc[0]
    return {
        "regime": {"hidden": list(protocol.hidden), "warmup_steps": protocol.warmup_steps,
                   "horizon": protocol.horizon, "warmup_lr": protocol.warmup_lr,
                   "teacher_steps": teacher_steps, "teachers_per_kind": teachers,
                   "student_seeds": seeds},
        "cross_entropy_test_error": ce_test,
        "chosen_lr": dict(lrs),
        "static_ceiling": {
            "best": best["arm"], "best_validation_error": float(best["validation error %"]),
            "cross_entropy_validation_error": ce_validation,
            "members": len(grid),
            "members_beating_cross_entropy_on_validation": int(
                (grid["validation error %"] < ce_validation).sum()),
            "grid": grid.to_dict(orient="records")},
        "teacher_choice": {kind: {"optimizer": o, "lr": lr}
                           for kind, (o, lr) in tuning.chosen.items()},
        "teacher_tuning": tuning.rows.to_dict(orient="records"),
        "arms": {arm: {"test_error": float(row["mean error %"]),
                       "difference": float(row["difference"]), "low": float(row["low"]),
                       "high": float(row["high"]), "teachers": int(row["teachers"]),
                       "per_teacher": list(row["per teacher"]),
                       "verdict": verdict(row["low"], row["high"])}
                 for arm, row in table.iterrows()},
        "diagnostics": {kind: {k: float(v) for k, v in row.items()}
                        for kind, row in diagnostics.iterrows()},
        "graph_mib_per_teacher_step": max(log.graph_bytes for kind_logs in logs.values()
                                          for log in kind_logs) / 2**20,
        "teacher_seconds": {kind: sum(log.seconds for log in kind_logs) / len(kind_logs)
                            for kind, kind_logs in logs.items()},
        "paper": {"cross_entropy": 1.94, "l2t_dlf": 1.69},
    }


def takeaways(values: Mapping[str, Any]) -> str:
    """Notebook 06's takeaways as Markdown, every number from `headlines` and each claim's
    regime named.

    Args:
        values: what `headlines` returned (or its saved JSON).

    Returns:
        One bullet per claim.

    Raises:
        KeyError: `values` lacks an entry `headlines` writes.
    """
    regime, ceiling, arms = values["regime"], values["static_ceiling"], values["arms"]

    def gap(arm: str) -> str:
        row = arms[arm]
        return f"{row['difference']:+.2f} points [{row['low']:+.2f}, {row['high']:+.2f}]"

    kinds = [arm for arm, row in arms.items() if row["teachers"] > 1]
    better = [arm for arm, row in arms.items() if row["verdict"] == "better than cross-entropy"]
    setting = (f"MNIST with {regime['warmup_steps']} cross-entropy warm-up steps and "
               f"{regime['horizon']} taught steps of a 784-{'-'.join(map(str, regime['hidden']))}"
               f"-10 MLP (plain SGD, batch 128), every lr and teacher optimiser tuned on "
               f"validation, {regime['teachers_per_kind']} teachers x "
               f"{regime['student_seeds']} student seeds")
    lines = [
        f"- **The family's ceiling.** With every arm at its own lr, "
        f"{ceiling['members_beating_cross_entropy_on_validation']} of {ceiling['members']} static "
        f"members beat cross-entropy on validation (one seed); the best, {ceiling['best']}, had "
        f"{ceiling['best_validation_error']:.2f} % against "
        f"{ceiling['cross_entropy_validation_error']:.2f} "
        f"%. On test over {regime['student_seeds']} seeds it was {gap(ceiling['best'])} against "
        f"cross-entropy ({arms[ceiling['best']]['verdict']}); Phi = I was {gap('Phi = I')}.",
    ]
    for kind in kinds:
        row, diag = arms[kind], values["diagnostics"][kind]
        choice = values["teacher_choice"][kind]
        lines.append(
            f"- **{kind}** ({choice['optimizer']} lr {choice['lr']:g}, chosen on validation): "
            f"{row['test_error']:.2f} % test error, {gap(kind)} against cross-entropy, "
            f"{row['verdict']}. Over its teacher steps the smoothed dev metric went "
            f"{diag['dev metric, first']:.4f} → {diag['dev metric, last']:.4f}, the 0-1 dev error "
            f"{diag['dev error %, first']:.2f} → {diag['dev error %, last']:.2f} %, the row sum to "
            f"{diag['row sum, last']:.2f} and the saturated share to "
            f"{diag['saturated %, last']:.1f} %.")
    lines.append(
        f"- **Regime.** {setting}; Algorithm 1 took {regime['teacher_steps']} teacher steps, each "
        f"unrolling all {regime['horizon']} taught steps of a fresh student "
        f"({values['graph_mib_per_teacher_step']:.0f} MiB of autograd graph). "
        + (f"Better than cross-entropy here: {', '.join(better)}. " if better else
           "No arm was better than cross-entropy here. ")
        + f"The paper's {values['paper']['cross_entropy']} → {values['paper']['l2t_dlf']} % "
        f"(a full-length run of an MLP whose size the sources do not give) is neither reproduced "
        f"nor refuted outside this regime.")
    return "\n".join(lines)
