"""Data parameters (Saxena, Tuzel & DeCoste, NeurIPS 2019): a learnt temperature per class/sample.

Each sample's logits are divided by a temperature sigma before the softmax. A large sigma flattens
the softmax, so the sample's loss and its gradient shrink: the sample is "postponed". The sigmas
are learnt by gradient descent together with the model, which turns them into a curriculum that
changes during training. Only training uses them; inference runs the plain model.

Storage is in log space (`sigma = exp(log_sigma)` stays positive). Per sample:
class level `exp(class[y])`, instance level `exp(instance[i])`, joint level their sum.

Plugging into `curriclab.core.training.train_epoch` (it is a `SampleMethod`)::

    dp = DataParameters(num_classes, len(train), learn_class=False, learn_instance=True)
    optimizers = [model_optimizer, dp.make_optimizer(lr_instance=0.2)]  # clamps what it updates
    train_epoch(model, loader, optimizers, methods=[dp])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from curriclab.core.protocol import SampleMethod
from curriclab.core.state import check_keys, check_tensor, finite_or_raise
from curriclab.methods.sparse_sgd import SparseSGD

__all__ = ["DataParameters", "logit_gradient_norm"]


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def logit_gradient_norm(logits: Tensor, target: int, sigmas: Tensor) -> Tensor:
    """Norm of d CE(z / sigma, y) / d z for one logit vector z at each temperature sigma.

    The gradient is (softmax(z / sigma) - onehot(y)) / sigma: its softmax part is bounded, so a
    large sigma shrinks the sample's push on the model roughly like 1 / sigma.

    Args:
        logits: [C] one sample's logits z.
        target: its class y in [0, C).
        sigmas: [S] temperatures > 0 (anything `torch.as_tensor` takes).

    Returns:
        [S] gradient norms >= 0, in the dtype of `logits`.

    Raises:
        ValueError: `logits` is not 1-D, `target` outside [0, C), or a sigma <= 0.
    """
    if logits.ndim != 1 or not 0 <= target < len(logits):
        raise ValueError(f"logits must be 1-D and target in [0, {len(logits)}), got {target}")
    sigmas = torch.as_tensor(sigmas, dtype=logits.dtype).reshape(-1, 1)
    if (sigmas <= 0).any():
        raise ValueError("sigmas must be > 0")
    gradient = F.softmax(logits / sigmas, dim=1) - F.one_hot(torch.tensor(target), len(logits))
    return (gradient / sigmas).norm(dim=1)


def _check_range(name: str, values: Tensor, size: int) -> None:
    if values.numel():
        low, high = (int(bound) for bound in torch.aminmax(values))
        if low < 0 or high >= size:
            raise ValueError(f"{name} must lie in [0, {size}), got values {low}..{high}")


class _TemperedCrossEntropy(torch.autograd.Function):
    """Per-sample CE(z / sigma, y) and the minibatch decay of the log-sigmas, as one autograd node.

    Autograd through the composition (gathers, exp, add, divide, cross-entropy, and the decay's
    squares and sums) records about twenty small nodes per step; for a small model their
    bookkeeping costs more than the arithmetic. This node computes the same values and returns the
    exact gradients from the closed forms: with s = z / sigma and q = softmax(s) - onehot(y),
    dL/dz = q / sigma and dL/dlog(sigma_part) = -(q . s) * sigma_part / sigma, plus wd * entry from
    the decay.
    Two choices make it cheap. The scaled logits are held class-major ([C, B]): torch's CPU
    log-softmax over a last dimension of 10 classes costs about ten times more than over the
    batch-long first dimension. And the instance table gets a sparse gradient listing the batch's
    rows (as `nn.Embedding(sparse=True)` does), so neither this node nor SparseSGD touches the rest
    of a table that has one entry per training sample; the class table's gradient is dense.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, class_table: Tensor | None, instance_table: Tensor | None,
                target: Tensor, index: Tensor, decay_class: float, decay_instance: float
                ) -> tuple[Tensor, Tensor]:
        # index_select, not advanced indexing: the same gather at a fraction of the dispatch cost
        class_entries = None if class_table is None else class_table.index_select(0, target)
        instance_entries = (None if instance_table is None
                            else instance_table.index_select(0, index))
        class_sigma = None if class_entries is None else class_entries.exp()
        instance_sigma = None if instance_entries is None else instance_entries.exp()
        if class_sigma is None:
            sigma = instance_sigma
        else:
            sigma = class_sigma if instance_sigma is None else class_sigma + instance_sigma
        scaled = logits.t().clone(memory_format=torch.contiguous_format).div_(sigma)  # [C, B]
        log_probabilities = scaled.log_softmax(0)
        losses = F.nll_loss(log_probabilities.t(), target, reduction="none")
        decay = None
        for entries, rate in ((class_entries, decay_class), (instance_entries, decay_instance)):
            if entries is not None and rate > 0:
                term = torch.dot(entries, entries).mul_(0.5 * rate)
                decay = term if decay is None else decay.add_(term)
        ctx.save_for_backward(scaled, log_probabilities, sigma, target, index)
        ctx.tables = ((class_table, class_entries, class_sigma, decay_class),
                      (instance_table, instance_entries, instance_sigma, decay_instance))
        return losses, logits.new_zeros(()) if decay is None else decay

    @staticmethod
    def backward(ctx, grad_losses: Tensor, grad_decay: Tensor) -> tuple[Tensor | None, ...]:
        scaled, log_probabilities, sigma, target, index = ctx.saved_tensors
        q = log_probabilities.exp().scatter_(0, target.unsqueeze(0), -1.0, reduce="add")
        q.mul_(grad_losses)
        push = torch.linalg.vecdot(q, scaled, dim=0)  # -dL / dlog(sigma), per sample
        # a transposed view, not a copy: the layer below multiplies it as it is
        grad_logits = q.div_(sigma).t() if ctx.needs_input_grad[0] else None
        (class_table, *_), (instance_table, *_) = ctx.tables
        both = class_table is not None and instance_table is not None
        if both:  # sigma = part + other part: dL / dlog(part) = dL / dlog(sigma) * part / sigma
            push = push / sigma
        grads = []
        for (table, entries, part, rate), positions in zip(ctx.tables, (target, index)):
            if table is None or not table.requires_grad:
                grads.append(None)
                continue
            along = push * part if both else push
            if rate > 0:
                grad_entries = entries.mul(rate * float(grad_decay)).sub_(along)
            else:
                grad_entries = along.neg()
            if table is class_table:  # one entry per class: dense
                grads.append(torch.zeros_like(table).index_add_(0, positions, grad_entries))
            else:  # the batch's rows of a table of every sample: sparse, no pass over the table
                grads.append(torch.sparse_coo_tensor(
                    positions.unsqueeze(0), grad_entries, table.shape, check_invariants=False
                ))
        return grad_logits, grads[0], grads[1], None, None, None, None


