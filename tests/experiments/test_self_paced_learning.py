"""Notebook 01's studies: the "self_paced" arm (warm-up, pace, refresh, trace) checked against
hand-written loops, the demo and noise studies, their tables, and the one-thread runs."""

import matplotlib

matplotlib.use("Agg")

import dataclasses  # noqa: E402
import math  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from curriclab.core.data import make_loader  # noqa: E402
from curriclab.core.models import LogisticRegression  # noqa: E402
from curriclab.core.training import (  # noqa: E402
    evaluate,
    per_sample_losses,
    seed_everything,
    train_epoch,
)
from curriclab.experiments.harness import Arm, DataSpec, Results, load_splits, run  # noqa: E402
from curriclab.experiments.harness import runner  # noqa: E402
from curriclab.experiments import self_paced_learning as sp  # noqa: E402
from curriclab.methods.spl import SPLLoss, spl_weights, threshold_for_fraction  # noqa: E402
from curriclab.plots.spl import accuracy_bars, final_boundary_and_selection  # noqa: E402

DATA = DataSpec("blobs", train_size=400, validation_size=0, test_size=200, split_seed=1)


def _history(epochs: int, batch_size: int, seed: int = 0, data: DataSpec = DATA,
             lr: float = 1e-3, **params) -> list[sp.SPLEpoch]:
    arm = Arm("spl", "self_paced", {**params, "trace": True})
    study = sp.demo_study(epochs, (seed,), batch_size, lr).replace(data=data, arms=(arm,))
    return sp.demo_histories(study)[seed]["spl"]


def test_with_nothing_selected_the_model_does_not_move():
    history = _history(1, 64, seed=5, threshold=1e-6)
    seed_everything(5)
    initial = LogisticRegression()
    assert history[0].empty_batches == history[0].batches == 7  # 400 samples, batches of 64
    assert history[0].selected == 0
    assert torch.equal(history[0].model.linear.weight, initial.linear.weight)


