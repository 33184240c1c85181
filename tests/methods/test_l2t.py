"""curriclab.methods.l2t: the student and teacher loops."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from curriclab.core.data import make_loader
from curriclab.core.models import MLP
from curriclab.methods.dynamic_loss import dynamic_loss, expected_error
from curriclab.methods.hypergradient import unrolled_hypergradient
from curriclab.methods.l2t import TeachingConfig, student_loss, teach, train_teacher
from curriclab.methods.teacher import LossTeacher
from tests.helpers.teacher import _blobs


def test_cross_entropy_run_is_plain_sgd_on_the_seeded_minibatches():
    train, dev = _blobs(60, 0), _blobs(30, 1)
    config = TeachingConfig(steps=0, warmup_steps=7, lr=0.3, batch_size=16, episode=3, dev_batch=10)
    torch.manual_seed(0)
    student, reference = MLP(2, (4,), 3), MLP(2, (4,), 3)
    reference.load_state_dict(student.state_dict())
    log = teach(student, train, dev, config, seed=5)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.3)
    loader = make_loader(
        train, 16, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(5)
    )
    batches = [batch for _ in range(3) for batch in loader][:7]  # 3 batches per epoch
    for _, x, y in batches:
        optimizer.zero_grad()
        F.cross_entropy(reference(x), y).backward()
        optimizer.step()
    for a, b in zip(student.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b)
    assert log.steps == [3, 6, 7] and log.phi == []


def test_teacher_update_is_minus_lr_times_the_hypergradient():
    train, dev = _blobs(48, 2), _blobs(30, 3)
    config = TeachingConfig(steps=3, warmup_steps=0, lr=0.5, batch_size=16, episode=3, dev_batch=30)
    torch.manual_seed(1)
    student = MLP(2, (4,), 3)
    start = {name: p.detach().clone() for name, p in student.named_parameters()}
    teacher = LossTeacher(num_classes=3, hidden=1)
    with torch.no_grad():
        teacher.directions.normal_(0.0, 0.2)
    before = [p.detach().clone() for p in teacher.parameters()]
    teach(
        student, train, dev, config, teacher, torch.optim.SGD(teacher.parameters(), lr=0.1), seed=9
    )

    # rebuild the episode: same minibatches, states (no statistics yet: 1.0), whole dev set
    reference = LossTeacher(num_classes=3, hidden=1)
    for p, value in zip(reference.parameters(), before):
        p.data.copy_(value)
    loader = make_loader(
        train, 16, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(9)
    )
    batches = list(loader)
    states = [torch.tensor([t / 3, 1.0, 1.0, 1.0]) for t in range(3)]

    def inner(w, t):
        _, x, y = batches[t]
        return dynamic_loss(functional_call(student, w, (x,)), y, *reference(states[t]))

    def outer(w):
        return expected_error(functional_call(student, w, (dev.inputs,)), dev.targets)

    result = unrolled_hypergradient(start, inner, outer, list(reference.parameters()), 3, 0.5)
    for old, new, grad in zip(before, teacher.parameters(), result.grads):
        torch.testing.assert_close(new.detach(), old - 0.1 * grad)
    assert any(grad.abs().sum() > 0 for grad in result.grads)


def test_train_teacher_changes_the_teacher_and_checks_its_arguments():
    train, dev = _blobs(60, 7), _blobs(30, 8)
    config = TeachingConfig(
        steps=6, warmup_steps=0, lr=0.3, batch_size=16, episode=3, dev_batch=10, teacher_lr=0.05
    )
    teacher, logs = train_teacher(lambda: MLP(2, (4,), 3), train, dev, config, runs=2, seed=0)
    assert len(logs) == 2 and len(logs[0].phi) == 2
    assert not torch.equal(teacher.base.detach(), torch.eye(3))
    with pytest.raises(ValueError, match="runs"):
        train_teacher(lambda: MLP(2, (4,), 3), train, dev, config, runs=0)
    with pytest.raises(ValueError, match="meta_optimizer"):
        teach(
            MLP(2, (4,), 3), train, dev, config, None, torch.optim.SGD(teacher.parameters(), lr=0.1)
        )
    with pytest.raises(ValueError, match="episode"):
        TeachingConfig(episode=0)
    with pytest.raises(ValueError, match="metric"):
        TeachingConfig(metric="accuracy")
    with pytest.raises(ValueError, match="batch_size"):
        teach(MLP(2, (4,), 3), _blobs(8, 9), dev, config)


def test_nll_weight_mixes_cross_entropy_into_the_learned_loss():
    torch.manual_seed(2)
    logits, target = torch.randn(8, 3), torch.randint(0, 3, (8,))
    teacher, state = LossTeacher(3, hidden=0), torch.ones(4)
    learned = dynamic_loss(logits, target, *teacher(state))
    ce = F.cross_entropy(logits, target)
    torch.testing.assert_close(
        student_loss(logits, target, teacher, state, 0.25), 0.25 * ce + 0.75 * learned
    )
    torch.testing.assert_close(student_loss(logits, target, teacher, state, 1.0), ce)
    with pytest.raises(ValueError, match="nll_weight"):
        TeachingConfig(nll_weight=1.5)
