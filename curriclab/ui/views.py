"""Widget views that run an experiment for the chosen settings and draw it (the sliders of
notebooks 04 and 05)."""

from __future__ import annotations

from dataclasses import replace

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from curriclab.experiments.data_parameters import corrupted_mask, widget_results
from curriclab.experiments.sgd_s_resampling import RunSettings, cached_run
from curriclab.methods.sampling import SGDSSampler
from curriclab.plots.data_parameters import accuracy_curves, sigma_ridges
from curriclab.plots.sampling import COLOURS, error_vs_cost

__all__ = ["data_parameters_view", "sgds_settings_view"]


def sgds_settings_view(prune_fraction: float, reintroduce_fraction: float, transient_epochs: int,
                       *, train_size: int, test_size: int, seed: int,
                       settings: RunSettings) -> Figure:
    """Widget view: draws per epoch (exact, from `SGDSSampler.epoch_sizes`) and test error
    against samples back-propagated for SGD-S with these knobs vs uniform SGD (cached runs)."""
    chosen = replace(settings, prune_fraction=prune_fraction, transient_epochs=transient_epochs,
                     reintroduce_fraction=reintroduce_fraction)
    sizes = SGDSSampler(train_size, transient_epochs, prune_fraction,
                        reintroduce_fraction).epoch_sizes(settings.epochs)
    runs = [cached_run(method, train_size, test_size, seed, chosen)
            for method in ("uniform", "SGD-S")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    left.bar(range(1, len(sizes) + 1), sizes, color=COLOURS["SGD-S"])
    left.axhline(train_size, color="black", lw=1, label="uniform: every sample")
    left.set_xlabel("epoch")
    left.set_ylabel("draws (samples back-propagated)")
    left.legend(loc="lower left")
    error_vs_cost(right, runs, "samples")
    fig.tight_layout()
    return fig


def data_parameters_view(noise: float, lr_instance: float, weight_decay: float, *,
                         train_size: int, epochs: int) -> Figure:
    """Widget view of notebook 05: clean test accuracy of plain training and of instance data
    parameters with these settings (left), and the instance run's sigma of clean vs corrupted
    samples at the start, middle and end, with the detection AUC (right). Runs are cached
    (`curriclab.experiments.data_parameters.widget_results`)."""
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