class DataParameters(nn.Module, SampleMethod):
    """Learnable class-level and/or instance-level temperatures, stored as log-sigmas.

    After `compute_losses`, the instance table's `.grad` is a sparse COO tensor listing the
    batch's rows (as with `nn.Embedding(sparse=True)`), so a step never scans the whole table:
    step it with `make_optimizer()` (SparseSGD), `torch.optim.SGD` or `torch.optim.SparseAdam`;
    `.to_dense()` shows it whole. The composition `forward` + a loss gives dense gradients.

    Non-finite input is refused: `forward` and `compute_losses` raise a ValueError naming
    `logits` when a logit is NaN or infinite, before anything is computed, so no NaN gradient
    can reach a temperature (the optimizer of `make_optimizer` also skips any step with a
    non-finite gradient). `load_state_dict` refuses (ValueError naming the key) tables of the
    wrong shape or dtype, with NaN or inf, or outside the log of `clamp`.

    Args:
        num_classes: C >= 1, the size of the class table.
        num_samples: N >= 0, the size of the instance table (keyed by dataset index).
        learn_class, learn_instance: which tables are learnt and used (both = joint, sigma is
            the sum); at least one.
        init_class, init_instance: initial sigmas, finite, > 0 and inside `clamp` (the joint
            set-up of the apple/ml-data-parameters README starts the sum near 1 with
            1.0 + 0.001 and a looser instance clamp; here use e.g. 0.95 + 0.05).
        clamp: finite (low, high), 0 < low <= high, bounds for every sigma, kept by the
            optimizer of `make_optimizer` (it clamps each entry it updates) or by calling
            `clamp_()` after each step.
        weight_decay_class, weight_decay_instance: finite L2 decays >= 0 of the log-sigmas of
            the minibatch only (`0.5 * wd * sum(log_sigma^2)`; a class counts once per sample
            of it in the batch).

    Raises:
        ValueError: naming the argument out of range, or neither table learnt.
    """

    def __init__(
        self,
        num_classes: int,
        num_samples: int,
        learn_class: bool = True,
        learn_instance: bool = False,
        init_class: float = 1.0,
        init_instance: float = 1.0,
        clamp: tuple[float, float] = (1 / 20, 20.0),
        weight_decay_class: float = 0.0,
        weight_decay_instance: float = 0.0,
    ):
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        if not isinstance(num_samples, int) or num_samples < 0:
            raise ValueError(f"num_samples must be an int >= 0, got {num_samples!r}")
        if not (learn_class or learn_instance):
            raise ValueError("at least one of learn_class and learn_instance must be True")
        _check_positive("init_class", init_class)
        _check_positive("init_instance", init_instance)
        low, high = clamp
        _check_positive("clamp[0]", low)
        _check_positive("clamp[1]", high)
        if low > high:
            raise ValueError(f"clamp must be (low, high) with low <= high, got {clamp!r}")
        for name, init in (("init_class", init_class), ("init_instance", init_instance)):
            if not low <= init <= high:
                raise ValueError(f"{name} must lie inside clamp = {clamp!r}, got {init!r}")
        _check_non_negative("weight_decay_class", weight_decay_class)
        _check_non_negative("weight_decay_instance", weight_decay_instance)
        self.learn_class = learn_class
        self.learn_instance = learn_instance
        self.clamp = (float(low), float(high))
        self.weight_decay_class = float(weight_decay_class)
        self.weight_decay_instance = float(weight_decay_instance)
        self.class_log_sigma = nn.Parameter(
            torch.full((num_classes,), math.log(init_class)), requires_grad=learn_class
        )
        self.instance_log_sigma = nn.Parameter(
            torch.full((num_samples,), math.log(init_instance)), requires_grad=learn_instance
        )
        self._batch: tuple[Tensor, Tensor | None] | None = None  # (index, its decay term)

    @property
    def num_classes(self) -> int:
        """C, the class table's size."""
        return len(self.class_log_sigma)

    @property
    def num_samples(self) -> int:
        """N, the instance table's size."""
        return len(self.instance_log_sigma)

    @property
    def mode(self) -> str:
        """'class', 'instance' or 'joint'."""
        if self.learn_class and self.learn_instance:
            return "joint"
        return "class" if self.learn_class else "instance"

    @staticmethod
    def _check_layout(target: Tensor, index: Tensor) -> None:
        if target.ndim != 1 or index.shape != target.shape:
            raise ValueError(
                f"target and index must be 1-D of equal length, got {tuple(target.shape)} and "
                f"{tuple(index.shape)}"
            )
        if target.dtype != torch.long or index.dtype != torch.long:
            raise TypeError("target and index must be int64 tensors")

    def _check_batch(self, target: Tensor, index: Tensor) -> None:
        self._check_layout(target, index)
        self._check_ranges(target, index)

    def _check_ranges(self, target: Tensor, index: Tensor) -> None:
        _check_range("target", target, self.num_classes)
        if self.learn_instance:
            _check_range("index", index, self.num_samples)

    def _check_shapes(self, logits: Tensor, target: Tensor, index: Tensor) -> None:
        """The checks that need no pass over the data (ranges: `_check_ranges`)."""
        self._check_layout(target, index)
        if logits.ndim != 2 or logits.shape != (len(target), self.num_classes):
            raise ValueError(
                f"logits must have shape [B, {self.num_classes}] with B = len(target) = "
                f"{len(target)}, got {tuple(logits.shape)}"
            )

    def sigma(self, target: Tensor, index: Tensor) -> Tensor:
        """Per-sample temperatures of a batch.

        Args:
            target: [B] int64 labels in [0, C).
            index: [B] int64 dataset indices (in [0, N) when the instance table is learnt).

        Returns:
            [B] float32 sigmas > 0 (the sum of class and instance sigma when joint), with the
            tables' graph.

        Raises:
            TypeError: `target` or `index` is not an int64 tensor.
            ValueError: they are not 1-D of equal length, or a label or index is out of range.
        """
        self._check_batch(target, index)
        return self._sigma(*self._gathered(target, index))

    def _gathered(self, target: Tensor, index: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """The batch's entries of the learnt tables (class at `target`, instance at `index`; None
        for a table that is not learnt), gathered once per batch for both sigma and the decay."""
        return (
            self.class_log_sigma[target] if self.learn_class else None,
            self.instance_log_sigma[index] if self.learn_instance else None,
        )

    @staticmethod
    def _sigma(class_entries: Tensor | None, instance_entries: Tensor | None) -> Tensor:
        if instance_entries is None:
            return class_entries.exp()
        if class_entries is None:
            return instance_entries.exp()
        return class_entries.exp() + instance_entries.exp()

    def forward(self, logits: Tensor, target: Tensor, index: Tensor) -> Tensor:
        """Logits divided by each sample's sigma; remembers the batch for `weight_decay`.

        Args:
            logits: [B, C] finite logits.
            target: [B] int64 labels in [0, C).
            index: [B] int64 dataset indices (in [0, N) when the instance table is learnt).

        Returns:
            [B, C] scaled logits z / sigma, differentiable in `logits` and the tables.

        Raises:
            TypeError: `target` or `index` is not an int64 tensor.
            ValueError: shapes disagree, a label or index is out of range, or a logit is NaN or
                infinite (nothing is remembered then).
        """
        self._check_shapes(logits, target, index)
        finite_or_raise("logits", logits.detach(), "DataParameters.forward")
        self._check_ranges(target, index)
        entries = self._gathered(target, index)
        self._batch = (index, self._decay(*entries) if self.decays else None)
        return logits / self._sigma(*entries).unsqueeze(1)

    def compute_losses(self, logits: Tensor, target: Tensor, index: Tensor) -> Tensor:
        """Per-sample cross-entropy of the temperature-scaled logits.

        Computed by one fused autograd node, which also yields the batch's weight decay for
        `objective`.

        Args:
            logits, target, index: as `forward`.

        Returns:
            [B] losses CE(z / sigma, y) >= 0, differentiable in `logits` and the tables (the
            instance table's gradient is sparse).

        Raises:
            ValueError: shapes disagree, a label or index is out of range, or a logit is NaN or
                infinite (nothing is remembered then).
            TypeError: `target` or `index` is not an int64 tensor.
        """
        self._check_shapes(logits, target, index)
        finite_or_raise("logits", logits.detach(), "DataParameters.compute_losses")
        try:
            losses, decay = _TemperedCrossEntropy.apply(
                logits, self.class_log_sigma if self.learn_class else None,
                self.instance_log_sigma if self.learn_instance else None, target, index,
                self.weight_decay_class, self.weight_decay_instance,
            )
        except IndexError:  # the range check costs a pass over the batch: run it only on failure
            self._check_ranges(target, index)
            raise
        self._batch = (index, decay)
        return losses

    @property
    def decays(self) -> bool:
        """True when a learnt table has a non-zero weight decay."""
        return (self.learn_class and self.weight_decay_class > 0) or (
            self.learn_instance and self.weight_decay_instance > 0
        )

    def weight_decay(self, target: Tensor, index: Tensor) -> Tensor:
        """`0.5 * wd * sum(log_sigma^2)` over the minibatch's entries of the learnt tables.

        Args:
            target, index: as `sigma`.

        Returns:
            A scalar >= 0 (0 without decay), differentiable in the tables.

        Raises:
            TypeError, ValueError: as `sigma`.
        """
        self._check_batch(target, index)
        return self._decay(*self._gathered(target, index))

    def _decay(self, class_entries: Tensor | None, instance_entries: Tensor | None) -> Tensor:
        total = self.class_log_sigma.new_zeros(())
        if class_entries is not None and self.weight_decay_class > 0:
            total = total + class_entries.square().sum() * (0.5 * self.weight_decay_class)
        if instance_entries is not None and self.weight_decay_instance > 0:
            total = total + instance_entries.square().sum() * (0.5 * self.weight_decay_instance)
        return total

    def objective(self, index: Tensor, losses: Tensor) -> Tensor:
        """Mean loss plus the weight decay of the batch of the last forward.

        Args:
            index: the very tensor the last forward (`compute_losses`) received, as in
                train_epoch.
            losses: [B] that batch's per-sample losses.

        Returns:
            A scalar: losses.mean() + the batch's decay.

        Raises:
            RuntimeError: no forward came first, or it saw another `index` tensor.
        """
        if self._batch is None or self._batch[0] is not index:
            raise RuntimeError(
                "objective must follow a forward (compute_losses) on the same batch (index tensor)"
            )
        if not self.decays:
            return losses.mean()
        return losses.mean() + self._batch[1]

    @torch.no_grad()
    def clamp_(self) -> None:
        """Project every learnt log-sigma into [log clamp[0], log clamp[1]] (after each step)."""
        low, high = (math.log(bound) for bound in self.clamp)
        if self.learn_class:
            self.class_log_sigma.clamp_(low, high)
        if self.learn_instance:
            self.instance_log_sigma.clamp_(low, high)

    def make_optimizer(
        self, lr_class: float = 0.1, lr_instance: float = 0.1, momentum: float = 0.9
    ) -> SparseSGD:
        """A SparseSGD over the learnt tables that clamps every entry it updates into the log of
        `clamp` (as `clamp_()` after every step would: entries it leaves alone do not move).

        Args:
            lr_class, lr_instance: the tables' learning rates (finite, >= 0).
            momentum: in [0, 1).

        Returns:
            A `SparseSGD` with one group per learnt table.

        Raises:
            ValueError: a learning rate or `momentum` out of range.
        """
        groups = []
        if self.learn_class:
            groups.append({"params": [self.class_log_sigma], "lr": lr_class})
        if self.learn_instance:
            groups.append({"params": [self.instance_log_sigma], "lr": lr_instance})
        bounds = tuple(math.log(bound) for bound in self.clamp)
        return SparseSGD(groups, lr=0.0, momentum=momentum, clamp=bounds)

    @torch.no_grad()
    def class_sigma(self) -> Tensor:
        """The class temperatures (a detached copy, for plots).

        Returns:
            [C] float32 sigmas > 0.
        """
        return self.class_log_sigma.exp()

    @torch.no_grad()
    def sample_sigma(self, targets: Tensor) -> Tensor:
        """The temperature every training sample gets now.

        Args:
            targets: [N] the training labels in [0, C) (keyed by dataset index).

        Returns:
            [N] float32 sigmas > 0, detached.

        Raises:
            ValueError: `targets` is not of shape [N] while the instance table is learnt, or a
                label is out of range.
            TypeError: `targets` is not int64.
        """
        targets = torch.as_tensor(targets)
        if targets.shape != (self.num_samples,) and self.learn_instance:
            raise ValueError(f"targets must have shape [{self.num_samples}], "
                             f"got {tuple(targets.shape)}")
        return self.sigma(targets, torch.arange(len(targets)))

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False):
        """`nn.Module.load_state_dict`, after checking the whole state first.

        Both tables must be present (`strict` or not), float32 of this object's sizes, finite,
        and inside the log of `clamp` (compared in float32, as the clamp stores them).

        Args:
            state_dict: {"class_log_sigma": [C], "instance_log_sigma": [N]}, as `state_dict()`.
            strict, assign: as `nn.Module.load_state_dict`.

        Returns:
            `nn.Module.load_state_dict`'s named tuple of missing and unexpected keys.

        Raises:
            TypeError: the state is not a dict.
            ValueError: naming the key that is missing, unexpected, mis-shaped, of another
                dtype, not finite or outside the clamp (nothing changes then).
        """
        owner = "DataParameters"
        check_keys(state_dict, ("class_log_sigma", "instance_log_sigma"), owner)
        low, high = (float(torch.tensor(math.log(b), dtype=torch.float32)) for b in self.clamp)
        for key, size in (("class_log_sigma", self.num_classes),
                          ("instance_log_sigma", self.num_samples)):
            check_tensor(state_dict, key, owner, shape=(size,), dtype=torch.float32, low=low,
                         high=high)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def extra_repr(self) -> str:
        """What `repr` shows inside the parentheses.

        Returns:
            "mode=..., num_classes=C, num_samples=N".
        """
        return f"mode={self.mode}, num_classes={self.num_classes}, num_samples={self.num_samples}"
