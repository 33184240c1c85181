"""Figures of notebook 06: gradient factors, the unrolled-training diagram, Phi_t heatmaps, errors,
the static-Phi grid, the teachers' tuning and their diagnostics over teacher steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from curriclab.methods.dynamic_loss import cross_entropy_logit_gradient, dynamic_loss_logit_gradient
from curriclab.plots.basics import label_axes

if TYPE_CHECKING:
    import pandas as pd

    from curriclab.methods.l2t import Algorithm1Log

__all__ = [
    "dev_error_curves",
    "error_dots",
    "gradient_factors",
    "phi_heatmaps",
    "phi_step_view",
    "static_grid",
    "teacher_diagnostics",
    "teacher_tuning",
    "unrolled_diagram",
]


def gradient_factors(ax: Axes, scales: Sequence[float] = (1.0,), points: int = 200) -> list:
    """|d loss / d z_y| against p_y for cross-entropy and -sigmoid(a log p_y) for each scale a
    (log y)."""
    p = torch.linspace(1e-3, 0.999, points, dtype=torch.float64)
    lines = ax.plot(p, cross_entropy_logit_gradient(p), color="black", label="cross-entropy")
    for scale in scales:
        label = "Phi = I" if scale == 1.0 else f"Phi = {scale:g} I"
        lines += ax.plot(p, dynamic_loss_logit_gradient(p, scale), label=label)
    ax.set_yscale("log")
    ax.set_xlabel("probability of the true class p_y")
    ax.set_ylabel("|d loss / d logit_y|")
    ax.legend()
    ax.grid(alpha=0.3)
    return lines


def unrolled_diagram(ax: Axes, steps: int = 3) -> list:
    """Boxes w_0 .. w_T with the teacher feeding Phi_t into each step, forward and reverse
    arrows."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    artists = []
    names = [f"$w_{t}$" for t in range(steps)] + ["$w_T$", "$\\tilde M$(dev)"]
    box = {"boxstyle": "round", "facecolor": "white", "edgecolor": "black"}
    for i, name in enumerate(names):
        artists.append(ax.text(i, 0, name, ha="center", va="center", fontsize=12, bbox=box))
    for i in range(len(names) - 1):
        label = "SGD" if i < len(names) - 2 else "evaluate"
        artists.append(ax.annotate("", xy=(i + 0.7, 0.05), xytext=(i + 0.3, 0.05),
                                   arrowprops={"arrowstyle": "->", "color": "tab:blue"}))
        artists.append(ax.text(i + 0.5, 0.15, label, ha="center", fontsize=8, color="tab:blue"))
        artists.append(ax.annotate("", xy=(i + 0.3, -0.12), xytext=(i + 0.7, -0.12),
                                   arrowprops={"arrowstyle": "->", "color": "tab:red",
                                               "linestyle": "--"}))
        if i < len(names) - 2:
            artists.append(ax.annotate(f"$\\Phi_{{{i}}}$", xy=(i + 0.5, 0.07),
                                       xytext=(i + 0.5, 0.7), ha="center", fontsize=10,
                                       arrowprops={"arrowstyle": "->", "color": "tab:green"}))
    artists.append(ax.text(steps / 2, 0.95, "teacher $\\theta$: state $s_t \\mapsto \\Phi_t$",
                           ha="center", color="tab:green", fontsize=11))
    artists.append(ax.text(steps / 2, -0.4, "reverse pass: $dw_t = dw_{t+1} - \\eta H_t dw_{t+1}$,"
                           "  $d\\theta \\leftarrow d\\theta - \\eta\\, "
                           "\\partial_\\theta g_t \\cdot dw_{t+1}$",
                           ha="center", color="tab:red", fontsize=10))
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylim(-0.6, 1.1)
    ax.axis("off")
    return artists


