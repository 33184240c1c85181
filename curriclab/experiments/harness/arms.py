"""The arm registry: what each `Arm.method` name plugs into a run.

An arm method is a function `build(context, **params) -> ArmSetup`. It receives the run's
context (splits, the fresh model, the seeded generator, the planned epochs) and returns what the
loop needs: `SampleMethod`s to plug in, a sampler (else the loader shuffles), extra optimizers
(e.g. data parameters' SparseSGD), the training samples to use (a pruned subset), and a
function that collects the arm's own results at the end (per-sample tensors, counters).

Register your own with the `arm_method` decorator:

    @arm_method("my_method")
    def _my_method(context: ArmContext, strength: float = 1.0) -> ArmSetup:
        return ArmSetup(methods=[MyMethod(len(context.train), strength)])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Sampler

from curriclab.core.data import IndexedDataset
from curriclab.core.protocol import SampleMethod
from curriclab.core.tracking import LossTracker
from curriclab.core.training import per_sample_losses
from curriclab.experiments.harness.spec import Arm, Study, TrainSpec
from curriclab.experiments.harness.splits import Splits
from curriclab.methods.data_parameters import DataParameters
from curriclab.methods.infobatch import InfoBatchSampler
from curriclab.methods.sampling import SGDSSampler
from curriclab.methods.spl import SPLLoss

__all__ = ["ARM_METHODS", "ArmContext", "ArmSetup", "arm_method", "build_arm"]


@dataclass(frozen=True)
class ArmContext:
    """What an arm method may read when it builds its setup for one (arm, seed) run.

    Attributes:
        study, arm, seed: the run's spec.
        train_spec: the study's `TrainSpec` with the arm's overrides.
        splits: the study's data (`splits.train` is what the loader draws from).
        model: the freshly initialised model (seeded by `seed`).
        generator: the run's generator (seeded by `seed`); draw randomness from it only.
    """

    study: Study
    arm: Arm
    seed: int
    train_spec: TrainSpec
    splits: Splits
    model: nn.Module
    generator: torch.Generator

    @property
    def train(self) -> IndexedDataset:
        """The training split."""
        return self.splits.train


@dataclass
class ArmSetup:
    """What an arm plugs into the loop.

    Attributes:
        methods: `SampleMethod`s the loop calls (losses, objective, after_step, after_epoch).
        sampler: draws the training indices each epoch (its `set_epoch` is called, timed as
            training); None shuffles uniformly with the run's generator.
        optimizers: optimizers stepped after the model's (e.g. data parameters' SparseSGD).
        train_indices: train on these training-split indices only (a pruned subset); None: all.
            Indices stay those of the training split, so per-sample state is keyed as usual.
        collect: called once after training; returns the arm's own results (tensors, numbers)
            kept in `Results.artifacts[(arm, seed)]`.
        cost: work the arm spent before training (e.g. scoring runs), as
            {"samples": ..., "seconds": ...}; added to the run's records (see `run`).
    """

    methods: list[SampleMethod] = field(default_factory=list)
    sampler: Sampler | None = None
    optimizers: list[torch.optim.Optimizer] = field(default_factory=list)
    train_indices: Tensor | None = None
    collect: Callable[[], dict[str, Any]] | None = None
    cost: dict[str, float] = field(default_factory=dict)


ArmBuilder = Callable[..., ArmSetup]
ARM_METHODS: dict[str, ArmBuilder] = {}
"""Every registered arm method by name (see `arm_method`)."""


def arm_method(name: str) -> Callable[[ArmBuilder], ArmBuilder]:
    """Register `build(context, **params) -> ArmSetup` as the arm method `name` (a decorator).

    Args:
        name: the name an `Arm`'s `method` gives.

    Returns:
        The decorator; it registers the builder and returns it unchanged.

    Raises:
        ValueError: `name` is already registered (raised when the decorator is applied).
    """
    def register(build: ArmBuilder) -> ArmBuilder:
        if name in ARM_METHODS:
            raise ValueError(f"arm method {name!r} is already registered")
        ARM_METHODS[name] = build
        return build
    return register


def build_arm(context: ArmContext) -> ArmSetup:
    """The setup of `context.arm`: its registered method called with its params.

    Args:
        context: the run's context (its arm, splits, model, seed, ...).

    Returns:
        What the arm method built.

    Raises:
        ValueError: the method is not registered, or a param is not one it takes.
    """
    method = context.arm.method
    if method not in ARM_METHODS:
        raise ValueError(f"arm {context.arm.name!r}: method must be one of "
                         f"{sorted(ARM_METHODS)}, got {method!r}")
    try:
        return ARM_METHODS[method](context, **context.arm.params)
    except TypeError as error:
        raise ValueError(f"arm {context.arm.name!r}: bad params for {method!r}: {error}") from error


@arm_method("uniform")
def _uniform(context: ArmContext) -> ArmSetup:
    """Plain training: shuffled epochs, mean cross-entropy."""
    return ArmSetup()


@arm_method("tracked")
def _tracked(context: ArmContext) -> ArmSetup:
    """Plain training with a `LossTracker` plugged in (it only records each batch's per-sample
    losses by dataset index); collects the tracker's `seen` mask and `latest` losses, the final
    model's per-sample losses on the training split (`per_sample_losses`) and the final model."""
    tracker = LossTracker(len(context.train))

    def collect() -> dict[str, Any]:
        return {"seen": tracker.seen.clone(), "latest": tracker.latest.clone(),
                "model": context.model,
                "losses": per_sample_losses(context.model, context.train)}
    return ArmSetup(methods=[tracker], collect=collect)


