"""Notebook 07's runner: the ALA agent and the teacher rule in the student loop, selection and summary."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from curriclab.experiments.adaptive_loss_alignment import (
    StudentRun,
    ala_factory,
    compare_rules,
    cross_entropy_factory,
    summarize,
    teacher_factory,
    train_student,
)
from curriclab.methods.dynamic_loss import dynamic_loss
from curriclab.methods.teacher import LossTeacher


def test_agent_decides_every_interval_and_keeps_phi_valid(toy_setup):
    run = train_student(toy_setup, "ala", ala_factory(beta=0.1, interval=4), seed=0)
    history = run.rule.history
    assert toy_setup.total_steps == 18 and history.steps == [4, 8, 12, 16]
    assert len(history.rewards) == len(history.advantages) == 3
    # each reward belongs to its action: the sign of the fall in the discounted validation error
    # from the decision that took the action to the next one
    expected = [math.copysign(1.0, a - b) if a != b else 0.0 for a, b in zip(history.metric, history.metric[1:])]
    assert history.rewards == expected
    for phi in history.phi:
        assert torch.equal(phi, phi.T)
    for probs in history.action_probs:
        assert probs.sum().item() == pytest.approx(1.0)
    assert len(run.val_error) == len(run.test_error) == 3


def test_agent_state_dict_round_trip_resumes_identically(toy_setup):
    factory = ala_factory(beta=0.1, interval=3)
    model = torch.nn.Linear(2, 2)
    first, second = factory(toy_setup, model, 0), factory(toy_setup, model, 5)
    for _ in range(7):
        first.after_step()
    second.load_state_dict(first.state_dict())
    for _ in range(6):
        first.after_step()
        second.after_step()
    assert torch.equal(first.matrix.phi, second.matrix.phi)
    assert first.history.rewards == second.history.rewards and first.window == second.window


def test_teacher_rule_applies_the_teachers_phi_and_feeds_it_the_student_state(toy_setup):
    teacher = LossTeacher(num_classes=2)  # directions start at zero: Phi = I, bias 0, whatever the state
    model = torch.nn.Linear(2, 2)
    rule = teacher_factory(teacher, interval=2, dev_batch=10)(toy_setup, model, 0)
    logits, target, index = torch.randn(5, 2), torch.tensor([0, 1, 1, 0, 1]), torch.arange(5)
    expected = dynamic_loss(logits, target, torch.eye(2), reduction="none")
    assert torch.allclose(rule.compute_losses(logits, target, index), expected)
    assert rule.observer.step == 1 and not math.isnan(rule.observer.train_error)
    rule.after_step()  # step 1: no dev measurement yet
    assert math.isnan(rule.observer.dev_error)
    rule.compute_losses(logits, target, index)
    rule.after_step()  # step 2: dev error of a random validation batch
    assert 0.0 <= rule.observer.dev_error <= 1.0
    other = teacher_factory(teacher, interval=2, dev_batch=10)(toy_setup, model, 7)
    other.load_state_dict(rule.state_dict())
    for copy_ in (rule, other):
        for _ in range(2):
            copy_.compute_losses(logits, target, index)
            copy_.after_step()
    assert other.observer.state_dict() == rule.observer.state_dict()
    run = train_student(toy_setup, "teacher", teacher_factory(teacher, interval=3), seed=0)
    assert run.rule.observer.step == toy_setup.total_steps
    with pytest.raises(ValueError, match="interval"):
        teacher_factory(teacher, interval=0)(toy_setup, torch.nn.Linear(2, 2), 0)


def test_selection_uses_validation_error_only():
    run = StudentRun("x", 0, val_error=[0.3, 0.1, 0.1, 0.2], test_error=[0.05, 0.4, 0.0, 0.3])
    assert run.selected_epoch == 1 and run.selected_test_error == 0.4
    with pytest.raises(ValueError, match="no epochs"):
        _ = StudentRun("empty", 0).selected_epoch


def test_summary(toy_setup):
    runs = compare_rules(toy_setup, {"ce": cross_entropy_factory}, seeds=[0, 1], progress=False)
    (row,) = summarize({**runs, "nothing": []})
    tests = [run.selected_test_error for run in runs["ce"]]
    assert row.seeds == 2 and row.test_error_mean == pytest.approx(sum(tests) / 2)
    again = compare_rules(toy_setup, {"ce": cross_entropy_factory}, seeds=[0], progress=False)
    assert again["ce"][0].val_error == runs["ce"][0].val_error  # seeded: reproducible
    with pytest.raises(ValueError, match="seeds"):
        compare_rules(toy_setup, {"ce": cross_entropy_factory}, seeds=[])


def test_agent_rejects_bad_input(toy_setup):
    make = ala_factory(interval=0)
    with pytest.raises(ValueError, match="interval"):
        make(toy_setup, torch.nn.Linear(2, 2), 0)
    with pytest.raises(ValueError, match="gamma"):
        ala_factory(gamma=0.0)(toy_setup, torch.nn.Linear(2, 2), 0)
    empty = copy.copy(toy_setup)
    empty.validation = toy_setup.validation.subset([])
    with pytest.raises(ValueError, match="validation"):
        ala_factory()(empty, torch.nn.Linear(2, 2), 0)
