"""Notebook 11's study module: the reference model and its scores, the curriculum arm (its draws,
budget and charged cost), the equal-cost baseline, and SPL's traced selection."""

import math

import pandas as pd
import pytest
import torch
from scipy.stats import t as student_t

from curriclab.core.training import cross_entropy_per_sample, per_sample_losses
from curriclab.experiments.curricula import (
    REFERENCE_SEED,
    SelectionTrace,
    chosen_rates,
    condition_studies,
    curricula_arms,
    curricula_study,
    WU_FINDINGS,
    condition_label,
    describe_findings,
    describe_gaps,
    gap_text,
    gap_table,
    gap_verdicts,
    headline_numbers,
    reference_model,
    reference_scores,
    takeaways,
    verdict,
    verdict_text,
    wu_findings,
)
from curriclab.experiments.harness import (
    ARM_METHODS,
    Arm,
    ArmContext,
    Results,
    Study,
    build_model,
    load_splits,
    run_arm,
)
from curriclab.methods.curriculum import available_count, curriculum_order, pacing_fraction
from curriclab.methods.spl import SPLLoss


def _study(**changes):
    study = curricula_study("test", steps=12, train_size=300, validation_size=100, test_size=200,
                            hidden=(16,), batch_size=20, seeds=(0, 1), eval_every=4)
    return study.replace(**changes) if changes else study


def _context(study, arm, seed=0):
    splits = load_splits(study.data)
    torch.manual_seed(seed)
    model = build_model(study.model, splits)
    return ArmContext(study, arm, seed, study.train_spec(arm), splits, model,
                      torch.Generator().manual_seed(seed))


def test_reference_scores_are_the_losses_of_a_model_trained_apart_from_the_caller_rng():
    study = _study()
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    model, seconds = reference_model(study.data, study.model, study.train, 7)
    assert torch.equal(torch.rand(3), expected_next), "the caller's RNG must not move"
    assert seconds > 0 and not model.training
    again, _ = reference_model(study.data, study.model, study.train, 7)
    assert again is model, "cached per arguments"
    train = load_splits(study.data).train
    losses = reference_scores(study.data, study.model, study.train, 7, "loss")
    with torch.no_grad():
        by_hand = cross_entropy_per_sample(model(train.inputs), train.targets).double()
        probabilities = torch.softmax(model(train.inputs), 1).double()
    assert torch.allclose(losses, by_hand, atol=1e-5)
    onehot = torch.nn.functional.one_hot(train.targets, probabilities.shape[1]).double()
    el2n = reference_scores(study.data, study.model, study.train, 7, "el2n")
    assert torch.allclose(el2n, (probabilities - onehot).norm(dim=1), atol=1e-5)
    other, _ = reference_model(study.data, study.model, study.train, 7, seed=REFERENCE_SEED + 1)
    assert not torch.equal(next(other.parameters()), next(model.parameters()))


def test_a_reference_model_trained_longer_fits_its_training_split_better():
    study = _study()
    short = reference_scores(study.data, study.model, study.train, 2).mean()
    longer = reference_scores(study.data, study.model, study.train, 60).mean()
    assert longer < short


def test_the_curriculum_arm_draws_from_the_easiest_prefix_of_the_reference_scores():
    study = _study()
    arm = study.arm("curriculum")
    setup = ARM_METHODS["curriculum"](_context(study, arm), **arm.params)
    sampler = setup.sampler
    scores = reference_scores(study.data, study.model, study.train, arm.params["reference_steps"])
    easy = curriculum_order(scores, "easy")
    for step in (0, 5, 11):
        count = available_count(pacing_fraction("linear", step, 12, start=0.2, full_at=0.8), 300)
        batch = sampler.plan_of_step(step)
        assert set(batch.tolist()) <= set(easy[:count].tolist())
        assert len(set(batch.tolist())) == 20
    assert sampler.total_steps == 12 and sampler.batch_size == 20
    reference_steps = arm.params["reference_steps"]
    assert setup.cost["samples"] == reference_steps * 20 + 300
    assert setup.cost["seconds"] > 0


