"""The teacher (state -> Phi_t), the student observer, and the L2T student/teacher loops."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from curriclab.core.data import IndexedDataset, make_loader
from curriclab.core.models import MLP
from curriclab.experiments.dynamic_loss_l2t import errors_by_arm, evaluate_arms, phi_trajectory
from curriclab.methods.dynamic_loss import dynamic_loss, expected_error
from curriclab.methods.hypergradient import unrolled_hypergradient
from curriclab.methods.l2t import TeachingConfig, student_loss, teach, train_teacher
from curriclab.methods.teacher import FEATURES, LossTeacher, StudentObserver, without_off_diagonal


def _blobs(n: int, seed: int) -> IndexedDataset:
    generator = torch.Generator().manual_seed(seed)
    targets = torch.arange(3).repeat(n // 3 + 1)[:n]
    centres = torch.tensor([[0.0, 2.0], [2.0, 0.0], [-2.0, -2.0]])
    return IndexedDataset(centres[targets] + torch.randn(n, 2, generator=generator), targets)


def test_teacher_starts_at_scaled_identity_and_has_the_right_shapes():
    teacher = LossTeacher(num_classes=4, hidden=3, scale=2.0)
    phi, bias = teacher(torch.rand(len(FEATURES)))
    assert phi.shape == (4, 4) and bias.shape == (4,)
    torch.testing.assert_close(phi, 2.0 * torch.eye(4))
    torch.testing.assert_close(bias, torch.zeros(4))


def test_teacher_output_follows_its_formula_and_round_trips():
    torch.manual_seed(0)
    teacher = LossTeacher(num_classes=3, hidden=2)
    with torch.no_grad():
        teacher.directions.normal_()
        teacher.bias.normal_()
    state = torch.tensor([0.5, 0.3, 0.1, 0.2])
    gates = torch.tanh(teacher.encoder.weight @ state + teacher.encoder.bias)
    phi, bias = teacher(state)
    torch.testing.assert_close(phi, teacher.base + gates[0] * teacher.directions[0] + gates[1] * teacher.directions[1])
    copy = LossTeacher(num_classes=3, hidden=2)
    copy.load_state_dict(teacher.state_dict())
    for a, b in zip(copy(state), (phi, bias)):
        torch.testing.assert_close(a, b)


def test_without_off_diagonal_keeps_the_diagonal_and_bias_only():
    torch.manual_seed(3)
    teacher = LossTeacher(num_classes=4, hidden=2)
    with torch.no_grad():
        teacher.base.normal_()
        teacher.directions.normal_()
        teacher.bias.normal_()
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


def test_cross_entropy_run_is_plain_sgd_on_the_seeded_minibatches():
    train, dev = _blobs(60, 0), _blobs(30, 1)
    config = TeachingConfig(steps=0, warmup_steps=7, lr=0.3, batch_size=16, episode=3, dev_batch=10)
    torch.manual_seed(0)
    student, reference = MLP(2, (4,), 3), MLP(2, (4,), 3)
    reference.load_state_dict(student.state_dict())
    log = teach(student, train, dev, config, seed=5)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.3)
    loader = make_loader(train, 16, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(5))
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
    teach(student, train, dev, config, teacher, torch.optim.SGD(teacher.parameters(), lr=0.1), seed=9)

    # rebuild the episode: same minibatches, states (no statistics yet: 1.0), whole dev set
    reference = LossTeacher(num_classes=3, hidden=1)
    for p, value in zip(reference.parameters(), before):
        p.data.copy_(value)
    loader = make_loader(train, 16, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(9))
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


def test_arms_share_initial_weights_and_minibatches():
    train, dev, test = _blobs(60, 4), _blobs(30, 5), _blobs(30, 6)
    config = TeachingConfig(steps=6, warmup_steps=3, lr=0.3, batch_size=16, episode=3, dev_batch=10)
    results = evaluate_arms(lambda: MLP(2, (4,), 3), {"a": None, "b": None, "c": LossTeacher(3, hidden=0)},
                            train, dev, test, config, seed=0)
    assert [r.arm for r in results] == ["a", "b", "c"]
    assert results[0].test_error == results[1].test_error and results[0].dev_error == results[1].dev_error
    assert results[0].log.dev_error == results[1].log.dev_error
    assert len(results[2].log.phi) == 2  # one Phi_t per taught episode
    torch.testing.assert_close(results[2].log.state[1][0], torch.tensor(6 / 9))  # progress after 3 + 3 steps
    table = errors_by_arm(results + results, "dev")
    assert list(table) == ["a", "b", "c"] and table["c"] == [results[2].dev_error] * 2
    with pytest.raises(ValueError, match="split"):
        errors_by_arm(results, "train")


def test_train_teacher_changes_the_teacher_and_checks_its_arguments():
    train, dev = _blobs(60, 7), _blobs(30, 8)
    config = TeachingConfig(steps=6, warmup_steps=0, lr=0.3, batch_size=16, episode=3, dev_batch=10,
                            teacher_lr=0.05)
    teacher, logs = train_teacher(lambda: MLP(2, (4,), 3), train, dev, config, runs=2, seed=0)
    assert len(logs) == 2 and len(logs[0].phi) == 2
    assert not torch.equal(teacher.base.detach(), torch.eye(3))
    with pytest.raises(ValueError, match="runs"):
        train_teacher(lambda: MLP(2, (4,), 3), train, dev, config, runs=0)
    with pytest.raises(ValueError, match="meta_optimizer"):
        teach(MLP(2, (4,), 3), train, dev, config, None, torch.optim.SGD(teacher.parameters(), lr=0.1))
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
    torch.testing.assert_close(student_loss(logits, target, teacher, state, 0.25), 0.25 * ce + 0.75 * learned)
    torch.testing.assert_close(student_loss(logits, target, teacher, state, 1.0), ce)
    with pytest.raises(ValueError, match="nll_weight"):
        TeachingConfig(nll_weight=1.5)


def test_arms_can_have_their_own_config_and_phi_is_summarised():
    train, dev, test = _blobs(60, 4), _blobs(30, 5), _blobs(30, 6)
    config = TeachingConfig(steps=6, warmup_steps=3, lr=0.3, batch_size=16, episode=3, dev_batch=10)
    longer = TeachingConfig(steps=6, warmup_steps=0, lr=0.3, batch_size=16, episode=2, dev_batch=10)
    arms = {"ce": None, "identity": LossTeacher(3, hidden=0)}
    results = evaluate_arms(lambda: MLP(2, (4,), 3), arms, train, dev, test, config, seed=0,
                            configs={"identity": longer})
    summary = phi_trajectory(results[1].log)
    assert len(summary["diagonal"]) == 3 and summary["progress"] == pytest.approx([0, 2 / 6, 4 / 6])
    assert summary["diagonal"] == pytest.approx([1.0] * 3) and summary["off_diagonal"] == pytest.approx([0.0] * 3)
    with pytest.raises(ValueError, match="no Phi_t"):
        phi_trajectory(results[0].log)
    with pytest.raises(ValueError, match="configs"):
        evaluate_arms(lambda: MLP(2, (4,), 3), arms, train, dev, test, config, seed=0, configs={"x": longer})
