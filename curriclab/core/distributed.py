"""Per-sample state under torch.distributed: one exchange of `(index, loss)` pairs per step.

Under DistributedDataParallel every rank sees only its shard of each batch, so a method that keeps
state per training sample (a LossTracker, a sampler's losses, SPL's weights) would drift apart on
every rank. `gather_observations` collects every rank's `(dataset index, per-sample loss)` pairs in
rank order, so all ranks hold the same pairs, and `Synchronized` plugs it into the training loop
once for all the methods it wraps:

    sampler = SGDSSampler(len(train))              # same seed on every rank; shards the plan
    loader = make_loader(train, 64, sampler=sampler)
    methods = [Synchronized([sampler, tracker], num_samples=len(train))]
    fit(DistributedDataParallel(model), loader, optimizer, epochs, methods=methods)

The exchange uses torch.distributed only (gloo on CPUs, NCCL on GPUs) and two all-gathers per
step: one int64 tensor holding each rank's header (count, validity, loss dtype) and then its
indices, and one of the float losses in their own dtype (never packed into one), both padded to
the largest batch and trimmed by the counts. The header arrives before any loss is exchanged, so
a rank with bad input (an index out of range, a NaN loss) makes *every* rank raise the same
ValueError instead of leaving the others waiting in a collective.
Without a process group (a single process) every collective here is a no-op.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from curriclab.core.data import IndexedDataset
from curriclab.core.protocol import (
    SampleMethod,
    combined_losses,
    combined_objective,
    defines_selection,
)
from curriclab.core.training import LossFn, cross_entropy_per_sample, per_sample_losses

__all__ = [
    "Gathered",
    "Synchronized",
    "check_identical",
    "digest",
    "gather_observations",
    "gathered_per_sample_losses",
    "init_from_environment",
    "rank_and_world",
    "state_digest",
    "synchronize_sparse_gradients",
]

LOSS_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
"""The loss dtypes the exchange carries; the header sends a dtype's position in this tuple."""

PROBLEMS = {
    1: "index and losses must be 1-D tensors of equal length",
    2: "index must be an integer tensor",
    3: "index must lie in [0, num_samples)",
    4: "losses must be a float tensor (float16, bfloat16, float32 or float64)",
    5: "losses must be finite (got NaN or inf): did training diverge?",
    6: "index and losses must be tensors (or convertible to tensors)",
}
"""Why a rank rejects its own observations, by the status code it sends in the header."""


def rank_and_world(group: dist.ProcessGroup | None = None) -> tuple[int, int]:
    """`(rank, world size)` in `group` (default: the default group); `(0, 1)` without a process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def init_from_environment(timeout: timedelta = timedelta(minutes=5)) -> bool:
    """Join the process group torchrun describes (`WORLD_SIZE`, `RANK`, `MASTER_ADDR`, ... in the
    environment): NCCL when CUDA is available, else gloo, with `timeout` on every collective, so
    a lost rank raises instead of hanging. Returns False (and does nothing) outside torchrun or
    when a group already exists."""
    if "WORLD_SIZE" not in os.environ or dist.is_initialized():
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend, timeout=timeout)
    return True


def _device(group: dist.ProcessGroup | None) -> torch.device:
    """Where the collectives' tensors must live: the current GPU for NCCL, else the CPU."""
    if dist.get_backend(group) == dist.Backend.NCCL:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _status(index: Tensor, losses: Tensor, num_samples: int | None) -> int:
    """0 if `(index, losses)` can be exchanged, else the code of the first problem (`PROBLEMS`)."""
    if index.ndim != 1 or losses.ndim != 1 or len(index) != len(losses):
        return 1
    if index.dtype.is_floating_point or index.dtype.is_complex or index.dtype == torch.bool:
        return 2
    if index.numel() and (int(index.min()) < 0 or (num_samples is not None and int(index.max()) >= num_samples)):
        return 3
    if losses.dtype not in LOSS_DTYPES:
        return 4
    if losses.numel() and not bool(torch.isfinite(losses.detach()).all()):
        return 5
    return 0


@dataclass
class Gathered:
    """Every rank's observations of one step, concatenated in rank order (identical on all ranks).

    index: int64 dataset indices [N]; losses: detached losses [N] in the ranks' common dtype;
    counts: how many pairs each rank contributed; rank: this process's rank (its pairs are
    `index[offset : offset + counts[rank]]` with `offset = sum(counts[:rank])`); capacity: the
    `capacity` to pass to the next exchange (the largest count so far).
    """

    index: Tensor
    losses: Tensor
    counts: list[int]
    rank: int
    capacity: int

    @property
    def offset(self) -> int:
        """Where this rank's own pairs start in `index` and `losses`."""
        return sum(self.counts[: self.rank])