def test_the_anti_curriculum_draws_from_the_hardest_and_the_random_one_costs_nothing():
    study = _study()
    hard = study.arm("anti-curriculum")
    sampler = ARM_METHODS["curriculum"](_context(study, hard), **hard.params).sampler
    scores = reference_scores(study.data, study.model, study.train, hard.params["reference_steps"])
    hardest = set(torch.argsort(scores, descending=True)[:60].tolist())
    assert set(sampler.plan_of_step(0).tolist()) <= hardest
    random_arm = study.arm("random curriculum")
    setup = ARM_METHODS["curriculum"](_context(study, random_arm), **random_arm.params)
    assert setup.cost == {}, "a random order reads no score, so it pays for no reference model"
    first = setup.sampler.order[:60]
    assert not set(first.tolist()) <= hardest and not set(first.tolist()) <= set(
        torch.argsort(scores)[:60].tolist())


def test_the_self_paced_arm_starts_from_the_fresh_models_losses_and_updates_them():
    study = _study()
    arm = study.arm("self-paced curriculum")
    context = _context(study, arm)
    setup = ARM_METHODS["curriculum"](context, **arm.params)
    assert torch.allclose(setup.sampler.scores,
                          per_sample_losses(context.model, context.train).double())
    assert setup.sampler.update_scores and setup.cost == {"samples": 300.0}


def test_a_run_trains_exactly_the_budget_and_charges_the_scoring_cost():
    study = _study()
    _, final, artifacts = run_arm(study, study.arm("curriculum"), 0)
    assert final["steps"] == 12 and final["samples"] == 12 * 20
    assert final["extra_samples"] == 40 * 20 + 300
    assert artifacts["order"].shape == (300,)
    _, standard, _ = run_arm(study, study.arm("standard"), 0)
    assert standard["steps"] == 12 and standard["extra_samples"] == 0


def test_the_arms_and_the_equal_cost_baseline():
    arms = curricula_arms(pacing="root", start=0.3, full_at=0.5, reference_steps=9,
                          extra_standard_steps=21)
    names = [arm.name for arm in arms]
    assert names == ["standard", "curriculum", "anti-curriculum", "random curriculum",
                     "self-paced curriculum", "standard + scoring budget"]
    orders = [arm.params.get("order") for arm in arms]
    assert orders == [None, "easy", "hard", "random", "easy", None]
    assert all(arm.params["pacing"] == "root" and arm.params["start"] == 0.3
               for arm in arms[1:5])
    assert arms[-1].method == "uniform" and arms[-1].train == {"steps": 21}
    assert [a.name for a in curricula_arms(self_paced=False)][-1] == "random curriculum"


def test_bad_arm_params_are_refused_by_name():
    study = _study()
    for params, word in (({"score": "forgetting"}, "score"), ({"order": "sideways"}, "order"),
                         ({"pacing": "cubic"}, "name"), ({"start": 0.0}, "start")):
        arm = Arm("bad", "curriculum", params)
        with pytest.raises(ValueError, match=word):
            ARM_METHODS["curriculum"](_context(study, arm), **arm.params)
    with pytest.raises(ValueError, match="steps"):
        reference_model(study.data, study.model, study.train, 0)
    with pytest.raises(ValueError, match="measure"):
        reference_scores(study.data, study.model, study.train, 3, "grand")


def test_selection_trace_records_the_share_spl_selects_each_epoch():
    spl = SPLLoss(6, threshold=0.5, growing_factor=2.0)
    trace = SelectionTrace(spl)
    losses = torch.tensor([0.1, 0.4, 0.7, 1.2, 2.5, 0.9])
    spl.objective(torch.arange(6), losses)
    for epoch in range(3):
        trace.after_epoch(epoch)
        spl.after_epoch(epoch)
    # thresholds 0.5, 1.0, 2.0: by hand 2, 4 and 5 of the 6 losses lie below them
    assert trace.fractions == pytest.approx([2 / 6, 4 / 6, 5 / 6])
    assert trace.thresholds == pytest.approx([0.5, 1.0, 2.0])
    restored = SelectionTrace(spl)
    restored.load_state_dict(trace.state_dict())
    assert restored.fractions == trace.fractions
    with pytest.raises(ValueError, match="fractions"):
        restored.load_state_dict({"fractions": [1.5], "thresholds": [1.0]})
    with pytest.raises(ValueError, match="keys"):
        restored.load_state_dict({"fractions": []})
    with pytest.raises(TypeError, match="spl"):
        SelectionTrace("not a loss")


