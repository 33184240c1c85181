"""Figures of notebook 07: the loss-metric mismatch, Phi_t over time, rewards and the comparison."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from curriclab.methods.ala.agent import AlignmentHistory
from curriclab.methods.ala.statistics import ACTION_STEPS
from curriclab.methods.dynamic_loss import dynamic_loss
from curriclab.plots.basics import label_axes

if TYPE_CHECKING:  # results are drawn, never produced, here
    import pandas as pd

    from curriclab.experiments.adaptive_loss_alignment import StudentRun
    from curriclab.experiments.harness import Results

__all__ = [
    "action_probabilities",
    "confusion_heatmap",
    "controller_figure",
    "decision_view",
    "harness_test_errors",
    "harness_validation_curves",
    "relative_reductions",
    "loss_family_curves",
    "mismatch_curves",
    "phi_heatmaps",
    "phi_snapshot",
    "phi_summary",
    "reward_curve",
]


def loss_family_curves(ax: Axes, diagonals: Sequence[float] = (0.5, 1.0, 1.5)) -> list:
    """Loss of a sample against the probability p of its true class: cross-entropy -log p and
    -sigmoid(Phi_yy log p) for each diagonal value (off-diagonal entries zero).

    Drawn on `ax` for p in [0.01, 0.99] (two classes), y-limits (-1.05, 2.5), with a legend.

    Args:
        ax: the axes to draw on.
        diagonals: values of Phi's diagonal, one curve each (any real; 0 gives the constant
            -sigmoid(0) = -0.5).

    Returns:
        The lines: cross-entropy first, then one per entry of `diagonals`, in order.
    """
    p = torch.linspace(0.01, 0.99, 99)
    logits = torch.stack([p.log(), (1 - p).log()], dim=1)
    target = torch.zeros(len(p), dtype=torch.long)
    lines = [ax.plot(p, -p.log(), color="black", label="cross-entropy  -log p")[0]]
    for value in diagonals:
        phi = torch.diag(torch.tensor([float(value), float(value)]))
        losses = dynamic_loss(logits, target, phi, reduction="none")
        lines.append(ax.plot(p, losses, label=f"-sigmoid({value:g} log p)")[0])
    ax.set_xlabel("p, probability of the true class")
    ax.set_ylabel("loss")
    ax.set_ylim(-1.05, 2.5)
    ax.legend()
    ax.grid(alpha=0.3)
    return lines


def mismatch_curves(ax: Axes, run: StudentRun) -> list:
    """Validation cross-entropy (left axis) and validation error (right axis) per epoch of one run,
    with dotted lines at the epoch each one is lowest.

    Args:
        ax: the axes for the loss; the error goes on a twin axes (`ax.twinx()`) in %.
        run: the run; `val_loss` and `val_error` (in [0, 1]) hold one entry per epoch, epochs
            numbered from 1.

    Returns:
        [loss line, error line], followed by the two dotted vertical lines (lowest loss, lowest
        error) when the run has at least one epoch.

    Raises:
        ValueError: `run.val_loss` and `run.val_error` have different lengths.
    """
    if len(run.val_loss) != len(run.val_error):
        raise ValueError(f"run.val_loss and run.val_error must have one entry per epoch; got "
                         f"{len(run.val_loss)} and {len(run.val_error)}")
    epochs = np.arange(1, len(run.val_loss) + 1)
    (loss_line,) = ax.plot(epochs, run.val_loss, color="tab:blue", marker=".",
                           label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation cross-entropy", color="tab:blue")
    right = ax.twinx()
    (error_line,) = right.plot(
        epochs, 100 * np.asarray(run.val_error), color="tab:red", marker=".",
        label="validation error",
    )
    right.set_ylabel("validation error (%)", color="tab:red")
    lines = [loss_line, error_line]
    if len(epochs):
        lines.append(ax.axvline(1 + int(np.argmin(run.val_loss)), color="tab:blue", ls=":"))
        lines.append(right.axvline(1 + int(np.argmin(run.val_error)), color="tab:red", ls=":"))
    ax.legend([loss_line, error_line], ["validation loss", "validation error"], loc="upper center")
    ax.grid(alpha=0.3)
    return lines


def phi_snapshot(
    ax: Axes, history: AlignmentHistory, position: int, limits: tuple[float, float] | None = None
):
    """Off-diagonal Phi after decision `position` (diagonal masked: it is near 1 and would swamp the
    colour scale; the title gives its mean).

    Drawn on `ax`: a [C, C] image (row i = true class, column j), ticks at every class.

    Args:
        ax: the axes to draw on.
        history: the controller's record; `history.phi[position]` is a [C, C] tensor.
        position: the decision's index, in [0, len(history.phi)).
        limits: (low, high) of the colour scale; None scales to this Phi's off-diagonal range.

    Returns:
        The `AxesImage` (pass it to `fig.colorbar`).

    Raises:
        ValueError: `position` out of range.
    """
    if not 0 <= position < len(history.phi):
        raise ValueError(f"position must lie in [0, {len(history.phi)}), got {position}")
    values = history.phi[position].numpy().astype(float)
    np.fill_diagonal(values, np.nan)
    low, high = limits if limits is not None else (np.nanmin(values), np.nanmax(values) + 1e-6)
    image = ax.imshow(values, vmin=low, vmax=high, cmap="magma")
    diagonal = float(history.phi[position].diagonal().mean())
    ax.set_title(f"step {history.steps[position]}, mean diag {diagonal:.2f}", fontsize=9)
    ax.set_xticks(range(len(values)))
    ax.set_yticks(range(len(values)))
    ax.set_xlabel("class j")
    ax.set_ylabel("class i")
    return image


def phi_heatmaps(history: AlignmentHistory, count: int = 4) -> Figure:
    """`phi_snapshot` at `count` decisions spread evenly over the run.

    All panels share one colour scale, with one colour bar.

    Args:
        history: the controller's record.
        count: panels wanted (>= 1); fewer are drawn when the run has fewer decisions.

    Returns:
        A new figure of one row of panels (first and last decision included), or a single
        panel reading "no controller decisions" when `history.phi` is empty.

    Raises:
        ValueError: `count` < 1.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    chosen = (np.unique(np.linspace(0, len(history.phi) - 1, count).round().astype(int))
              if history.phi else [])
    fig, axes = plt.subplots(1, max(len(chosen), 1), figsize=(2.6 * max(len(chosen), 1), 2.8),
                             squeeze=False, layout="constrained")
    if not len(chosen):
        axes[0, 0].text(0.5, 0.5, "no controller decisions", ha="center", va="center")
        axes[0, 0].axis("off")
        return fig
    off = ~np.eye(history.phi[0].shape[0], dtype=bool)
    entries = np.concatenate([history.phi[position].numpy()[off] for position in chosen])
    limits = (float(entries.min()), float(max(entries.max(), entries.min() + 1e-6)))
    for ax, position in zip(axes[0], chosen):
        image = phi_snapshot(ax, history, int(position), limits)
    for ax in axes[0][1:]:
        ax.set_ylabel("")  # the panels share the class axis; one label, no overlap
    fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="Phi[i, j], i != j")
    return fig


