"""Notebook 07's runner: the ALA agent and the teacher rule in the student loop, selection and
summary."""

from __future__ import annotations

import math

import pytest
import torch

from curriclab.experiments.adaptive_loss_alignment import (
    StudentRun,
    mismatch_runs,
    register_teacher,
)
from curriclab.experiments.harness import Arm, run, run_arm
from curriclab.methods.ala.agent import AlignmentAgent, TeacherRule
from curriclab.methods.ala.controller import LossController
from curriclab.methods.ala.statistics import LossMatrix
from curriclab.methods.dynamic_loss import dynamic_loss
from curriclab.methods.teacher import LossTeacher
from tests.helpers.ala import TOY_STUDY


def _toy_agent(validation, seed: int, interval: int, model=None, **kwargs) -> AlignmentAgent:
    """An ALA agent over TOY_STUDY's 18 steps, Phi from I with steps of 0.1."""
    model = torch.nn.Linear(2, 2) if model is None else model
    return AlignmentAgent(model, LossMatrix(2, 0.1), LossController(seed=seed), validation, 18,
                          interval, **kwargs)


def test_agent_decides_every_interval_and_keeps_phi_valid():
    study = TOY_STUDY.replace(arms=(Arm("ala", "ala", {"beta": 0.1, "interval": 4,
                                                       "credit": "joint"}),))
    curve, _, artifacts = run_arm(study, study.arms[0], 0)
    history = artifacts["history"]
    assert history.steps == [4, 8, 12, 16]  # 18 steps: a decision every 4
    assert len(history.rewards) == len(history.advantages) == 3
    # each reward belongs to its action: the sign of the fall in the discounted validation error
    # from the decision that took the action to the next one (one joint reward per decision)
    expected = [math.copysign(1.0, a - b) if a != b else 0.0
                for a, b in zip(history.metric, history.metric[1:])]
    assert [float(r) for r in history.rewards] == expected
    for phi in history.phi:
        assert torch.equal(phi, phi.T)
    for probs in history.action_probs:  # one distribution over the three actions per pair
        assert probs.shape[-1] == 3 and torch.allclose(probs.sum(-1), torch.ones(probs.shape[:-1]))
    assert [row["epoch"] for row in curve] == [0, 0, 1, 2]  # before training, then every epoch


def test_agent_state_dict_round_trip_resumes_identically(toy_splits):
    model = torch.nn.Linear(2, 2)
    first, second = (_toy_agent(toy_splits.validation, seed, 3, model) for seed in (0, 5))
    for _ in range(7):
        first.after_step()
    second.load_state_dict(first.state_dict())
    for _ in range(6):
        first.after_step()
        second.after_step()
    assert torch.equal(first.matrix.phi, second.matrix.phi)
    assert [r.tolist() for r in first.history.rewards] == [
        r.tolist() for r in second.history.rewards]
    assert first.window == second.window


def test_teacher_rule_applies_the_teachers_phi_and_feeds_it_the_student_state(toy_splits):
    # directions start at zero: Phi = I, bias 0, whatever the state
    teacher = LossTeacher(num_classes=2)
    model = torch.nn.Linear(2, 2)
    rule = TeacherRule(model, teacher, toy_splits.validation, 18, interval=2, dev_batch=10)
    logits, target, index = torch.randn(5, 2), torch.tensor([0, 1, 1, 0, 1]), torch.arange(5)
    expected = dynamic_loss(logits, target, torch.eye(2), reduction="none")
    assert torch.allclose(rule.compute_losses(logits, target, index), expected)
    assert rule.observer.step == 1 and not math.isnan(rule.observer.train_error)
    rule.after_step()  # step 1: no dev measurement yet
    assert math.isnan(rule.observer.dev_error)
    rule.compute_losses(logits, target, index)
    rule.after_step()  # step 2: dev error of a random validation batch
    assert 0.0 <= rule.observer.dev_error <= 1.0
    other = TeacherRule(model, teacher, toy_splits.validation, 18, interval=2, dev_batch=10,
                        seed=7)
    other.load_state_dict(rule.state_dict())
    for copy_ in (rule, other):
        for _ in range(2):
            copy_.compute_losses(logits, target, index)
            copy_.after_step()
    assert other.observer.state_dict() == rule.observer.state_dict()
    register_teacher("toy teacher", teacher)
    study = TOY_STUDY.replace(arms=(Arm("teacher", "l2t_teacher",
                                        {"teacher": "toy teacher", "interval": 3}),))
    rules = []
    run_arm(study, study.arms[0], 0, observe=lambda setup: rules.extend(setup.methods) or [])
    assert rules[0].observer.step == 18  # every step of the run went through the rule
    with pytest.raises(ValueError, match="interval"):
        TeacherRule(model, teacher, toy_splits.validation, 18, interval=0)


