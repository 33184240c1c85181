"""Widget views: each runs (or redraws) an experiment for the chosen settings and draws it."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from curriclab.core.stats import spearman
from curriclab.experiments.data_parameters import corrupted_mask, widget_results
from curriclab.experiments.gradient_norm_vs_loss import rolling_by_rank
from curriclab.experiments.harness import Results, Study
from curriclab.experiments.rho_loss import grid_arm_name, mislabelled_curve
from curriclab.experiments.self_paced_learning import explore
from curriclab.experiments.sgd_s_resampling import cached_run
from curriclab.methods.sampling import SGDSSampler
from curriclab.plots import rho_loss as rho_loss_plots
from curriclab.plots.data_parameters import accuracy_curves, sigma_ridges
from curriclab.plots.importance import rolling_band
from curriclab.plots.sampling import COLOURS, error_vs_cost
from curriclab.plots.spl import final_boundary_and_selection

__all__ = [
    "data_parameters_view", "rho_loss_explore_view", "rolling_loss_view", "sgds_settings_view",
    "spl_explore_view",
]


def sgds_settings_view(prune_fraction: float, reintroduce_fraction: float, transient_epochs: int,
                       *, study: Study, arm: str = "SGD-S") -> Figure:
    """Widget view: draws per epoch (exact, from `SGDSSampler.epoch_sizes`) and validation error
    against samples back-propagated for `study`'s arm `arm` (an SGD-S arm) with these knobs,
    next to the study's first arm (runs cached by spec, see `cached_run`).

    Args:
        prune_fraction: SGD-S's share of active samples pruned per epoch.
        reintroduce_fraction: SGD-S's share brought back per epoch.
        transient_epochs: SGD-S's full epochs before pruning starts.
        study: the study run with these knobs on `arm` (its data.train_size must be set).
        arm: the SGD-S arm whose knobs change.

    Returns:
        The figure (the widget shows it; nothing is trained twice for one setting).

    Raises:
        ValueError: `arm` is not an arm of `study`, a knob is out of range, or the study has
            no fixed `data.train_size`.
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


def spl_explore_view(threshold: float, growing_factor: float, regularizer: str,
                     noise_share: float, *, epochs: int) -> Figure:
    """Widget view of notebook 01: self-paced learning on the blobs with structured label noise
    (`explore`, cached) for these knobs; the final boundary and selection beside the selected share
    per epoch, flipped labels highlighted.

    Args:
        threshold: SPL's starting loss threshold.
        growing_factor: the threshold's factor per epoch.
        regularizer: one of `curriclab.methods.spl.REGULARIZERS` ("hard", "linear",
            "logarithmic", "mixture").
        noise_share: share of the blobs' labels flipped (structured noise).
        epochs: training epochs.

    Returns:
        The figure.

    Raises:
        ValueError: an unknown regularizer or an out-of-range knob (checked by
            `curriclab.methods.spl`).
    """
    data, flipped, history = explore(threshold, growing_factor, regularizer, noise_share, epochs)
    return final_boundary_and_selection(history, data.inputs, data.targets, highlight=flipped)


def rolling_loss_view(sort_by: str, window: int, log_loss: bool, *, keys: Mapping[str, Tensor],
                      losses: Tensor) -> Figure:
    """Widget view of notebook 02: the recorded losses sorted by `keys[sort_by]`, as a rolling
    mean ± std over `window` ranks, on a linear or log loss axis; the title gives Spearman's rho
    of the key with the loss. Nothing is trained.

    Args:
        sort_by: the key to rank by, a key of `keys`.
        window: ranks per rolling window (>= 2).
        log_loss: draw the loss axis on a log scale.
        keys: name -> [N] per-sample sort keys.
        losses: [N] the recorded losses.

    Returns:
        The figure.

    Raises:
        ValueError: `sort_by` is not a key of `keys` (and as `rolling_by_rank` and
            `spearman` for a bad window or mismatched lengths).
    """
    if sort_by not in keys:
        raise ValueError(f"sort_by must be one of {sorted(keys)}, got {sort_by!r}")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    rolling_band(ax, *rolling_by_rank(keys[sort_by], losses, window), xlabel=f"rank by {sort_by}",
                 ylabel=f"loss (rolling mean ± std, window {window})")
    ax.set_yscale("log" if log_loss else "linear")
    ax.set_title(f"Spearman rho ({sort_by}, loss) = {spearman(keys[sort_by], losses):.3f}")
    return fig


def data_parameters_view(noise: float, lr_instance: float, weight_decay: float, *,
                         train_size: int, epochs: int) -> Figure:
    """Widget view of notebook 05: clean test accuracy of plain training and of instance data
    parameters with these settings (left), and the instance run's sigma of clean vs corrupted
    samples at the start, middle and end, with the detection AUC (right). Runs are cached
    (`curriclab.experiments.data_parameters.widget_results`).

    Args:
        noise: share of wrong training labels (in (0, 1): the AUC needs both kinds).
        lr_instance: the instance arm's sigma learning rate.
        weight_decay: the instance arm's weight decay on its sigmas.
        train_size: training samples.
        epochs: training epochs (the ridges show epochs 0, epochs // 2 and epochs).

    Returns:
        The figure.
    """
    results = widget_results(noise, lr_instance, weight_decay, train_size=train_size,
                             epochs=epochs)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4), width_ratios=(1.25, 1))
    accuracy_curves(left, results)
    left.set_title(f"{noise:.0%} noise, lr sigma {lr_instance}, weight decay {weight_decay}")
    sigma = results.artifacts["instance", 0]["sample_sigma"]
    sigma_ridges(right, sigma, corrupted_mask(results), [0, epochs // 2, epochs])
    auc = next(r["sigma_auc"] for r in results.finals if r["arm"] == "instance")
    right.set_title(f"sigma detects wrong labels with AUC {auc:.3f}")
    fig.tight_layout()
    return fig


def rho_loss_explore_view(grid: Mapping[float, Results], noise: float, ratio: int,
                          method: str) -> Figure:
    """Widget view of notebook 10: at this `noise` and n_B / k, the validation accuracy of `method`
    against uniform training (left) and the share of its trained samples that are mislabelled
    (right).

    Args:
        grid: per noise level, the record of `selection_grid_study` runs.
        noise: the noise level, a key of `grid`.
        ratio: the n_B / k of the runs.
        method: one of `GRID_METHODS`.

    Returns:
        The figure (it only draws the record: nothing is trained).

    Raises:
        ValueError: no runs for this noise, ratio and method.
    """
    if noise not in grid:
        raise ValueError(f"noise must be one of {sorted(grid)}, got {noise}")
    results = grid[noise]
    name = grid_arm_name(method, ratio)
    if name not in {arm.name for arm in results.study.arms}:
        raise ValueError(f"no runs of {method!r} at n_B/k={ratio}")
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    rho_loss_plots.accuracy_curves(left, results, arms=["uniform", name])
    left.set_title(f"{noise:.0%} noise: {method} (k of n_B = k x {ratio}) vs uniform")
    curves = {name: mislabelled_curve(results, name), "uniform": mislabelled_curve(results,
                                                                                   "uniform")}
    rho_loss_plots.mislabelled_lines(right, curves, noise)
    share = float(curves[name][-1])
    right.set_title(f"mislabelled share of the chosen samples (last steps: "
                    f"{share:.0%})" if math.isfinite(share) else "mislabelled share")
    figure.tight_layout()
    return figure
