"""The study of notebook 05: train on noisy labels with and without data parameters, choose every
hyper-parameter and the stopping point on a validation split, and score the learnt temperatures
as a label-noise detector.

- `noisy_label_study(...)`: the `Study` (arms "baseline", "class", "instance", "joint");
- the arm methods "uniform_history" and "data_parameters_history" (registered on import): plain
  training and data parameters that also record, after every epoch, each training sample's plain
  loss and sigma, and report the detector AUCs (`roc_auc` against the corrupted-label mask);
- `tune_arm_params(study, grids)`: each arm its own value of one knob from its grid, chosen on
  validation (a model `TrainSpec` field such as "lr", or an arm param such as "lr_instance");
- `at_last_step(results)`: the same runs read at their last step (no early stopping);
- `detector_table(results)`: sigma against the plain loss as detectors, paired over seeds;
- `widget_results(...)`: the small cached runs the notebook's widget draws;
- `momentum_steps(...)`: the two-step demo of why data parameters need a sparse optimizer.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from curriclab.core.data import IndexedDataset
from curriclab.core.protocol import SampleMethod
from curriclab.core.stats import paired_comparison, roc_auc
from curriclab.core.training import per_sample_losses, progress_bar
from curriclab.experiments.harness.arms import ARM_METHODS, ArmContext, ArmSetup, arm_method
from curriclab.experiments.harness.results import Results, paired_table
from curriclab.experiments.harness.runner import run, run_arm
from curriclab.experiments.harness.spec import Arm, DataSpec, ModelSpec, Study, TrainSpec
from curriclab.experiments.harness.splits import load_splits
from curriclab.methods.data_parameters import DataParameters

__all__ = [
    "ARMS",
    "at_last_step",
    "corrupted_mask",
    "detector_auc_history",
    "detector_table",
    "gain_verdict",
    "headline_numbers",
    "momentum_steps",
    "noisy_label_study",
    "protocol_table",
    "tune_arm_params",
    "widget_results",
]

ARMS: dict[str, Arm] = {
    "baseline": Arm("baseline", "uniform_history"),
    "class": Arm("class", "data_parameters_history",
                 {"learn_class": True, "learn_instance": False, "lr_class": 0.1}),
    "instance": Arm("instance", "data_parameters_history", {"lr_instance": 4.0}),
    "joint": Arm("joint", "data_parameters_history",
                 {"learn_class": True, "init_class": 0.5, "init_instance": 0.5,
                  "lr_class": 0.1, "lr_instance": 4.0}),
}
"""The arms by name: plain cross-entropy, one sigma per class, one per sample, both (summed).
The data-parameter learning rates here are starting points; `tune_arm_params` chooses them."""


def noisy_label_study(*, train_size: int, validation_size: int, epochs: int,
                      seeds: Sequence[int], noise: float = 0.4, noisy_validation: bool = True,
                      noise_classes: Sequence[int] = (), test_size: int | None = None,
                      arms: Sequence[str] = tuple(ARMS), name: str = "05 data parameters",
                      lr: float = 0.1) -> Study:
    """MNIST with a share `noise` of wrong training labels, a 784-256-10 MLP trained with momentum
    SGD (batch 128, constant `lr`), evaluated after every epoch on validation and test (test for
    display), keeping the best-on-validation model (`select="best"`).

    Args:
        train_size: training samples.
        validation_size: validation samples carved from the official training split.
        test_size: test samples (None: the whole official test split).
        epochs: passes over the training split.
        seeds: one run per arm and seed.
        noise: share of wrong labels (uniform), or within each of `noise_classes`.
        noisy_validation: corrupt the validation labels alike (what a practitioner has).
        noise_classes: empty for uniform noise; else the classes that receive the wrong labels.
        arms: names of `ARMS` to compare (the first is the baseline of tables).
        name: the study's label.
        lr: the model's learning rate.

    Returns:
        The study.

    Raises:
        ValueError: an arm name not in `ARMS`.
    """
    unknown = [arm for arm in arms if arm not in ARMS]
    if unknown:
        raise ValueError(f"arms must be among {sorted(ARMS)}, got {unknown}")
    data = DataSpec(train_size=train_size, validation_size=validation_size, test_size=test_size,
                    label_noise=noise, noisy_holdout=noisy_validation,
                    noise_classes=tuple(noise_classes))
    return Study(name, data, ModelSpec("mlp", (256,)),
                 TrainSpec(lr=lr, momentum=0.9, batch_size=128, epochs=epochs),
                 arms=tuple(ARMS[arm] for arm in arms), seeds=tuple(seeds), eval_every=0,
                 track=("validation", "test"), select="best")


class _History(SampleMethod):
    """After every epoch: every training sample's plain loss (cross-entropy of the unscaled
    logits on its, possibly wrong, label) and, with data parameters, every sigma. Row 0 of the
    sigma histories is the initial state."""

    def __init__(self, model: nn.Module, train: IndexedDataset,
                 parameters: DataParameters | None):
        self.model, self.train, self.parameters = model, train, parameters
        self.losses: list[Tensor] = []
        self.sample_sigma: list[Tensor] = []
        self.class_sigma: list[Tensor] = []
        self._record_sigma()

    def _record_sigma(self) -> None:
        if self.parameters is not None:
            self.sample_sigma.append(self.parameters.sample_sigma(self.train.targets))
            self.class_sigma.append(self.parameters.class_sigma())

    def after_epoch(self, epoch: int) -> None:
        self.losses.append(per_sample_losses(self.model, self.train))
        self._record_sigma()

    def collect(self, corrupted: Tensor) -> dict[str, Any]:
        """The histories and, when some labels are wrong, the detector AUCs: "loss_auc" of the
        final model's plain loss, "selected_loss_auc" of the selected model's (the one the
        harness keeps, loaded before `collect` runs), and for data parameters "sigma_auc" of the
        final sigma with the mean final sigma of clean and corrupted samples."""
        empty = torch.empty(0, 0)
        values: dict[str, Any] = {
            "plain_losses": torch.stack(self.losses) if self.losses else empty,
            "sample_sigma": torch.stack(self.sample_sigma) if self.sample_sigma else empty,
            "class_sigma": torch.stack(self.class_sigma) if self.class_sigma else empty,
        }
        if not corrupted.any() or corrupted.all():
            return values
        values["loss_auc"] = roc_auc(values["plain_losses"][-1], corrupted)
        values["selected_loss_auc"] = roc_auc(per_sample_losses(self.model, self.train),
                                              corrupted)
        if self.parameters is not None:
            sigma = values["sample_sigma"][-1]
            values["sigma_auc"] = roc_auc(sigma, corrupted)
            values["sigma_clean"] = float(sigma[~corrupted].mean())
            values["sigma_corrupted"] = float(sigma[corrupted].mean())
        return values


def _with_history(context: ArmContext, setup: ArmSetup,
                  parameters: DataParameters | None) -> ArmSetup:
    history = _History(context.model, context.train, parameters)
    corrupted = context.splits.corrupted
    return dataclasses.replace(setup, methods=[*setup.methods, history],
                               collect=lambda: history.collect(corrupted))


@arm_method("uniform_history")
def _uniform_history(context: ArmContext) -> ArmSetup:
    """Plain training that records every sample's plain loss after every epoch."""
    return _with_history(context, ARM_METHODS["uniform"](context), None)


