"""A notebook's headline numbers as a committed, machine-readable file.

A full-scale run writes `results/<name>.json` beside its notebook (the notebook's working
directory): the numbers its prose and the README's result cards quote, and the full result
records it ran. Quick mode (`CURRICLAB_QUICK=1`, the test suite) never writes, so a test run
cannot overwrite the published figures. `tests/test_readme_results.py` checks the README's result
cards against these files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from curriclab.core.config import is_quick
from curriclab.experiments.harness.results import Results

__all__ = ["RESULTS_DIR", "load_headlines", "save_headlines"]

RESULTS_DIR = Path("results")
"""Where headline files live, relative to the notebooks' directory."""


def _check_name(name: str) -> str:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"name must be a plain file stem like '09_data_pruning', got {name!r}")
    return name


def _plain(value: Any, key: str) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, key) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # a 0-d tensor or numpy scalar
        return _plain(value.item(), key)
    raise TypeError(f"headline {key!r}: {type(value).__name__} is not a number, string or list")


def save_headlines(name: str, headlines: Mapping[str, Any], records: Mapping[str, Results] = {},
                   directory: str | Path = RESULTS_DIR) -> Path | None:
    """Write `<directory>/<name>.json` with the headline numbers and the result records, at full
    scale only.

    Args:
        name: the file stem, e.g. "09_data_pruning".
        headlines: named numbers, strings or (nested) lists/dicts of them; inf/NaN become null.
        records: result records to store with them (spec, curves, finals), by a short name.
        directory: relative to the working directory (a notebook's is its own folder).

    Returns:
        The path written, or None in quick mode (nothing is written).

    Raises:
        TypeError: a headline that is not plain data.
    """
    name = _check_name(name)
    values = {"headlines": _plain(dict(headlines), "headlines"),
              "records": {key: record.to_dict() for key, record in records.items()}}
    if is_quick():
        return None
    path = Path(directory) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(values, separators=(",", ":")) + "\n")
    temporary.replace(path)
    return path


def load_headlines(name: str, directory: str | Path = RESULTS_DIR) -> dict[str, Any]:
    """The headline numbers `save_headlines` wrote for `name` (without the records).

    Args:
        name: the notebook's file stem, e.g. "09_data_pruning".
        directory: the folder holding `<name>.json` (default: the notebooks' results folder).

    Returns:
        The file's "headlines" mapping, as JSON values.

    Raises:
        ValueError: `name` is empty, holds a "/" or starts with ".".
        FileNotFoundError: no such file (the notebook has not been run at full scale).
    """
    path = Path(directory) / f"{_check_name(name)}.json"
    return json.loads(path.read_text())["headlines"]