def gather_observations(
    index: Tensor, losses: Tensor, *, num_samples: int | None = None,
    group: dist.ProcessGroup | None = None, capacity: int = 0,
) -> Gathered:
    """Gather every rank's `(index, losses)` pairs so that every rank returns the same `Gathered`.

    Collective: every rank of `group` must call it once per step, even with an empty batch.
    Each rank checks its own input (1-D, equal lengths, integer indices in `[0, num_samples)`,
    finite float losses) and sends its verdict, count and loss dtype ahead of its indices, so a
    bad rank makes every rank raise a ValueError naming it before any loss is exchanged.

    Two all-gathers per call in the steady state: one int64 tensor (the header, then the indices
    padded to `capacity`) and one tensor of the losses in their own dtype, padded to the largest
    count. A batch larger than `capacity` costs one more all-gather to re-send the indices.
    `capacity` must be equal on every rank: pass the previous call's `Gathered.capacity`
    (`Synchronized` does). Indices come back as int64 on `index`'s device, losses detached on
    `losses`' device. Without a process group this returns the input (checked) unchanged.
    """
    capacity = _check_capacity(capacity)
    rank, world = rank_and_world(group)
    try:  # whatever a rank was given, it must reach the collective to report it
        index, losses = torch.as_tensor(index), torch.as_tensor(losses)
        status = _status(index, losses, num_samples)
    except (TypeError, ValueError, RuntimeError):
        index, losses, status = torch.empty(0, dtype=torch.long), torch.empty(0), 6
    if world == 1:
        if status:
            raise ValueError(f"gather_observations: {_problem(status, num_samples)}")
        return Gathered(index.long(), losses.detach(), [len(index)], 0, max(capacity, len(index)))
    device = _device(group)
    dtype_code = LOSS_DTYPES.index(losses.dtype) if losses.dtype in LOSS_DTYPES else -1
    count = len(index) if status == 0 else 0
    first = torch.zeros(3 + capacity, dtype=torch.long, device=device)
    first[:3] = torch.tensor([count, status, dtype_code])
    if count <= capacity:  # count is 0 for a bad rank: nothing of its input is sent
        first[3 : 3 + count] = index[:count].to(device=device, dtype=torch.long)
    parts = [torch.empty_like(first) for _ in range(world)]
    dist.all_gather(parts, first, group=group)
    table = torch.stack(parts)[:, :3].cpu().tolist()
    _raise_on_bad_ranks(table, rank, num_samples)
    counts = [row[0] for row in table]
    largest = max(counts)
    works = []
    if largest > capacity:
        padded_index = torch.zeros(largest, dtype=torch.long, device=device)
        padded_index[:count] = index[:count].to(device=device, dtype=torch.long)
        indices = [torch.empty_like(padded_index) for _ in range(world)]
        works.append(dist.all_gather(indices, padded_index, group=group, async_op=True))
    else:
        indices = [part[3:] for part in parts]
    padded_losses = torch.zeros(largest, dtype=losses.dtype, device=device)
    padded_losses[:count] = losses[:count].detach().to(device)
    values = [torch.empty_like(padded_losses) for _ in range(world)]
    if largest:
        works.append(dist.all_gather(values, padded_losses, group=group, async_op=True))
    for work in works:
        work.wait()
    return Gathered(
        torch.cat([part[:n] for part, n in zip(indices, counts)]).to(index.device),
        torch.cat([part[:n] for part, n in zip(values, counts)]).to(losses.device),
        counts,
        rank,
        max(capacity, largest),
    )


def _check_capacity(capacity: int) -> int:
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
        raise ValueError(f"capacity must be an int >= 0, got {capacity!r}")
    return capacity


def _problem(status: int, num_samples: int | None) -> str:
    problem = PROBLEMS[status]
    return problem.replace("num_samples", str(num_samples)) if num_samples is not None else problem


def _raise_on_bad_ranks(table: list[list[int]], rank: int, num_samples: int | None) -> None:
    """Raise the same ValueError on every rank if any rank rejected its input or dtypes differ."""
    bad = [(r, row[1]) for r, row in enumerate(table) if row[1]]
    if bad:
        reasons = "; ".join(f"rank {r}: {_problem(status, num_samples)}" for r, status in bad)
        raise ValueError(f"gather_observations (on rank {rank}): bad per-sample input on {reasons}")
    dtypes = {row[2] for row in table}
    if len(dtypes) > 1:
        names = ", ".join(f"rank {r}: {LOSS_DTYPES[row[2]]}" for r, row in enumerate(table))
        raise ValueError(f"gather_observations: losses must have one dtype on every rank, got {names}")


