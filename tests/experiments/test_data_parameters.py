"""Notebook 05's study on the harness: class-dependent noise, the history-recording arms and their
detector AUCs (against brute-force pair counts), per-arm tuning on validation (against hand-run
grids, test never read), the last-step reading, the protocol and detector tables, the SparseSGD
demo (hand-computed momentum steps)."""

import dataclasses
import itertools

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from curriclab.core.data import relabel_into_classes
from curriclab.core.stats import paired_comparison
from curriclab.experiments import data_parameters as study
from curriclab.experiments.harness import (
    DataSpec,
    Results,
    load_splits,
    paired_table,
    run,
    run_arm,
)
from curriclab.methods.sparse_sgd import SparseSGD

pytestmark = pytest.mark.usefixtures("mnist_train", "one_thread")  # skips without MNIST


def _tiny(**changes):
    values = dict(train_size=300, validation_size=200, test_size=200, epochs=2, seeds=(0, 1))
    return study.noisy_label_study(**(values | changes))


def _brute_auc(scores, positives):
    pos, neg = scores[positives].tolist(), scores[~positives].tolist()
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_relabel_into_classes_reaches_the_requested_share():
    targets = torch.arange(5).repeat_interleave(100)
    noisy, mask = relabel_into_classes(targets, [1, 3], fraction=0.4, seed=0)
    for label in (1, 3):
        labelled = noisy == label
        assert float((mask & labelled).sum() / labelled.sum()) == pytest.approx(0.4, abs=0.01)
    assert torch.equal(noisy[~mask], targets[~mask])
    assert not torch.isin(targets[mask], torch.tensor([1, 3])).any()
    with pytest.raises(ValueError, match="fraction"):
        relabel_into_classes(targets, [1], fraction=1.0)
    with pytest.raises(ValueError, match="noisy_classes"):
        relabel_into_classes(targets, [7], fraction=0.2)


def test_class_dependent_noise_in_the_splits():
    spec = DataSpec(train_size=1000, validation_size=500, test_size=100, label_noise=0.5,
                    noisy_holdout=True, noise_classes=[3, 8])
    assert spec.noise_classes == (3, 8)  # a list becomes a tuple: the spec stays hashable
    splits = load_splits(spec)
    clean = load_splits(DataSpec(train_size=1000, validation_size=500, test_size=100))
    wrong = splits.train.targets != clean.train.targets
    assert torch.equal(wrong, splits.corrupted)
    for label in (3, 8):
        labelled = splits.train.targets == label
        assert float(wrong[labelled].float().mean()) == pytest.approx(0.5, abs=0.02)
    assert torch.isin(splits.train.targets[wrong], torch.tensor([3, 8])).all()
    moved = splits.validation.targets != clean.validation.targets
    assert torch.isin(splits.validation.targets[moved], torch.tensor([3, 8])).all() and moved.any()
    with pytest.raises(ValueError, match="label_noise"):
        DataSpec(label_noise=1.0, noise_classes=(3,))
    with pytest.raises(ValueError, match="noise_classes"):
        DataSpec(label_noise=0.2, noise_classes=(-1,))


def test_the_study_spec():
    spec = _tiny(arms=("baseline", "instance"))
    assert [arm.name for arm in spec.arms] == ["baseline", "instance"]
    assert spec.select == "best" and spec.track == ("validation", "test")
    assert spec.data.noisy_holdout and spec.data.label_noise == 0.4
    with pytest.raises(ValueError, match="arms"):
        _tiny(arms=("baseline", "both"))


def test_history_arms_record_every_epoch_and_score_the_detectors():
    spec = _tiny(arms=("baseline", "joint")).replace(select="last")
    _curve, final, artifacts = run_arm(spec, spec.arm("joint"), 0)
    sigma, losses = artifacts["sample_sigma"], artifacts["plain_losses"]
    assert sigma.shape == (3, 300) and losses.shape == (2, 300)
    assert artifacts["class_sigma"].shape == (3, 10)
    torch.testing.assert_close(sigma[0], torch.ones(300))  # 0.5 + 0.5 at the start
    corrupted = load_splits(spec.data).corrupted
    assert int(corrupted.sum()) == 120
    assert final["sigma_auc"] == pytest.approx(_brute_auc(sigma[-1], corrupted))
    assert final["loss_auc"] == pytest.approx(_brute_auc(losses[-1], corrupted))
    assert final["selected_loss_auc"] == pytest.approx(final["loss_auc"])  # last = selected
    assert final["sigma_corrupted"] == pytest.approx(float(sigma[-1][corrupted].mean()))
    again = run_arm(spec, spec.arm("joint"), 0)[2]
    assert torch.equal(again["sample_sigma"], sigma)
    _, plain_final, plain = run_arm(spec, spec.arm("baseline"), 0)
    assert plain["sample_sigma"].numel() == 0 and "sigma_auc" not in plain_final


