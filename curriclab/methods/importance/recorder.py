"""Exact per-sample gradient norms from the backward pass that trains."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from curriclab.core.state import finite_or_raise
from curriclab.methods.importance.batches import check_samples_independent
from curriclab.methods.importance.calls import Call, CallRecorder, sq_norms_from_calls
from curriclab.methods.importance.kernels import check_strategy
from curriclab.methods.importance.layers import NotCovered, covered_layers
from curriclab.methods.importance.norms import BatchImportance

__all__ = ["TrainingStepRecorder"]


class _HandOver(torch.autograd.Function):
    """value -> value, whose backward hands precomputed gradients to the given parameters."""

    @staticmethod
    def forward(ctx, value: Tensor, grads: list[Tensor], *params: Tensor) -> Tensor:
        ctx.grads = grads
        return value.clone()

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        grads = ctx.grads if bool(grad_output == 1) else [g * grad_output for g in ctx.grads]
        return (None, None, *grads)


class TrainingStepRecorder:
    """Exact per-sample gradient norms from the backward pass that trains.

    While active (a context manager around the training loop), forward hooks keep each covered
    layer's input and output. For every batch, call `step(losses)` with the per-sample losses of
    the forward that just ran and back-propagate the objective it returns (its value is the mean
    loss); after that backward, `measurements()` gives the batch's losses and gradient norms. Two
    ways, chosen per model:

    - Linear layers only ("capture"): `step` returns `losses.mean()` and keeps the layers' output
      gradients (retain_grad); the loop's backward computes the weight gradients as usual, and
      the norms follow from the kept output gradients. Nothing is computed twice.
    - Any other covered layer ("book-keeping", `book_keeping` is True): its per-sample norms need
      work of weight-gradient size whose sum IS the batch's weight gradient. So `step` runs the
      batch's backward itself, down to the layers' outputs only, computes the norms and every
      parameter's gradient from the output gradients, and returns an objective whose backward
      merely hands those gradients to the parameters: no weight gradient is computed twice.

    Args:
        model: the model being trained; its samples must not interact.
        strategy: as in `measure_batch`.

    Attributes:
        supported: False for a model the registry does not cover (`unsupported_reason` says why);
            `step` then always returns None.
        book_keeping: which of the two ways above is used.

    Raises:
        ValueError: unknown `strategy`, or a batch-coupling layer (BatchNorm in train mode).
    """

    def __init__(self, model: nn.Module, strategy: str = "auto"):
        check_strategy(strategy)
        check_samples_independent(model)
        self.model, self.strategy = model, strategy
        self.unsupported_reason: str | None = None
        try:
            self._layers = covered_layers(model)
        except NotCovered as reason:
            self._layers, self.unsupported_reason = [], str(reason)
        self.book_keeping = any(type(layer) is not nn.Linear for layer, _ in self._layers)
        self._recorder: CallRecorder | None = None
        self._output: Tensor | None = None
        self._handles: list = []
        self._pending: tuple[Tensor, list[Call], list[Tensor]] | BatchImportance | None = None

    @property
    def supported(self) -> bool:
        """Whether the registry covers every layer with trainable parameters."""
        return self.unsupported_reason is None

    def __enter__(self) -> TrainingStepRecorder:
        if self.supported:
            self._recorder = CallRecorder(self._layers)
            self._handles = [
                self.model.register_forward_pre_hook(self._forget_calls),
                self.model.register_forward_hook(self._keep_output),
            ]
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._recorder is not None:
            self._recorder.remove()
            for handle in self._handles:
                handle.remove()
            self._recorder, self._handles, self._output, self._pending = None, [], None, None

    def _forget_calls(self, module: nn.Module, inputs: tuple) -> None:
        """Each forward of the whole model starts a new record (the last one is measured)."""
        if torch.is_grad_enabled():
            self._recorder.calls = []

    def _keep_output(self, module: nn.Module, inputs: tuple, output: object) -> None:
        if torch.is_grad_enabled():
            self._output = output if isinstance(output, Tensor) else None

    def step(self, losses: Tensor) -> Tensor | None:
        """The objective to back-propagate for this batch. Call once per training forward.

        Args:
            losses: the per-sample losses [B] of the forward that just ran.

        Returns:
            A scalar whose value is the mean loss and whose backward gives every parameter its
            mean-loss gradient; or None where the rules do not apply to this forward (an unsupported
            model, an in-place modified layer output, ...): measure such a batch otherwise.

        Raises:
            RuntimeError: the recorder is not active (`with recorder:`).
            ValueError: `losses` is not 1-D or holds NaN or inf (checked before anything
                changes: the batch's record stays as it was), or a registered function broke
                its contract (see `sq_norms_from_calls`).
        """
        if self._recorder is None:
            raise RuntimeError(
                "step() needs an active recorder: use `with recorder:` around training"
            )
        if not isinstance(losses, Tensor) or losses.ndim != 1:
            raise ValueError("TrainingStepRecorder.step: losses must be a 1-D tensor [B], got "
                             f"{tuple(losses.shape) if isinstance(losses, Tensor) else losses!r}")
        finite_or_raise("losses", losses.detach(), "TrainingStepRecorder.step")
        output, self._output, self._pending = self._output, None, None
        try:
            calls = self._recorder.checked_calls(len(losses))
        except NotCovered:
            return None
        finally:
            self._recorder.calls = []
        if output is None or not losses.requires_grad:
            return None
        mean = losses.mean()
        outputs = [call.output for call in calls] + [output]
        if not self.book_keeping:
            # the training backward leaves each output's gradient in .grad (a C++ hook: no Python
            # call during the backward); the model's output is often also the last layer's output
            for tensor in outputs:
                if tensor.requires_grad:
                    tensor.retain_grad()
            self._pending = (losses.detach(), calls, outputs)
            return mean
        grads = list(torch.autograd.grad(mean, outputs, allow_unused=True))
        batch_grads: dict[nn.Parameter, Tensor] = {}
        sq_norms = sq_norms_from_calls(calls, grads[:-1], losses, self.strategy, batch_grads)
        self._pending = _scaled_measurements(losses.detach(), sq_norms, grads[-1])
        return _HandOver.apply(mean.detach(), list(batch_grads.values()), *batch_grads)

    def measurements(self) -> BatchImportance:
        """Losses, gradient norms and output-gradient norms of the last `step`'s batch.

        Returns:
            BatchImportance of that batch (norms of each sample's own loss gradient).

        Raises:
            RuntimeError: no `step` objective was back-propagated since the last `step`.
        """
        if self._pending is None:
            raise RuntimeError("measurements() needs a step() whose objective was back-propagated")
        if isinstance(self._pending, BatchImportance):
            return self._pending
        losses, calls, outputs = self._pending
        grads = [tensor.grad if tensor.requires_grad else None for tensor in outputs]
        if all(grad is None for grad in grads):
            raise RuntimeError("measurements() needs a step() whose objective was back-propagated")
        sq_norms = sq_norms_from_calls(calls, grads[:-1], losses, self.strategy)
        return _scaled_measurements(losses, sq_norms, grads[-1])


def _scaled_measurements(
    losses: Tensor, sq_norms: Tensor, output_grad: Tensor | None
) -> BatchImportance:
    """Measurements from the output gradients of the MEAN loss: those are each sample's own
    gradients divided by B, so the norms are scaled back by B."""
    batch = len(losses)
    if output_grad is None:
        proxy = torch.zeros_like(losses)
    else:
        proxy = torch.linalg.vector_norm(output_grad.reshape(batch, -1), dim=1).mul_(batch)
    return BatchImportance(losses, sq_norms.sqrt().mul_(batch), proxy)
