"""Tests of adaptive loss alignment: the signals, Phi, the REINFORCE controller and the agent loop."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from curriclab.core.data import spl_toy_data, stratified_split
from curriclab.experiments.adaptive_loss_alignment import (
    StudentRun,
    StudentSetup,
    ala_factory,
    compare_rules,
    cross_entropy_factory,
    summarize,
    teacher_factory,
    train_student,
)
from curriclab.methods.ala.controller import LossController, policy_gradient_loss
from curriclab.methods.ala.statistics import (
    NUM_PAIR_FEATURES,
    LossMatrix,
    alignment_reward,
    class_pairs,
    confusion_statistics,
    discounted_metric,
    pair_features,
)
from curriclab.methods.dynamic_loss import dynamic_loss
from curriclab.methods.teacher import LossTeacher

# ---------------------------------------------------------------- confusion statistics


def test_confusion_statistics_matches_a_loop_over_samples():
    generator = torch.Generator().manual_seed(0)
    log_probs = torch.log_softmax(torch.randn(50, 4, generator=generator), dim=1)
    targets = torch.randint(0, 4, (50,), generator=generator)
    targets[:4] = torch.arange(4)  # every class present
    result = confusion_statistics(log_probs, targets)
    for i in range(4):
        rows = [n for n in range(50) if targets[n] == i]
        for j in range(4):
            expected = sum(-float(log_probs[n, j]) for n in rows) / len(rows)
            assert result[i, j].item() == pytest.approx(expected, rel=1e-5)


def test_confusion_statistics_on_constructed_predictions():
    # class 0: both samples put p = (0.5, 0.25, 0.25); class 1: p = (0.1, 0.8, 0.1) and (0.3, 0.6, 0.1)
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.3, 0.6, 0.1]])
    targets = torch.tensor([0, 0, 1, 1])
    result = confusion_statistics(probs.log(), targets)
    assert result[0].tolist() == pytest.approx([math.log(2), math.log(4), math.log(4)], rel=1e-6)
    expected_row1 = [
        -(math.log(0.1) + math.log(0.3)) / 2,
        -(math.log(0.8) + math.log(0.6)) / 2,
        -math.log(0.1),
    ]
    assert result[1].tolist() == pytest.approx(expected_row1, rel=1e-6)
    assert torch.isnan(result[2]).all()  # class 2 has no sample
    assert confusion_statistics(probs.log(), targets, empty_value=-1.0)[2].tolist() == [-1.0] * 3


def test_confusion_statistics_rejects_bad_input():
    with pytest.raises(ValueError, match="log_probs"):
        confusion_statistics(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        confusion_statistics(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        confusion_statistics(torch.zeros(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="targets"):
        confusion_statistics(torch.zeros(3, 2), torch.tensor([0.0, 1.0, 1.0]))
    int32 = confusion_statistics(torch.zeros(2, 2), torch.tensor([0, 1], dtype=torch.int32))
    assert torch.equal(int32, torch.zeros(2, 2))


def test_confusion_statistics_of_no_samples_is_all_empty():
    result = confusion_statistics(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    assert result.shape == (3, 3) and torch.isnan(result).all()


# ---------------------------------------------------------------- pair features


def test_pair_features_rows_follow_the_class_pairs():
    confusion = torch.arange(9.0).reshape(3, 3)
    phi = torch.tensor([[1.0, 0.2, 0.0], [0.2, 1.0, -0.1], [0.0, -0.1, 1.0]])
    features = pair_features(confusion, phi, progress=0.25)
    pairs = class_pairs(3)
    assert features.shape == (6, NUM_PAIR_FEATURES) and pairs.shape == (2, 6)
    for row, (i, j) in enumerate(pairs.T.tolist()):
        assert i <= j
        assert features[row].tolist() == pytest.approx(
            [float(confusion[i, j]) / math.log(3), float(confusion[j, i]) / math.log(3), float(phi[i, j]), 0.25,
             float(i == j)]
        )


def test_pair_features_treat_missing_statistics_as_a_uniform_guess():
    confusion = torch.full((2, 2), math.nan)
    features = pair_features(confusion, torch.eye(2), progress=0.0)
    assert torch.isfinite(features).all()
    assert features[:, :2].eq(1.0).all()


def test_pair_features_reject_bad_input():
    with pytest.raises(ValueError, match="progress"):
        pair_features(torch.zeros(2, 2), torch.eye(2), progress=1.5)
    with pytest.raises(ValueError, match="square"):
        pair_features(torch.zeros(2, 3), torch.eye(2), progress=0.5)


# ---------------------------------------------------------------- discounted metric and reward


def test_discounted_metric_weighs_the_newest_value_most():
    assert discounted_metric([0.3, 0.2, 0.1], gamma=0.5) == pytest.approx(0.25 * 0.3 + 0.5 * 0.2 + 0.1)
    assert discounted_metric([0.3, 0.2, 0.1], gamma=1.0) == pytest.approx(0.6)
    assert discounted_metric(torch.tensor([0.7]), gamma=0.9) == pytest.approx(0.7)


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12), st.floats(0.05, 1.0))
def test_discounted_metric_equals_the_recursive_definition(values, gamma):
    running = 0.0
    for value in values:  # M <- gamma M + m, starting from 0, gives sum gamma^(K-j) m_j
        running = gamma * running + value
    assert discounted_metric(values, gamma) == pytest.approx(running, rel=1e-9, abs=1e-12)


def test_discounted_metric_rejects_bad_input():
    with pytest.raises(ValueError, match="values"):
        discounted_metric([], 0.9)
    for gamma in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="gamma"):
            discounted_metric([0.1], gamma)


def test_reward_sign_logic():
    assert alignment_reward(previous=0.30, current=0.20) == 1.0  # error went down: good
    assert alignment_reward(previous=0.20, current=0.30) == -1.0
    assert alignment_reward(previous=0.25, current=0.25) == 0.0
    assert alignment_reward(previous=0.80, current=0.90, higher_is_better=True) == 1.0  # accuracy up
    assert alignment_reward(previous=0.90, current=0.80, higher_is_better=True) == -1.0
    with pytest.raises(ValueError, match="previous"):
        alignment_reward(math.nan, 0.1)


# ---------------------------------------------------------------- the loss matrix Phi


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 5),
    st.floats(0.01, 0.7),
    st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=40),
)
def test_phi_stays_symmetric_and_bounded_under_any_actions(classes, beta, action_seeds):
    matrix = LossMatrix(classes, beta, diagonal_range=(0.5, 1.5), off_diagonal_range=(-0.2, 0.3))
    off = ~torch.eye(classes, dtype=torch.bool)
    for seed in action_seeds:
        actions = torch.randint(0, 3, (matrix.num_pairs,), generator=torch.Generator().manual_seed(seed))
        phi = matrix.apply(actions)
        assert torch.equal(phi, phi.T)
        assert phi.diagonal().min() >= 0.5 and phi.diagonal().max() <= 1.5
        assert phi[off].min() >= -0.2 and phi[off].max() <= 0.3


def test_phi_actions_move_both_entries_of_a_pair_by_beta():
    matrix = LossMatrix(3, beta=0.1, diagonal_range=(0.0, 2.0), off_diagonal_range=(-1.0, 1.0))
    pairs = matrix.pairs.T.tolist()  # (0,0) (0,1) (0,2) (1,1) (1,2) (2,2)
    actions = torch.ones(matrix.num_pairs, dtype=torch.long)  # keep everything ...
    actions[pairs.index([0, 2])] = 2  # ... but raise Phi[0, 2]
    actions[pairs.index([1, 1])] = 0  # ... and lower Phi[1, 1]
    phi = matrix.apply(actions)
    expected = torch.eye(3)
    expected[0, 2] = expected[2, 0] = 0.1
    expected[1, 1] = 0.9
    assert torch.allclose(phi, expected)


def test_phi_is_clamped_at_its_bounds():
    matrix = LossMatrix(2, beta=0.3, diagonal_range=(0.5, 1.2), off_diagonal_range=(0.0, 0.5))
    for _ in range(5):
        matrix.apply(torch.full((3,), 2))
    assert torch.allclose(matrix.phi, torch.tensor([[1.2, 0.5], [0.5, 1.2]]))
    for _ in range(5):
        matrix.apply(torch.zeros(3, dtype=torch.long))
    assert torch.allclose(matrix.phi, torch.tensor([[0.5, 0.0], [0.0, 0.5]]))


def test_phi_state_dict_round_trip():
    matrix = LossMatrix(4, beta=0.05)
    matrix.apply(torch.randint(0, 3, (matrix.num_pairs,), generator=torch.Generator().manual_seed(1)))
    other = LossMatrix(4, beta=0.2)
    other.load_state_dict(matrix.state_dict())
    assert torch.equal(other.phi, matrix.phi) and other.beta == matrix.beta
    actions = torch.full((matrix.num_pairs,), 2)
    assert torch.equal(other.apply(actions), matrix.apply(actions))
    with pytest.raises(ValueError, match="shape"):
        LossMatrix(3).load_state_dict(matrix.state_dict())


def test_phi_rejects_bad_input():
    with pytest.raises(ValueError, match="num_classes"):
        LossMatrix(1)
    with pytest.raises(ValueError, match="beta"):
        LossMatrix(3, beta=0.0)
    with pytest.raises(ValueError, match="diagonal_range"):
        LossMatrix(3, diagonal_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="symmetric"):
        LossMatrix(2, initial=torch.tensor([[1.0, 0.1], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="ranges"):
        LossMatrix(2, initial=torch.eye(2) * 3)
    matrix = LossMatrix(3)
    with pytest.raises(ValueError, match="actions"):
        matrix.apply(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="actions"):
        matrix.apply(torch.full((6,), 3))
    with pytest.raises(TypeError, match="actions"):
        matrix.apply(torch.zeros(6))


# ---------------------------------------------------------------- REINFORCE


def _bandit_estimates(baseline: float, batches: int, batch_size: int, seed: int) -> torch.Tensor:
    """REINFORCE gradient estimates of J = E[r] w.r.t. the two logits of a softmax policy,
    one per batch, from `policy_gradient_loss` (its negative gradient is the estimate)."""
    generator = torch.Generator().manual_seed(seed)
    success = torch.tensor([0.3, 0.8])  # arm a pays 1 with probability success[a], else 0
    logits = torch.tensor([0.4, -0.2], requires_grad=True)
    estimates = []
    for _ in range(batches):
        log_pi = torch.log_softmax(logits, dim=0)
        actions = torch.multinomial(log_pi.exp().detach(), batch_size, replacement=True, generator=generator)
        rewards = (torch.rand(batch_size, generator=generator) < success[actions]).float()
        (gradient,) = torch.autograd.grad(policy_gradient_loss(log_pi[actions], rewards - baseline), logits)
        estimates.append(-gradient)
    return torch.stack(estimates)


@pytest.mark.parametrize("baseline", [0.0, 0.6])
def test_policy_gradient_is_unbiased_on_a_two_armed_bandit(baseline):
    pi = torch.softmax(torch.tensor([0.4, -0.2]), dim=0)
    success = torch.tensor([0.3, 0.8])
    exact = pi * (success - (pi * success).sum())  # dJ/dlogit_a = pi_a (mu_a - J)
    estimates = _bandit_estimates(baseline, batches=400, batch_size=50, seed=3)
    standard_error = estimates.std(0) / math.sqrt(len(estimates))
    assert ((estimates.mean(0) - exact).abs() < 4 * standard_error).all()
    assert (standard_error < 0.1 * exact.abs()).all()  # the test is sharp enough to see a bias


def test_baseline_lowers_the_variance_of_the_estimate():
    without = _bandit_estimates(0.0, batches=300, batch_size=20, seed=4).var(0)
    with_baseline = _bandit_estimates(0.6, batches=300, batch_size=20, seed=4).var(0)
    assert (with_baseline < 0.7 * without).all()


def test_policy_gradient_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="log_probs"):
        policy_gradient_loss(torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match="advantages"):
        policy_gradient_loss(torch.zeros(3), torch.zeros(2))


def test_controller_starts_uniform_and_learns_the_rewarded_action():
    controller = LossController(seed=0, lr=0.05)
    features = torch.rand(6, NUM_PAIR_FEATURES, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(controller.distribution(features).probs, torch.full((6, 3), 1 / 3))
    for _ in range(100):
        actions = controller.act(features)
        assert set(actions.tolist()) <= {0, 1, 2}
        controller.observe(features, actions, reward=float((actions == 2).float().mean() - 1 / 3))
    assert controller.distribution(features).probs[:, 2].min() > 0.8


def test_controller_state_dict_round_trip_resumes_identically():
    features = torch.rand(10, NUM_PAIR_FEATURES, generator=torch.Generator().manual_seed(1))
    first = LossController(seed=0, memory_size=6, replay_batch=3)
    for step in range(8):
        first.observe(features, first.act(features), reward=(-1.0) ** step)
    second = LossController(seed=99, memory_size=6, replay_batch=3)
    second.load_state_dict(first.state_dict())
    assert len(second.memory) == 6 and second.baseline == first.baseline
    for step in range(3):
        a, b = first.act(features), second.act(features)
        assert torch.equal(a, b)
        first.observe(features, a, reward=1.0)
        second.observe(features, b, reward=1.0)
    for p, q in zip(first.policy.parameters(), second.policy.parameters()):
        assert torch.equal(p, q)


def test_controller_rejects_bad_input():
    with pytest.raises(ValueError, match="lr"):
        LossController(lr=0.0)
    with pytest.raises(ValueError, match="baseline_momentum"):
        LossController(baseline_momentum=1.0)
    with pytest.raises(ValueError, match="replay_batch"):
        LossController(memory_size=4, replay_batch=5)
    controller = LossController()
    with pytest.raises(ValueError, match="features"):
        controller.act(torch.zeros(3, NUM_PAIR_FEATURES + 1))
    with pytest.raises(ValueError, match="actions"):
        controller.observe(torch.zeros(3, NUM_PAIR_FEATURES), torch.zeros(2, dtype=torch.long), 1.0)
    assert controller.act(torch.zeros(0, NUM_PAIR_FEATURES)).numel() == 0


# ---------------------------------------------------------------- the agent and the student loop


@pytest.fixture(scope="module")
def toy_setup() -> StudentSetup:
    data, _ = spl_toy_data(n_per_class=150, n_anomalies=0, seed=0)
    validation, rest = stratified_split(data, 60, seed=0)
    train, test = stratified_split(rest, 180, seed=1)
    return StudentSetup(train, validation, test, hidden=(8,), lr=0.01, batch_size=30, epochs=3)


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


# ---------------------------------------------------------------- plots


def test_plots_draw_runs_and_survive_empty_selections(toy_setup):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from curriclab.methods.ala.agent import AlignmentHistory
    from curriclab.plots import ala as ala_plots

    run = train_student(toy_setup, "ala", ala_factory(beta=0.1, interval=2), seed=0)
    history = run.rule.history
    fig, axes = plt.subplots(2, 4)
    assert len(ala_plots.mismatch_curves(axes[0, 0], run)) == 4
    assert len(ala_plots.loss_family_curves(axes[0, 1], diagonals=(0.5, 1.0))) == 3
    assert len(ala_plots.phi_summary(axes[0, 2], history)) == 2
    assert len(ala_plots.action_probabilities(axes[0, 3], history)) == 3
    assert len(ala_plots.reward_curve(axes[1, 0], [history], window=2)) == 1
    assert len(ala_plots.selected_test_errors(axes[1, 1], {"ala": [run]})) == 2
    assert len(ala_plots.mean_curves(axes[1, 2], {"ala": [run]})) == 1
    assert ala_plots.confusion_heatmap(axes[1, 3], torch.rand(2, 2) + 0.1) is not None
    plt.close(fig)
    plt.close(ala_plots.phi_heatmaps(history, count=3))
    with pytest.raises(ValueError, match="position"):
        ala_plots.phi_snapshot(plt.gca(), history, len(history.phi))

    empty = AlignmentHistory()
    fig, axes = plt.subplots(1, 6)
    assert ala_plots.phi_summary(axes[0], empty) == []
    assert ala_plots.action_probabilities(axes[1], empty) == []
    assert ala_plots.reward_curve(axes[2], [empty], window=3) == []
    assert ala_plots.selected_test_errors(axes[3], {"none": []}) == []
    assert ala_plots.mean_curves(axes[4], {}) == []
    assert ala_plots.confusion_heatmap(axes[5], torch.full((2, 2), math.nan)) is None
    plt.close(fig)
    plt.close(ala_plots.phi_heatmaps(empty))
    plt.close("all")
