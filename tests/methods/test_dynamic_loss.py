"""The dynamic loss -sigmoid(Phi[y] . log p + bias[y]), its gradient factor and the error
measures."""

import math

import pytest
import torch
import torch.nn.functional as F

from curriclab.methods.dynamic_loss import (
    cross_entropy_logit_gradient,
    dynamic_loss,
    dynamic_loss_logit_gradient,
    expected_error,
    margin_error,
    saturated_fraction,
)


def _sigmoid(u: float) -> float:
    return 1.0 / (1.0 + math.exp(-u))


def test_identity_phi_is_minus_p_over_one_plus_p():
    torch.manual_seed(0)
    logits, target = torch.randn(7, 4, dtype=torch.float64), torch.randint(0, 4, (7,))
    p_y = F.softmax(logits, 1)[torch.arange(7), target]
    losses = dynamic_loss(logits, target, torch.eye(4, dtype=torch.float64), reduction="none")
    torch.testing.assert_close(losses, -p_y / (1 + p_y))


def test_hand_computed_two_class_case():
    logits = torch.tensor(
        [[0.0, math.log(3.0)], [2.0, 0.0]]
    )  # p = (1/4, 3/4) and (e^2, 1)/(e^2 + 1)
    target = torch.tensor([0, 1])
    phi = torch.tensor([[2.0, -1.0], [0.5, 1.0]])
    bias = torch.tensor([0.3, -0.2])
    log_p1 = [math.log(0.25), math.log(0.75)]
    log_p2 = [2.0 - math.log(math.e**2 + 1), -math.log(math.e**2 + 1)]
    expected = [
        -_sigmoid(2.0 * log_p1[0] - 1.0 * log_p1[1] + 0.3),
        -_sigmoid(0.5 * log_p2[0] + 1.0 * log_p2[1] - 0.2),
    ]
    losses = dynamic_loss(logits, target, phi, bias, reduction="none")
    torch.testing.assert_close(losses, torch.tensor(expected))
    torch.testing.assert_close(
        dynamic_loss(logits, target, phi, bias), torch.tensor(sum(expected) / 2)
    )
    torch.testing.assert_close(
        dynamic_loss(logits, target, phi, bias, reduction="sum"), torch.tensor(sum(expected))
    )


def test_gradients_match_finite_differences():
    torch.manual_seed(1)
    logits = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    phi = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 2, 1, 1, 0])
    assert torch.autograd.gradcheck(
        lambda z, m, b: dynamic_loss(z, target, m, b), (logits, phi, bias)
    )


@pytest.mark.parametrize("scale, bias", [(1.0, 0.0), (3.0, 1.5), (0.5, -1.0)])
def test_logit_gradient_factors_match_autograd(scale, bias):
    p_y = torch.linspace(0.02, 0.98, 9, dtype=torch.float64)
    # two classes: z = (log p_y, log(1 - p_y)) gives softmax(z)[0] = p_y
    logits = torch.stack([p_y.log(), (1 - p_y).log()], 1).requires_grad_()
    target = torch.zeros(9, dtype=torch.long)
    phi = scale * torch.eye(2, dtype=torch.float64)
    b = torch.full((2,), bias, dtype=torch.float64)
    (grad_dynamic,) = torch.autograd.grad(
        dynamic_loss(logits, target, phi, b, reduction="sum"), logits
    )
    (grad_ce,) = torch.autograd.grad(F.cross_entropy(logits, target, reduction="sum"), logits)
    torch.testing.assert_close(-grad_dynamic[:, 0], dynamic_loss_logit_gradient(p_y, scale, bias))
    torch.testing.assert_close(-grad_ce[:, 0], cross_entropy_logit_gradient(p_y))


def test_identity_phi_gradient_is_twelve_times_weaker_than_cross_entropy_at_p_point_one():
    ratio = cross_entropy_logit_gradient(torch.tensor(0.1)) / dynamic_loss_logit_gradient(
        torch.tensor(0.1)
    )
    assert 12.0 < float(ratio) < 12.2  # (1 + p)^2 / p = 12.1
    assert (
        float(dynamic_loss_logit_gradient(torch.tensor(1e-6))) < 1e-5
    )  # vanishes when confidently wrong


def test_expected_error_is_the_expected_zero_one_loss():
    torch.manual_seed(2)
    logits, target = torch.randn(6, 5, dtype=torch.float64), torch.randint(0, 5, (6,))
    p = F.softmax(logits, 1)
    brute = sum(float(p[i, k]) for i in range(6) for k in range(5) if k != target[i]) / 6
    assert float(expected_error(logits, target)) == pytest.approx(brute, rel=1e-12)


def test_margin_error_is_zero_when_correct_and_sigmoid_of_gap_when_wrong():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([0, 0])
    p = F.softmax(logits, 1)
    gap = float(p[1, 1] - p[1, 0])
    expected = (0.0 + 2.0 * _sigmoid(10.0 * gap) - 1.0) / 2
    assert float(margin_error(logits, target, sharpness=10.0)) == pytest.approx(expected, rel=1e-12)
    assert float(margin_error(logits[:1], target[:1])) == 0.0


def test_bad_input_names_the_argument():
    logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="phi"):
        dynamic_loss(logits, target, torch.eye(4))
    with pytest.raises(ValueError, match="bias"):
        dynamic_loss(logits, target, torch.eye(3), torch.zeros(4))
    with pytest.raises(ValueError, match="reduction"):
        dynamic_loss(logits, target, torch.eye(3), reduction="max")
    with pytest.raises(ValueError, match="target"):
        dynamic_loss(logits, torch.tensor([0, 1, 2, 3]), torch.eye(3))
    with pytest.raises(ValueError, match="sharpness"):
        margin_error(logits, target, sharpness=0.0)
    with pytest.raises(ValueError, match="at least one"):
        expected_error(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))


def test_empty_batch_gives_empty_per_sample_losses():
    losses = dynamic_loss(
        torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), torch.eye(3), reduction="none"
    )
    assert losses.shape == (0,)


def test_saturated_fraction_counts_samples_on_the_flat_sigmoid_by_brute_force():
    generator = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(200, 5, generator=generator)
    target = torch.randint(0, 5, (200,), generator=generator)
    phi = torch.eye(5) - 0.3 * (1 - torch.eye(5))
    bias = torch.linspace(-1, 1, 5)
    flat = 0
    for row, y in zip(logits, target):
        log_p = torch.log_softmax(row, 0)
        u = sum(float(phi[y, j] * log_p[j]) for j in range(5)) + float(bias[y])
        s = 1 / (1 + math.exp(-u))
        flat += s * (1 - s) < 0.05
    fraction = saturated_fraction(logits, target, phi, bias, threshold=0.05)
    assert fraction == pytest.approx(flat / 200) and 0.0 < fraction < 1.0
    with pytest.raises(ValueError, match="threshold"):
        saturated_fraction(logits, target, phi, threshold=0.3)
