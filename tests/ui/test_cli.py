"""curriclab.ui.cli: the commands, run through main([...])."""

from __future__ import annotations

import nbformat
import pytest
from PIL import Image

from curriclab.ui.cli import main
from tests.helpers.notebooks import _notebook


def test_cli_writes_the_demo_gif(tmp_path, capsys):
    out = tmp_path / "demo.gif"
    assert main(["spl-demo", "--out", str(out), "--epochs", "2", "--seed", "3"]) == 0
    assert Image.open(out).n_frames == 2
    assert "wrote" in capsys.readouterr().out


def test_ddp_demo_report_json_needs_a_rank_placeholder_under_several_processes(monkeypatch,
                                                                                tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit, match=r"\{rank\}"):
        main(["ddp-demo", "--method", "sgds", "--epochs", "1",
              "--report-json", str(tmp_path / "r.json")])


def test_the_cli_executes_the_notebooks_it_is_given(tmp_path, capsys):
    from curriclab.ui.cli import main

    path = tmp_path / "one.ipynb"
    nbformat.write(_notebook("x = 6 * 7", "print(x)"), path)
    assert main(["execute-series", "--quick", str(path)]) == 0
    assert str(path) in capsys.readouterr().out
    assert nbformat.read(path, as_version=4).cells[2].outputs[0]["text"] == "42\n"


def test_execute_series_runs_every_notebook_and_names_the_failures(tmp_path, capsys):
    """The failing notebook (first) neither stops the series nor changes on disk; the exit code
    is 1 and the summary names it and only it."""
    bad, good, missing = tmp_path / "a_bad.ipynb", tmp_path / "b_good.ipynb", tmp_path / "c.ipynb"
    nbformat.write(_notebook("raise RuntimeError('broken on purpose')"), bad)
    nbformat.write(_notebook("print(6 * 7)"), good)
    before = bad.read_bytes()
    assert main(["execute-series", "--quick", str(bad), str(good), str(missing)]) == 1
    out, err = capsys.readouterr()
    assert f"{bad}: FAILED, left unchanged" in out and "broken on purpose" in out
    assert f"{missing}: FAILED" in out and "FileNotFoundError" in out
    assert f"2 of 3 notebooks failed: {bad}, {missing}" in err
    assert bad.read_bytes() == before
    assert nbformat.read(good, as_version=4).cells[1].outputs[0]["text"] == "42\n"


def test_the_ddp_demo_timeout_flag_sets_the_collective_timeout(monkeypatch, capsys):
    from datetime import timedelta

    from curriclab.core.distributed import DIST_TIMEOUT_ENV, collective_timeout
    from curriclab.ui import cli

    seen = {}

    class Result:
        def line(self) -> str:
            return "rank 0: state sha256 0 samples 0"

    def run_demo(*args, **kwargs):
        seen["timeout"] = collective_timeout()
        return Result()

    monkeypatch.setattr(cli, "run_demo", run_demo)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv(DIST_TIMEOUT_ENV, "30")  # main() sets it; monkeypatch restores it after
    assert main(["ddp-demo", "--method", "sgds", "--timeout", "7.5"]) == 0
    assert seen["timeout"] == timedelta(seconds=7.5)
    assert "rank 0: state sha256" in capsys.readouterr().out
