"""Notebook 01's runner: train_spl, noisy blobs, warm-up and summaries."""

import matplotlib

matplotlib.use("Agg")

import math

import matplotlib.pyplot as plt
import pytest
import torch

from curriclab.core.data import make_loader, spl_toy_data
from curriclab.core.models import LogisticRegression
from curriclab.core.training import seed_everything, train_epoch
from curriclab.experiments.self_paced_learning import (
    accuracy_by_method,
    history_table,
    noisy_blobs,
    outcome,
    summarise,
    train_spl,
)
from curriclab.plots.spl import accuracy_bars, final_boundary_and_selection


def test_train_spl_with_nothing_selected_leaves_the_model_unchanged():
    data, _ = spl_toy_data(n_per_class=200, seed=0)
    history = train_spl(data, epochs=1, threshold=1e-6, batch_size=64, seed=5)
    seed_everything(5)
    initial = LogisticRegression()
    assert history[0].empty_batches == history[0].batches == 7
    assert history[0].selected == 0
    assert torch.equal(history[0].model.linear.weight, initial.linear.weight)


def test_plain_training_is_spl_with_infinite_lambda():
    data, _ = spl_toy_data(n_per_class=300, seed=1)
    history = train_spl(data, epochs=3, threshold=math.inf, batch_size=32, lr=3e-2, seed=0)
    assert all(r.selected == 600 and r.empty_batches == 0 for r in history)
    seed_everything(0)
    model = LogisticRegression()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    loader = make_loader(data, 32, shuffle=True, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        train_epoch(model, loader, optimizer, progress=False)
    assert torch.allclose(model.linear.weight, history[-1].model.linear.weight, atol=1e-6)
    assert history[-1].train_accuracy > 0.9


def test_noisy_blobs_flip_the_requested_share():
    clean, _ = spl_toy_data(n_per_class=200, n_anomalies=0, seed=6)
    data, flipped = noisy_blobs(0.1, structured=True, n_per_class=200, seed=6)
    assert int(flipped.sum()) == 40 and bool((data.targets[flipped] == 1).all())
    distance = (data.inputs - torch.tensor([3.0, 3.0])).norm(dim=1)
    assert float(distance[flipped].min()) >= float(distance[~flipped].max())  # the farthest points
    data, flipped = noisy_blobs(0.1, structured=False, n_per_class=200, seed=6)
    assert int(flipped.sum()) == 40
    assert torch.equal(data.targets != clean.targets, flipped)
    with pytest.raises(ValueError, match="share"):
        noisy_blobs(1.5, structured=True)


def test_warm_up_trains_on_everything_before_spl_starts():
    data, _ = spl_toy_data(n_per_class=100, seed=7)
    history = train_spl(data, epochs=2, threshold=1e-9, warmup_epochs=1, batch_size=50, seed=0)
    assert history[0].threshold == math.inf and history[0].selected == 200
    assert history[1].threshold == 1e-9 and history[1].empty_batches == history[1].batches
    with pytest.raises(ValueError, match="warmup_epochs"):
        train_spl(data, epochs=2, warmup_epochs=3)
    with pytest.raises(ValueError, match="optimizer"):
        train_spl(data, optimizer="lbfgs")
    table = history_table(history)
    assert list(table.index) == [r.epoch for r in history]
    assert table["empty batches"].tolist() == [f"{r.empty_batches}/{r.batches}" for r in history]
    assert table["selected"].tolist() == [r.selected for r in history]
    assert outcome(history) == {
        "selected_first_epoch": 200, "empty_epochs": 1, "final_accuracy": history[1].train_accuracy
    }


def test_summaries_and_their_bars():
    rows = [
        {"method": "plain", "test_accuracy": a, "flipped_selected": 1.0} for a in (0.9, 0.8)
    ] + [{"method": "spl", "test_accuracy": 0.95, "flipped_selected": 0.0}]
    summary = summarise(rows)
    assert summary["plain"] == pytest.approx(
        {"mean_accuracy": 0.85, "min_accuracy": 0.8, "max_accuracy": 0.9, "flipped_selected": 1.0}
    )
    fig, ax = plt.subplots()
    bars = accuracy_bars(ax, {"a": summary, "b": {"spl": summary["spl"]}})
    assert [bar.get_height() for bar in bars[0]] == pytest.approx([0.85])
    assert [bar.get_height() for bar in bars[1]] == pytest.approx([0.95, 0.95])
    accuracy_bars(ax, {})  # nothing to draw is not an error
    plt.close(fig)
    with pytest.raises(ValueError, match="history"):
        final_boundary_and_selection([], torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))


def test_accuracy_by_method_keeps_the_seed_order():
    rows = [{"method": m, "seed": s, "test_accuracy": 10 * s + i}
            for s in (0, 1, 2) for i, m in enumerate(("plain", "spl"))]
    assert accuracy_by_method(rows) == {"plain": [0, 10, 20], "spl": [1, 11, 21]}