@arm_method("data_parameters_history")
def _data_parameters_history(context: ArmContext, **params: Any) -> ArmSetup:
    """The harness's "data_parameters" arm (same params) recording losses and sigmas after every
    epoch."""
    setup = ARM_METHODS["data_parameters"](context, **params)
    parameters = next(m for m in setup.methods if isinstance(m, DataParameters))
    return _with_history(context, setup, parameters)


def _tuned(arm: Arm, knob: str, value: float) -> Arm:
    if knob in {f.name for f in dataclasses.fields(TrainSpec)}:
        return arm.with_train(**{knob: value})
    return dataclasses.replace(arm, params={**arm.params, knob: value})


def tune_arm_params(study: Study, grids: Mapping[str, tuple[str, Sequence[float]]], *,
                    seeds: Sequence[int] | None = None, progress: bool = True
                    ) -> tuple[Study, pd.DataFrame]:
    """Give each arm named in `grids` the value of its knob with the highest mean validation
    accuracy of the selected model (with `select="best"`: the early-stopped one) over `seeds`
    (default: the study's first seed). Tuning runs track validation only and never read test.

    Args:
        study: the study; arms not in `grids` keep their settings.
        grids: arm name -> (knob, values); the knob is a `TrainSpec` field (e.g. "lr") or a
            param of the arm's method (e.g. "lr_instance").
        seeds: the seeds averaged per value.
        progress: show a progress bar.

    Returns:
        (the study with the chosen values, one row per arm and value: arm, knob, value,
        validation_accuracy (the selection criterion), last_validation_accuracy (at the last
        step, shown for comparison), chosen).

    Raises:
        ValueError: an empty grid, an arm not in the study, or no validation split.
    """
    if study.data.validation_size == 0:
        raise ValueError("tune_arm_params needs a validation split (data.validation_size > 0)")
    for name, (_, values) in grids.items():
        study.arm(name)
        if not values:
            raise ValueError(f"grids[{name!r}] must list at least one value")
    seeds = tuple(seeds) if seeds is not None else study.seeds[:1]
    quiet = study.replace(track=("validation",))
    jobs = [(name, value, seed) for name, (_, values) in grids.items() for value in values
            for seed in seeds]
    scores: dict[tuple[str, float], list[tuple[float, float]]] = {}
    for name, value, seed in progress_bar(jobs, f"{study.name}: tuning", progress):
        arm = _tuned(study.arm(name), grids[name][0], value)
        curve, final, _ = run_arm(quiet, arm, seed, read_test=False)
        scores.setdefault((name, value), []).append(
            (final["validation_accuracy"], curve[-1]["validation_accuracy"]))
    rows, arms = [], []
    for arm in study.arms:
        if arm.name not in grids:
            arms.append(arm)
            continue
        knob, values = grids[arm.name]
        means = {v: [sum(s) / len(s) for s in zip(*scores[arm.name, v])] for v in values}
        best = max(values, key=lambda v: means[v][0])
        rows += [{"arm": arm.name, "knob": knob, "value": v, "validation_accuracy": means[v][0],
                  "last_validation_accuracy": means[v][1], "chosen": v == best} for v in values]
        arms.append(_tuned(arm, knob, best))
    return study.replace(arms=tuple(arms)), pd.DataFrame(rows)


