"""The `curriclab ddp-demo` run: one per-sample method trained on MNIST by every rank of a group.

Run it under `torchrun --nproc_per_node 2 -m curriclab ddp-demo --method sgds --epochs 2` (or as
one process without torchrun). Every rank trains SmallConv wrapped in DistributedDataParallel on
its shard of each epoch's plan; the per-sample observations go through one `Synchronized`
exchange per step. The result is a digest of the rank's per-sample state (equal on every rank
when the state is bitwise identical) and the number of samples the rank drew, plus what a
throughput comparison needs: the world size, the training seconds (the epochs' training loops,
without start-up, data loading or SPL's refresh) and, per epoch, the whole plan's length, the
samples this rank drew and a digest of the dataset indices it drew (`DemoResult.report`).

`demo_sampler` builds the sampler the `ddp-demo` run uses (seeded by `seed` alone), so a notebook
can show, without a process group, which indices each rank draws in an epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn.parallel import DistributedDataParallel
from torch import Tensor
from torch.utils.data import DistributedSampler, Sampler

from curriclab.core.data import load_mnist, make_loader, stratified_subset
from curriclab.core.distributed import (
    Synchronized,
    digest,
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

__all__ = ["DemoResult", "demo_sampler", "padded_plan", "run_demo"]

DEMO_METHODS = ("sgds", "infobatch", "spl", "data-parameters")


@dataclass
class DemoResult:
    """What one rank of the `ddp-demo` reports.

    Attributes:
        rank: this process's rank.
        digest: the SHA-256 (hex) of its per-sample state (`state_digest`).
        samples: the samples it drew, all epochs.
        world_size: the group's size.
        seconds: the seconds spent in the training loops (for throughput).
        epoch_plan: per epoch, the length of the whole plan (all ranks, before padding).
        epoch_samples: per epoch, this rank's samples.
        epoch_indices: per epoch, the digest (`curriclab.core.distributed.digest` of an int64
            tensor) of the dataset indices it drew.
    """

    rank: int
    digest: str
    samples: int
    world_size: int = 1
    seconds: float = 0.0
    epoch_plan: list[int] = field(default_factory=list)
    epoch_samples: list[int] = field(default_factory=list)
    epoch_indices: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The line every rank prints.

        Returns:
            "rank R: state sha256 <64 hex> samples <n>".
        """
        return f"rank {self.rank}: state sha256 {self.digest} samples {self.samples}"

    def report(self) -> dict:
        """Everything above as a JSON-ready dict, plus samples per second of training.

        Returns:
            The fields by name and "samples_per_second" (None when `seconds` is 0).
        """
        return {
            "rank": self.rank,
            "world_size": self.world_size,
            "digest": self.digest,
            "samples": self.samples,
            "seconds": self.seconds,
            "samples_per_second": self.samples / self.seconds if self.seconds > 0 else None,
            "epoch_plan": list(self.epoch_plan),
            "epoch_samples": list(self.epoch_samples),
            "epoch_indices": list(self.epoch_indices),
        }


