"""Launch `curriclab ddp-demo` in one or several processes from Python (notebook 08), with a
timeout, and read back every rank's printed digest line and JSON report.

Several processes run under torchrun (`python -m torch.distributed.run --standalone`); one process
runs the demo directly, without a process group. Every process gets one torch thread
(`OMP_NUM_THREADS=1`), so two processes on two cores do not compete for them.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from curriclab.experiments.scaling_out import DEMO_METHODS, demo_sampler

__all__ = ["DemoLaunch", "demo_command", "demo_shards", "interleave", "launch_demo", "throughput"]

LINE = re.compile(r"rank \d+: state sha256 [0-9a-f]{64} samples \d+")


@dataclass
class DemoLaunch:
    """One finished launch of the `ddp-demo`.

    Attributes:
        command: the command as a user would type it (`torchrun ...` or `python ...`).
        lines: every rank's digest line, sorted.
        reports: every rank's JSON report, by rank.
        wall: the wall-clock seconds, start-up included.
    """

    command: str
    lines: list[str]
    reports: list[dict[str, Any]]
    wall: float

    def __str__(self) -> str:
        return f"$ {self.command}\n" + "\n".join(self.lines) + \
            f"\n({self.wall:.0f} s wall clock, start-up included)"


def demo_command(method: str, processes: int, *, samples: int, epochs: int, seed: int = 0,
                 report: str | None = None, peer_timeout: float | None = None) -> list[str]:
    """The argument list that runs the demo in `processes` processes (torchrun when > 1).

    Args:
        method: a `DEMO_METHODS` entry.
        processes: how many ranks (>= 1).
        samples, epochs, seed: the demo's `--samples`, `--epochs`, `--seed`.
        report: the demo's `--report-json` path (with '{rank}' for several processes), or None.
        peer_timeout: the demo's `--timeout`: seconds a rank waits for a silent peer before the
            group fails naming it; None leaves the flag out ($CURRICLAB_DIST_TIMEOUT or 30 s).

    Returns:
        `[python, -m, curriclab, ddp-demo, ...]`, or the same under `-m torch.distributed.run
        --standalone --nproc_per_node processes` (this interpreter either way).

    Raises:
        ValueError: an unknown method, fewer than 1 process or a `peer_timeout` that is not > 0.
    """
    if method not in DEMO_METHODS:
        raise ValueError(f"method must be one of {DEMO_METHODS}, got {method!r}")
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    if peer_timeout is not None and not (isinstance(peer_timeout, (int, float))
                                         and math.isfinite(peer_timeout) and peer_timeout > 0):
        raise ValueError("peer_timeout must be a finite number of seconds > 0, got "
                         f"{peer_timeout!r}")
    demo = ["-m", "curriclab", "ddp-demo", "--method", method, "--epochs", str(epochs),
            "--samples", str(samples), "--seed", str(seed)]
    if report is not None:
        demo += ["--report-json", report]
    if peer_timeout is not None:
        demo += ["--timeout", repr(float(peer_timeout))]
    if processes == 1:
        return [sys.executable, *demo]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            str(processes), *demo]


def _as_typed(command: list[str]) -> str:
    """The command as a user types it: `torchrun ...` or `python ...`."""
    if command[1:3] == ["-m", "torch.distributed.run"]:
        return " ".join(["torchrun", *command[3:]])
    return " ".join(["python", *command[1:]])


def launch_demo(method: str, processes: int, *, samples: int, epochs: int, work: Path,
                seed: int = 0, timeout: float = 900.0,
                peer_timeout: float | None = None) -> DemoLaunch:
    """Run the demo and collect what every rank printed and reported.

    Args:
        method: a `DEMO_METHODS` entry.
        processes: 1 runs the demo directly; more run it under torchrun.
        samples, epochs, seed: the demo's `--samples`, `--epochs`, `--seed`.
        work: a directory for the ranks' JSON reports.
        timeout: seconds before the whole process group is killed.
        peer_timeout: the demo's `--timeout` (see `demo_command`).

    Returns:
        The launch's lines, reports and wall-clock time.

    Raises:
        RuntimeError: the launch failed (the error's last lines are quoted) or timed out.
    """
    report = work / f"{method}-{processes}p-rank{{rank}}.json"
    command = demo_command(method, processes, samples=samples, epochs=epochs, seed=seed,
                           report=str(report), peer_timeout=peer_timeout)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # torchrun and every rank it started
        process.communicate()
        raise RuntimeError(f"{_as_typed(command)} did not finish within {timeout} s") from None
    if process.returncode != 0:
        raise RuntimeError(f"{_as_typed(command)} failed ({process.returncode}):\n{err[-3000:]}")
    reports = [json.loads(Path(str(report).replace("{rank}", str(rank))).read_text())
               for rank in range(processes)]
    return DemoLaunch(_as_typed(command), sorted(LINE.findall(out)),
                      sorted(reports, key=lambda r: r["rank"]), time.perf_counter() - start)


def throughput(launch: DemoLaunch) -> float:
    """Samples trained per second of training: all ranks' samples over the slowest rank's
    training seconds (a group is as fast as its slowest rank).

    Args:
        launch: a finished launch (its reports' "samples" and "seconds").

    Returns:
        Samples per second (> 0).

    Raises:
        ZeroDivisionError: every rank reports 0 seconds.
    """
    return sum(r["samples"] for r in launch.reports) / max(r["seconds"] for r in launch.reports)


def demo_shards(method: str, num_samples: int, epochs: int, epoch: int, world: int,
                losses: Tensor | None = None) -> tuple[list[Tensor], Tensor | None, Any]:
    """What each of `world` ranks draws in `epoch` with the demo's sampler, without a group.

    Args:
        losses: per-sample losses fed to every rank's sampler first (as `Synchronized` would).

    Returns:
        (each rank's drawn indices, the whole plan or None for `DistributedSampler`,
        rank 0's sampler).
    """
    samplers = [demo_sampler(method, num_samples, epochs, seed=0, num_replicas=world, rank=rank)
                for rank in range(world)]
    for sampler in samplers:
        if losses is not None:
            sampler.update(torch.arange(num_samples), losses)
        sampler.set_epoch(epoch)
    plan = samplers[0].plan.indices if hasattr(samplers[0], "plan") else None
    return [torch.tensor(list(sampler)) for sampler in samplers], plan, samplers[0]


def interleave(shards: list[Tensor]) -> Tensor:
    """The ranks' shards merged back into plan order (rank r holds positions r, r + W, ...).

    Args:
        shards: W equal-length 1-D tensors, by rank.

    Returns:
        [W * length]: position p from shard p % W.

    Raises:
        ValueError: the shards differ in length (DDP needs as many steps on every rank).
    """
    if len({len(shard) for shard in shards}) != 1:
        raise ValueError(f"shards must have equal lengths, got {[len(s) for s in shards]}")
    return torch.stack(shards, 1).reshape(-1)
