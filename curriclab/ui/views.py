"""Widget views that run an experiment for the chosen settings and draw it (04's slider)."""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from curriclab.experiments.harness import Study
from curriclab.experiments.sgd_s_resampling import cached_run
from curriclab.methods.sampling import SGDSSampler
from curriclab.plots.sampling import COLOURS, error_vs_cost

__all__ = ["sgds_settings_view"]


def sgds_settings_view(prune_fraction: float, reintroduce_fraction: float, transient_epochs: int,
                       *, study: Study, arm: str = "SGD-S") -> Figure:
    """Widget view: draws per epoch (exact, from `SGDSSampler.epoch_sizes`) and validation error
    against samples back-propagated for `study`'s arm `arm` (an SGD-S arm) with these knobs,
    next to the study's first arm (runs cached by spec, see `cached_run`).

    Returns:
        The figure (the widget shows it; nothing is trained twice for one setting).

    Raises:
        ValueError: `arm` is not an arm of `study`, or a knob is out of range.
    """
    chosen = study.arm(arm)
    knobs = {"prune_fraction": prune_fraction, "reintroduce_fraction": reintroduce_fraction,
             "transient_epochs": transient_epochs}
    arms = tuple(dataclasses.replace(a, params={**a.params, **knobs}) if a.name == arm else a
                 for a in study.arms)
    results = cached_run(study.replace(arms=arms))
    train_size = study.data.train_size
    if train_size is None:
        raise ValueError("the widget's study needs a fixed data.train_size")
    epochs = study.train_spec(chosen).epochs
    sizes = SGDSSampler(train_size, transient_epochs, prune_fraction,
                        reintroduce_fraction).epoch_sizes(epochs)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    left.bar(range(1, len(sizes) + 1), sizes, color=COLOURS.get(arm, "tab:orange"),
             label=f"{arm}: draws")
    left.axhline(train_size, color="black", lw=1, label="uniform: every sample")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("epoch")
    left.set_ylabel("draws (samples back-propagated)")
    left.legend(loc="upper left", bbox_to_anchor=(0.0, -0.18), ncol=2, fontsize="small")
    error_vs_cost(right, results, "samples", arms=[study.arms[0].name, arm])
    fig.tight_layout()
    return fig
