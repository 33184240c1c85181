"""The `curriclab ddp-demo` run: one per-sample method trained on MNIST by every rank of a group.

Run it under `torchrun --nproc_per_node 2 -m curriclab ddp-demo --method sgds --epochs 2` (or as
one process without torchrun). Every rank trains SmallConv wrapped in DistributedDataParallel on
its shard of each epoch's plan; the per-sample observations go through one `Synchronized`
exchange per step. The result is a digest of the rank's per-sample state (equal on every rank
when the state is bitwise identical) and the number of samples the rank drew.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from curriclab.core.data import load_mnist, make_loader, stratified_subset
from curriclab.core.distributed import (
    Synchronized,
    rank_and_world,
    state_digest,
    synchronize_sparse_gradients,
)
from curriclab.core.models import SmallConv
from curriclab.core.protocol import SampleMethod
from curriclab.core.tracking import LossTracker
from curriclab.core.training import fit, seed_everything
from curriclab.methods.data_parameters import DataParameters
from curriclab.methods.infobatch import InfoBatchSampler
from curriclab.methods.sampling import SGDSSampler
from curriclab.methods.spl import SPLLoss, linear_pace

__all__ = ["DemoResult", "run_demo"]

DEMO_METHODS = ("sgds", "infobatch", "spl", "data-parameters")


@dataclass
class DemoResult:
    """What one rank reports: its rank, the SHA-256 of its per-sample state, the samples it drew."""

    rank: int
    digest: str
    samples: int

    def line(self) -> str:
        return f"rank {self.rank}: state sha256 {self.digest} samples {self.samples}"


def run_demo(
    method: str, epochs: int, *, samples: int | None = None, batch_size: int = 64, seed: int = 0,
    lr: float = 0.05,
) -> DemoResult:
    """Train `method` for `epochs` on MNIST (a stratified subset of `samples` if given) on this
    rank; every rank must call it with the same arguments (the same seed makes the same plan)."""
    if method not in DEMO_METHODS:
        raise ValueError(f"method must be one of {DEMO_METHODS}, got {method!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    seed_everything(seed)
    data = load_mnist(train=True, download=False)
    if samples is not None:
        data = stratified_subset(data, samples, seed)
    n = len(data)
    model = SmallConv()
    ddp_model = DistributedDataParallel(model) if rank_and_world()[1] > 1 else model
    optimizers: list[torch.optim.Optimizer] = [torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)]
    tracker = LossTracker(n)
    observed: list[SampleMethod] = [tracker]
    outside: list[SampleMethod] = []
    if method == "sgds":
        sampler = SGDSSampler(n, transient_epochs=1, unbiased=True, uniform_mix=0.1)
        observed.insert(0, sampler)
    elif method == "infobatch":
        sampler = InfoBatchSampler(n, total_epochs=epochs)
        observed.insert(0, sampler)
    else:
        sampler = DistributedSampler(data, seed=seed) if rank_and_world()[1] > 1 else None
    if method == "spl":
        spl = SPLLoss(n, pace=linear_pace(0.5, 1.0, max(epochs, 2)))
        spl.refresh(model, data)
        spl.follow_pace()
        observed.insert(0, spl)
    if method == "data-parameters":
        parameters = DataParameters(10, n, learn_class=True, learn_instance=True,
                                    init_class=0.95, init_instance=0.05, clamp=(0.01, 20.0))
        optimizers.append(parameters.make_optimizer())
        synchronize_sparse_gradients(optimizers[-1])
        outside.append(parameters)
    loader = make_loader(data, batch_size, sampler=sampler, shuffle=sampler is None)
    methods = [*outside, Synchronized(observed, num_samples=n)]
    history = fit(ddp_model, loader, optimizers, epochs, methods=methods, progress=False)
    states = [m.state_dict() for m in (*observed, *outside)]
    return DemoResult(rank_and_world()[0], state_digest(states), sum(r.train.samples for r in history))