def phi_summary(ax: Axes, history: AlignmentHistory) -> list:
    """Mean diagonal and mean off-diagonal entry of Phi_t against the student step.

    Args:
        ax: the axes to draw on (axis labels and grid even when nothing is drawn).
        history: the controller's record; `steps` and `phi` ([C, C] each, C >= 2) have one entry
            per decision.

    Returns:
        [diagonal line, off-diagonal line], or [] when the history has no decisions.
    """
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
    """Running mean (over `window` decisions) of each run's rewards (per-pair rewards averaged
    over the pairs), against the student step.

    A reward is in {-1, 0, 1}, so the y-axis spans [-1.05, 1.05]; a grey line marks 0.

    Args:
        ax: the axes to draw on.
        histories: one record per run; rewards start at the second decision (`steps[1:]`).
        window: decisions per running mean, >= 1.

    Returns:
        One line per run with at least `window` rewards (shorter runs are skipped), labelled
        "run <index in histories>".

    Raises:
        ValueError: `window` < 1.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    lines = []
    for number, history in enumerate(histories):
        rewards = np.array([float(torch.as_tensor(r).float().mean()) for r in history.rewards])
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


def _pair_is_diagonal(pairs: int) -> np.ndarray:
    classes = int(round((np.sqrt(8 * pairs + 1) - 1) / 2))
    i, j = np.triu_indices(classes)
    return i == j


def action_probabilities(ax: Axes, history: AlignmentHistory) -> list:
    """The policy's probability of each action (-beta, keep, +beta), averaged over the diagonal
    pairs (solid) and over the off-diagonal pairs (dashed), against the student step.

    Args:
        ax: the axes to draw on (y-axis [-0.02, 1.02]).
        history: the controller's record; `action_probs` holds one [P, 3] tensor per decision,
            P = C (C + 1) / 2 pairs of the upper triangle of Phi in `np.triu_indices` order.

    Returns:
        Six lines (3 actions x diagonal/off-diagonal), or [] when the history has no decisions.
    """
    lines = []
    if history.action_probs:
        probs = np.stack([p.numpy() for p in history.action_probs])  # [D, P, 3]
        diagonal = _pair_is_diagonal(probs.shape[1])
        colors = {-1.0: "tab:blue", 0.0: "tab:gray", 1.0: "tab:red"}
        for column, step in enumerate(ACTION_STEPS):
            label = {-1.0: "-beta", 0.0: "keep", 1.0: "+beta"}[step]
            for mask, style, where in ((diagonal, "-", "diagonal"), (~diagonal, "--", "off-diag.")):
                (line,) = ax.plot(history.steps, probs[:, mask, column].mean(1), style,
                                  color=colors[step], label=f"{label}, {where}")
                lines.append(line)
        ax.legend(fontsize=7, ncol=2)
    ax.set_xlabel("student step")
    ax.set_ylabel("action probability")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    return lines


def _advantage_by_action(ax: Axes, history: AlignmentHistory, window: int) -> list:
    """Running mean (over `window` decisions) of the advantage earned by each action."""
    lines = []
    if len(history.advantages) < window:
        return lines
    for column, step in enumerate(ACTION_STEPS):
        means = []
        for actions, advantage in zip(history.actions, history.advantages):
            taken = actions == column
            values = advantage.expand(actions.shape)[taken]
            means.append(float(values.mean()) if taken.any() else np.nan)
        running = np.convolve(np.nan_to_num(means), np.ones(window) / window, mode="valid")
        steps = np.asarray(history.steps[: len(means)], dtype=float)[window - 1:]
        label = {-1.0: "-beta", 0.0: "keep", 1.0: "+beta"}[step]
        lines.append(ax.plot(steps, running, label=label)[0])
    ax.axhline(0.0, color="gray", lw=0.8)
    ax.legend(fontsize=7)
    return lines


def controller_figure(histories: dict[str, AlignmentHistory], window: int = 10) -> Figure:
    """One row per named history: Phi's mean diagonal and off-diagonal entry (`phi_summary`),
    the policy's action probabilities (`action_probabilities`) and the running mean advantage of
    each action.

    Args:
        histories: {name used in the panel titles: the controller's record}, not empty.
        window: decisions per running mean of the advantage, >= 1; a history with fewer
            decisions leaves its third panel empty.

    Returns:
        A new figure of len(histories) rows x 3 axes.

    Raises:
        ValueError: no history, or window < 1.
    """
    if not histories:
        raise ValueError("histories must not be empty")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    fig, axes = plt.subplots(len(histories), 3, figsize=(13, 3.1 * len(histories)),
                             squeeze=False, layout="constrained")
    for row, (name, history) in zip(axes, histories.items()):
        phi_summary(row[0], history)
        row[0].set_title(f"{name}: Phi", fontsize=9)
        action_probabilities(row[1], history)
        row[1].set_title(f"{name}: policy", fontsize=9)
        _advantage_by_action(row[2], history, window)
        row[2].set_title(f"{name}: advantage by action, mean of {window} decisions", fontsize=9)
        row[2].set_xlabel("student step")
        row[2].set_ylabel("advantage")
        row[2].grid(alpha=0.3)
    return fig


def decision_view(histories: Sequence[AlignmentHistory], run: int = 0, decision: int = 0) -> Figure:
    """Phi after decision `decision` of run `run` (`phi_snapshot`), titled with the mean reward
    that decision earned (the widget of notebook 07).

    Args:
        histories: one controller record per run.
        run: the run's index, in [0, len(histories)).
        decision: the decision's index; clipped to [0, decisions - 1] so a slider may overshoot.
            The first decision has no reward (shown as nan).

    Returns:
        A new figure: the Phi image with a colour bar, the reward in the x-label.

    Raises:
        ValueError: `run` out of range, or that run has no controller decisions.
    """
    if not 0 <= run < len(histories):
        raise ValueError(f"run must lie in [0, {len(histories)}), got {run}")
    history = histories[run]
    if not history.phi:
        raise ValueError(f"run {run} has no controller decisions to show")
    decision = min(max(decision, 0), len(history.phi) - 1)
    fig, ax = plt.subplots(figsize=(4.5, 3.8))
    image = phi_snapshot(ax, history, decision)
    fig.colorbar(image, ax=ax, shrink=0.8)
    reward = (float(history.rewards[decision].float().mean()) if decision < len(history.rewards)
              else float("nan"))
    ax.set_xlabel(f"class j   (mean reward of this decision: {reward:+.2f})")
    return fig


def confusion_heatmap(ax: Axes, confusion: Tensor) -> object:
    """C[i, j] (mean -log p_j over validation samples of class i) on a log colour scale, with the
    most confused pair (smallest off-diagonal entry) outlined.

    Drawn on `ax` with a colour bar; NaN entries (classes without samples) are left blank.

    Args:
        ax: the axes to draw on.
        confusion: [C, C] statistics, C >= 2 (a tensor or array); entries > 0 (the scale starts
            at max(smallest finite entry, 1e-3)).

    Returns:
        The `AxesImage`, or None (with a "no statistics" note on `ax`) when no entry is finite.
    """
    values = np.asarray(confusion, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        ax.text(0.5, 0.5, "no statistics", ha="center", va="center", transform=ax.transAxes)
        return None
    image = ax.imshow(values, cmap="viridis_r", norm=LogNorm(max(finite.min(), 1e-3), finite.max()))
    off = np.where(np.eye(len(values), dtype=bool), np.inf, np.nan_to_num(values, nan=np.inf))
    i, j = np.unravel_index(np.argmin(off), off.shape)
    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
    ax.set_xticks(range(len(values)))
    ax.set_yticks(range(len(values)))
    ax.set_xlabel("j (class whose probability is read)")
    ax.set_ylabel("i (true class)")
    plt.colorbar(image, ax=ax, shrink=0.8, label="C[i, j] = mean -log p_j")
    return image


def harness_test_errors(ax: Axes, results: Results) -> list:
    """One dot per seed (test error in % of the selected model) and a bar for the mean, per arm
    of a harness result record.

    Args:
        ax: the axes to draw on; one x position per arm, in the record's order.
        results: a harness record whose final rows hold "test_accuracy" (in [0, 1]).

    Returns:
        Per arm, the scatter of its seeds then the mean's horizontal bar ([] without final rows).

    Raises:
        ValueError: the final rows lack "test_accuracy", or the arms ran on different seeds
            (from `Results.final_values`).
    """
    drawn = []
    values = results.final_values("test_accuracy")
    names = list(values)
    for position, name in enumerate(names):
        errors = 100 * (1 - np.asarray(values[name], dtype=float))
        drawn.append(ax.scatter(np.full(len(errors), position), errors, color="black", zorder=3))
        drawn.append(ax.hlines(errors.mean(), position - 0.25, position + 0.25, color="tab:red",
                               lw=2))
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("test error (%), best validation epoch")
    ax.grid(alpha=0.3, axis="y")
    return drawn


def harness_validation_curves(ax: Axes, results: Results) -> list:
    """Per arm, the mean over seeds of the validation error (%) at each evaluated step, on a
    log y-axis.

    Args:
        ax: the axes to draw on.
        results: a harness record whose curve rows hold "arm", "step" and "validation_accuracy"
            (in [0, 1]).

    Returns:
        One line per arm, in the record's order ([] without curve rows).
    """
    frame = results.curve_frame()
    lines = []
    if len(frame):
        frame = frame.assign(error=100 * (1 - frame["validation_accuracy"]))
        for arm, group in frame.groupby("arm", sort=False):
            mean = group.groupby("step")["error"].mean()
            lines.append(ax.plot(mean.index, mean.values, marker=".", label=arm)[0])
    ax.set_yscale("log")
    label_axes(ax, "student step", "validation error (%)", legend=bool(lines))
    return lines


def relative_reductions(ax: Axes, ours: pd.DataFrame, paper: dict[str, float]) -> list:
    """Relative error reductions against cross-entropy in %: ours with their t intervals (bars
    with error bars), the paper's as hatched bars.

    Args:
        ax: the axes to draw on; our bars first, then the paper's.
        ours: one row per method (index = the method's name) with columns "mean", "low" and
            "high": the reduction and its interval as fractions (0.1 = 10 % fewer errors).
        paper: {method name: the reduction the paper reports, as a fraction}.

    Returns:
        [our `BarContainer`, the paper's `BarContainer`].
    """
    drawn = []
    names = list(ours.index)
    means = 100 * ours["mean"].to_numpy(dtype=float)
    errors = np.abs(100 * np.stack([ours["low"].to_numpy(dtype=float),
                                    ours["high"].to_numpy(dtype=float)]) - means)
    drawn.append(ax.bar(range(len(names)), means, yerr=errors, capsize=4, color="tab:blue",
                        label="ours (MNIST MLP), 95 % t interval"))
    start = len(names)
    drawn.append(ax.bar(range(start, start + len(paper)), [100 * v for v in paper.values()],
                        color="white", edgecolor="tab:orange", hatch="//",
                        label="Huang et al., CIFAR-10 ResNet-32"))
    ax.axhline(0.0, color="gray", lw=0.8)
    ax.set_xticks(range(start + len(paper)))
    ax.set_xticklabels(names + list(paper), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("errors removed vs cross-entropy (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return drawn