def test_the_traced_spl_arm_selects_the_easiest_prefix_of_its_own_losses():
    study = _study(arms=(Arm("spl", "spl_traced", {"threshold": 2.3, "growing_factor": 1.2}),),
                   train=_study().train.__class__(lr=0.05, batch_size=20, steps=45))
    _, _, artifacts = run_arm(study, study.arms[0], 0)
    fractions = artifacts["fractions"]
    assert len(fractions) == math.ceil(45 / 15) and bool((fractions > 0).all())
    losses, selected = artifacts["losses"], artifacts["selected"]
    share = float(selected.double().mean())
    easy = curriculum_order(losses, "easy")
    assert set(torch.nonzero(selected).flatten().tolist()) == set(
        easy[: round(share * 300)].tolist()), "SPL's selection is a prefix of the easy order"


def test_the_conditions_share_sizes_and_differ_in_budget_and_noise():
    studies = condition_studies(("mnist", "fashion_mnist"), steps=50, limited_steps=8,
                                reference_steps=4, label_noise=0.3, train_size=200)
    assert list(studies) == ["mnist standard", "mnist limited", "mnist noisy",
                             "fashion_mnist standard", "fashion_mnist limited",
                             "fashion_mnist noisy"]
    assert [s.train.steps for s in studies.values()] == [50, 8, 50] * 2
    assert [s.data.label_noise for s in studies.values()] == [0.0, 0.0, 0.3] * 2
    assert studies["fashion_mnist noisy"].data.source == "fashion_mnist"
    limited = studies["mnist limited"]
    assert limited.arm("standard + scoring budget").train == {"steps": 12}
    assert all(arm.params.get("reference_steps", 4) == 4 for arm in limited.arms)
    assert {s.data.train_size for s in studies.values()} == {200}


def _fake_results(name, values):
    study = Study(name, arms=tuple(Arm(arm) for arm in values), seeds=(0, 1, 2))
    finals = [{"arm": arm, "seed": seed, "test_accuracy": value}
              for arm, column in values.items() for seed, value in enumerate(column)]
    return Results(study, [], finals, {})


def test_gap_table_description_and_headlines_match_a_paired_t_interval_by_hand():
    values = {"standard": [0.90, 0.92, 0.91], "curriculum": [0.93, 0.94, 0.92],
              "anti-curriculum": [0.88, 0.90, 0.91], "random curriculum": [0.90, 0.92, 0.91]}
    gaps = gap_table({"toy": _fake_results("toy", values)})
    row = gaps[gaps["arm"] == "curriculum"].iloc[0]
    differences = [100 * (a - b) for a, b in zip(values["curriculum"], values["standard"])]
    mean = sum(differences) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / 2)
    half = student_t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert row["condition"] == "toy" and row["difference"] == pytest.approx(mean)
    assert (row["low"], row["high"]) == pytest.approx((mean - half, mean + half))
    text = describe_gaps(gaps, ["toy"])
    assert text.startswith("- **toy** (standard 91.00 %): curriculum: alike, +2.00 points [")
    assert "curriculum: alike, +2.00 points" in text and "higher in 3 of 3 seeds" in text
    assert "random curriculum: alike, +0.00 points" in text
    with pytest.raises(ValueError, match="no difference"):
        describe_gaps(gaps, ["toy"], arms=["self-paced curriculum"])
    with pytest.raises(ValueError, match="'standard' row"):
        describe_gaps(gaps[gaps["arm"] != "standard"], ["toy"], arms=["curriculum"])
    assert gap_text(gaps, "toy", "curriculum") in text.split(";")[0]
    with pytest.raises(ValueError, match="no difference"):
        gap_text(gaps, "toy", "standard")
    numbers = headline_numbers(gaps)
    assert numbers["toy__curriculum__difference"] == pytest.approx(mean)
    assert numbers["toy__standard__mean"] == pytest.approx(91.0)
    assert "toy__standard__difference" not in numbers


def test_chosen_rates_reads_one_choice_per_arm():
    rows = [{"arm": "a", "lr": 0.1, "chosen": False}, {"arm": "a", "lr": 0.2, "chosen": True},
            {"arm": "b", "lr": 0.1, "chosen": True}, {"arm": "b", "lr": 0.2, "chosen": False}]
    table = chosen_rates({"c": rows})
    assert table.loc["c"].to_dict() == {"a": 0.2, "b": 0.1}
    with pytest.raises(ValueError, match="one chosen"):
        chosen_rates({"c": rows[:1]})
    assert isinstance(table, pd.DataFrame)


