"""A study as data: what to train on, which model, how, which arms, which seeds, how often to look.

Every field is a plain value (str, int, float, tuple, dict of plain values), so a spec is saved
beside its results as JSON (`Study.to_dict` / `Study.from_dict`) and a notebook's whole experiment
reads as one declaration. What an arm *does* is named by `Arm.method`, a key of the arm registry
(`curriclab.experiments.harness.arms`), with its hyper-parameters in `Arm.params`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Arm", "DataSpec", "ModelSpec", "Study", "TrainSpec"]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine_step", "cosine_epoch")
MODELS = ("small_conv", "mlp", "logistic")
SPLITS = ("train", "validation", "holdout", "test")
BLOBS = "blobs"
"""The 2-D toy source: two Gaussian blobs (`curriclab.core.data.spl_toy_data`)."""
NOISE_PATTERNS = ("uniform", "farthest")


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


@dataclass(frozen=True)
class DataSpec:
    """The splits of a study, all drawn from one MNIST-format data set or from the toy blobs.

    Validation and holdout are stratified random parts of the official *training* split (never
    of test); train is a stratified part of what remains (all of it when `train_size` is None);
    test is the official test split (or a stratified part of it). For the source "blobs" (two
    unit-variance Gaussian blobs around (0, 0) and (3, 3), `spl_toy_data`) every split is its
    own seeded draw of the same distribution, half of each class: train `train_size` points
    (default 10 000), test `test_size` (default 10 000); every size must be even.

    Attributes:
        source: a key of `curriclab.core.data.IMAGE_SOURCES` ("mnist", "fashion_mnist"), or
            "blobs".
        train_size: training samples, or None for every sample not in validation/holdout.
        validation_size: samples carved from the training split for every choice a study makes.
        holdout_size: a further carved split for methods that need their own data (RHO-LOSS).
        test_size: test samples, or None for the whole official test split.
        label_noise: share of the *training* split's labels moved to another class
            (`corrupt_labels`); validation, holdout and test keep their labels unless
            `noisy_holdout` asks for holdout and validation to be corrupted alike.
        noisy_holdout: corrupt validation and holdout labels with the same share.
        noise_classes: empty for uniform noise (above); otherwise class-dependent noise
            (`relabel_into_classes`): samples of the other classes are relabelled as one of these
            classes until a share `label_noise` (< 1) of each one's labels is wrong.
        noise_pattern: "uniform" (labels chosen at random, as above) or, for blobs only,
            "farthest": the `label_noise` share of points farthest from (3, 3) get the other
            label (a compact group of wrong labels, like the wenig/spl demo's single anomaly).
        split_seed: seeds the splits and the noise; fixed across the arms and seeds of a study.
        resample_per_seed: draw the splits anew for every run seed (with split seed
            `split_seed + seed`), so that the spread over seeds includes the data draw.
    """

    source: str = "mnist"
    train_size: int | None = None
    validation_size: int = 5000
    holdout_size: int = 0
    test_size: int | None = None
    label_noise: float = 0.0
    noisy_holdout: bool = False
    noise_classes: tuple[int, ...] = ()
    noise_pattern: str = "uniform"
    split_seed: int = 0
    resample_per_seed: bool = False

    def __post_init__(self) -> None:
        for name in ("validation_size", "holdout_size"):
            _check_positive(name, getattr(self, name), allow_zero=True)
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None:
                _check_positive(name, getattr(self, name))
        if not 0.0 <= self.label_noise <= 1.0:
            raise ValueError(f"label_noise must lie in [0, 1], got {self.label_noise}")
        object.__setattr__(self, "noise_classes", tuple(self.noise_classes))
        if any(isinstance(c, bool) or not isinstance(c, int) or c < 0
               for c in self.noise_classes):
            raise ValueError(f"noise_classes must be labels >= 0, got {self.noise_classes}")
        if self.noise_classes and self.label_noise >= 1.0:
            raise ValueError("label_noise must be < 1 with noise_classes (a share of wrong labels "
                             f"within each noisy class), got {self.label_noise}")
        _check_choice("noise_pattern", self.noise_pattern, NOISE_PATTERNS)
        if self.source == BLOBS:
            self._check_blobs()
        elif self.noise_pattern != "uniform":
            raise ValueError(f"noise_pattern {self.noise_pattern!r} needs source='blobs'")

    def _check_blobs(self) -> None:
        if self.noise_classes:
            raise ValueError("noise_classes is not supported for source='blobs' (two classes)")
        for name in ("train_size", "validation_size", "holdout_size", "test_size"):
            value = getattr(self, name)
            if value is not None and value % 2:
                raise ValueError(f"{name} must be even for source='blobs' (half of each "
                                 f"class), got {value}")

    def for_seed(self, seed: int) -> DataSpec:
        """The data of the run with seed `seed`.

        Args:
            seed: the run's seed.

        Returns:
            This spec, or with `resample_per_seed` the same spec drawn with split seed
            `split_seed + seed` (and `resample_per_seed=False`).
        """
        if not self.resample_per_seed:
            return self
        return dataclasses.replace(self, split_seed=self.split_seed + seed,
                                   resample_per_seed=False)


@dataclass(frozen=True)
class ModelSpec:
    """The network: "small_conv" (`SmallConv`), "mlp" (`MLP` with `hidden` layers) or "logistic".

    Attributes:
        name: "small_conv", "mlp" or "logistic".
        hidden: the MLP's hidden widths (ignored by the others).

    Raises:
        ValueError: an unknown `name`.
    """

    name: str = "small_conv"
    hidden: tuple[int, ...] = (256,)

    def __post_init__(self) -> None:
        _check_choice("name", self.name, MODELS)
        object.__setattr__(self, "hidden", tuple(self.hidden))


@dataclass(frozen=True)
class TrainSpec:
    """How every arm trains unless the arm overrides a field (`Arm.train`).

    Attributes:
        optimizer: "sgd" (with `momentum`, `weight_decay`) or "adam".
        lr: the model's learning rate.
        schedule: "constant"; "cosine_step", a cosine from `lr` to 0 over the run's planned steps,
            stepped after every optimizer step; "cosine_epoch", the same stepped once per epoch
            (for samplers whose epochs differ in length, e.g. InfoBatch).
        batch_size: samples per step (for selection arms: the selected k; see the arm).
        epochs: passes over the training split (for samplers: over their plans).
        steps: a budget in optimizer steps; training stops when it is spent, mid-epoch if need
            be. None trains for `epochs` epochs.
    """

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    batch_size: int = 128
    epochs: int = 1
    steps: int | None = None

    def __post_init__(self) -> None:
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_positive("lr", self.lr)
        _check_positive("momentum", self.momentum, allow_zero=True)
        _check_positive("weight_decay", self.weight_decay, allow_zero=True)
        _check_positive("batch_size", self.batch_size)
        _check_positive("epochs", self.epochs)
        if self.steps is not None:
            _check_positive("steps", self.steps)


@dataclass(frozen=True)
class Arm:
    """One way of training that the study compares.

    Attributes:
        name: the label in tables and figures (unique within a study).
        method: a key of the arm registry (`arms.ARM_METHODS`): "uniform", "sgds", "infobatch",
            "spl", "data_parameters", ...
        params: keyword arguments of that arm method (its hyper-parameters).
        train: overrides of the study's `TrainSpec` for this arm (e.g. its own `lr`, or fewer
            `epochs` for an equal-budget baseline).
    """

    name: str
    method: str = "uniform"
    params: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("name must be a non-empty string")
        unknown = set(self.train) - {f.name for f in dataclasses.fields(TrainSpec)}
        if unknown:
            raise ValueError(f"train overrides unknown TrainSpec fields {sorted(unknown)}")

    def with_train(self, **overrides: Any) -> Arm:
        """A copy of this arm with more `TrainSpec` overrides (e.g. a tuned `lr`).

        Args:
            **overrides: `TrainSpec` fields and values; they win over the arm's own.

        Returns:
            The new arm (this one is unchanged).

        Raises:
            ValueError: an override names no `TrainSpec` field.
        """
        return dataclasses.replace(self, train={**self.train, **overrides})


@dataclass(frozen=True)
class Study:
    """A whole experiment: every arm trained on every seed, evaluated every `eval_every` steps.

    Attributes:
        name: a short label (saved with the results).
        data, model, train: see `DataSpec`, `ModelSpec`, `TrainSpec`.
        arms: the arms, in the order tables list them; the first is the default baseline.
        seeds: one run per arm and seed; every arm of a seed starts from the same initialisation
            and the same shuffling seed (a paired design), and adding an arm moves no other arm.
        eval_every: evaluate every this many optimizer steps (0: once per epoch); the clock is
            paused while evaluating.
        track: splits evaluated during training ("validation", and "test" only for display: no
            choice may read it). Test is always evaluated once on the final model.
        select: "last" keeps the final model; "best" the model with the highest validation
            accuracy among the evaluations (early stopping on validation).
    """

    name: str
    data: DataSpec = DataSpec()
    model: ModelSpec = ModelSpec()
    train: TrainSpec = TrainSpec()
    arms: tuple[Arm, ...] = (Arm("uniform"),)
    seeds: tuple[int, ...] = (0, 1, 2)
    eval_every: int = 0
    track: tuple[str, ...] = ("validation",)
    select: str = "last"

    def __post_init__(self) -> None:
        object.__setattr__(self, "arms", tuple(self.arms))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "track", tuple(self.track))
        if not self.arms:
            raise ValueError("arms must not be empty")
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arms must have unique names, got {names}")
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        _check_positive("eval_every", self.eval_every, allow_zero=True)
        for split in self.track:
            _check_choice("track", split, ("validation", "test", "train"))
        _check_choice("select", self.select, ("last", "best"))
        if self.select == "best" and "validation" not in self.track:
            raise ValueError("select='best' needs 'validation' in track")

    def arm(self, name: str) -> Arm:
        """The arm called `name`.

        Args:
            name: an arm's name.

        Returns:
            The first arm of `arms` with that name.

        Raises:
            ValueError: no arm has that name (the message lists the known arms).
        """
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise ValueError(f"no arm {name!r}; arms are {[a.name for a in self.arms]}")

    def train_spec(self, arm: Arm) -> TrainSpec:
        """The study's `TrainSpec` with the arm's overrides applied.

        Args:
            arm: an arm (its `train` overrides).

        Returns:
            The arm's train spec.

        Raises:
            ValueError: an overridden value the `TrainSpec` refuses.
        """
        return dataclasses.replace(self.train, **arm.train)

    def replace(self, **changes: Any) -> Study:
        """A copy with some fields changed (e.g. `seeds=(0,)`, or other `arms`).

        Args:
            **changes: `Study` fields and their new values.

        Returns:
            The new study, checked as at construction.

        Raises:
            TypeError: a name that is no field.
            ValueError: a value the study refuses (e.g. no arms, duplicate arm names).
        """
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON-ready values.

        Returns:
            Nested dicts, lists, strings and numbers (`from_dict` reads them back).
        """
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Study:
        """The spec `to_dict` wrote (lists become tuples again).

        Args:
            values: what `to_dict` returned (e.g. read from a result file).

        Returns:
            The study, equal to the one saved.

        Raises:
            KeyError: a field is missing.
            ValueError: a value the specs refuse.
        """
        values = dict(values)
        return cls(
            name=values["name"],
            data=DataSpec(**values["data"]),
            model=ModelSpec(**{**values["model"], "hidden": tuple(values["model"]["hidden"])}),
            train=TrainSpec(**values["train"]),
            arms=tuple(Arm(**arm) for arm in values["arms"]),
            seeds=tuple(values["seeds"]),
            eval_every=values["eval_every"],
            track=tuple(values["track"]),
            select=values["select"],
        )


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