class Synchronized(SampleMethod):
    """Plugs `methods` into the loop with one exchange of `(index, loss)` pairs per step.

    `objective(index, losses)` gathers every rank's pairs once and hands the gathered batch to
    every wrapped method, so their per-sample state (trackers, samplers, SPL) stays identical on
    every rank and equals what one process computes from the same pairs. The gathered losses
    carry this rank's own losses (with their gradient) in this rank's slot, and the objective a
    wrapped method returns is multiplied by the world size: DistributedDataParallel averages
    gradients over ranks, so the model then receives exactly the gradient of the objective over
    the whole global batch, as one process would compute it (also with uneven batches).
    When no wrapped method returns an objective this returns None (the loop's local mean).

    `compute_losses`, `after_step` and `after_epoch` are passed on to the wrapped methods as they
    are. Methods whose state is learnt by gradients from the local batch (DataParameters) belong
    outside the wrapper, and so do batch selectors (they select per rank, from the local
    candidate batch; the wrapper then sees the chosen samples). Without a process group the
    wrapper behaves like its methods.
    """

    def __init__(
        self, methods: Sequence[SampleMethod], num_samples: int | None = None,
        group: dist.ProcessGroup | None = None,
    ):
        if not all(isinstance(method, SampleMethod) for method in methods):
            raise TypeError("methods must be SampleMethod instances")
        if any(defines_selection(method) for method in methods):
            raise TypeError("methods: a selecting method (one that defines select) selects "
                            "per rank; plug it in beside Synchronized, not inside it")
        if num_samples is not None and num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        self.methods = list(methods)
        self.num_samples = num_samples
        self.group = group
        self.capacity = 0

    def compute_losses(self, output: Tensor, target: Tensor, index: Tensor) -> Tensor | None:
        return combined_losses(self.methods, output, target, index)

    def objective(self, index: Tensor, losses: Tensor) -> Tensor | None:
        """Gather once, let every wrapped method see the global batch, scale its objective."""
        gathered = gather_observations(index, losses, num_samples=self.num_samples, group=self.group,
                                       capacity=self.capacity)
        self.capacity = gathered.capacity
        world = len(gathered.counts)
        if world == 1:
            return combined_objective(self.methods, index, losses)
        start, stop = gathered.offset, gathered.offset + len(losses)
        global_losses = torch.cat([gathered.losses[:start], losses, gathered.losses[stop:]])
        objective = combined_objective(self.methods, gathered.index, global_losses)
        return None if objective is None else objective * world

    def after_step(self) -> None:
        for method in self.methods:
            method.after_step()

    def after_epoch(self, epoch: int) -> None:
        for method in self.methods:
            method.after_epoch(epoch)

    def state_dict(self) -> dict:
        """`{"methods": [each wrapped method's state_dict(), in order]}`."""
        return {"methods": [method.state_dict() for method in self.methods]}

    def load_state_dict(self, state: dict) -> None:
        """Load every wrapped method's state, in order; all or nothing.

        Raises:
            TypeError/ValueError: from the state's layout (naming `methods`) or from the wrapped
                method that refuses its entry (the message names `methods.<position>`); the
                methods loaded before it are then restored, so nothing changes.
        """
        from curriclab.core.state import check_keys

        check_keys(state, ("methods",), "Synchronized")
        states = state["methods"]
        if not isinstance(states, (list, tuple)) or len(states) != len(self.methods):
            raise ValueError(f"Synchronized.load_state_dict: state key 'methods' must list "
                             f"{len(self.methods)} state(s), one per wrapped method")
        before = [method.state_dict() for method in self.methods]
        for position, (method, entry) in enumerate(zip(self.methods, states)):
            try:
                method.load_state_dict(entry)
            except (TypeError, ValueError) as error:
                for loaded, saved in zip(self.methods[:position], before):
                    loaded.load_state_dict(saved)
                raise type(error)(f"Synchronized.load_state_dict: state key 'methods.{position}' "
                                  f"({type(method).__name__}): {error}") from None


def digest(*tensors: Tensor) -> str:
    """SHA-256 (hex) of the tensors' dtypes, shapes and bytes: equal digests, bitwise-equal state."""
    sha = hashlib.sha256()
    for tensor in tensors:
        tensor = torch.as_tensor(tensor).detach().cpu().contiguous()
        sha.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        sha.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def state_digest(state: object) -> str:
    """SHA-256 (hex) of a (nested) `state_dict`: tensors by their bytes, other values by `repr`,
    dict entries in key order; two ranks with equal digests hold bitwise-identical state."""
    sha = hashlib.sha256()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key in sorted(value, key=repr):
                sha.update(repr(key).encode())
                walk(value[key])
        elif isinstance(value, (list, tuple)):
            sha.update(f"{type(value).__name__}{len(value)}".encode())
            for item in value:
                walk(item)
        elif isinstance(value, Tensor):
            sha.update(digest(value).encode())
        else:
            sha.update(repr(value).encode())

    walk(state)
    return sha.hexdigest()


