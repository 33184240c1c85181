"""Notebook 10's study: the mislabelled-share observer (hand counts), the compute conversion, the
cached irreducible-loss model (equal to a direct call, RNG untouched), the arms (selection by brute
force, costs in the final rows) and the costs to a target (hand-built records)."""

import math

import pytest
import torch

from curriclab.core.data import make_loader
from curriclab.core.models import MLP
from curriclab.core.training import cross_entropy_per_sample, seed_everything
from curriclab.experiments.harness import (
    DataSpec,
    Results,
    Study,
    build_model,
    cost_to_target,
    load_splits,
    paired_costs,
    run_arm,
)
from curriclab.experiments.rho_loss import (
    GRID_METHODS,
    MislabelledShare,
    cost_tables,
    equal_compute_steps,
    grid_arm_name,
    irreducible_model,
    mislabelled_curve,
    passes_to_target,
    per_seed_costs,
    rho_loss_study,
    selection_cost,
    selection_grid_study,
)
from curriclab.methods.irreducible_loss import irreducible_losses

TINY = dict(train_size=400, validation_size=200, holdout_size=200, test_size=200, k=8,
            candidates=40, steps=12, hidden=(16,), eval_every=4, il_epochs=2, il_hidden=(16,))


def test_observer_counts_mislabelled_samples_by_dataset_index():
    corrupted = torch.tensor([False, True, True, False, False])
    observer = MislabelledShare(corrupted)
    for index in ([0, 1, 2], [3, 4], [2, 1]):
        assert observer.objective(torch.tensor(index), torch.zeros(len(index))) is None
    assert observer.trained == [3, 2, 2] and observer.mislabelled == [2, 0, 2]
    assert torch.allclose(observer.per_step(), torch.tensor([2 / 3, 0.0, 1.0], dtype=torch.float64))
    assert observer.overall() == 4 / 7
    assert math.isnan(MislabelledShare(corrupted).overall())
    with pytest.raises(ValueError, match="index"):
        observer.objective(torch.tensor([5]), torch.zeros(1))
    with pytest.raises(ValueError, match="corrupted"):
        MislabelledShare(torch.tensor([0, 1]))


def test_observer_state_round_trips_and_refuses_bad_state():
    observer = MislabelledShare(torch.tensor([True, False]))
    observer.objective(torch.tensor([0, 1]), torch.zeros(2))
    state = observer.state_dict()
    other = MislabelledShare(torch.tensor([True, False]))
    other.load_state_dict(state)
    assert other.trained == [2] and other.mislabelled == [1]
    bad = {"trained": torch.tensor([1]), "mislabelled": torch.tensor([2])}
    for wrong, match in ((bad, "mislabelled"), ({"trained": state["trained"]}, "keys"),
                         ({**state, "trained": state["trained"].float()}, "trained")):
        with pytest.raises(ValueError, match=match):
            other.load_state_dict(wrong)
    assert other.trained == [2]  # unchanged after a refusal


def test_compute_conversion_by_hand():
    assert selection_cost(32, 320) == pytest.approx(32 + 320 / 3)
    assert selection_cost(32, 320, forward_cost=0.5) == 192
    assert equal_compute_steps(600, 32, 320) == 2600  # 600 * (32 + 106.67) / 32
    assert equal_compute_steps(10, 8, 8, forward_cost=0.0) == 10
    for args in ((0, 32), (33, 32)):
        with pytest.raises(ValueError, match="k"):
            selection_cost(*args)
    with pytest.raises(ValueError, match="forward_cost"):
        selection_cost(1, 2, forward_cost=2.0)
    with pytest.raises(ValueError, match="steps"):
        equal_compute_steps(0, 1, 2)


def test_study_arms_share_the_step_budget_and_the_equal_compute_arm_gets_more():
    study = rho_loss_study("mnist", 0.1, lrs={"top-loss": 3e-3}, **TINY)
    assert [a.name for a in study.arms] == ["uniform", "uniform, equal compute", "top-loss",
                                            "RHO-LOSS"]
    specs = {a.name: study.train_spec(a) for a in study.arms}
    assert specs["uniform"].batch_size == 8 and specs["top-loss"].batch_size == 40
    assert specs["uniform, equal compute"].steps == equal_compute_steps(12, 8, 40)
    assert specs["top-loss"].lr == 3e-3 and specs["RHO-LOSS"].lr == 1e-3
    assert study.data.label_noise == 0.1 and study.data.holdout_size == 200
    restored = Study.from_dict(study.to_dict())  # saved as JSON: tuples become lists
    assert [a.name for a in restored.arms] == [a.name for a in study.arms]


