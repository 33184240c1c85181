"""Notebook 06's runner: train L2T-DLF teachers per arm (horizon, warm start, NLL mix, dev metric),
evaluate each frozen teacher on fresh student seeds next to cross-entropy, and follow Phi over training."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from curriclab.core.data import IndexedDataset
from curriclab.core.training import evaluate, seed_everything
from curriclab.methods.l2t import TeachingConfig, TeachingLog, teach, train_teacher
from curriclab.methods.teacher import LossTeacher

__all__ = ["ArmResult", "errors_by_arm", "evaluate_arms", "phi_trajectory", "train_teachers"]


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
    configs: Mapping[str, TeachingConfig] | None = None,
) -> list[ArmResult]:
    """Train one student per arm (same initial weights and minibatches) with a frozen teacher or
    cross-entropy (None); report its dev and test error.

    `configs` may give an arm its own TeachingConfig (e.g. the horizon, warm-up or NLL mix its
    teacher was trained with); arms not named there use `config`.
    """
    unknown = set(configs or {}) - set(arms)
    if unknown:
        raise ValueError(f"configs names arms that do not exist: {sorted(unknown)}")
    results = []
    for name, teacher in arms.items():
        seed_everything(seed)
        student = make_student()
        log = teach(student, train, dev, (configs or {}).get(name, config), teacher, seed=seed)
        results.append(ArmResult(
            name, seed, evaluate(student, dev).error, evaluate(student, test).error, log
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


def train_teachers(
    make_student: Callable[[], nn.Module],
    train: IndexedDataset,
    dev: IndexedDataset,
    configs: Mapping[str, TeachingConfig],
    runs: int,
    seed: int = 100,
    progress: bool = False,
) -> dict[str, tuple[LossTeacher, list[TeachingLog]]]:
    """One teacher per named config, each trained along the same `runs` student runs (seeds
    seed .. seed + runs - 1) from the same initial teacher (Phi = I, bias 0)."""
    return {name: train_teacher(make_student, train, dev, config, runs=runs, seed=seed, progress=progress)
            for name, config in configs.items()}


def phi_trajectory(log: TeachingLog) -> dict[str, list[float]]:
    """Summaries of the Phi_t a teacher gave along one student run, one entry per taught episode:
    training progress, mean diagonal, mean off-diagonal entry and mean bias."""
    if not log.phi:
        raise ValueError("the log holds no Phi_t (a cross-entropy run, or no taught steps)")
    eye = torch.eye(log.phi[0].shape[0], dtype=torch.bool)
    return {
        "progress": [float(state[0]) for state in log.state],
        "diagonal": [float(phi[eye].mean()) for phi in log.phi],
        "off_diagonal": [float(phi[~eye].mean()) for phi in log.phi],
        "bias": [float(bias.mean()) for bias in log.bias],
    }
