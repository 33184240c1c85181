"""Figures of notebook 07: the loss-metric mismatch, Phi_t over time, rewards and the comparison."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from curriclab.ala import ACTION_STEPS
from curriclab.ala_training import AlignmentHistory, StudentRun


def mismatch_curves(ax: Axes, run: StudentRun) -> list:
    """Validation cross-entropy (left axis) and validation error (right axis) per epoch of one run,
    with dotted lines at the epoch each one is lowest. Returns the drawn lines."""
    epochs = np.arange(1, len(run.val_loss) + 1)
    (loss_line,) = ax.plot(epochs, run.val_loss, color="tab:blue", marker=".", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation cross-entropy", color="tab:blue")
    right = ax.twinx()
    (error_line,) = right.plot(
        epochs, 100 * np.asarray(run.val_error), color="tab:red", marker=".", label="validation error"
    )
    right.set_ylabel("validation error (%)", color="tab:red")
    lines = [loss_line, error_line]
    if len(epochs):
        lines.append(ax.axvline(1 + int(np.argmin(run.val_loss)), color="tab:blue", ls=":"))
        lines.append(right.axvline(1 + int(np.argmin(run.val_error)), color="tab:red", ls=":"))
    ax.legend([loss_line, error_line], ["validation loss", "validation error"], loc="upper center")
    ax.grid(alpha=0.3)
    return lines


def phi_heatmaps(history: AlignmentHistory, count: int = 4) -> Figure:
    """Off-diagonal Phi_t at `count` decisions spread evenly over the run (first to last).

    The diagonal (near 1) is masked so that the small off-diagonal entries get the whole shared
    colour scale; each title gives the step and the mean diagonal entry instead.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    chosen = np.unique(np.linspace(0, len(history.phi) - 1, count).round().astype(int)) if history.phi else []
    fig, axes = plt.subplots(1, max(len(chosen), 1), figsize=(3.2 * max(len(chosen), 1), 3.2), squeeze=False)
    if not len(chosen):
        axes[0, 0].text(0.5, 0.5, "no controller decisions", ha="center", va="center")
        axes[0, 0].axis("off")
        return fig
    snapshots = [history.phi[position].numpy().astype(float) for position in chosen]
    for values in snapshots:
        np.fill_diagonal(values, np.nan)
    low = min(np.nanmin(values) for values in snapshots)
    high = max(max(np.nanmax(values) for values in snapshots), low + 1e-6)
    for ax, position, values in zip(axes[0], chosen, snapshots):
        image = ax.imshow(values, vmin=low, vmax=high, cmap="magma")
        diagonal = float(history.phi[position].diagonal().mean())
        ax.set_title(f"step {history.steps[position]}, mean diag {diagonal:.2f}", fontsize=9)
        ax.set_xticks(range(len(values)))
        ax.set_yticks(range(len(values)))
        ax.set_xlabel("class j")
        ax.set_ylabel("class i")
    fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="Phi[i, j], i != j")
    return fig


def phi_summary(ax: Axes, history: AlignmentHistory) -> list:
    """Mean diagonal and mean off-diagonal entry of Phi_t against the student step."""
    lines = []
    if history.phi:
        stacked = np.stack([phi.numpy() for phi in history.phi])
        classes = stacked.shape[1]
        diagonal = np.einsum("tii->t", stacked) / classes
        off = (stacked.sum(axis=(1, 2)) - diagonal * classes) / (classes * (classes - 1))
        lines.append(ax.plot(history.steps, diagonal, label="mean diagonal")[0])
        lines.append(ax.plot(history.steps, off, label="mean off-diagonal")[0])
        ax.legend()
    ax.set_xlabel("student step")
    ax.set_ylabel("Phi entry")
    ax.grid(alpha=0.3)
    return lines


def reward_curve(ax: Axes, histories: Sequence[AlignmentHistory], window: int = 10) -> list:
    """Running mean (over `window` decisions) of each run's rewards, against the student step."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    lines = []
    for number, history in enumerate(histories):
        rewards = np.asarray(history.rewards, dtype=float)
        if len(rewards) < window:
            continue
        running = np.convolve(rewards, np.ones(window) / window, mode="valid")
        steps = np.asarray(history.steps[1:], dtype=float)[window - 1 :]
        (line,) = ax.plot(steps, running, label=f"run {number}")
        lines.append(line)
    ax.axhline(0.0, color="gray", lw=0.8)
    ax.set_xlabel("student step")
    ax.set_ylabel(f"reward, mean of last {window}")
    ax.set_ylim(-1.05, 1.05)
    if lines:
        ax.legend()
    ax.grid(alpha=0.3)
    return lines


def action_probabilities(ax: Axes, history: AlignmentHistory) -> list:
    """The policy's mean probability of each action (-beta, keep, +beta) over the class pairs."""
    lines = []
    if history.action_probs:
        probs = np.stack([p.numpy() for p in history.action_probs])
        for column, step in enumerate(ACTION_STEPS):
            label = {-1.0: "-beta", 0.0: "keep", 1.0: "+beta"}[step]
            (line,) = ax.plot(history.steps, probs[:, column], label=label)
            lines.append(line)
        ax.legend()
    ax.set_xlabel("student step")
    ax.set_ylabel("mean action probability")
    ax.grid(alpha=0.3)
    return lines


def selected_test_errors(ax: Axes, runs: dict[str, list[StudentRun]]) -> list:
    """One dot per seed (test error at the validation-selected epoch) and a bar for the mean, per method."""
    drawn = []
    names = [name for name, group in runs.items() if group]
    for position, name in enumerate(names):
        errors = 100 * np.array([run.selected_test_error for run in runs[name]])
        drawn.append(ax.scatter(np.full(len(errors), position), errors, color="black", zorder=3))
        drawn.append(ax.hlines(errors.mean(), position - 0.25, position + 0.25, color="tab:red", lw=2))
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    ax.set_xlim(-0.5, max(len(names), 1) - 0.5)
    ax.set_ylabel("test error (%) at best validation epoch")
    ax.grid(alpha=0.3, axis="y")
    return drawn


def mean_curves(ax: Axes, runs: dict[str, list[StudentRun]], attribute: str = "val_error") -> list:
    """Per method, the mean over seeds of a per-epoch record (in %), e.g. validation error."""
    lines = []
    for name, group in runs.items():
        if not group:
            continue
        values = 100 * np.mean([getattr(run, attribute) for run in group], axis=0)
        lines.append(ax.plot(np.arange(1, len(values) + 1), values, marker=".", label=name)[0])
    ax.set_xlabel("epoch")
    ax.set_ylabel(attribute.replace("_", " ") + " (%)")
    if lines:
        ax.legend()
    ax.grid(alpha=0.3)
    return lines
