"""Tests of adaptive loss alignment: the signals, Phi and the REINFORCE controller."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

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
    # class 0: both samples put p = (0.5, 0.25, 0.25);
    # class 1: p = (0.1, 0.8, 0.1) and (0.3, 0.6, 0.1)
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
            [float(confusion[i, j]) / math.log(3), float(confusion[j, i]) / math.log(3),
             float(phi[i, j]), 0.25, float(i == j)]
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
    assert discounted_metric([0.3, 0.2, 0.1], gamma=0.5) == pytest.approx(
        0.25 * 0.3 + 0.5 * 0.2 + 0.1
    )
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
    # accuracy up
    assert alignment_reward(previous=0.80, current=0.90, higher_is_better=True) == 1.0
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
        generator = torch.Generator().manual_seed(seed)
        actions = torch.randint(0, 3, (matrix.num_pairs,), generator=generator)
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
    generator = torch.Generator().manual_seed(1)
    matrix.apply(torch.randint(0, 3, (matrix.num_pairs,), generator=generator))
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
        actions = torch.multinomial(log_pi.exp().detach(), batch_size, replacement=True,
                                    generator=generator)
        rewards = (torch.rand(batch_size, generator=generator) < success[actions]).float()
        loss = policy_gradient_loss(log_pi[actions], rewards - baseline)
        (gradient,) = torch.autograd.grad(loss, logits)
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


def test_per_pair_credit_learns_a_different_action_for_each_pair():
    # pair 0 (feature row 0) is rewarded for raising, pair 1 for lowering: a joint reward could
    # not tell the two apart, a per-pair one can
    controller = LossController(seed=0, lr=0.5, entropy=0.0)
    features = torch.tensor([[1.0, 0.0, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, 0.5, 0.0]])
    for _ in range(200):
        actions = controller.act(features)
        reward = torch.stack([(actions[0] == 2).float(), (actions[1] == 0).float()])
        assert controller.observe(features, actions, reward).shape == (2,)
    probs = controller.distribution(features).probs
    assert probs[0, 2] > 0.7 and probs[1, 0] > 0.7


def test_normalized_advantage_by_hand():
    controller = LossController(seed=0, baseline_momentum=0.5)
    features = torch.zeros(2, NUM_PAIR_FEATURES)
    actions = torch.tensor([0, 1])
    # first: baseline 0, variance 1 -> advantage 1; then b = 0.5, var = 0.5 + 0.5 * 1 = 1.0
    assert float(controller.observe(features, actions, 1.0)) == pytest.approx(1.0)
    # second reward -1: deviation -1.5, advantage -1.5 / sqrt(1.0)
    assert float(controller.observe(features, actions, -1.0)) == pytest.approx(-1.5)
    assert float(controller.reward_variance) == pytest.approx(0.5 + 0.5 * 2.25)
    raw = LossController(seed=0, baseline_momentum=0.5, normalize=False)
    raw.observe(features, actions, 1.0)
    assert float(raw.observe(features, actions, -1.0)) == pytest.approx(-1.5)


def test_entropy_bonus_alone_moves_the_policy_towards_uniform():
    controller = LossController(seed=0, lr=0.5, entropy=1.0)
    with torch.no_grad():
        controller.policy[-1].bias.copy_(torch.tensor([2.0, 0.0, -2.0]))
    features = torch.rand(4, NUM_PAIR_FEATURES, generator=torch.Generator().manual_seed(0))
    before = controller.distribution(features).entropy().mean()
    for _ in range(20):  # zero advantages: only the entropy term acts
        controller.observe(features, torch.ones(4, dtype=torch.long), 0.0)
    assert controller.distribution(features).entropy().mean() > before + 0.1


def test_controller_rejects_bad_options_and_rewards():
    with pytest.raises(ValueError, match="optimizer"):
        LossController(optimizer="rmsprop")
    with pytest.raises(ValueError, match="entropy"):
        LossController(entropy=-1.0)
    controller = LossController()
    features, actions = torch.zeros(3, NUM_PAIR_FEATURES), torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="finite"):
        controller.observe(features, actions, float("nan"))
    assert controller.memory == []  # refused with the state unchanged
    with pytest.raises(ValueError, match="reward"):
        controller.observe(features, actions, torch.zeros(2))
    controller.observe(features, actions, 1.0)
    with pytest.raises(ValueError, match="shape"):
        controller.observe(features, actions, torch.zeros(3))
    with pytest.raises(ValueError, match="missing"):
        controller.load_state_dict({"policy": {}})
