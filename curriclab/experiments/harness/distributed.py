"""A harness run under torch.distributed: every rank calls `run_arm` with the same arguments.

Under a process group of more than one rank (e.g. `torchrun --nproc_per_node 2`), `run_arm`
passes each run's set-up through `distribute` before it builds the loader:

- the model trains wrapped in `DistributedDataParallel` (evaluation reads the bare model, so
  every rank evaluates the same weights);
- an arm without a sampler gets torch's `DistributedSampler` (seeded by the run's seed); an
  arm's own sampler (SGD-S, InfoBatch) already shards its plan over the group's ranks;
- the arm's per-sample methods see the whole global batch through one `Synchronized` exchange
  per step, so their state stays identical on every rank; methods that learn from the local
  batch by gradients (data parameters) or select per rank stay outside the exchange, and the
  arm's extra optimizers average their gradients over the ranks
  (`synchronize_sparse_gradients`).

Without a process group (or with one rank) `distribute` changes nothing, so a one-process run is
exactly what it was.
"""

from __future__ import annotations

import dataclasses

from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from curriclab.core.distributed import Synchronized, rank_and_world, synchronize_sparse_gradients
from curriclab.core.protocol import SampleMethod, defines_selection
from curriclab.experiments.harness.arms import ArmSetup

__all__ = ["distribute", "learns_locally"]


def learns_locally(method: SampleMethod) -> bool:
    """Whether `method` belongs outside the `Synchronized` exchange: it selects per rank, or it
    is a module with trainable parameters (learnt by gradients from this rank's batch).

    Args:
        method: one of an arm's methods.

    Returns:
        True for a selector or a module with a parameter that requires a gradient.
    """
    if defines_selection(method):
        return True
    return isinstance(method, nn.Module) and any(p.requires_grad for p in method.parameters())


def distribute(setup: ArmSetup, model: nn.Module, num_samples: int, seed: int
               ) -> tuple[nn.Module, ArmSetup]:
    """The model to train and the set-up to use on this rank (see the module docstring).

    Args:
        setup: the arm's set-up, as its arm method built it.
        model: the run's freshly initialised model.
        num_samples: the length of the data set the loader draws from.
        seed: the run's seed (it seeds the `DistributedSampler` alike on every rank).

    Returns:
        `(model, setup)` unchanged without a process group of more than one rank; otherwise
        the DDP-wrapped model and a copy of `setup` with the sampler, the `Synchronized`
        methods and the gradient-averaging optimizers described above.
    """
    if rank_and_world()[1] == 1:
        return model, setup
    local, shared = [], []
    for method in setup.methods:
        (local if learns_locally(method) else shared).append(method)
    methods = [*local, Synchronized(shared, num_samples=num_samples)] if shared else local
    sampler = setup.sampler
    if sampler is None:
        sampler = DistributedSampler(range(num_samples), seed=seed)
    for optimizer in setup.optimizers:
        synchronize_sparse_gradients(optimizer)
    return DistributedDataParallel(model), dataclasses.replace(setup, methods=methods,
                                                               sampler=sampler)
