"""Execute the notebook series in place, and tell when stored outputs no longer match their code.

The notebooks are stored with the outputs of a full-scale run, so a reader on GitHub sees every
figure and number without installing anything. Outputs must never silently outlive the code
that made them, so every execution records, in the notebook's metadata under "curriclab":

- `code_fingerprint`: a SHA-256 of what the code cells do, in order: each cell's syntax tree
  (`ast.dump`), so re-wrapping a line or editing a comment does not make outputs stale, while any
  change to what runs does (a cell Python cannot parse, e.g. one with IPython magics, counts by
  its text);
- `mode`: "full" or "quick" (the `CURRICLAB_QUICK` switch the kernel ran with);
- `seconds`: the wall time of the run.

`stale_reasons(notebook)` lists what is wrong with a stored notebook (a code cell edited since,
a quick-mode run, a stored error, execution counts out of order); the test suite asserts it is
empty for every notebook.

Execution uses nbclient, the library nbconvert's `--execute` wraps: called directly it takes the
kernel's environment, a per-cell timeout and `store_widget_state` (sliders keep their last state
where a viewer renders widgets) without nbconvert's export machinery.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from curriclab.core.config import QUICK_ENV
from curriclab.core.training import PROGRESS_ENV

__all__ = [
    "METADATA_KEY", "code_fingerprint", "execute_notebook", "stale_reasons", "write_atomically",
]

METADATA_KEY = "curriclab"


def _code_sources(notebook: dict[str, Any]) -> list[str]:
    return [
        "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for cell in notebook["cells"]
        if cell["cell_type"] == "code"
    ]


def _program(source: str) -> str:
    """What a cell runs, independent of layout: its syntax tree, or its text if it does not
    parse."""
    try:
        return ast.dump(ast.parse(source))
    except SyntaxError:
        return source


def code_fingerprint(notebook: dict[str, Any]) -> str:
    """SHA-256 of the syntax trees of the notebook's code cells, in order.

    Args:
        notebook: a parsed .ipynb (a dict or an `nbformat` node).

    Returns:
        A hex digest that changes whenever a code cell's program changes, and not when only its
        layout, its comments, the prose or the outputs do.
    """
    programs = [_program(source) for source in _code_sources(notebook)]
    return hashlib.sha256(json.dumps(programs).encode()).hexdigest()


def stale_reasons(notebook: dict[str, Any]) -> list[str]:
    """Why the stored outputs of `notebook` cannot be trusted.

    Args:
        notebook: a parsed .ipynb (nbformat 4 JSON as a dict).

    Returns:
        One sentence per reason (no fingerprint, changed code, not full scale, a stored error,
        execution counts out of order); [] if the outputs can be trusted.
    """
    record = notebook.get("metadata", {}).get(METADATA_KEY)
    if record is None:
        return ["never executed by `curriclab execute-series` (no fingerprint in its metadata)"]
    reasons = []
    if record.get("code_fingerprint") != code_fingerprint(notebook):
        reasons.append("a code cell changed after the outputs were produced: execute it again")
    if record.get("mode") != "full":
        reasons.append(f"executed in {record.get('mode')!r} mode, not at full scale")
    code_cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    for number, cell in enumerate(code_cells):
        if any(output.get("output_type") == "error" for output in cell.get("outputs", [])):
            reasons.append(f"code cell {number} stored an error")
    counts = [cell.get("execution_count") for cell in code_cells]
    if counts != list(range(1, len(code_cells) + 1)):
        reasons.append(f"execution counts are not 1..{len(code_cells)} in order: {counts}")
    return reasons


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables (inherited by a kernel started inside) and restore them after."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value


def write_atomically(path: str | Path, text: str) -> None:
    """Replace the file at `path` by `text` (UTF-8) in one step: the text goes to a temporary file
    in the same directory, which `os.replace` then renames over `path`. A crash or an interrupt
    leaves either the old file or the new one, never a half-written mix; the file keeps its
    permission bits.

    Args:
        path: the file (it may not exist yet; its folder must).
        text: the new content.

    Raises:
        OSError: the file cannot be written (the temporary file is removed).
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o7777)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def execute_notebook(path: str | Path, *, quick: bool = False, timeout: int = 3600) -> float:
    """Run every cell of the notebook at `path` in a fresh kernel and write it back with its outputs
    and the "curriclab" metadata.

    The notebook is written only after every cell ran, and atomically (`write_atomically`): a
    failing cell or an interrupt leaves the file on disk byte-identical. Progress bars run as
    text and are stored as their final line.

    Args:
        path: the .ipynb file.
        quick: run with `CURRICLAB_QUICK=1` (stored as mode "quick", which `stale_reasons` refuses).
        timeout: seconds each cell may take, >= 1.

    Returns:
        The wall time in seconds.

    Raises:
        ValueError: `timeout` < 1.
        FileNotFoundError: no file at `path`.
        nbclient.exceptions.CellExecutionError: a cell raised (the file is left unchanged).
    """
    import nbformat
    from nbclient import NotebookClient

    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
        raise ValueError(f"timeout must be an int >= 1 (seconds per cell), got {timeout!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no notebook at {path}")
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    with _environment(**{QUICK_ENV: "1" if quick else "0", PROGRESS_ENV: "text"}):
        NotebookClient(
            notebook, timeout=timeout, kernel_name="python3", store_widget_state=True,
            # coalesce_streams merges each cell's stream chunks and applies the bars' \r redraws
            coalesce_streams=True,
            resources={"metadata": {"path": str(path.parent)}},
        ).execute()
    seconds = time.perf_counter() - start
    notebook.metadata[METADATA_KEY] = {
        "code_fingerprint": code_fingerprint(notebook),
        "mode": "quick" if quick else "full",
        "seconds": round(seconds, 1),
    }
    text = nbformat.writes(notebook)
    write_atomically(path, text if text.endswith("\n") else text + "\n")  # as nbformat.write
    return seconds