@arm_method("sgds")
def _sgds(context: ArmContext, transient_epochs: int = 2, prune_fraction: float = 0.1,
          reintroduce_fraction: float = 0.01, unbiased: bool = False, power: float = 1.0,
          uniform_mix: float = 0.0) -> ArmSetup:
    """SGD-S: prune low-loss samples, draw the rest in proportion to loss (`SGDSSampler`)."""
    sampler = SGDSSampler(len(context.train), transient_epochs, prune_fraction,
                          reintroduce_fraction, generator=context.generator, unbiased=unbiased,
                          power=power, uniform_mix=uniform_mix)
    return ArmSetup(methods=[sampler], sampler=sampler)


@arm_method("infobatch")
def _infobatch(context: ArmContext, prune_ratio: float = 0.5, delta: float = 0.875) -> ArmSetup:
    """InfoBatch: prune part of the below-mean-loss samples, rescale the kept ones, anneal."""
    sampler = InfoBatchSampler(len(context.train), context.train_spec.epochs, prune_ratio, delta,
                               generator=context.generator)
    return ArmSetup(methods=[sampler], sampler=sampler)


@arm_method("spl")
def _spl(context: ArmContext, threshold: float = 0.1, growing_factor: float = 1.35,
         regularizer: str = "hard", reduction: str = "mean") -> ArmSetup:
    """Self-paced learning (`SPLLoss`); collects the final selection."""
    spl = SPLLoss(len(context.train), threshold=threshold, growing_factor=growing_factor,
                  regularizer=regularizer, reduction=reduction)
    return ArmSetup(methods=[spl], collect=lambda: {"selected": spl.selected.clone()})


@arm_method("data_parameters")
def _data_parameters(context: ArmContext, learn_class: bool = False, learn_instance: bool = True,
                     init_class: float = 1.0, init_instance: float = 1.0, lr_class: float = 0.1,
                     lr_instance: float = 0.2, weight_decay_class: float = 0.0,
                     weight_decay_instance: float = 0.0) -> ArmSetup:
    """Data parameters (learnable class / instance temperatures) with their SparseSGD; collects
    every training sample's final sigma and the class sigmas."""
    targets = context.train.targets
    parameters = DataParameters(context.splits.num_classes, len(context.train),
                                learn_class=learn_class, learn_instance=learn_instance,
                                init_class=init_class, init_instance=init_instance,
                                weight_decay_class=weight_decay_class,
                                weight_decay_instance=weight_decay_instance)
    optimizer = parameters.make_optimizer(lr_class, lr_instance)

    def collect() -> dict[str, Any]:
        return {"sample_sigma": parameters.sample_sigma(targets),
                "class_sigma": parameters.class_sigma()}
    return ArmSetup(methods=[parameters], optimizers=[optimizer], collect=collect)
