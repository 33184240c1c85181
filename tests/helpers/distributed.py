"""Shared by the tests of curriclab.core.distributed, of the samplers and of the scaling-out runner:
running a function on a group of spawned processes, with a bound on how long they may take."""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

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


def _gloo_worker(rank: int, directory: str, world: int, scenario: Callable[[int], dict]) -> None:
    """One rank of `scenario_results`: join a gloo group through a file store in `directory`,
    run `scenario(rank)` (one thread) and save what it returns, or the traceback it raised."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{directory}/store", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
    try:
        result = scenario(rank)
    except Exception:  # pragma: no cover - reported to the test process
        result = {"crash": traceback.format_exc()}
    torch.save(result, f"{directory}/result{rank}.pt")
    dist.barrier()  # no rank tears gloo down while a peer still uses it
    dist.destroy_process_group()


def scenario_results(scenario: Callable[[int], dict], directory: Path, world: int = 2
                     ) -> list[dict]:
    """Run `scenario(rank)` on every rank of a `world`-process gloo group and collect the results.

    Args:
        scenario: a module-level (picklable) function of the rank returning a picklable dict.
        directory: an empty folder for the group's file store and the results.
        world: how many ranks.

    Returns:
        Each rank's dict, by rank.

    Raises:
        AssertionError: a rank exited uncleanly, hung (`run_ranks`) or raised (its traceback).
    """
    exit_codes = run_ranks(_gloo_worker, str(directory), world, scenario, world=world)
    assert exit_codes == [0] * world, exit_codes
    results = [torch.load(Path(directory) / f"result{rank}.pt", weights_only=False)
               for rank in range(world)]
    for rank, result in enumerate(results):
        assert "crash" not in result, f"rank {rank}:\n{result['crash']}"
    return results