def at_last_step(results: Results) -> Results:
    """The same runs read at their last step instead of the selected one: each final row's
    test and validation accuracy become those of its run's last curve row, and chosen_step its
    last step (the runs must track "test"; no choice reads it).

    Args:
        results: a record whose curve rows track "test" (and "validation"), with at least one
            curve row per (arm, seed) of its final rows.

    Returns:
        A new record sharing `results`' study, curves and artifacts; its final rows are copies
        with "chosen_step", "test_accuracy", "test_loss", "validation_accuracy" and
        "validation_loss" taken from each run's last curve row. `results` is not changed.

    Raises:
        ValueError: the curves do not track test accuracy, or a run has no curve row.
    """
    last: dict[tuple[str, int], dict[str, Any]] = {}
    for row in results.curves:
        last[row["arm"], row["seed"]] = row
    finals = []
    for row in results.finals:
        end = last.get((row["arm"], row["seed"]))
        if end is None:
            raise ValueError(f"results hold no curve row for arm {row['arm']!r}, seed "
                             f"{row['seed']}")
        if "test_accuracy" not in end:
            raise ValueError("at_last_step needs curves that track 'test'")
        finals.append({**row, "chosen_step": end["step"], "test_accuracy": end["test_accuracy"],
                       "test_loss": end["test_loss"],
                       "validation_accuracy": end["validation_accuracy"],
                       "validation_loss": end["validation_loss"]})
    return Results(results.study, results.curves, finals, results.artifacts)


def protocol_table(results: Results, baseline: str = "baseline") -> pd.DataFrame:
    """Test accuracy (in %) of every arm and its paired difference from `baseline` (points, 95 %
    interval over seeds) under two protocols: the model early-stopped on validation (what the
    runs selected) and the model at the last step (`at_last_step`).

    Args:
        results: the record; its curves must track "test".
        baseline: the arm the others are paired with.

    Returns:
        The two `paired_table`s stacked, with a first column "protocol" ("early-stopped on
        validation" or "last epoch").

    Raises:
        ValueError: as `at_last_step` and `paired_table` (no test curves, `baseline` absent).
    """
    tables = {"early-stopped on validation": results, "last epoch": at_last_step(results)}
    return pd.concat([paired_table(record, "test_accuracy", baseline, scale=100)
                      .assign(protocol=name) for name, record in tables.items()],
                     ignore_index=True).set_index(["protocol", "arm"]).reset_index()


