"""curriclab.methods.l2t: Algorithm 1 (a student per teacher step) and the TaughtLoss rule."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from curriclab.core.models import MLP
from curriclab.core.training import seed_everything
from curriclab.methods.dynamic_loss import dynamic_loss, expected_error
from curriclab.methods.hypergradient import unrolled_hypergradient
from curriclab.methods.l2t import (
    Algorithm1Config,
    TaughtLoss,
    _batches,
    train_teacher_algorithm1,
)
from curriclab.methods.teacher import LossTeacher
from tests.helpers.teacher import _blobs


def _student():
    return MLP(2, (4,), 3)


def test_teacher_update_is_minus_lr_times_the_hypergradient_of_the_whole_run():
    train, dev = _blobs(60, 0), _blobs(30, 1)
    config = Algorithm1Config(horizon=5, warmup_steps=0, lr=0.5, batch_size=16, teacher_steps=1,
                              teacher_optimizer="sgd", teacher_lr=0.3)
    teacher = LossTeacher(3, hidden=0)
    with torch.no_grad():
        teacher.base.add_(0.2 * torch.randn(3, 3, generator=torch.Generator().manual_seed(2)))
    before = [p.detach().clone() for p in teacher.parameters()]
    train_teacher_algorithm1(_student, train, dev, config, seed=4, teacher=teacher)

    # rebuild teacher step 0: the student seeded with `seed`, its minibatches, the whole dev set
    reference = LossTeacher(3, hidden=0)
    for p, value in zip(reference.parameters(), before):
        p.data.copy_(value)
    seed_everything(4)
    student = _student()
    start = {name: p.detach().clone() for name, p in student.named_parameters()}
    stream = _batches(train, 16, 4 + 7)
    batches = [next(stream) for _ in range(5)]

    def inner(weights, t):
        x, y = batches[t]
        return dynamic_loss(functional_call(student, weights, (x,)), y, *reference(torch.zeros(4)))

    def outer(weights):
        return expected_error(functional_call(student, weights, (dev.inputs,)), dev.targets)

    result = unrolled_hypergradient(start, inner, outer, list(reference.parameters()), 5, 0.5)
    assert any(grad.abs().sum() > 1e-6 for grad in result.grads)
    for old, new, grad in zip(before, teacher.parameters(), result.grads):
        torch.testing.assert_close(new.detach(), old - 0.3 * grad)


def test_fresh_restarts_draw_new_students_and_fixed_restarts_reuse_one():
    train, dev = _blobs(60, 2), _blobs(30, 3)
    logs = {}
    for restart in ("fresh", "fixed"):
        config = Algorithm1Config(horizon=3, warmup_steps=4, lr=0.5, batch_size=16,
                                  teacher_steps=3, teacher_lr=1e-12, restart=restart)
        _, logs[restart] = train_teacher_algorithm1(_student, train, dev, config, seed=0)
    # a teacher lr of 1e-12 leaves the loss unchanged: only the student's start and minibatches
    # differ between teacher steps; with the same start the first step agrees across restarts
    assert logs["fresh"].metric[0] == pytest.approx(logs["fixed"].metric[0])
    assert len(set(logs["fresh"].metric)) == 3
    assert logs["fixed"].metric[1] != logs["fresh"].metric[1]


def test_diagonal_teacher_keeps_its_off_diagonal_at_zero_and_logs_have_one_entry_per_step():
    train, dev = _blobs(90, 4), _blobs(30, 5)
    config = Algorithm1Config(horizon=6, warmup_steps=3, lr=0.5, batch_size=16, teacher_steps=4,
                              teacher_optimizer="adam", teacher_lr=0.05, interval=2, dev_batch=10)
    _, full_log = train_teacher_algorithm1(_student, train, dev, config, seed=1)
    diagonal, log = train_teacher_algorithm1(_student, train, dev, config, seed=1,
                                             teacher=LossTeacher(3, diagonal_only=True))
    for entries in (log.metric, log.dev_error, log.saturated, log.bias, log.matrices,
                    *log.phi.values()):
        assert len(entries) == 4
    assert all(mass == 0.0 for mass in log.phi["off_diagonal_mass"])
    assert full_log.phi["off_diagonal_mass"][-1] > 0.0
    phi = diagonal(torch.rand(4))[0]
    assert phi.equal(torch.diag(torch.diagonal(phi))) and not torch.allclose(phi, torch.eye(3))
    assert log.graph_bytes > 0 and all(0.0 <= s <= 1.0 for s in log.saturated)


def test_taught_loss_warms_up_with_scaled_cross_entropy_then_uses_the_teacher():
    dev = _blobs(30, 6)
    teacher = LossTeacher(3, hidden=0)
    with torch.no_grad():
        teacher.bias.fill_(0.5)
    rule = TaughtLoss(teacher, dev, total_steps=4, warmup_steps=2, interval=2, dev_batch=10,
                      warmup_scale=0.25)
    logits, target = torch.randn(5, 3), torch.randint(0, 3, (5,))
    for step in range(4):
        losses = rule.compute_losses(logits, target)
        if step < 2:
            expected = 0.25 * F.cross_entropy(logits, target, reduction="none")
        else:
            expected = dynamic_loss(logits, target, torch.eye(3), torch.full((3,), 0.5), "none")
        torch.testing.assert_close(losses, expected)
        rule.record_dev(lambda x: torch.zeros(len(x), 3))  # predicts class 0 everywhere
    assert rule.observer.step == 4 and len(rule.saturated) == 2
    # the dev error was measured at steps 2 and 4 on draws of 10 from the rule's generator (seed 1)
    generator = torch.Generator().manual_seed(1)
    draws = [torch.randperm(30, generator=generator)[:10] for _ in range(2)]
    assert rule.observer.dev_error == pytest.approx(
        float((dev.targets[draws[1]] != 0).float().mean()))
    cross_entropy = TaughtLoss(None, dev, total_steps=3)
    torch.testing.assert_close(cross_entropy.compute_losses(logits, target),
                               F.cross_entropy(logits, target, reduction="none"))


def test_taught_loss_and_algorithm1_reject_bad_input():
    dev = _blobs(30, 7)
    with pytest.raises(ValueError, match="warmup_steps"):
        TaughtLoss(None, dev, total_steps=3, warmup_steps=4)
    with pytest.raises(ValueError, match="learn"):
        TaughtLoss(None, dev, total_steps=3, learn=True)
    with pytest.raises(ValueError, match="warmup_scale"):
        TaughtLoss(None, dev, total_steps=3, warmup_scale=0.0)
    with pytest.raises(ValueError, match="model"):
        TaughtLoss(None, dev, total_steps=3).after_step()
    for bad in ({"horizon": 0}, {"teacher_optimizer": "rmsprop"}, {"restart": "warm"},
                {"warmup_lr": -1.0}, {"metric": "log"}):
        with pytest.raises(ValueError):
            Algorithm1Config(**bad)
