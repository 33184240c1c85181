"""environment.yml must install this package from pyproject.toml, the single source of dependencies."""

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # standard library from Python 3.11

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_installs_the_project_with_its_dev_extra_and_nothing_else():
    text = (ROOT / "environment.yml").read_text()
    entries = re.findall(r"^\s*-\s*(\S.*?)\s*$", text, flags=re.MULTILINE)
    assert "conda-forge" in entries
    assert any(re.fullmatch(r"python=3\.11", entry) for entry in entries)
    assert "pip" in entries and "-e .[dev]" in entries
    listed = {re.split(r"[=<>!\[ ]", entry)[0] for entry in entries}
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    duplicated = listed & {re.split(r"[=<>!\[ ]", dep)[0] for dep in dependencies}
    assert not duplicated, f"declare {duplicated} in pyproject.toml only"


def test_pyproject_declares_the_runtime_and_dev_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[=<>! \[]", dep)[0] for dep in project["dependencies"]}
    assert {"torch", "torchvision", "numpy", "matplotlib", "celluloid", "ipywidgets", "tqdm"} <= names
    dev = {re.split(r"[=<>! \[]", dep)[0] for dep in project["optional-dependencies"]["dev"]}
    assert {"pytest", "nbval", "pytest-xdist", "nbstripout", "ipykernel", "hypothesis", "ruff"} <= dev
    assert project["requires-python"] == ">=3.10"
