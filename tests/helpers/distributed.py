"""Shared by the tests of curriclab.core.distributed, of the samplers and of the scaling-out runner:
running a function on a group of spawned processes, with a bound on how long they may take."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable

JOIN_SECONDS = 240  # a hung group fails the test after this, instead of blocking the run


def run_ranks(target: Callable[..., None], *args: object, world: int = 2) -> list[int | None]:
    """Run `target(rank, *args)` in `world` spawned processes, one per rank, and wait for them.

    A process still running after `JOIN_SECONDS` is killed, so a hung group fails the test
    instead of blocking the run.

    Args:
        target: a module-level (picklable) function; each process calls `target(rank, *args)`
            with its rank in 0 .. world - 1.
        *args: picklable arguments, the same for every rank.
        world: how many processes (>= 1).

    Returns:
        Each process's exit code, by rank (0 for a clean exit).

    Raises:
        AssertionError: some rank had not finished after `JOIN_SECONDS` (all are killed first).
    """
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=target, args=(rank, *args)) for rank in range(world)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(JOIN_SECONDS)
    hung = [rank for rank, process in enumerate(processes) if process.is_alive()]
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()
    assert not hung, f"ranks {hung} of {target.__name__}{args} did not finish"
    return [process.exitcode for process in processes]