def test_grid_study_has_every_method_at_every_ratio_with_the_arms_lrs():
    base = rho_loss_study("mnist", 0.0, lrs={"RHO-LOSS": 3e-3, "uniform": 3e-4}, **TINY)
    grid = selection_grid_study(base, (2, 5), k=8, steps=6)
    names = [a.name for a in grid.arms]
    assert names == ["uniform"] + [grid_arm_name(m, r) for r in (2, 5) for m in GRID_METHODS]
    rho = grid.arm(grid_arm_name("rho_loss", 5))
    assert grid.train_spec(rho).batch_size == 40 and grid.train_spec(rho).lr == 3e-3
    assert grid.train_spec(grid.arm(grid_arm_name("uniform_selection", 2))).lr == 3e-4
    assert rho.params["il_epochs"] == 2 and grid.seeds == (0,)
    with pytest.raises(ValueError, match="ratios"):
        selection_grid_study(base, (), k=8, steps=6)


@pytest.mark.usefixtures("mnist_train", "one_thread")
def test_irreducible_model_is_a_cached_direct_call_that_leaves_the_rng_alone():
    data = DataSpec(train_size=300, validation_size=100, holdout_size=150, test_size=100,
                    label_noise=0.2)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = irreducible_model(data, 4, (16,), 2, 1e-3, 32)
    assert torch.equal(torch.get_rng_state(), state)
    assert irreducible_model(data, 4, (16,), 2, 1e-3, 32) is first  # cached
    splits = load_splits(data)
    torch.manual_seed(4)
    model = MLP(784, (16,), 10)
    reference = irreducible_losses(model, splits.holdout, splits.train,
                                   torch.optim.AdamW(model.parameters(), lr=1e-3), epochs=2,
                                   batch_size=32, seed=4)
    assert torch.equal(first.losses, reference.losses)
    assert first.steps == reference.steps == 2 * math.ceil(150 / 32)
    with pytest.raises(ValueError, match="holdout"):
        irreducible_model(DataSpec(train_size=300, validation_size=100, test_size=100), 0)


@pytest.mark.usefixtures("mnist_train", "one_thread")
def test_rho_arm_trains_on_the_top_reducible_losses_and_bills_its_model():
    study = rho_loss_study("mnist", 0.3, **{**TINY, "steps": 3})
    arm = study.arm("RHO-LOSS")
    _, final, artifacts = run_arm(study, arm, 0)
    il = irreducible_model(study.data, 0, (16,), 2, 1e-3, 128)
    assert final["extra_seconds"] == il.seconds
    assert final["extra_samples"] == final["il_backpropagated"] == il.samples_backpropagated
    assert final["il_forwarded"] == il.samples_backpropagated + 400
    assert final["steps"] == 3 and final["samples"] == 24 and final["forwarded"] == 120
    history = artifacts["mislabelled_per_step"]
    assert len(history) == 3 and final["selects"] == 1.0
    assert final["selected_mislabelled"] == pytest.approx(float(history.mean()))


@pytest.mark.usefixtures("mnist_train", "one_thread")
def test_top_loss_arm_chooses_the_highest_losses_of_the_first_candidate_batch():
    study = rho_loss_study("mnist", 0.3, **{**TINY, "steps": 1})
    arm = study.arm("top-loss")
    _, final, artifacts = run_arm(study, arm, 5)
    assert final["steps"] == 1 and final["samples"] == 8
    # brute force: replay the run's first candidate batch on the same initial model
    splits = load_splits(study.data)
    seed_everything(5)
    model = build_model(study.model, splits)
    loader = make_loader(splits.train, 40, shuffle=True,
                         generator=torch.Generator().manual_seed(5))
    index, x, y = next(iter(loader))
    with torch.no_grad():
        losses = cross_entropy_per_sample(model(x), y)
    top = index[torch.argsort(losses, descending=True, stable=True)[:8]]
    expected = float(splits.corrupted[top].float().mean())
    assert float(artifacts["mislabelled_per_step"][0]) == pytest.approx(expected)


def _record(curves, finals):
    return Results(rho_loss_study("mnist", 0.1, **TINY), curves, finals, {})