def gain_verdict(table: pd.DataFrame, protocol: str, arm: str = "instance",
                 baseline: str = "baseline") -> str:
    """One sentence on `arm` minus `baseline` under `protocol` (a row of `protocol_table`),
    worded by its 95 % interval: a win or a loss only when the interval excludes zero.

    Args:
        table: the `protocol_table` (columns protocol, arm, difference, low, high, higher,
            seeds).
        protocol: "early-stopped on validation" or "last epoch".
        arm: the arm compared.
        baseline: the baseline's name, as written in the sentence.

    Returns:
        The sentence, with the gap in points, its interval and the seeds where `arm` was higher.

    Raises:
        KeyError: no such (protocol, arm) row.
    """
    row = table.set_index(["protocol", "arm"]).loc[(protocol, arm)]
    gap = f"{row['difference']:+.2f} points [{row['low']:+.2f}, {row['high']:+.2f}]"
    seeds = f"higher in {int(row['higher'])} of {int(row['seeds'])} seeds"
    if row["low"] > 0:
        return f"{arm} beats {baseline}: {gap} ({seeds})"
    if row["high"] < 0:
        return f"{arm} loses to {baseline}: {gap} ({seeds})"
    return f"no difference between {arm} and {baseline} detected: {gap} ({seeds})"


def headline_numbers(results: Results, class_results: Results) -> dict[str, Any]:
    """The numbers the notebook's prose and the README's card quote: test accuracies (%) and
    gains (points, 95 % interval) under both protocols, the instance run's mean final sigma of
    clean / corrupted samples and its detector AUC (means over seeds), the class-noise gain.

    Args:
        results: the uniform-noise study's record, with arms "baseline" and "instance".
        class_results: the class-noise study's record, with arms "baseline" and "class".

    Returns:
        A flat dict of plain numbers, also every arm's learning rates ("<arm>_lr*"), the
        training-split size and the seed count.
    """
    values: dict[str, Any] = {}
    for key, record, arm in (("", results, "instance"), ("class_noise_", class_results, "class")):
        table = protocol_table(record).set_index(["protocol", "arm"])
        for protocol, tag in (("early-stopped on validation", "early_stopped"),
                              ("last epoch", "last_epoch")):
            row = table.loc[(protocol, arm)]
            values[f"{key}gain_{tag}"] = row["difference"]
            values[f"{key}gain_{tag}_low"] = row["low"]
            values[f"{key}gain_{tag}_high"] = row["high"]
            values[f"{key}baseline_{tag}"] = table.loc[(protocol, "baseline"), "mean"]
            values[f"{key}{arm}_{tag}"] = row["mean"]
    finals = results.final_frame().groupby("arm")
    for name in ("sigma_clean", "sigma_corrupted", "sigma_auc"):
        values[name] = float(finals[name].mean()["instance"])
    values["baseline_loss_auc_early_stopped"] = float(
        finals["selected_loss_auc"].mean()["baseline"])
    for arm in results.study.arms:
        for knob, value in {**arm.params, **arm.train}.items():
            if knob.startswith("lr"):
                values[f"{arm.name}_{knob}"] = value
    values["train_size"] = len(load_splits(results.study.data).train)
    values["seeds"] = len(results.study.seeds)
    return values


def detector_auc_history(results: Results, seed: int, method: str = "instance",
                         plain: str = "baseline") -> dict[str, list[float]]:
    """ROC AUC after each epoch of one seed's detectors: `method`'s sigma, the plain loss of
    `plain`'s model and of `method`'s model (corrupted labels are the positives).

    Args:
        results: the record, with the in-memory artifacts of both runs of `seed`.
        seed: the seed whose runs are read.
        method: a data-parameters arm (its artifacts hold "sample_sigma").
        plain: the arm whose plain loss is the reference detector.

    Returns:
        {detector name: AUC after epoch 1, 2, ...}.
    """
    corrupted = corrupted_mask(results)
    dp, base = results.artifacts[method, seed], results.artifacts[plain, seed]
    return {f"sigma, {method} run": [roc_auc(s, corrupted) for s in dp["sample_sigma"][1:]],
            f"plain loss, {plain} model": [roc_auc(x, corrupted) for x in base["plain_losses"]],
            f"plain loss, {method} model": [roc_auc(x, corrupted) for x in dp["plain_losses"]]}


