"""Learning to teach with dynamic loss functions: the student's training loop and the teacher's.

A student run is a cross-entropy warm-up followed by `steps` SGD steps cut into episodes of T steps.
At every step the teacher turns the student's state into Phi_t (see `curriclab.methods.teacher`); the state's
statistics are read at the start of each episode and only `progress` moves within it, so an
episode's losses depend on the teacher's parameters and on nothing else that changes with them.
When a meta-optimizer is given, each episode ends with the hypergradient of the smoothed dev error
through its T steps (`curriclab.methods.hypergradient`) and one teacher update: the student keeps its
weights, so the teacher is trained online along whole student runs, one episode at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from curriclab.core.data import IndexedDataset
from curriclab.core.training import evaluate, seed_everything
from curriclab.methods.l2t import TeachingConfig, TeachingLog, teach
from curriclab.methods.teacher import LossTeacher

__all__ = ["ArmResult", "errors_by_arm", "evaluate_arms"]


@dataclass
class ArmResult:
    """The final errors of one student trained one way (an "arm") with one seed."""

    arm: str
    seed: int
    dev_error: float
    test_error: float
    log: TeachingLog


def evaluate_arms(
    make_student: Callable[[], nn.Module],
    arms: dict[str, LossTeacher | None],
    train: IndexedDataset,
    dev: IndexedDataset,
    test: IndexedDataset,
    config: TeachingConfig,
    seed: int,
) -> list[ArmResult]:
    """Train one student per arm (same initial weights and minibatches) with a frozen teacher or
    cross-entropy (None); report its dev and test error."""
    results = []
    for name, teacher in arms.items():
        seed_everything(seed)
        student = make_student()
        log = teach(student, train, dev, config, teacher, seed=seed)
        results.append(ArmResult(
            name, seed, 1.0 - evaluate(student, dev).accuracy, 1.0 - evaluate(student, test).accuracy, log
        ))
    return results


def errors_by_arm(results: list[ArmResult], split: str = "test") -> dict[str, list[float]]:
    """{arm: [error of each seed]} for split 'test' or 'dev', arms in first-seen order."""
    if split not in ("test", "dev"):
        raise ValueError(f"split must be 'test' or 'dev', got {split!r}")
    table: dict[str, list[float]] = {}
    for result in results:
        table.setdefault(result.arm, []).append(getattr(result, f"{split}_error"))
    return table