def test_infinite_lambda_trains_as_the_plain_loop():
    history = _history(3, 32, lr=3e-2, threshold=math.inf)
    assert all(r.selected == 400 and r.empty_batches == 0 for r in history)
    train = load_splits(DATA).train
    seed_everything(0)
    model = LogisticRegression()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    loader = make_loader(train, 32, shuffle=True, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        train_epoch(model, loader, optimizer, progress=False)
    assert torch.allclose(model.linear.weight, history[-1].model.linear.weight, atol=1e-6)
    assert history[-1].train_accuracy == evaluate(model, train).accuracy


def test_the_demo_schedule_matches_a_hand_written_spl_loop():
    history = _history(3, 50, seed=2, threshold=0.3, growing_factor=2.0)
    train = load_splits(DATA).train
    seed_everything(2)
    model = LogisticRegression()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = make_loader(train, 50, shuffle=True, generator=torch.Generator().manual_seed(2))
    spl = SPLLoss(len(train), threshold=0.3, growing_factor=2.0)
    for epoch, record in enumerate(history):
        train_epoch(model, loader, optimizer, methods=[spl], progress=False)
        assert record.threshold == spl.threshold and record.selected == int(spl.selected.sum())
        assert torch.equal(record.weights, spl.weights)
        assert torch.allclose(record.model.linear.weight, model.linear.weight)
        spl.after_epoch(epoch)
    assert [r.threshold for r in history] == pytest.approx([0.3, 0.6, 1.2])


def test_warm_up_trains_on_everything_before_spl_starts():
    history = _history(2, 50, threshold=1e-9, warmup_epochs=1)
    assert history[0].threshold == math.inf and history[0].selected == 400
    assert history[0].empty_batches == 0 and history[0].batches == 8
    assert history[1].threshold == 1e-9 and history[1].empty_batches == history[1].batches
    table = sp.history_table(history)
    assert list(table.index) == [0, 1]
    assert table["empty batches"].tolist() == ["0/8", "8/8"]
    assert table["selected"].tolist() == [400, 0]
    assert sp.outcome(history) == {
        "selected_first_epoch": 400, "empty_epochs": 1, "final_accuracy": history[1].train_accuracy
    }
    with pytest.raises(ValueError, match="warmup_epochs"):
        sp.SelfPacedSchedule(SPLLoss(4), LogisticRegression(), load_splits(DATA).train,
                             warmup_epochs=-1)


def test_a_pace_starts_from_the_fresh_models_losses_and_refresh_keeps_weights_current():
    history = _history(3, 50, seed=3, pace=(0.25, 1.0, 3), refresh=True, reduction="selected")
    train = load_splits(DATA).train
    seed_everything(3)
    initial_losses = per_sample_losses(LogisticRegression(), train)
    assert history[0].threshold == threshold_for_fraction(initial_losses, 0.25)
    for record in history:  # refreshed: the closed form at the epoch's end model
        expected = spl_weights(per_sample_losses(record.model, train), record.threshold)
        assert torch.equal(record.weights, expected.float())
    assert history[-1].selected == 400  # the pace reaches all data in the last epoch


def test_the_arm_collects_the_share_of_flipped_and_clean_samples_still_selected():
    data = dataclasses.replace(DATA, label_noise=0.1, noise_pattern="farthest")
    arm = Arm("spl", "self_paced", {"warmup_epochs": 1, "pace": (0.8, 0.8, 1), "refresh": True})
    study = sp.demo_study(2, (0,), 50, 1e-2).replace(data=data, arms=(arm,))
    results = run(study, progress=False)
    selected = results.artifacts[("spl", 0)]["selected"]
    corrupted = load_splits(data).corrupted
    final = results.finals[0]
    assert final["flipped_selected"] == pytest.approx(float(selected[corrupted].float().mean()))
    assert final["clean_selected"] == pytest.approx(float(selected[~corrupted].float().mean()))
    assert int(selected.sum()) == 320  # the pace keeps 80 %


def test_the_demo_study_reproduces_the_wenig_spl_set_up():
    study = sp.demo_study()
    train, flipped = load_splits(study.data).train, load_splits(study.data).corrupted
    assert len(train) == 10_000 and int(flipped.sum()) == 1
    assert [arm.name for arm in study.arms] == [sp.SOURCE, sp.PACED]
    assert study.train.optimizer == "adam" and study.train.batch_size == 32


def test_noise_studies_tune_each_arm_and_table_the_paired_gaps():
    with pytest.raises(ValueError, match="kind"):
        sp.noise_study("sideways", (0,))
    study = sp.noise_study("structured", (0, 1), epochs=3)
    assert study.data.noise_pattern == "farthest" and study.data.resample_per_seed
    study = study.replace(data=dataclasses.replace(study.data, train_size=400,
                                                   validation_size=200, test_size=200))
    tuned, tuning, results = sp.run_noise_study(study, (1e-2, 5e-2))
    assert len(tuning) == 4 and tuning.groupby("arm")["chosen"].sum().eq(1).all()
    chosen = tuning[tuning["chosen"]].set_index("arm")["validation_accuracy"]
    validation = results.final_values("validation_accuracy")
    for arm, value in chosen.items():   # chosen by the mean over every seed, not the first
        assert value == pytest.approx(sum(validation[arm]) / 2)
    table = sp.noise_table({"structured": results})
    accuracy = results.final_values("test_accuracy")
    spl_row = table.loc[("structured", sp.NOISE_SPL)]
    gaps = [a - b for a, b in zip(accuracy[sp.NOISE_SPL], accuracy["plain"])]
    assert spl_row["difference"] == pytest.approx(100 * sum(gaps) / 2)
    assert spl_row["lr"] == tuned.arm(sp.NOISE_SPL).train["lr"]
    assert table.loc[("structured", "plain"), "flipped selected"] == 1.0
    assert set(sp.headline_numbers({}, table)) == {"demo", "noise"}


def test_the_noise_verdict_is_read_off_the_interval():
    assert sp.noise_verdict(0.5, 3.0) == "SPL wins"
    assert sp.noise_verdict(-3.0, -0.5) == "SPL loses"
    assert sp.noise_verdict(-0.68, 0.15) == "SPL does not help"
    with pytest.raises(ValueError, match="low must not exceed high"):
        sp.noise_verdict(1.0, -1.0)
    text = sp.NOISE_VERDICT.format(structured_verdict="SPL wins", uniform_verdict="SPL loses",
                                   structured="+1", uniform="-1", seeds=5, higher=5, lower=5,
                                   kept="0 %")
    assert text.startswith("- **Structured flips**: SPL wins.") and "SPL loses: -1" in text


def test_summaries_and_their_bars():
    finals = [{"arm": "plain", "seed": s, "test_accuracy": a} for s, a in ((0, 0.9), (1, 0.8))]
    finals += [{"arm": "spl", "seed": 0, "test_accuracy": 0.95, "flipped_selected": 0.0}]
    summary = sp.summarise(Results(sp.demo_study(), [], finals, {}))
    assert summary["plain"] == pytest.approx(
        {"mean_accuracy": 0.85, "min_accuracy": 0.8, "max_accuracy": 0.9, "flipped_selected": 1.0}
    )
    assert summary["spl"]["flipped_selected"] == 0.0
    fig, ax = plt.subplots()
    bars = accuracy_bars(ax, {"a": summary, "b": {"spl": summary["spl"]}})
    assert [bar.get_height() for bar in bars[0]] == pytest.approx([0.85])
    assert [bar.get_height() for bar in bars[1]] == pytest.approx([0.95, 0.95])
    accuracy_bars(ax, {})  # nothing to draw is not an error
    plt.close(fig)
    with pytest.raises(ValueError, match="history"):
        final_boundary_and_selection([], torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))


def test_the_studies_train_on_one_thread_and_restore_the_count(monkeypatch):
    observed = []
    plain_train_epoch = runner.train_epoch

    def observing_train_epoch(*args, **kwargs):
        observed.append(torch.get_num_threads())
        return plain_train_epoch(*args, **kwargs)

    monkeypatch.setattr(runner, "train_epoch", observing_train_epoch)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        history = _history(2, 100)
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert len(history) == 2 and observed == [1, 1]
    assert after == 2
