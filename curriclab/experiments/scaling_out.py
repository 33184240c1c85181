"""The `curriclab ddp-demo` run: one per-sample method trained on MNIST by every rank of a group.

Run it under `torchrun --nproc_per_node 2 -m curriclab ddp-demo --method sgds --epochs 2` (or as
one process without torchrun). The run is a harness study (`demo_study`: the method's arm from
`DEMO_ARMS`, one seed) trained by `run_arm` on every rank: SmallConv wrapped in
DistributedDataParallel on this rank's shard of each epoch's plan, the per-sample observations
through one `Synchronized` exchange per step (`curriclab.experiments.harness.distributed`).
The result is a digest of the rank's per-sample state (equal on every rank when the state is
bitwise identical) and the number of samples the rank drew, plus what a throughput comparison
needs: the world size, the training seconds (the harness clock: the training loops and the
samplers' planning, without start-up or data loading) and, per epoch, the whole plan's length,
the samples this rank drew and a digest of the dataset indices it drew (`DemoResult.report`).

`demo_sampler` builds the sampler the `ddp-demo` run uses (seeded by `seed` alone), so a notebook
can show, without a process group, which indices each rank draws in an epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.utils.data import DistributedSampler, Sampler

from curriclab.core.data import SPLIT_SIZES
from curriclab.core.distributed import digest, rank_and_world, state_digest
from curriclab.core.protocol import SampleMethod
from curriclab.experiments.harness.arms import ArmSetup
from curriclab.experiments.harness.runner import run_arm
from curriclab.experiments.harness.spec import Arm, DataSpec, ModelSpec, Study, TrainSpec
from curriclab.methods.infobatch import InfoBatchSampler
from curriclab.methods.sampling import SGDSSampler

__all__ = ["DEMO_ARMS", "DemoResult", "demo_sampler", "demo_study", "padded_plan", "run_demo"]

DEMO_METHODS = ("sgds", "infobatch", "spl", "data-parameters")

DEMO_ARMS = {
    "sgds": Arm("sgds", "sgds", {"transient_epochs": 1, "unbiased": True, "uniform_mix": 0.1}),
    "infobatch": Arm("infobatch", "infobatch"),
    "spl": Arm("spl", "spl", {"threshold": 2.5}),
    "data-parameters": Arm("data-parameters", "data_parameters", {
        "learn_class": True, "learn_instance": True, "init_class": 0.95, "init_instance": 0.05}),
}
"""The harness arm each `DEMO_METHODS` entry trains (SPL's threshold starts above a fresh
model's cross-entropy, about 2.3, so its first batches are selected)."""


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
    params = DEMO_ARMS[method].params
    if method == "sgds":
        return SGDSSampler(num_samples, generator=generator, num_replicas=num_replicas, rank=rank,
                           **params)
    if method == "infobatch":
        return InfoBatchSampler(num_samples, total_epochs=epochs, generator=generator,
                                num_replicas=num_replicas, rank=rank, **params)
    if num_replicas > 1:
        return DistributedSampler(range(num_samples), num_replicas=num_replicas, rank=rank,
                                  seed=seed)
    return None


class _DrawRecorder(SampleMethod):
    """Observes this rank's own batches (outside `Synchronized`): per epoch the plan's length,
    the samples drawn and a digest of their dataset indices; and, at the end, a digest of the
    arm's per-sample state."""

    def __init__(self, setup: ArmSetup, num_samples: int):
        self.setup, self.num_samples = setup, num_samples
        self.current: list[Tensor] = []
        self.plan: list[int] = []
        self.samples: list[int] = []
        self.indices: list[str] = []

    def objective(self, index: Tensor, losses: Tensor) -> None:
        self.current.append(index.detach().to("cpu", torch.long))
        return None

    def after_epoch(self, epoch: int) -> None:  # runs before the sampler moves to the next plan
        drawn = torch.cat(self.current) if self.current else torch.empty(0, dtype=torch.long)
        plan = getattr(self.setup.sampler, "plan", None)
        self.plan.append(len(plan.indices) if plan is not None else self.num_samples)
        self.samples.append(len(drawn))
        self.indices.append(digest(drawn))
        self.current = []

    def state_digest(self) -> str:
        """The SHA-256 of the arm's methods' states (`curriclab.core.distributed.state_digest`)."""
        return state_digest([method.state_dict() for method in self.setup.methods])


def demo_study(
    method: str, epochs: int, *, samples: int | None = None, batch_size: int = 64, seed: int = 0,
    lr: float = 0.05,
) -> Study:
    """The harness study one `ddp-demo` run trains: `method` as the only arm, SmallConv with SGD
    (momentum 0.9) on MNIST, no validation split and no evaluation during training.

    Args:
        method: a `DEMO_METHODS` entry (its arm: `DEMO_ARMS[method]`).
        epochs: epochs to train (>= 1).
        samples: train on a stratified subset of this many images (None: all 60 000).
        batch_size: samples per rank and step.
        seed: the study's only seed (it seeds the run and the plan).
        lr: the SGD learning rate.

    Returns:
        The study.

    Raises:
        ValueError: an unknown method, or a value the specs refuse (e.g. `epochs` < 1).
    """
    if method not in DEMO_METHODS:
        raise ValueError(f"method must be one of {DEMO_METHODS}, got {method!r}")
    return Study(
        f"ddp-demo {method}", DataSpec("mnist", train_size=samples, validation_size=0),
        ModelSpec("small_conv"), TrainSpec(lr=lr, momentum=0.9, batch_size=batch_size,
                                           epochs=epochs),
        arms=(DEMO_ARMS[method],), seeds=(seed,), track=())


def run_demo(
    method: str, epochs: int, *, samples: int | None = None, batch_size: int = 64, seed: int = 0,
    lr: float = 0.05,
) -> DemoResult:
    """Run `demo_study(...)` on this rank with the harness's `run_arm`; every rank must call it
    with the same arguments (the same seed makes the same plan).

    Args:
        method, epochs, samples, batch_size, seed, lr: as `demo_study`.

    Returns:
        This rank's `DemoResult`.

    Raises:
        ValueError: as `demo_study`.
    """
    study = demo_study(method, epochs, samples=samples, batch_size=batch_size, seed=seed, lr=lr)
    recorders: list[_DrawRecorder] = []

    def observe(setup: ArmSetup) -> list[SampleMethod]:
        recorder = _DrawRecorder(setup, samples or SPLIT_SIZES[True])
        recorders.append(recorder)
        return [recorder]

    _, final, _ = run_arm(study, study.arms[0], seed, read_test=False, observe=observe)
    (recorder,) = recorders
    rank, world = rank_and_world()
    return DemoResult(
        rank, recorder.state_digest(), final["samples"], world_size=world,
        seconds=final["seconds"], epoch_plan=recorder.plan, epoch_samples=recorder.samples,
        epoch_indices=recorder.indices,
    )