def phi_heatmaps(fig: Figure, phis: Sequence[Tensor], titles: Sequence[str]) -> list:
    """One heatmap per Phi_t (diagonal and off-diagonal on one symmetric colour scale around 0)."""
    if len(phis) != len(titles):
        raise ValueError(f"phis and titles must match: {len(phis)} vs {len(titles)}")
    if not phis:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no Phi_t recorded", ha="center", va="center")
        ax.axis("off")
        return []
    limit = max(float(phi.abs().max()) for phi in phis) or 1.0
    axes = fig.subplots(1, len(phis), squeeze=False)[0]
    images = []
    for ax, phi, title in zip(axes, phis, titles):
        images.append(ax.imshow(phi.detach().numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("column j (log p_j)")
    axes[0].set_ylabel("row y (true class)")
    fig.colorbar(images[-1], ax=list(axes), shrink=0.8)
    return images


def dev_error_curves(ax: Axes, curves: dict[str, tuple[Sequence[int], Sequence[float]]]) -> list:
    """Dev minibatch error against student step, one line per name (x, y pairs)."""
    lines = []
    for name, (steps, errors) in curves.items():
        lines += ax.plot(steps, errors, label=name)
    label_axes(ax, "student SGD step", "dev error", legend=bool(curves))
    return lines


def error_dots(ax: Axes, errors: dict[str, Sequence[float]],
               reference: dict[str, float] | None = None) -> list:
    """Each arm's test errors (one dot per seed, a bar for the mean), plus optional reference
    lines."""
    artists = []
    for position, (name, values) in enumerate(errors.items()):
        values = np.asarray(values, dtype=float) * 100
        artists.append(ax.scatter(np.full(len(values), position), values, color=f"C{position}",
                                  zorder=3))
        if len(values):
            artists += ax.plot([position - 0.2, position + 0.2], [values.mean()] * 2, color="black")
    for count, (name, value) in enumerate((reference or {}).items()):
        artists.append(ax.axhline(value, linestyle=":", color="gray"))
        artists.append(ax.text(len(errors) - 0.5, value, name, fontsize=8, ha="right",
                               va="bottom" if count % 2 == 0 else "top"))
    ax.set_xticks(range(len(errors)), list(errors))
    ax.set_ylabel("test error (%)")
    ax.grid(alpha=0.3, axis="y")
    return artists


def static_grid(axes: Sequence[Axes], table: pd.DataFrame, reference: float) -> list:
    """Validation error (%) of every static Phi = a I + c (1 - I) with bias b at its chosen lr:
    one heatmap over (a, c) per bias b (columns a, c, b, "validation error %" of `table`), on one
    colour scale; `reference` (cross-entropy's error) is named in each title."""
    biases = sorted(table["b"].unique())
    if len(axes) != len(biases):
        raise ValueError(f"axes must hold one panel per bias ({len(biases)}), got {len(axes)}")
    low, high = table["validation error %"].min(), table["validation error %"].max()
    images = []
    for ax, bias in zip(axes, biases):
        part = table[table["b"] == bias].pivot(index="a", columns="c", values="validation error %")
        images.append(ax.imshow(part.to_numpy(), cmap="viridis_r", vmin=low, vmax=high,
                                origin="lower", aspect="auto"))
        for (row, column), value in np.ndenumerate(part.to_numpy()):
            ax.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if value > (low + high) / 2 else "black")
        ax.set_xticks(range(len(part.columns)), [f"{c:g}" for c in part.columns])
        ax.set_yticks(range(len(part.index)), [f"{a:g}" for a in part.index])
        ax.set_xlabel("off-diagonal c")
        ax.set_title(f"bias b = {bias:g} (cross-entropy {reference:.2f} %)", fontsize=9)
    axes[0].set_ylabel("diagonal a")
    return images


def teacher_tuning(ax: Axes, table: pd.DataFrame, references: Mapping[str, float]) -> list:
    """Validation error (%) of students taught by each (teacher kind, optimiser, lr) of the
    tuning grid (columns teacher, optimizer, "teacher lr", "validation error %", chosen), one
    group of bars per kind, the chosen one outlined; dotted lines for `references`."""
    artists = []
    kinds = list(dict.fromkeys(table["teacher"]))
    configs = list(dict.fromkeys(zip(table["optimizer"], table["teacher lr"])))
    width = 0.8 / max(len(configs), 1)
    for number, (optimizer, lr) in enumerate(configs):
        rows = table[(table["optimizer"] == optimizer) & (table["teacher lr"] == lr)]
        positions = [kinds.index(k) + (number - (len(configs) - 1) / 2) * width
                     for k in rows["teacher"]]
        bars = ax.bar(positions, rows["validation error %"], width, label=f"{optimizer} {lr:g}",
                      color=f"C{number}", edgecolor=["black" if c else "none"
                                                     for c in rows["chosen"]], linewidth=1.5)
        artists.append(bars)
    for count, (name, value) in enumerate(references.items()):
        artists.append(ax.axhline(value, linestyle=":", color=f"C{len(configs) + count}",
                                  label=name))
    ax.set_xticks(range(len(kinds)), kinds, fontsize=8)
    errors = list(table["validation error %"]) + list(references.values())
    if errors:
        ax.set_ylim(0.9 * min(errors), 1.05 * max(errors))
    label_axes(ax, "", "validation error (%)", legend=True)
    return artists


def teacher_diagnostics(axes: Sequence[Axes], logs: Mapping[str, Sequence[Algorithm1Log]]) -> list:
    """Four panels over teacher steps, one colour per teacher kind, one line per teacher: the
    smoothed dev metric (solid) and 0-1 dev error (dashed); Phi's mean row sum; its off-diagonal
    mass; the saturated fraction of the taught minibatches (sigma' < 0.01)."""
    if len(axes) != 4:
        raise ValueError(f"axes must hold 4 panels, got {len(axes)}")
    lines = []
    for number, (kind, kind_logs) in enumerate(logs.items()):
        colour = f"C{number}"
        for count, log in enumerate(kind_logs):
            label = kind if count == 0 else None
            steps = range(len(log.metric))
            lines += axes[0].plot(steps, log.metric, color=colour, label=label)
            lines += axes[0].plot(steps, log.dev_error, color=colour, linestyle="--")
            lines += axes[1].plot(steps, log.phi["row_sum"], color=colour, label=label)
            lines += axes[2].plot(steps, log.phi["off_diagonal_mass"], color=colour)
            lines += axes[3].plot(steps, log.saturated, color=colour)
    titles = ("dev: smoothed 1 - p_y (solid), 0-1 error (dashed)", "mean row sum of Phi",
              "off-diagonal mass of Phi", "saturated share (sigma' < 0.01)")
    for ax, title in zip(axes, titles):
        label_axes(ax, "teacher step", "", legend=False)
        ax.set_title(title, fontsize=9)
    if logs:
        axes[1].legend(fontsize=7)
    return lines


def phi_step_view(logs: Mapping[str, Algorithm1Log], teacher: str, step: int) -> Figure:
    """Phi - I of one teacher (`logs[teacher]`) at one teacher step, with that step's smoothed dev
    metric, 0-1 dev error, row sum and saturated share in the title (the widget's view).
    Returns the figure.

    Raises:
        ValueError: an unknown teacher or a step outside its log.
    """
    import matplotlib.pyplot as plt

    if teacher not in logs:
        raise ValueError(f"teacher must be one of {sorted(logs)}, got {teacher!r}")
    log = logs[teacher]
    if not 0 <= step < len(log.matrices):
        raise ValueError(f"step must lie in [0, {len(log.matrices)}), got {step}")
    fig = plt.figure(figsize=(5.5, 4))
    phi = log.matrices[step]
    phi_heatmaps(fig, [phi - torch.eye(phi.shape[0])],
                 [f"{teacher}, step {step}: Phi - I\ndev 1 - p_y {log.metric[step]:.3f}, "
                  f"error {100 * log.dev_error[step]:.1f} %, row sum "
                  f"{log.phi['row_sum'][step]:.2f}, saturated {100 * log.saturated[step]:.0f} %"])
    return fig