def test_the_recorded_loss_is_the_plain_cross_entropy_of_the_final_model(monkeypatch):
    spec = _tiny(arms=("instance",), epochs=1).replace(select="last")
    models = []
    real = study._History.__init__

    def keep(self, model, train, parameters):
        models.append(model)
        real(self, model, train, parameters)
    monkeypatch.setattr(study._History, "__init__", keep)
    _, _, artifacts = run_arm(spec, spec.arm("instance"), 0)
    train = load_splits(spec.data).train
    with torch.no_grad():
        expected = F.cross_entropy(models[0].eval()(train.inputs), train.targets,
                                   reduction="none")
    torch.testing.assert_close(artifacts["plain_losses"][-1], expected)


def test_tune_arm_params_chooses_each_arms_best_on_validation_without_reading_test(monkeypatch):
    spec = _tiny(arms=("baseline", "instance"), seeds=(0,))
    calls = []

    def recording(study_, arm, seed, read_test=True, **kw):
        calls.append((study_.track, read_test))
        return run_arm(study_, arm, seed, read_test=read_test, **kw)
    monkeypatch.setattr(study, "run_arm", recording)
    grids = {"baseline": ("lr", (0.02, 0.2)), "instance": ("lr_instance", (0.5, 8.0))}
    tuned, rows = study.tune_arm_params(spec, grids, progress=False)
    assert all(track == ("validation",) and not read for track, read in calls)
    assert len(calls) == 4
    for name, (knob, values) in grids.items():
        quiet = spec.replace(track=("validation",))
        by_hand = {}
        for value in values:
            arm = (spec.arm(name).with_train(lr=value) if knob == "lr" else
                   dataclasses.replace(spec.arm(name), params={knob: value}))
            by_hand[value] = run_arm(quiet, arm, 0, read_test=False)[1]["validation_accuracy"]
        best = max(values, key=by_hand.get)
        mine = rows[rows["arm"] == name].set_index("value")
        assert mine["validation_accuracy"].to_dict() == pytest.approx(by_hand)
        assert mine.loc[best, "chosen"] and mine["chosen"].sum() == 1
    assert tuned.arm("baseline").train["lr"] == rows.query("arm == 'baseline' and chosen")[
        "value"].item()
    assert "lr" not in tuned.arm("instance").train
    assert tuned.arm("instance").params["lr_instance"] in (0.5, 8.0)
    with pytest.raises(ValueError, match="at least one"):
        study.tune_arm_params(spec, {"baseline": ("lr", ())}, progress=False)
    with pytest.raises(ValueError, match="no arm"):
        study.tune_arm_params(spec, {"joint": ("lr", (0.1,))}, progress=False)


@pytest.fixture(scope="module")
def tiny_results():
    torch.set_num_threads(1)
    return run(_tiny(arms=("baseline", "instance"), seeds=(0, 1, 2)), progress=False)


def test_at_last_step_reads_the_last_evaluation(tiny_results):
    last = study.at_last_step(tiny_results)
    for row in last.finals:
        end = [r for r in tiny_results.curves if (r["arm"], r["seed"]) == (row["arm"],
                                                                          row["seed"])][-1]
        assert row["test_accuracy"] == end["test_accuracy"]
        assert row["chosen_step"] == row["steps"] == end["step"]
    untracked = Results(tiny_results.study, [{k: v for k, v in r.items() if "test" not in k}
                                             for r in tiny_results.curves],
                        tiny_results.finals, {})
    with pytest.raises(ValueError, match="test"):
        study.at_last_step(untracked)
    no_curve = Results(tiny_results.study, [r for r in tiny_results.curves
                                            if (r["arm"], r["seed"]) != ("instance", 1)],
                       tiny_results.finals, {})
    with pytest.raises(ValueError, match="no curve row for arm 'instance', seed 1"):
        study.at_last_step(no_curve)


