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
    (log y).

    Drawn on `ax` for p_y in [0.001, 0.999], y on a log scale, with a legend.

    Args:
        ax: the axes to draw on.
        scales: the diagonal a of Phi = a I, one curve each (a > 0; 1.0 is labelled "Phi = I").
        points: values of p_y per curve (>= 2).

    Returns:
        The lines: cross-entropy first, then one per entry of `scales`, in order.
    """
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
    arrows.

    Drawn on `ax` in data coordinates (x from -0.6, y in [-0.6, 1.1]) with the axis switched
    off; the caption's math text is rendered when the figure is drawn.

    Args:
        ax: the axes to draw on (use a fresh, linear-scale one).
        steps: unrolled SGD steps shown before w_T, >= 1.

    Returns:
        Every text and annotation drawn (boxes, arrows, their labels, the two captions).

    Raises:
        ValueError: `steps` < 1.
    """
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
    """One heatmap per Phi_t (diagonal and off-diagonal on one symmetric colour scale around 0).

    The panels are added to `fig` in one row, with one colour bar (red > 0, blue < 0); with no
    Phi, a single axes reads "no Phi_t recorded".

    Args:
        fig: the (empty) figure to draw in.
        phis: the [C, C] matrices (often Phi_t - I, so that 0 is "as cross-entropy").
        titles: one panel title per matrix.

    Returns:
        One `AxesImage` per matrix, in order ([] without matrices).

    Raises:
        ValueError: `phis` and `titles` differ in length.
    """
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
    """Dev minibatch error against student step, one line per name (x, y pairs).

    Args:
        ax: the axes to draw on.
        curves: {legend label: (student steps, dev errors)}, the two sequences of equal length;
            errors as the caller measured them (fractions in [0, 1] or %).

    Returns:
        One line per entry of `curves`, in order.
    """
    lines = []
    for name, (steps, errors) in curves.items():
        lines += ax.plot(steps, errors, label=name)
    label_axes(ax, "student SGD step", "dev error", legend=bool(curves))
    return lines


def error_dots(ax: Axes, errors: dict[str, Sequence[float]],
               reference: dict[str, float] | None = None) -> list:
    """Each arm's test errors (one dot per seed, a bar for the mean), plus optional reference
    lines.

    Args:
        ax: the axes to draw on; one x position per arm, in the order of `errors`.
        errors: {arm name: its test errors per seed, fractions in [0, 1] (drawn in %)}; an arm
            without errors gets an empty scatter and no mean bar.
        reference: {label: an error already in %} drawn as dotted horizontal lines (e.g. a
            paper's numbers), or None.

    Returns:
        Per arm its scatter then its mean line (when it has errors); then per reference its
        line and its label text.
    """
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
    one heatmap over (a, c) per bias b, on one colour scale, each cell printed.

    Args:
        axes: one axes per distinct bias, in ascending order of b (rows a, columns c).
        table: one row per static Phi with columns "a", "c", "b" and "validation error %" (e.g.
            `static_grid_table`); (a, c, b) unique.
        reference: cross-entropy's validation error in %, named in each title.

    Returns:
        One `AxesImage` per bias, in ascending order of b.

    Raises:
        ValueError: `table` is empty, an (a, c, b) appears twice, or `axes` does not hold one
            panel per bias.
    """
    if table.empty:
        raise ValueError("table must hold at least one static Phi")
    repeated = table.duplicated(["a", "c", "b"])
    if repeated.any():
        first = table[repeated].iloc[0]
        raise ValueError(f"table must hold each (a, c, b) once; (a={first['a']:g}, "
                         f"c={first['c']:g}, b={first['b']:g}) appears more than once")
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
    tuning grid, one group of bars per kind, the chosen one outlined; dotted lines for
    `references`.

    The y-axis spans 0.9 x the lowest to 1.05 x the highest error drawn.

    Args:
        ax: the axes to draw on; one tick per teacher kind, in order of first appearance.
        table: one row per (teacher kind, optimiser, lr) with columns "teacher", "optimizer",
            "teacher lr" (float), "validation error %" and "chosen" (bool), as `tune_teachers`
            returns in `.rows`.
        references: {label: a validation error in %} (e.g. cross-entropy's), dotted lines.

    Returns:
        One `BarContainer` per (optimiser, lr) configuration, then one line per reference.
    """
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
    mass; the saturated fraction of the taught minibatches (sigma' < 0.01).

    Args:
        axes: the four axes, in the order above.
        logs: {teacher kind: one `Algorithm1Log` per teacher (e.g. per seed)}; each log's
            `metric`, `dev_error`, `saturated` and `phi["row_sum"]`, `phi["off_diagonal_mass"]`
            hold one entry per teacher step.

    Returns:
        Five lines per log (metric, dev error, row sum, off-diagonal mass, saturated share),
        logs in order.

    Raises:
        ValueError: `axes` does not hold 4 panels.
    """
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

    Args:
        logs: {teacher name: its `Algorithm1Log`}, whose `matrices` ([C, C] each), `metric`,
            `dev_error`, `saturated` and `phi["row_sum"]` hold one entry per teacher step.
        teacher: a key of `logs`.
        step: the teacher step, in [0, len(logs[teacher].matrices)).

    Returns:
        A new figure with one `phi_heatmaps` panel.

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
