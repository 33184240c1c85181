"""Figures of notebook 06: gradient factors, the unrolled-training diagram, Phi_t heatmaps, errors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from curriclab.methods.dynamic_loss import cross_entropy_logit_gradient, dynamic_loss_logit_gradient
from curriclab.plots.basics import label_axes

__all__ = [
    "dev_error_curves",
    "error_dots",
    "gradient_factors",
    "phi_heatmaps",
    "unrolled_diagram",
]


def gradient_factors(ax: Axes, scales: Sequence[float] = (1.0,), points: int = 200) -> list:
    """|d loss / d z_y| against p_y for cross-entropy and -sigmoid(a log p_y) for each scale a (log y)."""
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
    """Boxes w_0 .. w_T with the teacher feeding Phi_t into each step, forward and reverse arrows."""
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
                                   arrowprops={"arrowstyle": "->", "color": "tab:red", "linestyle": "--"}))
        if i < len(names) - 2:
            artists.append(ax.annotate(f"$\\Phi_{{{i}}}$", xy=(i + 0.5, 0.07), xytext=(i + 0.5, 0.7),
                                       ha="center", fontsize=10,
                                       arrowprops={"arrowstyle": "->", "color": "tab:green"}))
    artists.append(ax.text(steps / 2, 0.95, "teacher $\\theta$: state $s_t \\mapsto \\Phi_t$", ha="center",
                           color="tab:green", fontsize=11))
    artists.append(ax.text(steps / 2, -0.4, "reverse pass: $dw_t = dw_{t+1} - \\eta H_t dw_{t+1}$,"
                           "  $d\\theta \\leftarrow d\\theta - \\eta\\, \\partial_\\theta g_t \\cdot dw_{t+1}$",
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


def error_dots(ax: Axes, errors: dict[str, Sequence[float]], reference: dict[str, float] | None = None) -> list:
    """Each arm's test errors (one dot per seed, a bar for the mean), plus optional reference lines."""
    artists = []
    for position, (name, values) in enumerate(errors.items()):
        values = np.asarray(values, dtype=float) * 100
        artists.append(ax.scatter(np.full(len(values), position), values, color=f"C{position}", zorder=3))
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


def phi_over_training(axes: Sequence[Axes], trajectories: dict[str, dict[str, Sequence[float]]]) -> list:
    """Three panels against training progress: mean diagonal of Phi_t, mean off-diagonal entry, mean
    bias; one line per teacher (trajectories as returned by `phi_trajectory`)."""
    if len(axes) != 3:
        raise ValueError(f"axes must hold 3 panels (diagonal, off-diagonal, bias), got {len(axes)}")
    lines = []
    for ax, key, title in zip(axes, ("diagonal", "off_diagonal", "bias"),
                              ("mean diagonal of Phi_t", "mean off-diagonal of Phi_t", "mean bias")):
        for name, trajectory in trajectories.items():
            lines += ax.plot(trajectory["progress"], trajectory[key], label=name)
        label_axes(ax, "training progress (step / total)", title, legend=False)
    if trajectories:
        axes[-1].legend(fontsize=7)
    return lines
