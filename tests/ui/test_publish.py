"""The freshness check of stored notebook outputs, and execution into a notebook's metadata."""

import copy
import os
import stat

import nbformat
import pytest

from curriclab.ui.publish import (
    METADATA_KEY,
    code_fingerprint,
    execute_notebook,
    stale_reasons,
    write_atomically,
)
from tests.helpers.notebooks import _notebook


def _as_executed(notebook: dict, mode: str = "full") -> dict:
    notebook = copy.deepcopy(notebook)
    for count, cell in enumerate((c for c in notebook.cells if c.cell_type == "code"), start=1):
        cell.execution_count = count
    notebook.metadata[METADATA_KEY] = {"code_fingerprint": code_fingerprint(notebook), "mode": mode}
    return notebook


def test_a_fresh_full_run_is_trusted_and_every_kind_of_staleness_is_named():
    executed = _as_executed(_notebook("x = 1", "assert x == 1"))
    assert stale_reasons(executed) == []

    edited = copy.deepcopy(executed)
    edited.cells[2].source = "assert x == 2"
    assert any("code cell changed" in reason for reason in stale_reasons(edited))

    prose = copy.deepcopy(executed)
    prose.cells[0].source = "# another title"  # prose is not code: still fresh
    assert stale_reasons(prose) == []

    quick = _as_executed(_notebook("x = 1"), "quick")
    assert any("'quick' mode" in reason for reason in stale_reasons(quick))

    failed = copy.deepcopy(executed)
    failed.cells[1].outputs = [nbformat.v4.new_output("error", ename="E", evalue="", traceback=[])]
    assert stale_reasons(failed) == ["code cell 0 stored an error"]

    shuffled = copy.deepcopy(executed)
    shuffled.cells[1].execution_count = 5
    assert any("execution counts" in reason for reason in stale_reasons(shuffled))

    assert "never executed" in stale_reasons(_notebook("x = 1"))[0]


def test_the_fingerprint_follows_the_program_not_its_layout():
    executed = _as_executed(_notebook("total = sum([1, 2,\n             3])", "assert total == 6"))
    rewrapped = copy.deepcopy(executed)
    rewrapped.cells[1].source = "# the same sum, on one line\ntotal = sum([1, 2, 3])"
    assert stale_reasons(rewrapped) == []

    for program in ("total = sum([1, 2, 4])", "total = sum([1, 3, 2])", "total = max([1, 2, 3])",
                    "%time total = sum([1, 2, 3])"):
        changed = copy.deepcopy(executed)
        changed.cells[1].source = program
        assert any("code cell changed" in reason for reason in stale_reasons(changed)), program

    magic = _as_executed(_notebook("%time x = 1"))
    spaced = copy.deepcopy(magic)
    spaced.cells[1].source = "%time  x = 1"  # not Python: its text counts as it is
    assert stale_reasons(magic) == [] and stale_reasons(spaced) != []


def test_execute_notebook_runs_in_a_kernel_and_records_mode_and_fingerprint(tmp_path):
    path = tmp_path / "tiny.ipynb"
    bars = ("from curriclab.core.training import progress_bar\n"
            "for _ in progress_bar(range(3), 'outer'):\n"
            "    for _ in progress_bar(range(2), 'inner', leave=False):\n"
            "        pass")
    nbformat.write(_notebook("import os\nmode = os.environ['CURRICLAB_QUICK']", "print(mode)",
                             bars), path)
    execute_notebook(path, quick=True, timeout=120)
    stored = nbformat.read(path, as_version=4)
    assert stored.cells[2].outputs[0]["text"] == "1\n"
    # the bar is stored as text, its final line only: no widget, no redraws, no transient inner bar
    (bar,) = stored.cells[3].outputs
    assert bar["output_type"] == "stream" and bar["name"] == "stderr"
    assert bar["text"].startswith("outer: 100%") and "3/3" in bar["text"]
    assert bar["text"].count("\n") == 1 and "\r" not in bar["text"] and "inner" not in bar["text"]
    assert stored.metadata[METADATA_KEY]["mode"] == "quick"
    assert stale_reasons(stored) == ["executed in 'quick' mode, not at full scale"]
    with pytest.raises(Exception, match="ZeroDivisionError"):
        nbformat.write(_notebook("1 / 0"), path)
        execute_notebook(path, timeout=120)


def test_an_atomic_write_replaces_the_file_and_keeps_its_permissions(tmp_path):
    path = tmp_path / "a.ipynb"
    path.write_text("old")
    path.chmod(0o640)
    write_atomically(path, "new text\n")
    assert path.read_text() == "new text\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ipynb"]  # no temporary file left


def test_an_interrupted_write_leaves_the_old_file_byte_identical(tmp_path, monkeypatch):
    path = tmp_path / "a.ipynb"
    path.write_bytes(b"old bytes")

    def interrupted(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, "new")
    assert path.read_bytes() == b"old bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ipynb"]


def test_a_failing_notebook_is_left_byte_identical(tmp_path):
    path = tmp_path / "bad.ipynb"
    nbformat.write(_notebook("x = 1", "1 / 0"), path)
    before = path.read_bytes()
    with pytest.raises(Exception, match="ZeroDivisionError"):
        execute_notebook(path, quick=True, timeout=120)
    assert path.read_bytes() == before


@pytest.mark.parametrize("timeout", [0, -1, 1.5, True])
def test_execute_notebook_refuses_a_bad_timeout_by_name(tmp_path, timeout):
    path = tmp_path / "a.ipynb"
    nbformat.write(_notebook("x = 1"), path)
    with pytest.raises(ValueError, match="timeout"):
        execute_notebook(path, timeout=timeout)


def test_execute_notebook_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.ipynb"):
        execute_notebook(tmp_path / "nothere.ipynb")
