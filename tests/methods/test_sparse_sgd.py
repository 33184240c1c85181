"""curriclab.methods.sparse_sgd: SGD that leaves entries without a gradient alone."""

import copy

import pytest
import torch

from curriclab.methods.sparse_sgd import SparseSGD

# ---------------------------------------------------------------- SparseSGD


def _restoring_sgd_steps(start, grads, lr, momentum):
    """Reference: a plain torch SGD step, then value and momentum of zero-gradient entries are
    copied back from clones taken before the step (what apple/ml-data-parameters does)."""
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


def test_sparse_sgd_clamp_survives_a_state_dict_round_trip():
    """The bounds are a group setting: a resumed optimizer keeps clamping what it updates."""
    param = torch.zeros(4, requires_grad=True)
    optimizer = SparseSGD([param], lr=1.0, momentum=0.0, clamp=(-0.5, 0.5))
    resumed = torch.zeros(4, requires_grad=True)
    resumed_optimizer = SparseSGD([resumed], lr=1.0, momentum=0.0)  # no clamp of its own
    resumed_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    resumed.grad = torch.tensor([-2.0, 2.0, 0.0, 0.1])
    resumed_optimizer.step()
    assert resumed.detach().tolist() == pytest.approx([0.5, -0.5, 0.0, -0.1])


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
    with pytest.raises(ValueError, match="clamp"):
        SparseSGD([param], lr=0.1, clamp=(1.0, -1.0))


def test_sparse_sgd_step_without_any_gradient_changes_nothing():
    param = torch.ones(4, requires_grad=True)
    optimizer = SparseSGD([param], lr=0.1)
    optimizer.step()  # grad is None
    param.grad = torch.zeros(4)
    optimizer.step()
    assert torch.equal(param.detach(), torch.ones(4))


def test_clamp_projects_the_updated_entries_and_leaves_the_others():
    """clamp=(low, high) equals an unclamped step followed by clamping the entries it moved."""
    start = torch.linspace(-2.0, 2.0, 30, dtype=torch.float64)
    start[5] = 7.0  # out of bounds but never touched: stays as it is
    grads = _sparse_grads((30,), steps=15, present_share=0.4, seed=4)
    for grad in grads:
        grad[5] = 0.0
    clamped = start.clone().requires_grad_()
    optimizer = SparseSGD([clamped], lr=3.0, momentum=0.9, clamp=(-1.5, 1.0))
    reference = start.clone().requires_grad_()
    reference_optimizer = SparseSGD([reference], lr=3.0, momentum=0.9)
    for grad in grads:
        for param, opt in ((clamped, optimizer), (reference, reference_optimizer)):
            param.grad = grad.clone()
            opt.step()
        with torch.no_grad():
            moved = grad != 0
            reference[moved] = reference[moved].clamp(-1.5, 1.0)
    torch.testing.assert_close(clamped.detach(), reference.detach(), rtol=0, atol=0)
    assert clamped[5].item() == 7.0
    with pytest.raises(ValueError, match="clamp"):
        SparseSGD([clamped], lr=0.1, clamp=(1.0, -1.0))


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("clamp", [None, (-0.4, 0.4)])
def test_sparse_gradients_step_like_dense_ones(momentum, clamp):
    """A sparse gradient listing the touched rows (some listed twice, their values adding up) makes
    exactly the step of the dense gradient with those rows non-zero."""
    generator = torch.Generator().manual_seed(4)
    start = 0.1 * torch.randn(20, generator=generator, dtype=torch.float64)
    results = []
    for sparse in (True, False):
        param = start.clone().requires_grad_()
        optimizer = SparseSGD([param], lr=0.5, momentum=momentum, clamp=clamp)
        step_generator = torch.Generator().manual_seed(5)
        for _ in range(10):
            rows = torch.randint(0, 20, (6,), generator=step_generator)
            values = torch.randn(6, generator=step_generator, dtype=torch.float64)
            if sparse:
                param.grad = torch.sparse_coo_tensor(
                    rows.unsqueeze(0), values, (20,), check_invariants=True
                )
            else:
                param.grad = torch.zeros(20, dtype=torch.float64).index_add_(0, rows, values)
            optimizer.step()
        results.append((param.detach(), optimizer.state[param].get("momentum_buffer")))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=1e-15)
    if momentum:
        torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-12, atol=1e-15)


def test_sparse_gradient_leaves_unlisted_rows_alone_and_rejects_matrices():
    param = torch.arange(6, dtype=torch.float64).requires_grad_()
    optimizer = SparseSGD([param], lr=1.0, momentum=0.9)
    param.grad = torch.sparse_coo_tensor(
        torch.tensor([[1, 4]]),
        torch.tensor([1.0, -1.0], dtype=torch.float64),
        (6,),
        check_invariants=True,
    )
    optimizer.step()
    assert param.detach().tolist() == [0.0, 0.0, 2.0, 3.0, 5.0, 5.0]
    assert optimizer.state[param]["momentum_buffer"].tolist() == [0, 1, 0, 0, -1, 0]
    param.grad = torch.sparse_coo_tensor(
        torch.empty(1, 0, dtype=torch.long),
        torch.empty(0, dtype=torch.float64),
        (6,),
        check_invariants=True,
    )
    optimizer.step()  # an empty selection: nothing moves
    assert param.detach().tolist() == [0.0, 0.0, 2.0, 3.0, 5.0, 5.0]
    matrix = torch.zeros(2, 3, requires_grad=True)
    matrix.grad = torch.zeros(2, 3).to_sparse()
    with pytest.raises(ValueError, match="1-D"):
        SparseSGD([matrix], lr=0.1).step()
