"""The teacher (state -> Phi_t), and the student observer."""

import pytest
import torch
import torch.nn.functional as F

from curriclab.methods.teacher import (
    FEATURES,
    LossTeacher,
    StudentObserver,
    phi_summary,
    without_off_diagonal,
)


def random_teacher(seed: int, num_classes: int, parts: tuple[str, ...]) -> LossTeacher:
    """A two-direction teacher whose named parameters are redrawn from N(0, 1) under `seed`."""
    torch.manual_seed(seed)
    teacher = LossTeacher(num_classes=num_classes, hidden=2)
    with torch.no_grad():
        for name in parts:
            getattr(teacher, name).normal_()
    return teacher


def test_teacher_starts_at_scaled_identity_and_has_the_right_shapes():
    teacher = LossTeacher(num_classes=4, hidden=3, scale=2.0)
    phi, bias = teacher(torch.rand(len(FEATURES)))
    assert phi.shape == (4, 4) and bias.shape == (4,)
    torch.testing.assert_close(phi, 2.0 * torch.eye(4))
    torch.testing.assert_close(bias, torch.zeros(4))


def test_teacher_output_follows_its_formula_and_round_trips():
    teacher = random_teacher(0, 3, ("directions", "bias"))
    state = torch.tensor([0.5, 0.3, 0.1, 0.2])
    gates = torch.tanh(teacher.encoder.weight @ state + teacher.encoder.bias)
    phi, bias = teacher(state)
    torch.testing.assert_close(
        phi, teacher.base + gates[0] * teacher.directions[0] + gates[1] * teacher.directions[1]
    )
    copy = LossTeacher(num_classes=3, hidden=2)
    copy.load_state_dict(teacher.state_dict())
    for a, b in zip(copy(state), (phi, bias)):
        torch.testing.assert_close(a, b)


def test_without_off_diagonal_keeps_the_diagonal_and_bias_only():
    teacher = random_teacher(3, 4, ("base", "directions", "bias"))
    state = torch.rand(len(FEATURES))
    phi, bias = teacher(state)
    ablated_phi, ablated_bias = without_off_diagonal(teacher)(state)
    torch.testing.assert_close(ablated_phi, torch.diag(torch.diag(phi)))
    torch.testing.assert_close(ablated_bias, bias)
    assert (teacher(state)[0] - phi).abs().max() == 0  # the original is untouched


def test_teacher_rejects_bad_input():
    with pytest.raises(ValueError, match="state"):
        LossTeacher(3)(torch.zeros(3))
    with pytest.raises(ValueError, match="num_classes"):
        LossTeacher(1)
    with pytest.raises(ValueError, match="scale"):
        LossTeacher(3, scale=0.0)


def test_observer_features_and_moving_averages():
    observer = StudentObserver(total_steps=4, momentum=0.5)
    torch.testing.assert_close(observer.features(), torch.tensor([0.0, 1.0, 1.0, 1.0]))
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    first = torch.tensor([0, 0])  # one right, one wrong
    second = torch.tensor([0, 1])  # both right
    observer.record_train(logits, first)
    observer.record_train(logits, second)
    observer.record_dev(0.25)
    loss = [float(F.cross_entropy(logits, t)) for t in (first, second)]
    expected = torch.tensor([0.5, 0.5 * loss[0] + 0.5 * loss[1], 0.5 * 0.5 + 0.5 * 0.0, 0.25])
    torch.testing.assert_close(observer.features(), expected)
    copy = StudentObserver(total_steps=1)
    copy.load_state_dict(observer.state_dict())
    torch.testing.assert_close(copy.features(), expected)
    with pytest.raises(ValueError, match="error"):
        observer.record_dev(1.5)
    with pytest.raises(ValueError, match="total_steps"):
        StudentObserver(0)


def test_diagonal_only_teacher_masks_output_and_gradient_and_phi_summary():
    teacher = LossTeacher(3, hidden=1, diagonal_only=True)
    with torch.no_grad():
        teacher.base.add_(0.5)
        teacher.directions.normal_()
    phi, _ = teacher(torch.rand(4))
    assert torch.equal(phi * (1 - torch.eye(3)), torch.zeros(3, 3)) and phi.diagonal().ne(0).all()
    phi.sum().backward()
    assert torch.equal(teacher.base.grad, torch.eye(3))  # off-diagonal entries get no gradient
    assert without_off_diagonal(teacher).diagonal_only
    summary = phi_summary(torch.tensor([[1.0, -0.2, 0.1], [0.3, 2.0, 0.0], [0.0, -0.4, 0.5]]))
    assert summary == pytest.approx(
        {
            "diagonal": 3.5 / 3,
            "off_diagonal": -0.2 / 6,
            "row_sum": 3.3 / 3,
            "off_diagonal_mass": 1.0 / 3,
        }
    )
    with pytest.raises(ValueError, match="square"):
        phi_summary(torch.ones(2, 3))
