"""DataParameters: the tempered loss, its gradients, decay, clamping and state."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from curriclab.core.data import make_loader, spl_toy_data
from curriclab.core.models import LogisticRegression
from curriclab.core.stats import roc_auc
from curriclab.core.training import seed_everything, train_epoch
from curriclab.methods.data_parameters import (
    DataParameters,
    _TemperedCrossEntropy,
    logit_gradient_norm,
)

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
    dp = DataParameters(3, 5, learn_class=True, learn_instance=True, init_class=0.95,
                        init_instance=0.05)
    targets = torch.tensor([0, 1, 2, 1, 0])
    torch.testing.assert_close(dp.sample_sigma(targets), torch.full((5,), 1.0))
    torch.testing.assert_close(dp.class_sigma(), torch.full((3,), 0.95))
    assert not dp.sample_sigma(targets).requires_grad


def _scaled_loss(logits, class_log, instance_log, mode, target, index):
    dp = DataParameters(3, 8, learn_class=mode != "instance",
                        learn_instance=mode != "class").double()
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

    def fused(z, class_table, instance_table):  # gradcheck wants dense gradients of dense inputs
        return _TemperedCrossEntropy.apply(
            z, class_table if learn_class else None,
            _DenseGradient.apply(instance_table) if learn_instance else None, target, index,
            0.3, 0.7,
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
    if learn_instance:  # a sparse gradient that lists exactly the batch's rows
        assert got[-1].is_sparse and got[-1]._indices()[0].tolist() == index.tolist()
    for a, b in zip(got, torch.autograd.grad(reference, [logits, *learnt])):
        torch.testing.assert_close(a.to_dense(), b, rtol=1e-12, atol=1e-14)


class _DenseGradient(torch.autograd.Function):
    """Identity whose backward turns a sparse gradient dense (for gradcheck)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad.to_dense()


def test_instance_gradient_has_the_closed_form():
    """d CE(z / sigma) / d log sigma = (z_y - sum_j p_j z_j) / sigma: negative (sigma grows) when
    the labelled class scores below the softmax-weighted average, i.e. for a misfit label."""
    dp = DataParameters(3, 4, learn_class=False, learn_instance=True, init_instance=2.0)
    logits = torch.tensor([[3.0, 0.0, -1.0], [3.0, 0.0, -1.0]])
    target, index = torch.tensor([0, 2]), torch.tensor([1, 3])
    dp.compute_losses(logits, target, index).sum().backward()
    probabilities = F.softmax(logits / 2.0, dim=1)
    expected = (logits[torch.arange(2), target] - (probabilities * logits).sum(1)) / 2.0
    grad = dp.instance_log_sigma.grad.to_dense()  # sparse: it lists the batch's rows
    torch.testing.assert_close(grad[index], expected)
    assert grad[3] < 0 < grad[1]  # misfit label 2: sigma grows
    assert grad[[0, 2]].tolist() == [0.0, 0.0]


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
    torch.testing.assert_close(dp.instance_log_sigma.detach(),
                               torch.tensor([math.log(0.5), 0.1, 0.0, math.log(4.0)]))
    optimizer = dp.make_optimizer(lr_class=1000.0, lr_instance=1000.0)
    dp.compute_losses(torch.tensor([[5.0, -5.0]] * 2), torch.tensor([1, 1]),
                      torch.tensor([1, 2])).sum().backward()
    optimizer.step()  # a huge step is projected back into [0.5, 4]
    sigma = dp.sample_sigma(torch.tensor([0, 1, 1, 0]))
    # joint: the sum of two clamped tables
    assert sigma.min() >= 0.5 - 1e-6 and sigma.max() <= 8.0 + 1e-5
    assert dp.instance_log_sigma[1].item() == pytest.approx(math.log(4.0))


def test_optimizer_clamp_equals_clamping_every_table_after_each_step():
    """make_optimizer clamps the entries it updates; with tables inside the bounds that is the same
    as the projection of every table after each step (clamp_())."""
    steps = []
    for builtin in (True, False):
        seed_everything(3)
        dp = DataParameters(3, 8, learn_class=True, learn_instance=True, clamp=(0.5, 2.0),
                            weight_decay_class=0.1, weight_decay_instance=0.2)
        optimizer = dp.make_optimizer(lr_class=5.0, lr_instance=5.0)
        if not builtin:
            for group in optimizer.param_groups:
                group["clamp"] = None
        for _ in range(6):
            target, index = torch.randint(0, 3, (4,)), torch.randperm(8)[:4]
            optimizer.zero_grad()
            dp.objective(index, dp.compute_losses(3 * torch.randn(4, 3), target, index)).backward()
            optimizer.step()
            if not builtin:
                dp.clamp_()
        steps.append(torch.cat([dp.class_log_sigma.detach(), dp.instance_log_sigma.detach()]))
    torch.testing.assert_close(steps[0], steps[1], rtol=0, atol=0)
    assert steps[0].min() >= math.log(0.5) and steps[0].max() <= math.log(2.0)


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
    # compute_losses checks ranges only when a gather fails; the error still names the argument
    for bad_target, bad_index, name in (
        (target, torch.tensor([0, 1, 2, 8]), "index"),
        (target, torch.tensor([0, 1, 2, -1]), "index"),
        (torch.tensor([0, 1, 3, 0]), index, "target"),
        (torch.tensor([0, -1, 2, 0]), index, "target"),
    ):
        for mode in ((True, True), (False, True), (True, False)):
            if name == "index" and not mode[1]:
                continue  # an index is only looked up when the instance table is learnt
            learnt = DataParameters(3, 8, learn_class=mode[0], learn_instance=mode[1])
            with pytest.raises(ValueError, match=name):
                learnt.compute_losses(logits, bad_target, bad_index)
    with pytest.raises(ValueError, match="logits"):
        dp.compute_losses(torch.randn(4), target, index)
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