def test_protocol_table_stacks_both_readings(tiny_results):
    table = study.protocol_table(tiny_results).set_index(["protocol", "arm"])
    stopped = paired_table(tiny_results, "test_accuracy", "baseline", scale=100).set_index("arm")
    last = paired_table(study.at_last_step(tiny_results), "test_accuracy", "baseline",
                        scale=100).set_index("arm")
    for protocol, expected in (("early-stopped on validation", stopped), ("last epoch", last)):
        assert table.loc[protocol, "mean"].to_dict() == pytest.approx(
            expected["mean"].to_dict())
        assert table.loc[(protocol, "instance"), "low"] == pytest.approx(
            expected.loc["instance", "low"])


def test_gain_verdict_words_the_interval():
    def table(low, high):
        return pd.DataFrame([{"protocol": "p", "arm": "instance", "seeds": 3, "difference":
                              (low + high) / 2, "low": low, "high": high, "higher": 2}])
    assert study.gain_verdict(table(0.5, 2.0), "p").startswith("instance beats baseline: +1.25")
    assert study.gain_verdict(table(-2.0, -0.5), "p").startswith("instance loses to baseline")
    assert study.gain_verdict(table(-1.0, 2.0), "p").startswith("no difference")
    assert "higher in 2 of 3 seeds" in study.gain_verdict(table(-1.0, 2.0), "p")


def test_detector_table_pairs_sigma_with_each_loss(tiny_results):
    table = study.detector_table(tiny_results).set_index("detector")
    sigma = [r["sigma_auc"] for r in sorted(tiny_results.finals, key=lambda r: r["seed"])
             if r["arm"] == "instance"]
    loss = [r["selected_loss_auc"] for r in sorted(tiny_results.finals, key=lambda r: r["seed"])
            if r["arm"] == "baseline"]
    row = table.loc["plain loss, baseline model (early-stopped)"]
    expected = paired_comparison(sigma, loss)
    assert row["mean AUC"] == pytest.approx(sum(loss) / 3)
    assert (row["sigma minus this"], row["low"], row["high"]) == pytest.approx(
        (expected.difference, expected.low, expected.high))
    history = study.detector_auc_history(tiny_results, 0)
    assert all(len(values) == 2 for values in history.values())
    assert history["sigma, instance run"][-1] == pytest.approx(sigma[0])


def test_headline_numbers_come_from_the_tables(tiny_results):
    numbers = study.headline_numbers(tiny_results, _class_like(tiny_results))
    table = study.protocol_table(tiny_results).set_index(["protocol", "arm"])
    assert numbers["gain_last_epoch"] == pytest.approx(table.loc[("last epoch", "instance"),
                                                                 "difference"])
    assert numbers["gain_early_stopped_low"] == pytest.approx(
        table.loc[("early-stopped on validation", "instance"), "low"])
    assert numbers["instance_lr_instance"] == 4.0 and numbers["train_size"] == 300
    assert numbers["sigma_auc"] == pytest.approx(sum(
        r["sigma_auc"] for r in tiny_results.finals if r["arm"] == "instance") / 3)


def _class_like(results):
    """The same runs with the instance arm renamed "class" (the class-noise study's arms)."""
    rename = {"instance": "class"}
    rows = [{**r, "arm": rename.get(r["arm"], r["arm"])} for r in results.finals]
    curves = [{**r, "arm": rename.get(r["arm"], r["arm"])} for r in results.curves]
    arms = tuple(dataclasses.replace(a, name=rename.get(a.name, a.name))
                 for a in results.study.arms)
    return Results(results.study.replace(arms=arms), curves, rows, {})


def test_momentum_steps_by_hand():
    # step 1: buffer = g = 1, p = -0.5; step 2: buffer = 0.9 * 1 + g
    plain = study.momentum_steps(torch.optim.SGD)
    torch.testing.assert_close(plain, torch.tensor([-1.45, -0.95, -0.95, -0.95]))
    sparse = study.momentum_steps(SparseSGD)
    torch.testing.assert_close(sparse, torch.tensor([-1.45, -0.5, -0.5, -0.5]))


def test_widget_results_are_cached_and_use_the_settings():
    first = study.widget_results(0.4, 2.0, 0.01, train_size=200, epochs=1)
    assert study.widget_results(0.4, 2.0, 0.01, train_size=200, epochs=1) is first
    assert [a.name for a in first.study.arms] == ["baseline", "instance"]
    assert first.study.arm("instance").params == {"lr_instance": 2.0,
                                                  "weight_decay_instance": 0.01}
    assert len(first.finals) == 2 and ("instance", 0) in first.artifacts