def test_passes_to_target_adds_candidate_forwards_and_the_model_bill_by_hand():
    curves = [
        {"arm": "uniform", "seed": 0, "step": 10, "samples": 80, "forwarded": 80,
         "seconds": 1.0, "validation_accuracy": 0.5},
        {"arm": "uniform", "seed": 0, "step": 20, "samples": 160, "forwarded": 160,
         "seconds": 2.0, "validation_accuracy": 0.9},
        {"arm": "RHO-LOSS", "seed": 0, "step": 10, "samples": 80, "forwarded": 400,
         "seconds": 1.5, "validation_accuracy": 0.92},
        {"arm": "top-loss", "seed": 0, "step": 10, "samples": 80, "forwarded": 400,
         "seconds": 1.5, "validation_accuracy": 0.3},
    ]
    finals = [{"arm": "uniform", "seed": 0, "selects": 0.0},
              {"arm": "RHO-LOSS", "seed": 0, "selects": 1.0, "il_backpropagated": 300.0,
               "il_forwarded": 700.0, "extra_seconds": 0.25, "extra_samples": 300.0},
              {"arm": "top-loss", "seed": 0, "selects": 1.0}]
    costs = passes_to_target(_record(curves, finals), 0.8, forward_cost=0.25)
    by_arm = dict(zip(costs["arm"], costs["cost"]))
    assert by_arm["uniform"] == 160
    assert by_arm["RHO-LOSS"] == 80 + 0.25 * 400 + 300 + 0.25 * 400
    assert by_arm["top-loss"] == math.inf and not costs["reached"].iloc[2]


def test_cost_tables_are_paired_costs_of_each_measure():
    curves, finals = [], []
    for seed, (fast, slow) in enumerate(((10, 20), (10, 30), (20, 30))):
        for arm, step in (("uniform", slow), ("RHO-LOSS", fast)):
            curves.append({"arm": arm, "seed": seed, "step": step, "samples": 8 * step,
                           "forwarded": 8 * step * (5 if arm == "RHO-LOSS" else 1),
                           "seconds": step / 10, "validation_accuracy": 0.9})
            finals.append({"arm": arm, "seed": seed, "selects": float(arm == "RHO-LOSS"),
                           "extra_seconds": 0.0, "extra_samples": 0.0})
    record = _record(curves, finals)
    table = cost_tables(record, 0.8)
    steps = table[(table["cost"] == "steps") & (table["arm"] == "RHO-LOSS")].iloc[0]
    reference = paired_costs(cost_to_target(record, 0.8, "steps"), "uniform")
    assert steps["difference"] == pytest.approx(reference["difference"].iloc[1])
    assert steps["difference"] == pytest.approx((-10 - 20 - 10) / 3)
    assert set(table["cost"]) == {"steps", "forwarded", "passes", "seconds"}


def test_mislabelled_curve_is_a_trailing_mean_over_seeds():
    record = _record([], [])
    record.artifacts = {
        ("RHO-LOSS", 0): {"mislabelled_per_step": torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0],
                                                               dtype=torch.float64)},
        ("RHO-LOSS", 1): {"mislabelled_per_step": torch.tensor([1.0, 1.0, 0.0, 0.0],
                                                               dtype=torch.float64)},
    }
    curve = mislabelled_curve(record, "RHO-LOSS", window=2)
    mean = [0.5, 1.0, 0.0, 0.5]  # seeds averaged, truncated to 4 steps
    expected = [mean[0]] + [(mean[i - 1] + mean[i]) / 2 for i in range(1, 4)]
    assert torch.allclose(curve, torch.tensor(expected, dtype=torch.float64))
    with pytest.raises(ValueError, match="history"):
        mislabelled_curve(record, "uniform")
    with pytest.raises(ValueError, match="window"):
        mislabelled_curve(record, "RHO-LOSS", window=0)


def test_per_seed_costs_collects_every_measure_of_a_run():
    curves = [{"arm": "uniform", "seed": 0, "step": 5, "samples": 40, "forwarded": 40,
               "seconds": 0.5, "validation_accuracy": 0.9}]
    finals = [{"arm": "uniform", "seed": 0, "selects": 0.0, "test_accuracy": 0.88,
               "selected_mislabelled": 0.1, "extra_seconds": 0.0, "extra_samples": 0.0}]
    row = per_seed_costs(_record(curves, finals), 0.85).iloc[0]
    assert (row["steps"], row["forwarded"], row["passes"], row["seconds"]) == (5, 40, 40, 0.5)
    assert (row["test_accuracy"], row["mislabelled"]) == (0.88, 0.1)
