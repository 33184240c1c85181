"""SparseSGD, DataParameters and the noise-detection helpers of notebook 05."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from curriclab.core.data import make_loader, spl_toy_data
from curriclab.core.models import LogisticRegression
from curriclab.core.stats import roc_auc, roc_curve
from curriclab.core.training import seed_everything, train_epoch
from curriclab.experiments.data_parameters import (
    DataParameterSetup,
    NoisyRun,
    final_accuracy,
    noisy_subset,
    relabel_into_classes,
    run_noisy_training,
)
from curriclab.methods.data_parameters import (
    DataParameters,
    _TemperedCrossEntropy,
    logit_gradient_norm,
)
from curriclab.methods.sparse_sgd import SparseSGD

# ---------------------------------------------------------------- SparseSGD


def _restoring_sgd_steps(start, grads, lr, momentum):
    """Reference: a plain torch SGD step, then value and momentum of zero-gradient entries are
    copied back from clones taken before the step (what the original implementation does)."""
    param = start.clone().requires_grad_()
    optimizer = torch.optim.SGD([param], lr=lr, momentum=momentum)
    for grad in grads:
        before = param.detach().clone()
        state = optimizer.state.get(param, {})
        buffer_before = state["momentum_buffer"].clone() if "momentum_buffer" in state else None
        param.grad = grad.clone()
        optimizer.step()
        absent = grad == 0
        with torch.no_grad():
            param[absent] = before[absent]
            if buffer_before is not None:
                optimizer.state[param]["momentum_buffer"][absent] = buffer_before[absent]
    return param.detach(), optimizer.state[param]["momentum_buffer"]


def _sparse_grads(shape, steps, present_share, seed):
    generator = torch.Generator().manual_seed(seed)
    grads = []
    for _ in range(steps):
        grad = torch.randn(shape, generator=generator, dtype=torch.float64)
        grad[torch.rand(shape, generator=generator) > present_share] = 0.0
        grads.append(grad)
    return grads


def _sparse_sgd_steps(start, grads, lr, momentum):
    param = start.clone().requires_grad_()
    optimizer = SparseSGD([param], lr=lr, momentum=momentum)
    for grad in grads:
        param.grad = grad.clone()
        optimizer.step()
    return param.detach(), optimizer


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sparse_sgd_equals_torch_sgd_when_every_entry_has_a_gradient(momentum):
    start = torch.randn(7, 5, dtype=torch.float64)
    grads = _sparse_grads((7, 5), steps=12, present_share=1.0, seed=1)
    reference = start.clone().requires_grad_()
    torch_sgd = torch.optim.SGD([reference], lr=0.3, momentum=momentum)
    for grad in grads:
        reference.grad = grad.clone()
        torch_sgd.step()
    result, _ = _sparse_sgd_steps(start, grads, lr=0.3, momentum=momentum)
    torch.testing.assert_close(result, reference.detach(), rtol=0, atol=0)


def test_sparse_sgd_matches_the_clone_and_restore_reference():
    start = torch.randn(200, dtype=torch.float64)
    grads = _sparse_grads((200,), steps=40, present_share=0.1, seed=2)
    expected, expected_buffer = _restoring_sgd_steps(start, grads, lr=0.2, momentum=0.9)
    result, optimizer = _sparse_sgd_steps(start, grads, lr=0.2, momentum=0.9)
    torch.testing.assert_close(result, expected, rtol=0, atol=0)
    buffer = next(iter(optimizer.state.values()))["momentum_buffer"]
    torch.testing.assert_close(buffer, expected_buffer, rtol=0, atol=0)


def test_absent_entries_keep_value_and_momentum_through_many_steps():
    param = torch.zeros(6, requires_grad=True)
    optimizer = SparseSGD([param], lr=0.5, momentum=0.9)
    param.grad = torch.tensor([1.0, 2.0, 0.0, 0.0, 0.0, 0.0])
    optimizer.step()
    value, buffer = param.detach().clone(), optimizer.state[param]["momentum_buffer"].clone()
    for _ in range(25):  # only entry 5 is touched from now on
        param.grad = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
        optimizer.step()
    assert torch.equal(param.detach()[:5], value[:5])
    assert torch.equal(optimizer.state[param]["momentum_buffer"][:5], buffer[:5])
    # entry 0 comes back: its old momentum (1.0) is used, not a decayed one
    param.grad = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    optimizer.step()
    assert param.detach()[0].item() == pytest.approx(-0.5 - 0.5 * (0.9 * 1.0 + 1.0))


def test_sparse_sgd_state_dict_round_trip():
    start = torch.randn(50, dtype=torch.float64)
    grads = _sparse_grads((50,), steps=20, present_share=0.3, seed=3)
    param, optimizer = _sparse_sgd_steps(start, grads[:10], lr=0.1, momentum=0.9)
    resumed = param.clone().requires_grad_()
    resumed_optimizer = SparseSGD([resumed], lr=0.7, momentum=0.1)
    resumed_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # as if saved to disk
    original = optimizer.param_groups[0]["params"][0]
    for grad in grads[10:]:
        for p, opt in ((original, optimizer), (resumed, resumed_optimizer)):
            p.grad = grad.clone()
            opt.step()
    torch.testing.assert_close(resumed.detach(), original.detach(), rtol=0, atol=0)


def test_sparse_sgd_rejects_bad_settings():
    param = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="weight_decay"):
        SparseSGD([param], lr=0.1, weight_decay=1e-4)
    with pytest.raises(ValueError, match="weight_decay"):
        SparseSGD([{"params": [param], "weight_decay": 0.5}], lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        SparseSGD([param], lr=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        SparseSGD([param], lr=0.1, momentum=1.0)


def test_sparse_sgd_step_without_any_gradient_changes_nothing():
    param = torch.ones(4, requires_grad=True)
    optimizer = SparseSGD([param], lr=0.1)
    optimizer.step()  # grad is None
    param.grad = torch.zeros(4)
    optimizer.step()
    assert torch.equal(param.detach(), torch.ones(4))


# ---------------------------------------------------------------- DataParameters


def _batch():
    target = torch.tensor([0, 2, 2, 1])
    index = torch.tensor([5, 0, 3, 7])
    return target, index


@pytest.mark.parametrize("mode", ["class", "instance", "joint"])
def test_sigma_formula_for_each_mode(mode):
    dp = DataParameters(3, 8, learn_class=mode != "instance", learn_instance=mode != "class")
    with torch.no_grad():
        dp.class_log_sigma.copy_(torch.tensor([0.1, -0.2, 0.3]))
        dp.instance_log_sigma.copy_(torch.linspace(-1, 1, 8))
    target, index = _batch()
    expected = {
        "class": torch.exp(dp.class_log_sigma[target]),
        "instance": torch.exp(dp.instance_log_sigma[index]),
        "joint": torch.exp(dp.class_log_sigma[target]) + torch.exp(dp.instance_log_sigma[index]),
    }[mode]
    torch.testing.assert_close(dp.sigma(target, index), expected)
    logits = torch.randn(4, 3)
    torch.testing.assert_close(dp(logits, target, index), logits / expected[:, None])
    assert dp.mode == mode


def test_initial_sigma_and_sample_sigma_view():
    dp = DataParameters(3, 5, learn_class=True, learn_instance=True, init_class=0.95, init_instance=0.05)
    targets = torch.tensor([0, 1, 2, 1, 0])
    torch.testing.assert_close(dp.sample_sigma(targets), torch.full((5,), 1.0))
    torch.testing.assert_close(dp.class_sigma(), torch.full((3,), 0.95))
    assert not dp.sample_sigma(targets).requires_grad


def _scaled_loss(logits, class_log, instance_log, mode, target, index):
    dp = DataParameters(3, 8, learn_class=mode != "instance", learn_instance=mode != "class").double()
    parameters = {"class_log_sigma": class_log, "instance_log_sigma": instance_log}
    return functional_call(dp, parameters, (logits, target, index), strict=True).log_softmax(1)


@pytest.mark.parametrize("mode", ["class", "instance", "joint"])
def test_gradients_through_logits_and_sigma_match_finite_differences(mode):
    generator = torch.Generator().manual_seed(0)
    target, index = _batch()
    inputs = (
        torch.randn(4, 3, generator=generator, dtype=torch.float64, requires_grad=True),
        (0.3 * torch.randn(3, generator=generator, dtype=torch.float64)).requires_grad_(),
        (0.3 * torch.randn(8, generator=generator, dtype=torch.float64)).requires_grad_(),
    )
    assert torch.autograd.gradcheck(
        lambda *args: _scaled_loss(*args, mode, target, index), inputs, eps=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("mode", ["class", "instance", "joint"])
def test_fused_loss_and_decay_match_finite_differences_and_the_composition(mode):
    """loss_fn computes the losses and the decay in one autograd node with closed-form gradients:
    gradcheck it, and compare the training objective's gradients with plain autograd through
    forward + cross_entropy + weight_decay."""
    generator = torch.Generator().manual_seed(1)
    target, index = torch.tensor([0, 2, 2, 1, 2]), torch.tensor([4, 0, 7, 3, 5])
    learn_class, learn_instance = mode != "instance", mode != "class"
    tables = (
        (0.3 * torch.randn(3, generator=generator, dtype=torch.float64)).requires_grad_(),
        (0.3 * torch.randn(8, generator=generator, dtype=torch.float64)).requires_grad_(),
    )
    logits = torch.randn(5, 3, generator=generator, dtype=torch.float64, requires_grad=True)

    def fused(z, class_table, instance_table):
        return _TemperedCrossEntropy.apply(
            z, class_table if learn_class else None, instance_table if learn_instance else None,
            target, index, 0.3, 0.7,
        )

    assert torch.autograd.gradcheck(fused, (logits, *tables), eps=1e-6, atol=1e-6)

    dp = DataParameters(3, 8, learn_class=learn_class, learn_instance=learn_instance,
                        weight_decay_class=0.3, weight_decay_instance=0.7).double()
    with torch.no_grad():
        dp.class_log_sigma.copy_(tables[0])
        dp.instance_log_sigma.copy_(tables[1])
    learnt = [p for p in dp.parameters() if p.requires_grad]
    objective = dp.objective(index, dp.compute_losses(logits, target, index))
    got = torch.autograd.grad(objective, [logits, *learnt])
    reference = (F.cross_entropy(dp(logits, target, index), target, reduction="none").mean()
                 + dp.weight_decay(target, index))
    assert objective.item() == pytest.approx(reference.item(), rel=1e-12)
    for a, b in zip(got, torch.autograd.grad(reference, [logits, *learnt])):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_instance_gradient_has_the_closed_form():
    """d CE(z / sigma) / d log sigma = (z_y - sum_j p_j z_j) / sigma: negative (sigma grows) when
    the labelled class scores below the softmax-weighted average, i.e. for a misfit label."""
    dp = DataParameters(3, 4, learn_class=False, learn_instance=True, init_instance=2.0)
    logits = torch.tensor([[3.0, 0.0, -1.0], [3.0, 0.0, -1.0]])
    target, index = torch.tensor([0, 2]), torch.tensor([1, 3])
    dp.compute_losses(logits, target, index).sum().backward()
    probabilities = F.softmax(logits / 2.0, dim=1)
    expected = (logits[torch.arange(2), target] - (probabilities * logits).sum(1)) / 2.0
    torch.testing.assert_close(dp.instance_log_sigma.grad[index], expected)
    assert dp.instance_log_sigma.grad[3] < 0 < dp.instance_log_sigma.grad[1]  # misfit label 2: sigma grows
    assert dp.instance_log_sigma.grad[[0, 2]].tolist() == [0.0, 0.0]


def test_weight_decay_touches_only_the_batch_entries():
    dp = DataParameters(
        3, 8, learn_class=True, learn_instance=True, init_class=2.0, init_instance=3.0,
        weight_decay_class=0.1, weight_decay_instance=0.01,
    )
    target, index = _batch()
    term = dp.weight_decay(target, index)
    expected = 0.5 * 0.1 * 4 * math.log(2.0) ** 2 + 0.5 * 0.01 * 4 * math.log(3.0) ** 2
    assert term.item() == pytest.approx(expected)
    term.backward()
    class_grad = torch.tensor([1.0, 1.0, 2.0]) * 0.1 * math.log(2.0)  # class 2 twice in the batch
    torch.testing.assert_close(dp.class_log_sigma.grad, class_grad)
    instance_grad = torch.zeros(8)
    instance_grad[index] = 0.01 * math.log(3.0)
    torch.testing.assert_close(dp.instance_log_sigma.grad, instance_grad)


def test_hook_adds_the_decay_of_the_last_forward_batch():
    dp = DataParameters(3, 8, learn_class=False, learn_instance=True, init_instance=2.0,
                        weight_decay_instance=0.5)
    target, index = _batch()
    with pytest.raises(RuntimeError, match="forward"):
        dp.objective(index, torch.ones(4))
    losses = dp.compute_losses(torch.randn(4, 3), target, index)
    expected = losses.mean() + 0.5 * 0.5 * 4 * math.log(2.0) ** 2
    assert dp.objective(index, losses).item() == pytest.approx(expected.item())
    with pytest.raises(RuntimeError, match="same batch"):
        dp.objective(index.flip(0), losses)


def test_clamp_and_optimizer_post_step_clamp():
    dp = DataParameters(2, 4, learn_class=True, learn_instance=True, clamp=(0.5, 4.0))
    with torch.no_grad():
        dp.class_log_sigma.copy_(torch.tensor([-5.0, 5.0]))
        dp.instance_log_sigma.copy_(torch.tensor([-5.0, 0.1, 0.0, 5.0]))
    dp.clamp_()
    torch.testing.assert_close(dp.class_sigma(), torch.tensor([0.5, 4.0]))
    torch.testing.assert_close(dp.instance_log_sigma.detach(), torch.tensor([math.log(0.5), 0.1, 0.0, math.log(4.0)]))
    optimizer = dp.make_optimizer(lr_class=1000.0, lr_instance=1000.0)
    dp.compute_losses(torch.tensor([[5.0, -5.0]] * 2), torch.tensor([1, 1]), torch.tensor([1, 2])).sum().backward()
    optimizer.step()  # a huge step is projected back into [0.5, 4]
    sigma = dp.sample_sigma(torch.tensor([0, 1, 1, 0]))
    assert sigma.min() >= 0.5 - 1e-6 and sigma.max() <= 8.0 + 1e-5  # joint: sum of two clamped tables
    assert dp.instance_log_sigma[1].item() == pytest.approx(math.log(4.0))


def test_data_parameters_state_dict_round_trip():
    dp = DataParameters(3, 8, learn_class=True, learn_instance=True)
    optimizer = dp.make_optimizer(lr_class=0.5, lr_instance=0.5)
    target, index = _batch()
    dp.compute_losses(torch.randn(4, 3), target, index).sum().backward()
    optimizer.step()
    copy = DataParameters(3, 8, learn_class=True, learn_instance=True)
    copy.load_state_dict(dp.state_dict())
    torch.testing.assert_close(copy.sample_sigma(torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])),
                               dp.sample_sigma(torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])))
    assert not torch.equal(dp.instance_log_sigma.detach(), torch.zeros(8))


def test_bad_input_is_rejected_with_the_argument_named():
    dp = DataParameters(3, 8, learn_class=True, learn_instance=True)
    target, index = _batch()
    logits = torch.randn(4, 3)
    with pytest.raises(ValueError, match="index"):
        dp(logits, target, torch.tensor([0, 1, 2, 8]))
    with pytest.raises(ValueError, match="index"):
        dp(logits, target, torch.tensor([0, 1, 2, -1]))
    with pytest.raises(ValueError, match="target"):
        dp(logits, torch.tensor([0, 1, 3, 0]), index)
    with pytest.raises(ValueError, match="logits"):
        dp(torch.randn(4, 5), target, index)
    with pytest.raises(ValueError, match="logits"):
        dp(torch.randn(3, 3), target, index)
    with pytest.raises(ValueError, match="target and index"):
        dp(logits, target, index[:3])
    with pytest.raises(TypeError, match="int64"):
        dp(logits, target.float(), index)
    with pytest.raises(ValueError, match="learn_class"):
        DataParameters(3, 8, learn_class=False, learn_instance=False)
    with pytest.raises(ValueError, match="init_instance"):
        DataParameters(3, 8, init_instance=0.0)
    with pytest.raises(ValueError, match="clamp"):
        DataParameters(3, 8, clamp=(2.0, 1.0))
    with pytest.raises(ValueError, match="weight_decay_class"):
        DataParameters(3, 8, weight_decay_class=-1.0)
    with pytest.raises(ValueError, match="num_samples"):
        DataParameters(3, -1)
    with pytest.raises(ValueError, match="mode"):
        DataParameterSetup(mode="both")


def test_empty_batch_gives_empty_results():
    dp = DataParameters(3, 8, learn_class=True, learn_instance=True, weight_decay_instance=0.1)
    empty = torch.empty(0, dtype=torch.long)
    assert dp.sigma(empty, empty).shape == (0,)
    assert dp.weight_decay(empty, empty).item() == 0.0


def test_instance_parameters_postpone_flipped_labels_in_training():
    """On two blobs with 40 of 400 labels flipped, the flipped samples end with a larger mean
    sigma than the clean ones, while clean entries that never had a gradient would stay at 1."""
    seed_everything(0)
    data, flipped = spl_toy_data(n_per_class=200, n_anomalies=40, seed=0)
    model = LogisticRegression()
    dp = DataParameters(2, len(data), learn_class=False, learn_instance=True)
    optimizers = [torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), dp.make_optimizer(lr_instance=2.0)]
    loader = make_loader(data, 32, shuffle=True, generator=torch.Generator().manual_seed(0))
    for _ in range(15):
        train_epoch(model, loader, optimizers, methods=[dp], progress=False)
    sigma = dp.sample_sigma(data.targets)
    assert sigma[flipped].mean() > 2.0 * sigma[~flipped].mean()
    assert roc_auc(sigma, flipped) > 0.9


# ---------------------------------------------------------------- detection and class noise


def test_roc_auc_equals_the_pairwise_probability_with_ties():
    generator = torch.Generator().manual_seed(4)
    scores = torch.randint(0, 6, (60,), generator=generator).float()
    positives = torch.rand(60, generator=generator) < 0.4
    pos, neg = scores[positives], scores[~positives]
    pairwise = ((pos[:, None] > neg[None]).double() + 0.5 * (pos[:, None] == neg[None]).double()).mean()
    assert roc_auc(scores, positives) == pytest.approx(pairwise.item())
    fpr, tpr = roc_curve(scores, positives)
    assert (fpr[0].item(), tpr[0].item(), fpr[-1].item(), tpr[-1].item()) == (0.0, 0.0, 1.0, 1.0)
    assert torch.all(fpr.diff() >= 0) and torch.all(tpr.diff() >= 0)
    assert roc_auc(torch.arange(4.0), torch.tensor([False, False, True, True])) == 1.0
    with pytest.raises(ValueError, match="positives"):
        roc_auc(torch.ones(3), torch.zeros(3, dtype=torch.bool))


def test_relabel_into_classes_reaches_the_requested_share():
    targets = torch.arange(5).repeat_interleave(100)
    noisy, mask = relabel_into_classes(targets, [1, 3], fraction=0.4, seed=0)
    for label in (1, 3):
        labelled = noisy == label
        assert float((mask & labelled).sum() / labelled.sum()) == pytest.approx(0.4, abs=0.01)
    assert torch.equal(noisy[~mask], targets[~mask]) and not torch.isin(targets[mask], torch.tensor([1, 3])).any()
    with pytest.raises(ValueError, match="fraction"):
        relabel_into_classes(targets, [1], fraction=1.0)
    with pytest.raises(ValueError, match="noisy_classes"):
        relabel_into_classes(targets, [7], fraction=0.2)


def test_logit_gradient_norm_matches_autograd_and_shrinks_for_large_sigma():
    logits = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    sigmas = torch.tensor([0.1, 1.0, 3.0, 20.0], dtype=torch.float64)
    norms = logit_gradient_norm(logits, 1, sigmas)
    for sigma, norm in zip(sigmas, norms):
        z = logits.clone().requires_grad_()
        F.cross_entropy((z / sigma)[None], torch.tensor([1])).backward()
        assert norm.item() == pytest.approx(z.grad.norm().item())
    assert norms[-1] < norms[-2] < norms[1]
    with pytest.raises(ValueError, match="target"):
        logit_gradient_norm(logits, 3, sigmas)
    with pytest.raises(ValueError, match="sigmas"):
        logit_gradient_norm(logits, 0, torch.tensor([0.0]))


def test_noisy_subset_corrupts_the_requested_share(mnist_test):
    train, corrupted = noisy_subset(mnist_test, 1000, 0.3, seed=1)
    original = mnist_test.targets[train.source_indices]
    assert len(train) == 1000 and int(corrupted.sum()) == 300
    assert torch.all(train.targets[corrupted] != original[corrupted])
    assert torch.equal(train.targets[~corrupted], original[~corrupted])


def test_initial_sigma_outside_the_clamp_is_rejected():
    with pytest.raises(ValueError, match="init_instance"):
        DataParameters(3, 5, learn_instance=True, init_instance=0.001)  # below the default 1/20


def test_run_noisy_training_records_every_epoch_and_is_reproducible():
    data, _ = spl_toy_data(n_per_class=100, n_anomalies=20, seed=1)
    setup = DataParameterSetup(mode="joint", epochs=3, hidden=(8,), init_class=0.5, init_instance=0.5,
                               lr_instance=2.0, batch_size=50)
    first, second = (run_noisy_training(data, data, setup) for _ in range(2))
    assert len(first.test_accuracy) == 3 and first.plain_losses.shape == (3, 200)
    assert first.sample_sigma.shape == (4, 200) and first.class_sigma.shape == (4, 2)
    torch.testing.assert_close(first.sample_sigma[0], torch.ones(200))
    assert first.test_accuracy == second.test_accuracy
    assert torch.equal(first.sample_sigma, second.sample_sigma)
    baseline = run_noisy_training(data, data, DataParameterSetup(mode="baseline", epochs=1, hidden=(8,)))
    assert baseline.sample_sigma.numel() == 0 and baseline.plain_losses.shape == (1, 200)
    with pytest.raises(ValueError, match="empty"):
        run_noisy_training(data.subset([]), data, setup)


def test_final_accuracy_averages_the_last_epochs():
    run = NoisyRun(DataParameterSetup(), [0.1, 0.5, 0.6, 0.7], [], torch.empty(0), torch.empty(0), torch.empty(0))
    assert final_accuracy(run, last=3) == pytest.approx(0.6)
    assert final_accuracy(run, last=10) == pytest.approx(0.475)
    with pytest.raises(ValueError, match="last"):
        final_accuracy(run, last=0)
