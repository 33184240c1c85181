"""curriclab.experiments.data_pruning: the scores' runs and costs, the pruned arm, the study's
arms and budgets, and its tables, checked against hand computations on tiny MNIST studies."""

from __future__ import annotations

import math

import pytest
import torch

from curriclab.core.stats import paired_comparison
from curriclab.core.training import seed_everything
from curriclab.experiments import data_pruning as dp
from curriclab.experiments.harness.arms import ARM_METHODS
from curriclab.experiments.harness.results import Results
from curriclab.experiments.harness.runner import build_model, run, run_arm
from curriclab.experiments.harness.spec import DataSpec, ModelSpec, Study, TrainSpec
from curriclab.experiments.harness.splits import load_splits
from curriclab.methods.importance import per_sample_grad_norms_loop
from curriclab.methods.pruning import prune_by_score, random_scores

DATA = DataSpec(source="mnist", train_size=120, validation_size=60, test_size=100)
MODEL = ModelSpec("mlp", (16,))
TRAIN = TrainSpec(lr=0.05, epochs=2, batch_size=32)
SCORING = dp.Scoring(el2n_epochs=1, el2n_runs=2, grand_inits=2, forgetting_runs=2)


@pytest.fixture(autouse=True)
def _data(mnist_train):
    """Needs the MNIST files (skipped with the reason otherwise)."""


def test_scoring_refuses_bad_counts_by_name():
    with pytest.raises(ValueError, match="el2n_runs"):
        dp.Scoring(el2n_runs=0)
    with pytest.raises(TypeError, match="forgetting_epochs"):
        dp.Scoring(forgetting_epochs=1.5)
    assert dp.Scoring(seed=7).seeds(3) == (7, 8, 9)


def test_forgetting_runs_record_the_observer_fractions():
    results = dp.forgetting_runs(DATA, MODEL, TRAIN, (5, 6))
    size = len(load_splits(DATA).train)
    assert [row["samples"] for row in results.finals] == [TRAIN.epochs * size] * 2
    assert "test_accuracy" not in results.finals[0]           # scoring never reads test
    for row, artifacts in zip(results.finals, results.artifacts.values()):
        learned, events = artifacts["learned"], artifacts["forgetting_events"]
        never_forgotten = float((learned & (events == 0)).double().mean())
        assert row["never_forgotten"] == pytest.approx(never_forgotten)
        assert row["never_learned"] == pytest.approx(float((~learned).double().mean()))
        # never-learned samples carry the largest score, the presentations (= epochs)
        assert torch.equal(artifacts["forgetting_scores"][~learned],
                           torch.full_like(artifacts["forgetting_scores"][~learned], TRAIN.epochs))
    summary = dp.forgetting_summary(results)
    every = torch.stack([a["learned"] & (a["forgetting_events"] == 0)
                         for a in results.artifacts.values()]).all(0)
    assert summary["never_forgotten_every_run"] == pytest.approx(float(every.double().mean()))
    assert summary["never_forgotten_every_run"] <= summary["never_forgotten"] + 1e-12


def test_forgetting_summary_needs_forgetting_runs():
    with pytest.raises(ValueError, match="no forgetting run"):
        dp.forgetting_summary(Results(Study("x"), [], [], {}))


def test_random_scores_cost_nothing_and_match_the_seed():
    record = dp.training_scores(DATA, MODEL, TRAIN, "random", SCORING)
    assert torch.equal(record.scores, random_scores(len(load_splits(DATA).train), SCORING.seed))
    assert (record.samples, record.seconds) == (0.0, 0.0)


def test_grand_scores_equal_a_per_sample_loop_over_the_initialisations():
    record = dp.training_scores(DATA, MODEL, TRAIN, "grand", SCORING)
    splits = load_splits(DATA)
    expected = torch.zeros(len(splits.train), dtype=torch.float64)
    for seed in SCORING.seeds(SCORING.grand_inits):
        seed_everything(seed)
        model = build_model(MODEL, splits).eval()
        expected += per_sample_grad_norms_loop(model, splits.train.inputs,
                                               splits.train.targets).double()
    torch.testing.assert_close(record.scores, expected / SCORING.grand_inits, rtol=1e-4, atol=1e-6)
    assert record.samples == SCORING.grand_inits * len(splits.train)


