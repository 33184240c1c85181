"""Two-rank misconfiguration scenarios for tests/test_bad_input.py, in a module of its own so
that the spawned ranks import only what they run (not the CLI, plots and notebooks' code)."""

from __future__ import annotations

import os
import signal
import time
import traceback
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from curriclab.core.distributed import (
    DIST_TIMEOUT_ENV,
    Synchronized,
    gather_observations,
    init_from_environment,
    naming_silent_peers,
)
from curriclab.core.tracking import LossTracker
from curriclab.methods.curriculum import CurriculumSampler
from curriclab.methods.infobatch import InfoBatchSampler
from curriclab.methods.sampling import SGDSSampler

SETUP_TIMEOUT = 60.0  # $CURRICLAB_DIST_TIMEOUT while the group meets and runs the scenarios
STALL_TIMEOUT = 2.0  # ... and while one rank is stopped: seconds a collective waits


def _attempt(action) -> tuple[str, str, float]:
    """(error type, message, seconds) of `action()`, or ("", "", seconds) if it raised nothing."""
    start = time.perf_counter()
    try:
        action()
    except Exception as error:  # noqa: BLE001 - the test inspects it
        return type(error).__name__, str(error), time.perf_counter() - start
    return "", "", time.perf_counter() - start


def _exchange(synchronized: Synchronized) -> None:
    synchronized.objective(torch.arange(2), torch.ones(2))


def _scenarios(rank: int) -> dict:
    """What every two-rank scenario raised on this rank; the group stays usable after each
    (every check completes its collective before it raises), so they run one after another."""
    trackers = [LossTracker(10)]
    return {
        "num_replicas=4 (SGD-S)": _attempt(lambda: SGDSSampler(10, num_replicas=4, rank=rank)),
        "num_replicas=1 (InfoBatch)": _attempt(
            lambda: InfoBatchSampler(10, 2, num_replicas=1, rank=0)),
        "rank=0 on both ranks (SGD-S)": _attempt(
            lambda: SGDSSampler(10, num_replicas=2, rank=0).set_epoch(0)),
        "rank=0 on both ranks (curriculum)": _attempt(
            lambda: CurriculumSampler(torch.arange(10.0), lambda s: 1.0, 4, 4, seed=0,
                                      num_replicas=2, rank=0).set_epoch(0)),
        "unequal capacity": _attempt(
            lambda: _exchange(_with(Synchronized(trackers, 10), capacity=5 * rank))),
        "unequal num_samples": _attempt(
            lambda: _exchange(Synchronized([LossTracker(10)], num_samples=10 + rank))),
        "unequal method settings": _attempt(
            lambda: _exchange(Synchronized([LossTracker(10, momentum=0.5 * rank)], 10))),
        "unequal number of methods": _attempt(
            lambda: _exchange(Synchronized([LossTracker(10)] * (1 + rank), 10))),
        "a well-configured group": _attempt(lambda: _exchange(Synchronized(trackers, 10))),
    }


def _with(synchronized: Synchronized, capacity: int) -> Synchronized:
    synchronized.capacity = capacity
    return synchronized


def group_worker(rank: int, port: int, directory: str) -> None:
    """Join a two-rank group as torchrun would describe it, run every misconfiguration
    scenario, then stall each rank in turn: rank 1 stops itself (rank 0 tries a plain
    all-reduce inside `naming_silent_peers` and an exchange), then rank 0 resumes rank 1 and
    stops itself (rank 1 tries an exchange in a second group, whose connections are fresh)."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
                       "RANK": str(rank), "LOCAL_RANK": str(rank),
                       DIST_TIMEOUT_ENV: str(SETUP_TIMEOUT)})
    torch.set_num_threads(1)
    out = Path(directory)
    assert init_from_environment()
    second = dist.new_group(backend="gloo", timeout=timedelta(seconds=SETUP_TIMEOUT))
    try:
        results = _scenarios(rank)
    except Exception:  # noqa: BLE001 - hand the traceback to the test process
        results = {"crash": ("crash", traceback.format_exc(), 0.0)}
    torch.save(results, out / f"scenarios{rank}.pt")
    dist.barrier()
    os.environ[DIST_TIMEOUT_ENV] = str(STALL_TIMEOUT)
    if rank == 1:
        (out / "pid1").write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGSTOP)  # until rank 0 sends SIGCONT
        stalled = {"exchange": _attempt(lambda: gather_observations(
            torch.arange(2), torch.ones(2), num_samples=10, group=second))}
    else:
        def all_reduce() -> None:
            with naming_silent_peers("an all-reduce"):
                dist.all_reduce(torch.ones(1), async_op=True).wait(
                    timeout=timedelta(seconds=STALL_TIMEOUT))

        stalled = {"all-reduce": _attempt(all_reduce),
                   "exchange": _attempt(lambda: gather_observations(
                       torch.arange(2), torch.ones(2), num_samples=10))}
    torch.save(stalled, out / f"stalled{rank}.pt")
    if rank == 0:
        os.kill(int((out / "pid1").read_text()), signal.SIGCONT)
        os.kill(os.getpid(), signal.SIGSTOP)  # the test process ends both ranks