def test_mismatch_runs_read_the_validation_curve_of_every_seed():
    study = TOY_STUDY.replace(arms=(Arm("cross-entropy", "tracked"),), seeds=(0, 1),
                              track=("validation",))
    results = run(study, progress=False)
    runs = mismatch_runs(results)
    assert [r.seed for r in runs] == [0, 1]
    for r in runs:
        rows = [row for row in results.curves if row["seed"] == r.seed][1:]  # after each epoch
        assert r.val_loss == [row["validation_loss"] for row in rows] and len(r.val_loss) == 3
        assert r.val_error == pytest.approx([1 - row["validation_accuracy"] for row in rows])
        assert r.model is results.artifacts[("cross-entropy", r.seed)]["model"]


def test_agent_rejects_bad_input(toy_splits):
    with pytest.raises(ValueError, match="interval"):
        _toy_agent(toy_splits.validation, 0, 0)
    with pytest.raises(ValueError, match="gamma"):
        _toy_agent(toy_splits.validation, 0, 2, gamma=0.0)
    with pytest.raises(ValueError, match="validation"):
        _toy_agent(toy_splits.validation.subset([]), 0, 2)


# ---------------------------------------------------------------- the harness study and summaries


def test_pair_credit_rewards_each_pair_by_the_error_on_its_two_classes(toy_splits):
    from curriclab.methods.ala.agent import pair_errors
    from curriclab.methods.ala.statistics import alignment_reward, discounted_metric

    model = torch.nn.Linear(2, 2)
    agent = AlignmentAgent(model, LossMatrix(2), LossController(seed=0), toy_splits.validation,
                           total_steps=12, interval=2, gamma=0.5, credit="pair")
    windows = []
    for _ in range(4):
        with torch.no_grad():
            model.weight.add_(0.3 * torch.randn(2, 2))
        log_probs = torch.log_softmax(model(toy_splits.validation.inputs), 1)
        windows.append(pair_errors(log_probs, toy_splits.validation.targets, agent.matrix.pairs))
        agent.after_step()
    metrics = [torch.tensor([discounted_metric(torch.stack(windows[k:k + 2])[:, p], 0.5)
                             for p in range(3)]) for k in (0, 2)]
    (reward,) = agent.history.rewards
    expected = [alignment_reward(float(a), float(b)) for a, b in zip(*metrics)]
    assert reward.shape == (3,) and reward.tolist() == expected
    assert agent.history.advantages[0].shape == (3,)
    with pytest.raises(ValueError, match="credit"):
        AlignmentAgent(model, LossMatrix(2), LossController(), toy_splits.validation, 4,
                       credit="every")


def test_fixed_phi_and_relative_reduction():
    from curriclab.experiments.adaptive_loss_alignment import fixed_phi, relative_reduction

    phi = fixed_phi(3, 1.5, 0.1)
    assert torch.equal(phi, torch.tensor([[1.5, 0.1, 0.1], [0.1, 1.5, 0.1], [0.1, 0.1, 1.5]]))
    assert relative_reduction(7.51, 6.79) == pytest.approx(0.72 / 7.51)
    assert relative_reduction(2.0, 2.5) == pytest.approx(-0.25)
    with pytest.raises(ValueError, match="baseline_error"):
        relative_reduction(0.0, 1.0)
    with pytest.raises(ValueError, match="num_classes"):
        fixed_phi(1)


def _history(actions, advantages, probs):
    from curriclab.methods.ala.agent import AlignmentHistory

    history = AlignmentHistory()
    for step, (a, p) in enumerate(zip(actions, probs)):
        history.steps.append(10 * (step + 1))
        history.phi.append(torch.eye(2) * (1 + 0.1 * step))
        history.action_probs.append(p)
        history.actions.append(torch.tensor(a))
    history.advantages = [torch.tensor(v) for v in advantages]
    return history


def test_action_advantages_and_gap_by_hand():
    from curriclab.experiments.adaptive_loss_alignment import action_advantages, advantage_gap

    uniform = torch.full((3, 3), 1 / 3)
    # joint credit: every pair of a decision shares its advantage; the last action has none yet
    joint = _history([[0, 0, 2], [2, 1, 1], [0, 0, 0]], [1.0, -0.5], [uniform] * 3)
    means = action_advantages(joint)
    assert means.tolist() == pytest.approx([1.0, -0.5, (1.0 - 0.5) / 2])
    assert advantage_gap(joint) == pytest.approx(1.0 - 0.25)
    # per-pair credit
    pair = _history([[0, 2, 2]], [[0.4, -1.0, 0.2]], [uniform])
    means = action_advantages(pair)
    assert means[0] == pytest.approx(0.4) and math.isnan(means[1])
    assert means[2] == pytest.approx(-0.4)