def test_verdict_reads_which_side_of_zero_the_interval_lies_on():
    assert verdict(0.1, 2.0) == "better" and verdict(-2.0, -0.1) == "worse"
    assert verdict(-1.0, 1.0) == "alike" and verdict(0.0, 1.0) == "alike"
    with pytest.raises(ValueError, match="low must not exceed high"):
        verdict(1.0, -1.0)
    with pytest.raises(ValueError, match="finite"):
        verdict(float("nan"), 1.0)


def _three_conditions():
    """Five seeds; the curriculum is surely worse at the standard budget, surely better when
    limited, alike with noise; the other orderings are alike everywhere."""
    base = [0.90, 0.91, 0.92, 0.93, 0.94]
    wobble = [0.004, -0.003, 0.002, -0.004, 0.001]
    shifted = {"standard": -0.02, "limited": 0.03, "noisy": 0.0}
    records = {}
    for kind, shift in shifted.items():
        values = {"standard": base,
                  "curriculum": [b + shift + w for b, w in zip(base, wobble)],
                  "anti-curriculum": [b + w for b, w in zip(base, wobble)],
                  "random curriculum": [b - w for b, w in zip(base, wobble)]}
        records[f"mnist {kind}"] = _fake_results(f"mnist {kind}", values)
    return gap_table(records)


def test_verdicts_and_findings_follow_the_intervals():
    gaps = _three_conditions()
    said = gap_verdicts(gaps).set_index(["condition", "arm"])["verdict"]
    assert said[("mnist standard", "curriculum")] == "worse"
    assert said[("mnist limited", "curriculum")] == "better"
    assert said[("mnist noisy", "curriculum")] == "alike"
    assert pd.isna(said[("mnist noisy", "standard")])
    for (condition, arm), value in said.dropna().items():   # one rule for every row
        row = gaps[(gaps["condition"] == condition) & (gaps["arm"] == arm)].iloc[0]
        assert value == verdict(row["low"], row["high"])
    text = verdict_text(gaps, "mnist standard", "curriculum")
    assert text.startswith("worse, -2.00 points [") and text.endswith("lower in 5 of 5 seeds")
    findings = wu_findings(gaps, ["mnist"])
    assert list(findings["condition"]) == [f"mnist {f.condition}" for f in WU_FINDINGS]
    assert list(findings["reproduced"]) == [False, True, False]
    assert findings["observed"].iloc[0].startswith("curriculum worse, anti-curriculum alike")
    bullets = describe_findings(findings).splitlines()
    assert len(bullets) == 3 and "MNIST limited: **reproduced**" in bullets[1]
    assert "**not reproduced**" in bullets[0] and "**not reproduced**" in bullets[2]
    with pytest.raises(ValueError, match="no difference"):
        wu_findings(gaps, ["fashion_mnist"])


def test_condition_labels_name_the_data_sets_as_prose_does():
    assert condition_label("fashion_mnist limited") == "Fashion-MNIST limited"
    assert condition_label("mnist noisy") == "MNIST noisy"
    assert condition_label("toy") == "toy"


def test_takeaways_name_every_verdict_and_the_count_of_findings_held():
    records = {}
    for kind in ("standard", "limited", "noisy"):
        values = {"standard": [0.90, 0.91, 0.92], "curriculum": [0.93, 0.935, 0.945],
                  "anti-curriculum": [0.90, 0.92, 0.91], "random curriculum": [0.85, 0.86, 0.87]}
        if kind == "limited":
            values["standard + scoring budget"] = [0.91, 0.925, 0.93]
        records[f"mnist {kind}"] = _fake_results(f"mnist {kind}", values)
    gaps = gap_table(records)
    findings = wu_findings(gaps, ["mnist"])
    lines = takeaways(gaps, findings, ["mnist"]).splitlines()
    assert lines[0].startswith("- **Wu et al.'s findings** held in 2 of 3 ")
    assert lines[1] == ("- **Standard budget.** MNIST: curriculum better (+2.67), anti-curriculum "
                        "alike (+0.00), random curriculum worse (-5.00).")
    assert "standard + scoring budget better (+1.17)" in lines[2]
    with pytest.raises(ValueError, match="no difference"):
        takeaways(gaps, findings, ["mnist", "fashion_mnist"])