def padded_plan(size: int, world_size: int, drop_last: bool = False) -> int:
    """How many samples all ranks draw together from a plan of `size`: padded up to a multiple of
    `world_size` (cut down to one with `drop_last`), as the `ddp-demo` samplers shard it.

    Args:
        size: the plan's length (>= 0).
        world_size: the number of ranks (>= 1).
        drop_last: cut instead of pad.

    Returns:
        The multiple of `world_size` nearest `size` from above (or, with `drop_last`, below).
    """
    if drop_last:
        return size - size % world_size
    return -(-size // world_size) * world_size


def demo_sampler(
    method: str, num_samples: int, epochs: int, seed: int = 0, *,
    num_replicas: int | None = None, rank: int | None = None,
) -> Sampler | None:
    """The sampler `run_demo` shards its epochs with: SGD-S or InfoBatch (their own generator,
    seeded by `seed`), torch's DistributedSampler for SPL and data parameters, or None (shuffle)
    for those in a single process.

    Args:
        method: a `DEMO_METHODS` entry.
        num_samples: the data set's size.
        epochs: the run's epochs (InfoBatch's schedule).
        seed: seeds the plan (the same on every rank).
        num_replicas, rank: the shard; default the process group's.

    Returns:
        The sampler, or None to shuffle.

    Raises:
        ValueError: an unknown method, or as the samplers raise (e.g. `num_replicas` other than
            the group's world size).
    """
    if method not in DEMO_METHODS:
        raise ValueError(f"method must be one of {DEMO_METHODS}, got {method!r}")
    group_rank, group_world = rank_and_world()
    num_replicas = group_world if num_replicas is None else num_replicas
    rank = group_rank if rank is None else rank
    generator = torch.Generator().manual_seed(seed)
    if method == "sgds":
        return SGDSSampler(num_samples, transient_epochs=1, unbiased=True, uniform_mix=0.1,
                           generator=generator, num_replicas=num_replicas, rank=rank)
    if method == "infobatch":
        return InfoBatchSampler(num_samples, total_epochs=epochs, generator=generator,
                                num_replicas=num_replicas, rank=rank)
    if num_replicas > 1:
        return DistributedSampler(range(num_samples), num_replicas=num_replicas, rank=rank,
                                  seed=seed)
    return None


class _DrawRecorder(SampleMethod):
    """Observes this rank's own batches (outside `Synchronized`): per epoch the plan's length,
    the samples drawn and a digest of their dataset indices."""

    def __init__(self, sampler: Sampler | None, num_samples: int):
        self.sampler, self.num_samples = sampler, num_samples
        self.current: list[Tensor] = []
        self.plan: list[int] = []
        self.samples: list[int] = []
        self.indices: list[str] = []

    def objective(self, index: Tensor, losses: Tensor) -> None:
        self.current.append(index.detach().to("cpu", torch.long))
        return None

    def after_epoch(self, epoch: int) -> None:  # runs before the sampler moves to the next plan
        drawn = torch.cat(self.current) if self.current else torch.empty(0, dtype=torch.long)
        plan = getattr(self.sampler, "plan", None)
        self.plan.append(len(plan.indices) if plan is not None else self.num_samples)
        self.samples.append(len(drawn))
        self.indices.append(digest(drawn))
        self.current = []


def run_demo(
    method: str, epochs: int, *, samples: int | None = None, batch_size: int = 64, seed: int = 0,
    lr: float = 0.05,
) -> DemoResult:
    """Train `method` for `epochs` on MNIST on this rank; every rank must call it with the same
    arguments (the same seed makes the same plan).

    Args:
        method: a `DEMO_METHODS` entry.
        epochs: epochs to train (>= 1).
        samples: train on a stratified subset of this many images (None: all 60 000).
        batch_size: samples per rank and step.
        seed: seeds the run and the plan.
        lr: SmallConv's SGD learning rate (momentum 0.9).

    Returns:
        This rank's `DemoResult`.

    Raises:
        ValueError: an unknown method or `epochs` < 1.
        FileNotFoundError: MNIST's files are missing (no download is tried).
    """
    if method not in DEMO_METHODS:
        raise ValueError(f"method must be one of {DEMO_METHODS}, got {method!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    seed_everything(seed)
    data = load_mnist(train=True, download=False)
    if samples is not None:
        data = stratified_subset(data, samples, seed)
    n = len(data)
    rank, world = rank_and_world()
    model = SmallConv()
    ddp_model = DistributedDataParallel(model) if world > 1 else model
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    ]
    tracker = LossTracker(n)
    observed: list[SampleMethod] = [tracker]
    sampler = demo_sampler(method, n, epochs, seed)
    recorder = _DrawRecorder(sampler, n)
    outside: list[SampleMethod] = []
    if method in ("sgds", "infobatch"):
        observed.insert(0, sampler)
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
    methods = [recorder, *outside, Synchronized(observed, num_samples=n)]
    history = fit(ddp_model, loader, optimizers, epochs, methods=methods, progress=False)
    states = [m.state_dict() for m in (*observed, *outside)]
    return DemoResult(
        rank, state_digest(states), sum(r.train.samples for r in history), world_size=world,
        seconds=sum(r.train.seconds for r in history), epoch_plan=recorder.plan,
        epoch_samples=recorder.samples, epoch_indices=recorder.indices,
    )