def test_controller_diagnostics_separate_diagonal_and_off_diagonal_pairs():
    from curriclab.experiments.adaptive_loss_alignment import controller_diagnostics

    # pairs of 2 classes: (0, 0), (0, 1), (1, 1); the off-diagonal pair always raises
    probs = torch.tensor([[0.2, 0.6, 0.2], [0.0, 0.0, 1.0], [0.4, 0.2, 0.4]])
    history = _history([[1, 2, 1]], [], [probs])
    result = controller_diagnostics(history, num_classes=2)
    assert result["diagonal_probs"][0].tolist() == pytest.approx([0.3, 0.4, 0.3])
    assert result["off_diagonal_probs"][0].tolist() == pytest.approx([0.0, 0.0, 1.0])
    entropy = lambda p: -sum(x * math.log(x) for x in p if x > 0)  # noqa: E731
    expected = (entropy([0.2, 0.6, 0.2]) + 0.0 + entropy([0.4, 0.2, 0.4])) / 3
    assert float(result["entropy"][0]) == pytest.approx(expected, rel=1e-5)
    assert float(result["increase_spread"][0]) == pytest.approx(
        float(torch.tensor([0.2, 1.0, 0.4]).std()), rel=1e-5)
    assert float(result["diagonal"][0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no decision"):
        controller_diagnostics(_history([], [], []))


def test_verdict_reads_the_interval():
    from curriclab.core.stats import paired_comparison
    from curriclab.experiments.adaptive_loss_alignment import verdict

    assert verdict(paired_comparison([1.0, 1.1, 0.9], [2.0, 2.0, 2.0]), "lo", "hi", "no") == "lo"
    assert verdict(paired_comparison([3.0, 3.1, 2.9], [2.0, 2.0, 2.0]), "lo", "hi", "no") == "hi"
    assert verdict(paired_comparison([1.0, 3.0, 2.0], [2.0, 2.0, 2.1]), "lo", "hi", "no") == "no"


def test_mismatch_summary_by_hand():
    from curriclab.experiments.adaptive_loss_alignment import mismatch_summary

    run = StudentRun("ce", 3, val_loss=[0.5, 0.4, 0.44, 0.48], val_error=[0.2, 0.15, 0.14, 0.13])
    (row,) = mismatch_summary([run]).to_dict("records")
    assert row["loss_minimum_epoch"] == 2 and row["loss_rise"] == pytest.approx(0.2)
    assert row["error_change"] == pytest.approx(-2.0)
    with pytest.raises(ValueError, match="runs"):
        mismatch_summary([])


@pytest.mark.usefixtures("mnist_train", "one_thread")
def test_study_arms_run_on_the_harness_and_tables_match_the_finals():
    from curriclab.experiments import adaptive_loss_alignment as ala
    from curriclab.experiments.harness import run

    ala.register_teacher("test teacher", LossTeacher(num_classes=10))
    study = ala.ala_study(300, 100, 200, epochs=2, seeds=(0, 1), interval=2,
                          teacher="test teacher")  # 3 steps per epoch: decisions at 2, 4, 6
    results = run(study, progress=False)
    names = [arm.name for arm in study.arms]
    assert names == ["cross-entropy", "Phi = I", "Phi = 1.5 I", "ALA (paper rule)",
                     "ALA (revised)", "L2T-DLF teacher"]
    table = ala.test_error_table(results).set_index("arm")
    errors = {arm: [100 * (1 - a) for a in v]
              for arm, v in results.final_values("test_accuracy").items()}
    for arm in names[1:]:
        expected = sum(a - b for a, b in zip(errors[arm], errors["cross-entropy"])) / 2
        assert table.loc[arm, "difference"] == pytest.approx(expected)
    relative = ala.relative_reductions(results)
    e_ce, e_i = [v / 100 for v in errors["cross-entropy"]], [v / 100 for v in errors["Phi = I"]]
    assert relative.loc["Phi = I", "mean"] == pytest.approx(
        sum((a - b) / a for a, b in zip(e_ce, e_i)) / 2)
    for arm in ("ALA (paper rule)", "ALA (revised)"):
        history = results.artifacts[(arm, 0)]["history"]
        assert history.steps == [2, 4, 6] and all(ala.phi_in_bounds(phi) for phi in history.phi)
    revised = results.artifacts[("ALA (revised)", 0)]["history"]
    assert revised.rewards[0].shape == (55,)  # per-pair credit
    paper = results.artifacts[("ALA (paper rule)", 0)]["history"]
    assert paper.rewards[0].shape == ()  # one joint reward
    summary = ala.controller_summary({"ALA (revised)": [revised]})
    assert summary.loc["ALA (revised)", "decisions"] == 3
    with pytest.raises(ValueError, match="teacher"):
        run(ala.ala_study(300, 100, 200, 1, (0,), 2, teacher="missing"), progress=False)
