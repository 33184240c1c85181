"""The notebooks are stored with the outputs of a full-scale run on the current code: every notebook
was executed by `curriclab execute-series` at full scale, no code cell changed since, no output is
an error and the execution counts run 1, 2, 3, ... (see `curriclab.ui.publish.stale_reasons`)."""

import json
from pathlib import Path

import pytest

from curriclab.ui.publish import stale_reasons

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_series_is_found():
    assert len(NOTEBOOKS) >= 9


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_stored_outputs_are_fresh(path):
    reasons = stale_reasons(json.loads(path.read_text()))
    assert not reasons, f"{path.name}: " + "; ".join(reasons) + \
        f" (re-execute: curriclab execute-series notebooks/{path.name})"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_a_reader_sees_figures(path):
    """Stored outputs include at least one image: the notebook is not stored stripped."""
    notebook = json.loads(path.read_text())
    kinds = {kind for cell in notebook["cells"] if cell["cell_type"] == "code"
             for output in cell.get("outputs", []) for kind in output.get("data", {})}
    assert kinds & {"image/png", "image/gif"}, f"{path.name} stores no figure"