def test_el2n_and_forgetting_costs_count_their_training():
    size = len(load_splits(DATA).train)
    el2n = dp.training_scores(DATA, MODEL, TRAIN, "el2n", SCORING)
    assert el2n.samples == SCORING.el2n_runs * (SCORING.el2n_epochs * size + size)
    assert el2n.scores.shape == (size,)
    assert bool(((el2n.scores >= 0) & (el2n.scores <= 2 ** 0.5)).all())
    forgetting = dp.training_scores(DATA, MODEL, TRAIN, "forgetting", SCORING)
    assert forgetting.samples == SCORING.forgetting_runs * TRAIN.epochs * size
    runs = dp.forgetting_runs(DATA, MODEL, TRAIN, SCORING.seeds(SCORING.forgetting_runs))
    mean = torch.stack([a["forgetting_scores"] for a in runs.artifacts.values()]).mean(0)
    assert torch.equal(forgetting.scores, mean)
    with pytest.raises(ValueError, match="score must be one of"):
        dp.training_scores(DATA, MODEL, TRAIN, "loss", SCORING)


def test_the_study_has_every_arm_and_equal_budgets_per_fraction():
    study = dp.pruning_study("t", DATA, MODEL, TRAIN, fractions=(0.25, 0.5), seeds=(0, 1),
                             scoring=SCORING)
    names = [arm.name for arm in study.arms]
    assert names[0] == "all data" and len(names) == 1 + 2 * (1 + 3 * 2 + 1)
    assert {"random 25%", "EL2N hard 25%", "forgetting easy 50%", "GraNd hard 50%"} <= set(names)
    size = len(load_splits(DATA).train)
    pruned = study.arm("EL2N hard 25%")
    _, final, _ = run_arm(study, pruned, 0)
    record = dp.training_scores(DATA, MODEL, TRAIN, "el2n", SCORING)
    assert final["samples"] == TRAIN.epochs * round(0.25 * size)
    assert (final["extra_samples"], final["extra_seconds"]) == (record.samples, record.seconds)
    _, equal, _ = run_arm(study, study.arm(f"{dp.EQUAL_STEPS} 25%"), 0)
    _, randomly, _ = run_arm(study, study.arm("random 25%"), 0)
    assert equal["steps"] == final["steps"] == randomly["steps"]
    assert randomly["extra_samples"] == 0.0
    with pytest.raises(ValueError, match="fractions"):
        dp.pruning_study("t", DATA, MODEL, TRAIN, fractions=(1.0,))
    with pytest.raises(ValueError, match="validation"):
        dp.pruning_study("t", DataSpec(train_size=100, validation_size=0), MODEL, TRAIN,
                         fractions=(0.5,))


def test_the_pruned_arm_trains_on_the_kept_indices(monkeypatch):
    seen = []
    original = dp._pruned

    def recording(context, **params):
        setup = original(context, **params)
        seen.append(setup.train_indices)
        return setup
    monkeypatch.setitem(ARM_METHODS, "pruned", recording)
    study = dp.pruning_study("t", DATA, MODEL, TRAIN, fractions=(0.5,), scores=("grand",),
                             keeps=("easy",), seeds=(3,), scoring=SCORING, equal_steps=False)
    run_arm(study, study.arm("GraNd easy 50%"), 3)
    record = dp.training_scores(DATA, MODEL, TRAIN, "grand", SCORING)
    expected = prune_by_score(record.scores, 0.5, "easy", torch.Generator().manual_seed(3))
    assert torch.equal(seen[0], expected)
    run_arm(study, study.arm("random 50%"), 3)
    size = len(load_splits(DATA).train)
    assert torch.equal(seen[1], prune_by_score(random_scores(size, 3), 0.5, "hard",
                                               torch.Generator().manual_seed(3)))


