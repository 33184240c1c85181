"""Sample importance: exact per-sample gradient norms, fast, and the cheap proxy they are compared
with.

A sample's importance for SGD is the norm of its own loss gradient ||d loss_i / d theta||. The
slow reference takes one `autograd.grad` per sample (`per_sample_grad_norms_loop`). For layers
with a registered rule (nn.Linear and nn.Conv2d built in; add one with `register_layer`), one
forward and ONE backward of the summed loss suffice: each layer's per-sample norms follow from its
inputs and its output gradients (`layers.py`, the math and cost rules in `kernels.py`). Other
models fall back to `torch.func.vmap(grad(...))`; layers that couple samples (BatchNorm on batch
statistics) are refused. `TrainingStepRecorder` takes the norms from the backward that trains.

Modules: `norms` (measure a batch), `layers` (the per-layer registry), `kernels` (tensor math and
cost rules), `calls` (recording layer calls), `reference` (loop and vmap), `proxy` (the
output-gradient norm), `recorder` (while training), `batches` (input checks). Measurements and
history: docs/importance.md.
"""

from curriclab.methods.importance.batches import check_samples_independent
from curriclab.methods.importance.kernels import STRATEGIES, weight_grad_sq_norms
from curriclab.methods.importance.layers import (
    LayerNormFn,
    conv2d_sq_norms,
    linear_sq_norms,
    register_layer,
    registered_layers,
)
from curriclab.methods.importance.norms import (
    METHODS,
    BatchImportance,
    measure_batch,
    per_sample_grad_norms,
)
from curriclab.methods.importance.proxy import output_grad_norms
from curriclab.methods.importance.recorder import TrainingStepRecorder
from curriclab.methods.importance.reference import (
    per_sample_grad_norms_loop,
    per_sample_grad_norms_vmap,
)

__all__ = [
    "BatchImportance",
    "LayerNormFn",
    "METHODS",
    "STRATEGIES",
    "TrainingStepRecorder",
    "check_samples_independent",
    "conv2d_sq_norms",
    "linear_sq_norms",
    "measure_batch",
    "output_grad_norms",
    "per_sample_grad_norms",
    "per_sample_grad_norms_loop",
    "per_sample_grad_norms_vmap",
    "register_layer",
    "registered_layers",
    "weight_grad_sq_norms",
]