def corrupted_mask(results: Results) -> Tensor:
    """Which training samples of `results`' study carry a wrong label.

    Args:
        results: the record; its data spec is reloaded (cached by `load_splits`).

    Returns:
        bool [N], by training-split index.
    """
    return load_splits(results.study.data).corrupted


def detector_table(results: Results, method: str = "instance",
                   plain: str = "baseline") -> pd.DataFrame:
    """Label-noise detectors compared by ROC AUC, paired over seeds against `method`'s sigma:
    the plain loss of `plain`'s final and selected models and of `method`'s final model.

    Args:
        results: the record; the final rows of both arms need "sigma_auc" / "loss_auc" and
            "selected_loss_auc" (collected when some, not all, labels are wrong), on the same
            seeds.
        method: the data-parameters arm.
        plain: the plain-training arm.

    Returns:
        One row per detector: detector, mean AUC, and for the others the paired difference
        (sigma − detector) with its 95 % interval and in how many seeds sigma was higher.
    """
    def values(arm: str, key: str) -> list[float]:
        rows = sorted((r for r in results.finals if r["arm"] == arm), key=lambda r: r["seed"])
        return [float(r[key]) for r in rows]

    sigma = values(method, "sigma_auc")
    detectors = {f"sigma, {method} run": sigma,
                 f"plain loss, {plain} model (last step)": values(plain, "loss_auc"),
                 f"plain loss, {plain} model (early-stopped)": values(plain, "selected_loss_auc"),
                 f"plain loss, {method} model (last step)": values(method, "loss_auc")}
    rows = []
    for name, aucs in detectors.items():
        row: dict[str, Any] = {"detector": name, "mean AUC": sum(aucs) / len(aucs)}
        if aucs is not sigma and len(aucs) >= 2:
            comparison = paired_comparison(sigma, aucs)
            row |= {"sigma minus this": comparison.difference, "low": comparison.low,
                    "high": comparison.high, "sigma higher": comparison.a_higher}
        rows.append(row)
    return pd.DataFrame(rows)


@functools.lru_cache(maxsize=64)
def widget_results(noise: float, lr_instance: float, weight_decay: float, *, train_size: int,
                   epochs: int, seed: int = 0) -> Results:
    """The widget's two runs (baseline and instance with these settings), one seed, cached.

    Both runs use 500 validation and 2000 test samples and `noisy_label_study`'s other defaults.

    Args:
        noise: share of wrong training labels.
        lr_instance: the instance arm's sigma learning rate.
        weight_decay: the instance arm's weight decay on its sigmas.
        train_size: training samples.
        epochs: training epochs.
        seed: the runs' seed.

    Returns:
        A result record with arms "baseline" and "instance" (artifacts included).
    """
    study = noisy_label_study(train_size=train_size, validation_size=500, epochs=epochs,
                              seeds=(seed,), noise=noise, arms=("baseline", "instance"),
                              test_size=2000, name="05 widget")
    instance = dataclasses.replace(study.arm("instance"), params={
        "lr_instance": lr_instance, "weight_decay_instance": weight_decay})
    return run(study.replace(arms=(study.arm("baseline"), instance)), progress=False)


def momentum_steps(optimizer_class: type[torch.optim.Optimizer],
                   grads: Sequence[Sequence[float]] = ((1.0, 1.0, 1.0, 1.0),
                                                       (1.0, 0.0, 0.0, 0.0)),
                   lr: float = 0.5, momentum: float = 0.9) -> Tensor:
    """A parameter (zeros) after one momentum step per gradient in `grads`: with a zero gradient
    standing for "not in the minibatch", it shows whether absent entries keep moving.

    Args:
        optimizer_class: an optimizer class taking `lr` and `momentum`, e.g. `torch.optim.SGD`
            or `SparseSGD`.
        grads: one gradient per step, all of the parameter's length (non-empty).
        lr: the learning rate.
        momentum: the momentum factor.

    Returns:
        The parameter's values after the steps, shape [len(grads[0])].
    """
    param = torch.zeros(len(grads[0]), requires_grad=True)
    optimizer = optimizer_class([param], lr=lr, momentum=momentum)
    for grad in grads:
        param.grad = torch.tensor(grad, dtype=param.dtype)
        optimizer.step()
    return param.detach()
