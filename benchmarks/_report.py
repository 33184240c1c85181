"""The benchmarks' one way to time and one output format.

`interleaved` times named runs with `torch.utils.benchmark.Timer` (one `blocked_autorange` per run
and round; with the default min_run_time=0 that is one untimed warm-up call and one timed call),
the runs interleaved round by round so machine load hits them alike. `report` prints a header line
(script, what, threads, clock, repeats) and a table `name | median ms | ratio to <baseline>`.
Ratios are measured in one process; absolute times on a shared CPU are not stable.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from torch.utils.benchmark import Measurement, Timer

__all__ = ["CLOCKS", "interleaved", "medians", "report"]

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}

Run = Callable[[], object] | tuple[Callable[[], object], Callable[[object], object]]


def interleaved(
    runs: dict[str, Run], repeats: int, *, threads: int, clock: str = "wall", rotate: bool = False,
    min_run_time: float = 0.0,
) -> dict[str, list[Measurement]]:
    """One `Measurement` per round for each named run, `repeats` rounds, runs interleaved (and the
    order rotated each round when `rotate`). A run is `fn` (timed: `fn()`) or `(prepare, fn)`
    (timed: `fn(state)`; `state = prepare()` runs untimed just before every timed call)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {tuple(CLOCKS)}, got {clock!r}")
    timers = {}
    for name, run in runs.items():
        prepare, fn = run if isinstance(run, tuple) else (None, run)
        timers[name] = Timer(
            "fn()" if prepare is None else "fn(state)",
            setup="pass" if prepare is None else "state = prepare()",
            globals={"fn": fn, "prepare": prepare}, timer=CLOCKS[clock], num_threads=threads,
            sub_label=name, description=clock,
        )
    names = list(runs)
    measured: dict[str, list[Measurement]] = {name: [] for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names) if rotate else 0
        for name in names[shift:] + names[:shift]:
            measured[name].append(timers[name].blocked_autorange(min_run_time=min_run_time))
    return measured


def medians(measured: dict[str, list[Measurement]], scale: float = 1.0) -> dict[str, float]:
    """Median over rounds of each run's per-round median seconds, times `scale`."""
    return {name: scale * statistics.median(m.median for m in ms) for name, ms in measured.items()}


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 1e4 else f"{value:.4g}"


def report(
    what: str, seconds: dict[str, float], baseline: str, *, threads: int, clock: str, repeats: int,
) -> pd.DataFrame:
    """Print the header line and the table `name | median ms | ratio to <baseline>`; return it."""
    if baseline not in seconds:
        raise ValueError(f"baseline {baseline!r} is not among {tuple(seconds)}")
    table = pd.DataFrame({"median ms": {name: 1000 * value for name, value in seconds.items()}})
    table[f"ratio to {baseline}"] = table["median ms"] / table.loc[baseline, "median ms"]
    table = table.rename_axis("name")
    script = Path(sys.argv[0]).name
    print(f"\n# {script} | {what} | threads {threads} | clock {clock} | repeats {repeats}")
    print(table.reset_index().to_string(index=False, float_format=_number))
    return table