def _fake_results(values: dict[str, list[float]], samples: dict[str, float],
                  extra: dict[str, float]) -> Results:
    study = dp.pruning_study("fake", DATA, MODEL, TRAIN, fractions=(0.5,), scores=("el2n",),
                             seeds=(0, 1, 2), scoring=SCORING)
    finals = [{"arm": arm, "seed": seed, "test_accuracy": value, "samples": samples[arm],
               "seconds": samples[arm] / 100, "extra_samples": extra.get(arm, 0.0),
               "extra_seconds": extra.get(arm, 0.0) / 100}
              for arm, column in values.items() for seed, value in enumerate(column)]
    return Results(study, [], finals, {})


def test_pruning_frame_pairs_every_arm_with_random_at_its_fraction():
    values = {"all data": [0.9, 0.91, 0.92], "random 50%": [0.80, 0.82, 0.81],
              "EL2N hard 50%": [0.83, 0.82, 0.85], "EL2N easy 50%": [0.70, 0.75, 0.72],
              f"{dp.EQUAL_STEPS} 50%": [0.84, 0.83, 0.86]}
    results = _fake_results(values, {arm: 100.0 for arm in values}, {})
    frame = dp.pruning_frame(results).set_index("arm")
    for arm in ("EL2N hard 50%", "EL2N easy 50%", f"{dp.EQUAL_STEPS} 50%"):
        comparison = paired_comparison(values[arm], values["random 50%"])
        assert frame.loc[arm, "difference"] == pytest.approx(100 * comparison.difference)
        assert frame.loc[arm, "low"] == pytest.approx(100 * comparison.low)
        assert frame.loc[arm, "high"] == pytest.approx(100 * comparison.high)
    assert frame.loc["EL2N easy 50%", "keep"] == "easy"
    assert math.isnan(frame.loc["random 50%", "difference"])
    assert "all data" not in frame.index
    contrast = dp.keep_contrast(results, "el2n", 0.5)
    assert contrast.difference == pytest.approx(
        paired_comparison(values["EL2N easy 50%"], values["EL2N hard 50%"]).difference)
    with pytest.raises(ValueError, match="no arms"):
        dp.keep_contrast(results, "grand", 0.5)


def test_cost_frame_subtracts_the_scoring_from_the_saving():
    arms = ["all data", "random 50%", "EL2N hard 50%", "EL2N easy 50%", f"{dp.EQUAL_STEPS} 50%"]
    values = {arm: [0.5, 0.6, 0.7] for arm in arms}
    samples = {"all data": 1000.0, "random 50%": 500.0, "EL2N hard 50%": 500.0,
               "EL2N easy 50%": 500.0, f"{dp.EQUAL_STEPS} 50%": 500.0}
    extra = {"EL2N hard 50%": 900.0, "EL2N easy 50%": 900.0}
    costs = dp.cost_frame(_fake_results(values, samples, extra)).set_index("score")
    assert costs.loc["EL2N", "samples saved"] == 500.0
    assert costs.loc["EL2N", "net samples"] == -400.0
    assert costs.loc["random", "net samples"] == 500.0
    assert costs.loc["EL2N", "net seconds"] == pytest.approx(5.0 - 9.0)
    assert dp.EQUAL_STEPS not in costs.index
    with pytest.raises(ValueError, match="baseline"):
        dp.cost_frame(_fake_results(values, samples, extra), baseline="none")


def test_arm_labels():
    assert dp.arm_label("el2n", "hard", 0.3) == "EL2N hard 30%"
    assert dp.arm_label("random", "easy", 0.1) == "random 10%"


def test_a_tiny_study_runs_end_to_end():
    study = dp.pruning_study("t", DATA, MODEL, TRAIN, fractions=(0.5,), scores=("random", "grand"),
                             seeds=(0, 1), scoring=SCORING)
    results = run(study, progress=False)
    frame = dp.pruning_frame(results)
    assert set(frame["score"]) == {"random", "GraNd", dp.EQUAL_STEPS}
    assert len(dp.cost_frame(results)) == 2