def check_identical(what: str, *tensors: Tensor, group: dist.ProcessGroup | None = None) -> None:
    """Collective: raise the same ValueError on every rank unless `tensors` are bitwise identical
    on all ranks (one all-gather of a 64-bit digest). A no-op without a process group."""
    rank, world = rank_and_world(group)
    if world == 1:
        return
    value = int(digest(*tensors)[:15], 16)  # 60 bits: fits an int64
    mine = torch.tensor([value], dtype=torch.long, device=_device(group))
    everyone = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(everyone, mine, group=group)
    values = [int(t.item()) for t in everyone]
    if len(set(values)) > 1:
        groups = ", ".join(f"rank {r}: {v:015x}" for r, v in enumerate(values))
        raise ValueError(f"{what} differs across ranks (seen on rank {rank}; digests {groups})")


def gathered_per_sample_losses(
    model: nn.Module, data: IndexedDataset, *, loss_fn: LossFn = cross_entropy_per_sample,
    batch_size: int = 1000, group: dist.ProcessGroup | None = None,
) -> Tensor:
    """Every sample's loss under `model` (as `per_sample_losses`), each rank measuring every
    world-size-th sample and one exchange sharing them: the same [N] tensor on every rank, at
    1 / world of the cost. Collective; `per_sample_losses` itself without a process group."""
    rank, world = rank_and_world(group)
    if world == 1:
        return per_sample_losses(model, data, loss_fn=loss_fn, batch_size=batch_size)
    mine = torch.arange(rank, len(data), world)
    losses = per_sample_losses(model, data.subset(mine), loss_fn=loss_fn, batch_size=batch_size)
    gathered = gather_observations(mine, losses, num_samples=len(data), group=group)
    result = torch.full((len(data),), float("nan"), dtype=gathered.losses.dtype)
    result[gathered.index] = gathered.losses
    return result


EXCHANGES = ("dense", "touched")


def synchronize_sparse_gradients(
    optimizer: torch.optim.Optimizer, group: dist.ProcessGroup | None = None, *,
    exchange: str = "dense",
) -> RemovableHandle:
    """Before every step of `optimizer`, replace each parameter's gradient by its average over
    the ranks (DistributedDataParallel's rule), so every rank makes the same step.

    Meant for SparseSGD over data parameters, which live outside the DDP model: a minibatch
    touches a few rows of each table, and every rank must update the union of the touched rows
    alike so that the tables stay identical. Rows no rank touched keep a gradient of exactly zero,
    so SparseSGD still leaves them and their momentum alone.
    `exchange="dense"` all-reduces the whole gradient (one collective); `"touched"` gathers only
    the `(row, gradient)` pairs of the touched rows (two collectives of batch size). Measured with
    2 ranks on one CPU machine, a 60 000-row table and 128 rows per rank, the dense all-reduce is
    several times faster: the exchange is latency-bound (`benchmarks/bench_distributed.py`);
    "touched" pays off only when the table is large compared with the batch and bandwidth is the
    limit (many rows, ranks across machines). A rank without a gradient contributes zeros.
    Collective per step; returns the hook's handle (`.remove()` undoes it). No-op alone.
    """
    if exchange not in EXCHANGES:
        raise ValueError(f"exchange must be one of {EXCHANGES}, got {exchange!r}")
    capacities: dict[int, int] = {}

    def average(opt: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        _, world = rank_and_world(group)
        if world == 1:
            return
        for param_group in opt.param_groups:
            for param in param_group["params"]:
                grad = param.grad if param.grad is not None else torch.zeros_like(param)
                if grad.is_sparse:  # e.g. DataParameters' instance table: averaged densely
                    grad = grad.to_dense()  # a new tensor, free to reduce in place
                elif exchange == "dense":
                    grad = grad.clone()  # .grad itself must not be reduced in place
                if exchange == "dense":
                    dist.all_reduce(grad, group=group)
                    param.grad = grad / world
                    continue
                flat = grad.reshape(-1)
                rows = torch.nonzero(flat).squeeze(1)
                gathered = gather_observations(rows, flat[rows], num_samples=flat.numel(), group=group,
                                               capacity=capacities.get(id(param), 0))
                capacities[id(param)] = gathered.capacity
                total = torch.zeros_like(flat).index_add_(0, gathered.index.to(flat.device), gathered.losses)
                param.grad = (total / world).reshape(param.shape)

    return optimizer.register_step_pre_hook(average)
