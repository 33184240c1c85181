"""Plots for loss persistence: percent match per quantile against chance, quantile transitions,
and the widget view that redraws the percent match for any number of quantiles and epoch range."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from torch import Tensor

from curriclab.methods.persistence import chance_percent_match, percent_match

__all__ = ["pair_match_curves", "percent_match_bars", "persistence_view", "seed_match_bars",
           "transition_heatmap"]


def percent_match_bars(
    ax: Axes,
    matches: Mapping[str, Tensor],
    chance: Mapping[str, Tensor] | None = None,
    title: str = "",
    log_scale: bool = False,
    spread: Mapping[str, tuple[Tensor, Tensor]] | None = None,
) -> list:
    """Grouped bars: percent match of each quantile (x) for each named epoch range (one colour
    each).

    `chance[name]` (optional) is drawn as a black dash across that range's bar, so a bar far above
    its dash is persistence, not luck. `spread[name]` (optional) is a (lowest, highest) pair of
    per-quantile values (e.g. over seeds) drawn as an error bar on each bar. Quantile 1 is the
    first quantile (highest losses when the bins were made in descending order).

    Args:
        ax: the axes to draw on; x ticks 1..Q.
        matches: {epoch-range name: [Q] percent matches, in % (0-100), quantile 1 first}; every
            range has the same Q.
        chance: {range name: [Q] (or a single) chance level in %}; names missing from it get no
            dash. None draws no dashes.
        title: the axes' title.
        log_scale: draw the percent match on a logarithmic y-axis (a bar of 0 is then not drawn).
        spread: {range name: ([Q] lowest, [Q] highest) values in %}, drawn as error bars around
            `matches[name]`; None draws none.

    Returns:
        Per range, in order: its `BarContainer`, then its error bars (if in `spread`), then its
        chance dashes (if in `chance`; the last one drawn is labelled "chance").

    Raises:
        ValueError: naming the argument: the ranges of `matches` differ in length, or an entry
            of `spread` or `chance` has another length.
    """
    values_by_name = {name: np.asarray(values, dtype=float).reshape(-1)
                      for name, values in matches.items()}
    lengths = {len(values) for values in values_by_name.values()}
    if len(lengths) > 1:
        raise ValueError(f"matches: every range must have the same number of quantiles, got "
                         f"{sorted(lengths)}")
    drawn: list = []
    dash = None
    count = len(values_by_name)
    width = 0.8 / max(count, 1)
    for slot, (name, values) in enumerate(values_by_name.items()):
        x = np.arange(1, len(values) + 1) + (slot - (count - 1) / 2) * width
        drawn.append(ax.bar(x, values, width=width * 0.95, label=name))
        if spread is not None and name in spread:
            low, high = (np.asarray(v, dtype=float).reshape(-1) for v in spread[name])
            if len(low) != len(values) or len(high) != len(values):
                raise ValueError(f"spread[{name!r}]: (lowest, highest) must each hold "
                                 f"{len(values)} values, got {len(low)} and {len(high)}")
            drawn.append(ax.errorbar(x, values, yerr=[values - low, high - values], fmt="none",
                                     ecolor="0.3", elinewidth=1, capsize=2))
        if chance is not None and name in chance:
            level = np.asarray(chance[name], dtype=float).reshape(-1)
            if len(level) not in (1, len(values)):
                raise ValueError(f"chance[{name!r}] must hold 1 or {len(values)} values, got "
                                 f"{len(level)}")
            dash = ax.hlines(np.broadcast_to(level, x.shape), x - width / 2, x + width / 2,
                             colors="black", lw=1.5)
            drawn.append(dash)
    if dash is not None:
        dash.set_label("chance")
    ax.set_xlabel("loss quantile (1 = highest losses)")
    ax.set_ylabel("percent match across the epoch range")
    if log_scale:
        ax.set_yscale("log")
    if count:
        ax.set_xticks(np.arange(1, lengths.pop() + 1))
        ax.legend(fontsize=8)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return drawn


def transition_heatmap(
    ax: Axes, matrix: Tensor, from_epoch: int, to_epoch: int, vmax: float | None = None
) -> AxesImage:
    """Image of `quantile_transitions`: row i shows where quantile i of `from_epoch` went.

    Give several heatmaps the same `vmax` to share one colour bar (default: this matrix's maximum).

    Args:
        ax: the axes to draw on; ticks label the quantiles 1..Q.
        matrix: [Q, Q] counts or shares (>= 0): entry [i, j] = samples in quantile i at
            `from_epoch` and in quantile j at `to_epoch`.
        from_epoch: the earlier epoch (rows), named in the labels and title.
        to_epoch: the later epoch (columns), named in the labels and title.
        vmax: the top of the colour scale (the bottom is 0); None gives this matrix's maximum.

    Returns:
        The `AxesImage` (pass it to `fig.colorbar`).
    """
    matrix = np.asarray(matrix, dtype=float)
    size = len(matrix)
    vmax = float(matrix.max(initial=0.0)) if vmax is None else vmax
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(vmax, 1e-9))
    ticks = np.arange(size)
    ax.set_xticks(ticks, [str(t + 1) for t in ticks])
    ax.set_yticks(ticks, [str(t + 1) for t in ticks])
    ax.set_xlabel(f"quantile in epoch {to_epoch}")
    ax.set_ylabel(f"quantile in epoch {from_epoch}")
    ax.set_title(f"where epoch-{from_epoch} quantiles go by epoch {to_epoch}")
    return image


def persistence_view(num_quantiles: int, epochs: tuple[int, int], kind: str, log_scale: bool,
                     *, tables: Mapping[str, Mapping[str, Tensor]]) -> Figure:
    """Widget view: the percent match of every quantile over `epochs` for each run, with chance.

    Args:
        num_quantiles: quantiles each epoch's ranking is cut into.
        epochs: (first, last) epoch of the range, 1-based and inclusive.
        kind: a key of `tables` (e.g. "losses" or "end_of_epoch").
        log_scale: draw the percent match on a logarithmic axis.
        tables: tables[kind][run name] is that run's [epochs, N] loss table.

    Returns:
        The figure (one colour per run; black dashes: the exact chance level).

    Raises:
        ValueError: an unknown kind, or what `percent_match` rejects (a bad range or count).
    """
    if kind not in tables:
        raise ValueError(f"kind must be one of {sorted(tables)}, got {kind!r}")
    first, last = epochs
    runs = tables[kind]
    matches = {name: percent_match(table, num_quantiles, first, last)
               for name, table in runs.items()}
    chance = {name: chance_percent_match(table.shape[1], num_quantiles, last - first + 1)
              for name, table in runs.items()}
    fig, ax = plt.subplots(figsize=(10, 3.8))
    percent_match_bars(ax, matches, chance, log_scale=log_scale,
                       title=f"{num_quantiles} quantiles, epochs {first}-{last}")
    plt.close(fig)   # shown once, by whoever displays the returned figure
    return fig


def seed_match_bars(ax: Axes, matches: Mapping[str, Tensor], chance: Mapping[str, Tensor],
                    title: str = "", log_scale: bool = True) -> list:
    """`percent_match_bars` of the mean over seeds, with the lowest and highest seed as error bars.

    Args:
        ax: where to draw.
        matches: per epoch-range name, a [seeds, quantiles] table of percent matches.
        chance: per range name, the chance level of each quantile.
        title, log_scale: as in `percent_match_bars`.

    Returns:
        What `percent_match_bars` drew.
    """
    means = {name: table.mean(0) for name, table in matches.items()}
    spread = {name: (table.min(0).values, table.max(0).values) for name, table in matches.items()}
    return percent_match_bars(ax, means, chance, title, log_scale, spread)


def pair_match_curves(ax: Axes, matches: Mapping[str, Tensor], chance_level: float,
                      title: str = "") -> dict[str, np.ndarray]:
    """Percent match of consecutive-epoch pairs: top quantile, bottom quantile and the mean of the
    others, each the mean over seeds, with a dashed line at the chance level.

    Args:
        ax: where to draw.
        matches: per pair name ("1-2", ...; in order), a [seeds, quantiles] table.
        chance_level: the two-epoch chance level in percent (100 / quantiles).
        title: the axes' title.

    Returns:
        The three curves drawn, by label (one value per pair).
    """
    tables = list(matches.values())
    curves = {"top quantile": np.array([float(t[:, 0].mean()) for t in tables]),
              "bottom quantile": np.array([float(t[:, -1].mean()) for t in tables]),
              "the others (mean)": np.array([float(t[:, 1:-1].mean()) for t in tables])}
    x = np.arange(1, len(tables) + 1)
    for label, values in curves.items():
        ax.plot(x, values, marker="o", label=label)
    ax.axhline(chance_level, color="black", ls="--", lw=1, label="chance")
    ax.set_xticks(x, list(matches))
    ax.set_xlabel("pair of consecutive epochs")
    ax.set_ylabel("percent match of the pair")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return curves