def test_empty_batch_gives_empty_results():
    dp = DataParameters(3, 8, learn_class=True, learn_instance=True, weight_decay_instance=0.1)
    empty = torch.empty(0, dtype=torch.long)
    assert dp.sigma(empty, empty).shape == (0,)
    assert dp.weight_decay(empty, empty).item() == 0.0
    optimizer = dp.make_optimizer()
    before = [p.detach().clone() for p in dp.parameters()]
    losses = dp.compute_losses(torch.empty(0, 3, requires_grad=True), empty, empty)
    assert losses.shape == (0,)
    dp.objective(empty, losses).sum().backward()
    optimizer.step()
    for was, now in zip(before, dp.parameters()):
        assert torch.equal(was, now)


@pytest.mark.parametrize("shape", [(1, 3), (4, 1), (4, 3)])
def test_compute_losses_leaves_the_logits_untouched(shape):
    """The node works on a class-major copy; for one sample (or one class) the transpose of the
    logits is already contiguous, and scaling it in place would overwrite the caller's logits."""
    batch, classes = shape
    dp = DataParameters(classes, 8, learn_class=True, learn_instance=True, init_instance=2.0)
    logits = torch.randn(shape)
    kept = logits.clone()
    target, index = torch.zeros(batch, dtype=torch.long), torch.arange(batch)
    losses = dp.compute_losses(logits, target, index)
    assert torch.equal(logits, kept)
    reference = F.cross_entropy(logits / dp.sigma(target, index).unsqueeze(1), target,
                                reduction="none")
    torch.testing.assert_close(losses, reference)


@pytest.mark.parametrize("mode", [(True, False), (False, True), (True, True)])
def test_sparse_instance_gradients_train_like_dense_ones(mode):
    """compute_losses gives the instance table a sparse gradient; SparseSGD on it must make the same
    steps as on the dense gradient of the plain composition (forward + cross-entropy + decay),
    batches with a repeated sample included."""
    tables = []
    for fused in (True, False):
        seed_everything(5)
        dp = DataParameters(3, 8, learn_class=mode[0], learn_instance=mode[1], clamp=(0.3, 3.0),
                            weight_decay_class=0.1, weight_decay_instance=0.2).double()
        optimizer = dp.make_optimizer(lr_class=0.7, lr_instance=0.7, momentum=0.9)
        generator = torch.Generator().manual_seed(6)
        for step in range(8):
            target = torch.randint(0, 3, (5,), generator=generator)
            index = torch.randint(0, 8, (5,), generator=generator)  # repeats happen
            logits = 2 * torch.randn(5, 3, generator=generator, dtype=torch.float64)
            optimizer.zero_grad()
            if fused:
                objective = dp.objective(index, dp.compute_losses(logits, target, index))
            else:
                objective = (F.cross_entropy(dp(logits, target, index), target,
                                             reduction="none").mean()
                             + dp.weight_decay(target, index))
            objective.backward()
            if mode[1]:
                assert dp.instance_log_sigma.grad.is_sparse == fused
            optimizer.step()
        tables.append(torch.cat([dp.class_log_sigma.detach(), dp.instance_log_sigma.detach()]))
    torch.testing.assert_close(tables[0], tables[1], rtol=1e-12, atol=1e-14)
    assert not torch.equal(tables[0], torch.zeros_like(tables[0]))


def test_instance_parameters_postpone_flipped_labels_in_training():
    """On two blobs with 40 of 400 labels flipped, the flipped samples end with a larger mean
    sigma than the clean ones, while clean entries that never had a gradient would stay at 1."""
    seed_everything(0)
    data, flipped = spl_toy_data(n_per_class=200, n_anomalies=40, seed=0)
    model = LogisticRegression()
    dp = DataParameters(2, len(data), learn_class=False, learn_instance=True)
    optimizers = [torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                  dp.make_optimizer(lr_instance=2.0)]
    loader = make_loader(data, 32, shuffle=True, generator=torch.Generator().manual_seed(0))
    for _ in range(15):
        train_epoch(model, loader, optimizers, methods=[dp], progress=False)
    sigma = dp.sample_sigma(data.targets)
    assert sigma[flipped].mean() > 2.0 * sigma[~flipped].mean()
    assert roc_auc(sigma, flipped) > 0.9


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


def test_initial_sigma_outside_the_clamp_is_rejected():
    with pytest.raises(ValueError, match="init_instance"):
        DataParameters(3, 5, learn_instance=True, init_instance=0.001)  # below the default 1/20
