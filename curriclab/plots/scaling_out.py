"""Figures of notebook 08: how ranks shard a plan, what each rank drew, throughput."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator
from torch import Tensor

__all__ = ["rank_samples", "shard_positions", "throughput_bars"]


def shard_positions(ax: Axes, shards: Sequence[Tensor], plan: Tensor, shown: int = 24) -> None:
    """The first `shown` plan positions: the plan's dataset indices (grey line) and the rank
    that draws each position (one colour per rank).

    Args:
        ax: the axes to draw on.
        shards: per rank, the dataset indices it draws; rank r draws plan positions r, r + world,
            r + 2 * world, ... (world = len(shards)).
        plan: [P] the epoch's dataset indices in order, before sharding.
        shown: how many leading plan positions to show; each rank shows shown // world points.
    """
    world = len(shards)
    for rank, shard in enumerate(shards):
        positions = torch.arange(rank, len(plan), world)[: shown // world]
        ax.scatter(positions, shard[: len(positions)], s=60, color=f"C{rank}", label=f"rank {rank}")
    ax.plot(torch.arange(shown), plan[:shown], color="grey", lw=0.8, zorder=0)
    ax.set(xlabel="position in the epoch's plan", ylabel="dataset index")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)


def rank_samples(ax: Axes, reports: Sequence[Mapping[str, Any]], title: str) -> None:
    """Per epoch, the samples each rank drew (stacked bars) against the epoch's plan (a tick).

    Args:
        ax: the axes to draw on.
        reports: one non-empty sequence of rank reports, each with keys "rank" (int), "digest"
            (str, its first 10 characters go in the legend), "epoch_samples" (samples drawn per
            epoch) and "epoch_plan" (the plan's size per epoch; read from the first report).
        title: the axes title.
    """
    epochs = len(reports[0]["epoch_samples"])
    bottom = torch.zeros(epochs)
    for report in reports:
        counts = torch.tensor(report["epoch_samples"], dtype=torch.float)
        ax.bar(range(epochs), counts, bottom=bottom, width=0.5, color=f"C{report['rank']}",
               label=f"rank {report['rank']} (digest {report['digest'][:10]}...)")
        bottom += counts
    ax.scatter(range(epochs), reports[0]["epoch_plan"], marker="_", s=2000, color="k",
               label="the epoch's plan")
    ax.set(title=title, xlabel="epoch", xticks=range(epochs), ylabel="samples drawn",
           ylim=(0, 1.45 * max(reports[0]["epoch_plan"])))
    ax.legend(loc="upper right", fontsize=8)


def throughput_bars(ax: Axes, speed: Mapping[tuple[str, int], float], methods: Sequence[str],
                    world: int) -> None:
    """Samples per second with 1 and with `world` processes, per method, labelled.

    Args:
        ax: the axes to draw on.
        speed: (method, processes) -> training samples per second; must hold (method, 1) and
            (method, world) for every method in `methods`.
        methods: the methods to show, in order along the x axis.
        world: the process count of the second bar of each method (> 1 for distinct bars).
    """
    width = 0.38
    for offset, processes in ((-width / 2, 1), (width / 2, world)):
        values = [speed[method, processes] for method in methods]
        bars = ax.bar([i + offset for i in range(len(methods))], values, width,
                      color=f"C{processes - 1}",
                      label=f"{processes} process{'es' if processes > 1 else ''}")
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set(xticks=range(len(methods)), xticklabels=methods, ylabel="training samples / second",
           ylim=(0, 1.3 * max(speed.values())),
           title="throughput on this 2-core CPU (1 thread per process)")
    ax.legend(loc="upper left")
