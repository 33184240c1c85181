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

Timeouts: every collective here waits at most `collective_timeout()` (`$CURRICLAB_DIST_TIMEOUT`
seconds, default 30) for the other ranks. When a peer does not answer (it crashed, hangs, or was
stopped), the rank pings every rank (at most min(timeout, 5 s) more; 2 x that on ranks other
than 0) and raises a `PeerTimeoutError` naming the rank that did not answer, instead of waiting
for torch's default of 30 minutes. `init_from_environment` gives the process group itself the
same timeout, so DDP's own all-reduces fail as soon, and `naming_silent_peers` turns their gloo
errors (which name no rank) into the same named error. Either way a stalled peer fails rank 0
after at most `timeout + min(timeout, 5 s)` (35 s by default) and the other ranks after at most
`timeout + 2 min(timeout, 5 s)` (40 s). (A gloo group made by hand has its own timeout for DDP's
all-reduces; curriclab's collectives still wait only `collective_timeout()`.)
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import time
from collections.abc import Iterator, Sequence
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
    "DIST_TIMEOUT_ENV",
    "Gathered",
    "PeerTimeoutError",
    "Synchronized",
    "check_distinct_ranks",
    "check_identical",
    "check_num_replicas",
    "collective_timeout",
    "digest",
    "gather_observations",
    "gathered_per_sample_losses",
    "init_from_environment",
    "method_settings",
    "naming_silent_peers",
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


DIST_TIMEOUT_ENV = "CURRICLAB_DIST_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 30.0
PROBE_SECONDS = 5.0
"""How long rank 0 waits for the other ranks' pings when it looks for a silent rank, at most."""


class PeerTimeoutError(RuntimeError):
    """A collective got no answer from a peer within `collective_timeout()`; the message names
    the rank(s) that did not answer, as far as a ping of every rank could tell."""


def rank_and_world(group: dist.ProcessGroup | None = None) -> tuple[int, int]:
    """`(rank, world size)` in `group`; `(0, 1)` without a process group.

    Args:
        group: the process group (default: the default group).

    Returns:
        (rank in [0, world), world size >= 1).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def collective_timeout() -> timedelta:
    """How long a collective here waits for the other ranks: `$CURRICLAB_DIST_TIMEOUT` seconds
    (a finite number > 0), else 30 s.

    Returns:
        The timeout (> 0).

    Raises:
        ValueError: the variable is set to anything else; the message names it.
    """
    text = os.environ.get(DIST_TIMEOUT_ENV, "").strip()
    if not text:
        return timedelta(seconds=DEFAULT_TIMEOUT_SECONDS)
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{DIST_TIMEOUT_ENV} must be a finite number of seconds > 0, got {text!r}")
    return timedelta(seconds=seconds)


def _probe_length(timeout: timedelta) -> timedelta:
    return timedelta(seconds=min(PROBE_SECONDS, timeout.total_seconds()))


_PROBE_GROUPS: dict[object, dist.ProcessGroup] = {}
"""A gloo group of the same ranks beside each default group `init_from_environment` made, keyed
by that group (a group made later is a new key, so a destroyed one is never used): after a
collective of the main group failed, its connections may be closed, and the ping that finds the
silent rank must run on fresh ones."""


def init_from_environment(timeout: timedelta | None = None) -> bool:
    """Join the process group torchrun describes (`WORLD_SIZE`, `RANK`, `MASTER_ADDR`, ... in the
    environment): NCCL when CUDA is available, else gloo; and beside it a small gloo group that
    `naming_silent_peers` uses to find a rank that stopped answering.

    Args:
        timeout: how long any collective of the group (DDP's all-reduces included) waits for a
            peer; default `collective_timeout()` ($CURRICLAB_DIST_TIMEOUT, else 30 s), the
            timeout of curriclab's own collectives.

    Returns:
        True if it joined a group; False (doing nothing) outside torchrun or when a group
        already exists.

    Raises:
        ValueError: a bad `$CURRICLAB_DIST_TIMEOUT`, or a `timeout` that is not positive.
    """
    if "WORLD_SIZE" not in os.environ or dist.is_initialized():
        return False
    timeout = collective_timeout() if timeout is None else timeout
    if not isinstance(timeout, timedelta) or timeout.total_seconds() <= 0:
        raise ValueError(f"timeout must be a positive datetime.timedelta, got {timeout!r}")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend, timeout=timeout)
    _PROBE_GROUPS[dist.group.WORLD] = dist.new_group(backend="gloo", timeout=timeout)
    return True


def _wait(work: dist.Work, what: str, group: dist.ProcessGroup | None) -> None:
    """Wait for an asynchronous collective at most `collective_timeout()`; if a peer does not
    answer, raise a PeerTimeoutError naming it (see `_raise_silent_peer`)."""
    timeout = collective_timeout()
    try:
        work.wait(timeout=timeout)
    except RuntimeError as error:
        _raise_silent_peer(f"{what}: rank {rank_and_world(group)[0]} got no answer within "
                           f"{timeout.total_seconds():g} s (${DIST_TIMEOUT_ENV})", group, error)


SILENT_PEER = re.compile(r"timed out waiting|operation timed out|connection (closed|reset) by peer"
                         r"|pair closure", re.IGNORECASE)
"""What the errors of a collective that lost a peer say (gloo's wording), as opposed to a bug."""


@contextlib.contextmanager
def naming_silent_peers(what: str = "a collective", group: dist.ProcessGroup | None = None
                        ) -> Iterator[None]:
    """Within the block, an error of a torch.distributed collective that lost a peer (gloo's
    "Timed out waiting ... for recv operation", a closed connection), e.g. from DDP's
    all-reduce, becomes a PeerTimeoutError that names the rank that no longer answers, as far
    as a ping of every rank can tell. Other errors pass unchanged; a no-op without a group.

    Args:
        what: names the work in the message (e.g. "training").
        group: the process group (default: the default group).

    Yields:
        None, once (the block runs).

    Raises:
        PeerTimeoutError: the block's collective lost a peer (chained to the original error).
    """
    try:
        yield
    except PeerTimeoutError:
        raise
    except RuntimeError as error:
        if rank_and_world(group)[1] == 1 or not SILENT_PEER.search(str(error)):
            raise
        _raise_silent_peer(f"{what}: rank {rank_and_world(group)[0]} lost a peer "
                           f"({str(error).splitlines()[0][:200]})", group, error)


def _raise_silent_peer(head: str, group: dist.ProcessGroup | None, error: Exception) -> None:
    """Find which ranks stopped answering (`_silent_ranks`, at most 2 x min(timeout, 5 s)) and
    raise a PeerTimeoutError naming them, chained to the collective's own error."""
    probe_group = _PROBE_GROUPS.get(dist.group.WORLD if group is None else group)
    probe_group = group if probe_group is None else probe_group
    if dist.get_backend(probe_group) != dist.Backend.GLOO:
        raise PeerTimeoutError(f"{head}; a peer crashed, hangs or is stopped") from error
    try:
        silent = _silent_ranks(probe_group, _probe_length(collective_timeout()))
    except RuntimeError as probe_error:  # gloo closed the connection to a silent rank before
        silent = _FOUND_SILENT.get(probe_group)
        if silent is None:
            raise PeerTimeoutError(f"{head}; no rank could be asked ({probe_error})") from error
    _FOUND_SILENT[probe_group] = silent = [0] if silent is None else silent
    if silent:
        label = "rank" if len(silent) == 1 else "ranks"
        raise PeerTimeoutError(f"{head}: {label} {', '.join(map(str, silent))} did not answer "
                               "(crashed, hung or stopped)") from error
    raise PeerTimeoutError(f"{head}, yet every rank then answered: the ranks issued different "
                           "collectives (did one rank skip a step or an epoch?)") from error


PROBE_TAG = 0x5C1E
"""The point-to-point tag of `_silent_ranks`' messages."""
_FOUND_SILENT: dict[object, list[int]] = {}
"""What the last probe of each probe group found (asking again may find the connections closed)."""
_UNFINISHED: list[dist.Work] = []
"""Sends to ranks that stopped answering: kept alive, since gloo needs their buffers."""


def _silent_ranks(group: dist.ProcessGroup | None, timeout: timedelta) -> list[int] | None:
    """Collective of the ranks still running: which ranks of `group` do not answer.

    Every rank but 0 sends rank 0 a ping; rank 0 waits at most `timeout` for them, then sends
    each rank that answered the list of those that did not. Like `monitored_barrier`, but every
    wait is bounded (a rank other than 0 waits at most 2 x `timeout` for rank 0's reply, where
    gloo's barrier would wait for the group's whole timeout), and every answering rank learns
    the same list. Returns that list, or None on a rank that got no reply from rank 0.
    """
    rank, world = rank_and_world(group)

    def peer(r: int) -> int:
        return r if group is None else dist.get_global_rank(group, r)

    if rank != 0:
        _UNFINISHED.append(dist.isend(torch.ones(1, dtype=torch.long), peer(0), group, PROBE_TAG))
        verdict = torch.zeros(world, dtype=torch.long)
        try:
            dist.irecv(verdict, peer(0), group, PROBE_TAG).wait(timeout=2 * timeout)
        except RuntimeError:
            return None
        return torch.nonzero(verdict).flatten().tolist()
    pings = {r: dist.irecv(torch.zeros(1, dtype=torch.long), peer(r), group, PROBE_TAG)
             for r in range(1, world)}
    deadline = time.monotonic() + timeout.total_seconds()
    silent = []
    for r, ping in pings.items():
        try:
            ping.wait(timeout=timedelta(seconds=max(deadline - time.monotonic(), 1e-3)))
        except RuntimeError:
            silent.append(r)
    verdict = torch.zeros(world, dtype=torch.long)
    verdict[silent] = 1
    for r in range(1, world):
        if r not in silent:
            _UNFINISHED.append(dist.isend(verdict.clone(), peer(r), group, PROBE_TAG))
    return silent


def _all_gather(parts: list[Tensor], tensor: Tensor, what: str,
                group: dist.ProcessGroup | None) -> None:
    """`dist.all_gather` that waits at most `collective_timeout()` (PeerTimeoutError naming the
    silent rank after that)."""
    _wait(dist.all_gather(parts, tensor, group=group, async_op=True), what, group)


def check_num_replicas(num_replicas: int, group: dist.ProcessGroup | None = None) -> None:
    """Under an initialised process group, `num_replicas` must equal its world size (a sampler
    sharding over more or fewer ranks leaves part of each plan undrawn, or draws it twice).

    Args:
        num_replicas: the sampler's number of shards.
        group: the process group (default: the default group).

    Raises:
        ValueError: naming `num_replicas` and the group's world size. Nothing without a group.
    """
    _, world = rank_and_world(group)
    if dist.is_available() and dist.is_initialized() and num_replicas != world:
        raise ValueError(f"num_replicas must equal the process group's world size {world}, got "
                         f"{num_replicas} (leave it None to take the group's)")


def check_distinct_ranks(rank: int, what: str, group: dist.ProcessGroup | None = None) -> None:
    """Collective: every rank of `group` must pass a different `rank` in [0, world size) (for a
    sampler: the shard it yields), so the shards are disjoint and cover the plan. One
    all-gather of one int64, with the timeout of `collective_timeout()`.

    Args:
        rank: the shard this process's sampler yields.
        what: names the caller in the message (e.g. "SGDSSampler").
        group: the process group (default: the default group).

    Raises:
        ValueError: on every rank, naming `rank` and which ranks passed which value.
        PeerTimeoutError: a peer did not answer in time. Nothing without a process group.
    """
    own, world = rank_and_world(group)
    if world == 1:
        return
    mine = torch.tensor([rank], dtype=torch.long, device=_device(group))
    everyone = [torch.empty_like(mine) for _ in range(world)]
    _all_gather(everyone, mine, f"{what}: the check of every rank's `rank`", group)
    values = [int(t.item()) for t in everyone]
    if sorted(values) != list(range(world)):
        given = ", ".join(f"process {r}: rank={v}" for r, v in enumerate(values))
        raise ValueError(f"{what}: rank must be different on every process, one of 0..{world - 1} "
                         f"(seen on process {own}; {given}); leave it None to take the group's")


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
    if index.numel() and (int(index.min()) < 0
                          or (num_samples is not None and int(index.max()) >= num_samples)):
        return 3
    if losses.dtype not in LOSS_DTYPES:
        return 4
    if losses.numel() and not bool(torch.isfinite(losses.detach()).all()):
        return 5
    return 0


@dataclass
class Gathered:
    """Every rank's observations of one step, concatenated in rank order (identical on all ranks).

    Attributes:
        index: int64 dataset indices [N], N = sum(counts).
        losses: detached losses [N] in the ranks' common dtype.
        counts: how many pairs each rank contributed, by rank.
        rank: this process's rank (its pairs are `index[offset : offset + counts[rank]]` with
            `offset = sum(counts[:rank])`).
        capacity: the `capacity` to pass to the next exchange (the largest count so far).
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

    Args:
        index: [B] integer dataset indices of this rank's batch (B may be 0).
        losses: [B] finite float losses of the same samples.
        num_samples: the data set's size, to check the indices against (None: not checked).
        group: the process group (default: the default group).
        capacity: >= 0 and equal on every rank: pass the previous call's `Gathered.capacity`
            (`Synchronized` does).

    Returns:
        The same `Gathered` on every rank: indices as int64 on `index`'s device, losses detached
        on `losses`' device. Without a process group, the input (checked) unchanged.

    Raises:
        ValueError: `capacity` is no int >= 0; or, on every rank, some rank's input is bad
            (naming the rank and the problem) or the ranks' loss dtypes differ.
        PeerTimeoutError: a peer did not answer within `collective_timeout()`.
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
    _all_gather(parts, first, "gather_observations", group)
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
        _wait(work, "gather_observations", group)
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
        raise ValueError("gather_observations: losses must have one dtype on every rank, got "
                         f"{names}")


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

    Args:
        methods: the wrapped per-sample methods (none may define `select`).
        num_samples: the data set's size, to check gathered indices against (None: unchecked).
        group: the process group (default: the default group).

    Raises:
        TypeError: a method is no `SampleMethod`, or one selects (defines `select`).
        ValueError: `num_samples` < 0.
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
        self._settings_checked = False

    def compute_losses(self, output: Tensor, target: Tensor, index: Tensor) -> Tensor | None:
        """The wrapped methods' per-sample losses (`combined_losses`), computed locally.

        Args:
            output: the model's output for the local batch, [B, C].
            target: the local labels [B].
            index: the local dataset indices [B].

        Returns:
            [B] losses, or None when no wrapped method computes its own (the loop's default).
        """
        return combined_losses(self.methods, output, target, index)

    def objective(self, index: Tensor, losses: Tensor) -> Tensor | None:
        """Gather once, let every wrapped method see the global batch, scale its objective.

        The first call under a process group also checks that every rank wraps the same methods
        with the same settings (`check_settings`). Collective: every rank calls it every step.

        Args:
            index: this rank's dataset indices [B].
            losses: this rank's per-sample losses [B] (with their gradient).

        Returns:
            The wrapped methods' objective over the global batch times the world size (a scalar
            whose gradient flows into this rank's losses), or None if no method returns one.

        Raises:
            ValueError, PeerTimeoutError: as in `gather_observations` and `check_settings`.
        """
        if not self._settings_checked:
            self.check_settings()
        gathered = gather_observations(index, losses, num_samples=self.num_samples,
                                       group=self.group, capacity=self.capacity)
        self.capacity = gathered.capacity
        world = len(gathered.counts)
        if world == 1:
            return combined_objective(self.methods, index, losses)
        start, stop = gathered.offset, gathered.offset + len(losses)
        global_losses = torch.cat([gathered.losses[:start], losses, gathered.losses[stop:]])
        objective = combined_objective(self.methods, gathered.index, global_losses)
        return None if objective is None else objective * world

    def check_settings(self) -> None:
        """Collective: raise the same ValueError on every rank unless all ranks hold the same
        `capacity`, `num_samples` and wrapped methods with the same settings (`method_settings`).
        One all-gather of four int64 of fixed size, so even a mismatch of `capacity` (which
        sizes the exchange) is reported instead of crashing gloo. `objective` calls it once.

        Raises:
            ValueError: naming the setting that differs, with every rank's value.
            PeerTimeoutError: a peer did not answer within `collective_timeout()`.
        """
        rank, world = rank_and_world(self.group)
        self._settings_checked = True
        if world == 1:
            return
        settings = "; ".join(method_settings(method) for method in self.methods)
        fields = {"capacity": self.capacity,
                  "num_samples": -1 if self.num_samples is None else self.num_samples,
                  "number of methods": len(self.methods),
                  "methods' settings": int(hashlib.sha256(settings.encode()).hexdigest()[:15], 16)}
        mine = torch.tensor(list(fields.values()), dtype=torch.long, device=_device(self.group))
        everyone = [torch.empty_like(mine) for _ in range(world)]
        _all_gather(everyone, mine, "Synchronized's check of every rank's settings", self.group)
        table = torch.stack(everyone).cpu().tolist()
        for column, name in enumerate(fields):
            values = [row[column] for row in table]
            if len(set(values)) > 1:
                shown = ", ".join(f"rank {r}: {v if column < 3 else f'{v:015x}'}"
                                  for r, v in enumerate(values))
                detail = f" (this rank's: {settings})" if column == 3 else ""
                raise ValueError(f"Synchronized (on rank {rank}): {name} must be equal on every "
                                 f"rank, got {shown}{detail}")

    def after_step(self) -> None:
        """Pass the end of an optimizer step on to every wrapped method, in order."""
        for method in self.methods:
            method.after_step()

    def after_epoch(self, epoch: int) -> None:
        """Pass the end of an epoch on to every wrapped method, in order.

        Args:
            epoch: the epoch that ended (0-based).
        """
        for method in self.methods:
            method.after_epoch(epoch)

    def state_dict(self) -> dict:
        """The wrapped methods' states.

        Returns:
            `{"methods": [each wrapped method's state_dict(), in order]}`.
        """
        return {"methods": [method.state_dict() for method in self.methods]}

    def load_state_dict(self, state: dict) -> None:
        """Load every wrapped method's state, in order; all or nothing.

        Args:
            state: what `state_dict()` returned.

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


def method_settings(method: object) -> str:
    """A method's class and public scalar attributes (bool, int, float, str, None), e.g.
    `SGDSSampler(num_samples=37, prune_fraction=0.2, ...)`: what every rank must agree on.
    `rank` is left out (it differs by design).

    Args:
        method: any object with a `__dict__`.

    Returns:
        "ClassName(name=value, ...)", the attributes in name order.
    """
    scalars = {name: value for name, value in sorted(vars(method).items())
               if not name.startswith("_") and name != "rank"
               and (value is None or isinstance(value, (bool, int, float, str)))}
    shown = ", ".join(f"{name}={value!r}" for name, value in scalars.items())
    return f"{type(method).__qualname__}({shown})"


def digest(*tensors: Tensor) -> str:
    """SHA-256 (hex) of the tensors' dtypes, shapes and bytes: equal digests, bitwise-equal state.

    Args:
        *tensors: tensors (or values `torch.as_tensor` accepts), on any device.

    Returns:
        64 hex characters.
    """
    sha = hashlib.sha256()
    for tensor in tensors:
        tensor = torch.as_tensor(tensor).detach().cpu().contiguous()
        sha.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        sha.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def state_digest(state: object) -> str:
    """SHA-256 (hex) of a (nested) `state_dict`: tensors by their bytes, other values by `repr`,
    dict entries in key order; two ranks with equal digests hold bitwise-identical state.

    Args:
        state: dicts, lists and tuples nest; tensors and other values are leaves.

    Returns:
        64 hex characters.
    """
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
    on all ranks (one all-gather of a 64-bit digest). A no-op without a process group.

    Args:
        what: names the tensors in the message.
        *tensors: this rank's tensors.
        group: the process group (default: the default group).

    Raises:
        ValueError: on every rank, listing each rank's digest, when they differ.
        PeerTimeoutError: a peer did not answer within `collective_timeout()`.
    """
    rank, world = rank_and_world(group)
    if world == 1:
        return
    value = int(digest(*tensors)[:15], 16)  # 60 bits: fits an int64
    mine = torch.tensor([value], dtype=torch.long, device=_device(group))
    everyone = [torch.empty_like(mine) for _ in range(world)]
    _all_gather(everyone, mine, f"check_identical ({what})", group)
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
    1 / world of the cost. Collective; `per_sample_losses` itself without a process group.

    Args:
        model: the model (evaluated without gradients, as in `per_sample_losses`).
        data: the N samples, the same on every rank.
        loss_fn: per-sample loss of (output, target).
        batch_size: samples per forward pass (>= 1).
        group: the process group (default: the default group).

    Returns:
        [N] losses, by dataset index.

    Raises:
        ValueError: a non-finite loss on some rank (see `gather_observations`).
    """
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
    Collective per step; a no-op step hook without a process group.

    Args:
        optimizer: the optimizer whose parameters' gradients are averaged.
        group: the process group (default: the default group).
        exchange: "dense" or "touched".

    Returns:
        The step pre-hook's handle (`.remove()` undoes it).

    Raises:
        ValueError: an unknown `exchange`.
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
                    _wait(dist.all_reduce(grad, group=group, async_op=True),
                          "synchronize_sparse_gradients", group)
                    param.grad = grad / world
                    continue
                flat = grad.reshape(-1)
                rows = torch.nonzero(flat).squeeze(1)
                gathered = gather_observations(rows, flat[rows], num_samples=flat.numel(),
                                               group=group,
                                               capacity=capacities.get(id(param), 0))
                capacities[id(param)] = gathered.capacity
                total = torch.zeros_like(flat).index_add_(0, gathered.index.to(flat.device),
                                                          gathered.losses)
                param.grad = (total / world).reshape(param.shape)

    return optimizer.register_step_pre_hook(average)
