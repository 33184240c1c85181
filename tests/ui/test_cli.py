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


def test_ddp_demo_report_json_needs_a_rank_placeholder_under_several_processes(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit, match=r"\{rank\}"):
        main(["ddp-demo", "--method", "sgds", "--epochs", "1", "--report-json", str(tmp_path / "r.json")])


def test_the_cli_executes_the_notebooks_it_is_given(tmp_path, capsys):
    from curriclab.ui.cli import main

    path = tmp_path / "one.ipynb"
    nbformat.write(_notebook("x = 6 * 7", "print(x)"), path)
    assert main(["execute-series", "--quick", str(path)]) == 0
    assert str(path) in capsys.readouterr().out
    assert nbformat.read(path, as_version=4).cells[2].outputs[0]["text"] == "42\n"
