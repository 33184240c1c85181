"""Plots every notebook can use: image grids and learning curves."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

__all__ = ["image_grid", "label_axes", "learning_curves"]


def image_grid(
    images: Tensor, labels: Sequence[int] | Tensor | None = None, columns: int = 8,
    titles: Sequence[str] | None = None,
) -> Figure:
    """A grid of single-channel images, one per cell, drawn dark on light (`gray_r`).

    Args:
        images: [N, 1, H, W] or [N, H, W]; any device (copied to the CPU).
        labels: N class labels shown as each image's title; ignored when `titles` is given.
        columns: images per row (>= 1); the last row is padded with blank cells.
        titles: N strings shown as titles instead of `labels`.

    Returns:
        The new figure (ceil(N / columns) rows of `columns` axes, all axes switched off).

    Raises:
        ValueError: `images` is empty, `columns` < 1, or `labels`/`titles` do not have one
            entry per image.
    """
    images = images.detach().cpu()
    if images.ndim == 4:
        images = images[:, 0]
    count = len(images)
    if count == 0:
        raise ValueError("images must not be empty")
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    for name, entries in (("labels", labels), ("titles", titles)):
        if entries is not None and len(entries) != count:
            raise ValueError(f"{name} must have one entry per image ({count}), got {len(entries)}")
    rows = (count + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.2, rows * 1.35), squeeze=False)
    for position, ax in enumerate(axes.flat):
        ax.axis("off")
        if position >= count:
            continue
        ax.imshow(images[position], cmap="gray_r")
        if titles is not None:
            ax.set_title(titles[position], fontsize=8)
        elif labels is not None:
            ax.set_title(str(int(labels[position])), fontsize=9)
    fig.tight_layout()
    return fig


def label_axes(ax: Axes, xlabel: str, ylabel: str, legend: bool = True) -> None:
    """The finish every line plot here shares: axis labels, an optional legend, a light grid.

    Args:
        ax: the axes to finish.
        xlabel: the x-axis label.
        ylabel: the y-axis label.
        legend: draw a legend of the labelled artists; pass False when nothing is labelled, so
            matplotlib neither draws an empty box nor warns.
    """
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if legend:
        ax.legend()
    ax.grid(alpha=0.3)


def learning_curves(
    ax: Axes, curves: dict[str, Sequence[float]], ylabel: str, xlabel: str = "epoch",
    start: int = 1,
) -> list:
    """One line with markers per named curve against epoch number, finished by `label_axes`.

    Args:
        ax: the axes to draw on.
        curves: curve name -> values per epoch (the name is the legend label); may be empty,
            and then no legend is drawn.
        ylabel: the y-axis label.
        xlabel: the x-axis label.
        start: the epoch number of each curve's first value.

    Returns:
        The drawn `Line2D`s, in the order of `curves`.
    """
    lines = []
    for name, values in curves.items():
        (line,) = ax.plot(range(start, start + len(values)), list(values), marker="o", label=name)
        lines.append(line)
    label_axes(ax, xlabel, ylabel, legend=bool(curves))
    return lines
