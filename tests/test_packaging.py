"""environment.yml must install this package from pyproject.toml, the single source of
dependencies."""

import re
import subprocess
import sys
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
    assert {"torch", "torchvision", "numpy", "matplotlib", "celluloid", "ipywidgets",
            "tqdm"} <= names
    dev = {re.split(r"[=<>! \[]", dep)[0] for dep in project["optional-dependencies"]["dev"]}
    assert {"pytest", "nbval", "nbclient", "nbformat", "pytest-xdist", "ipykernel", "hypothesis",
            "ruff"} <= dev
    assert project["requires-python"] == ">=3.10"


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_the_readme_commands_are_installed_next_to_this_python():
    """The set-up must give the commands the README shows, in the environment the tests run in."""
    bin_dir = Path(sys.executable).parent
    lab = _run(sys.executable, "-m", "jupyter", "lab", "--version")
    assert lab.returncode == 0, f"`jupyter lab` is not installed: {lab.stderr.strip()}"
    assert int(lab.stdout.strip().split(".")[0]) >= 4
    assert (bin_dir / "jupyter-lab").exists() or (bin_dir / "jupyter-lab.exe").exists()
    cli = _run(str(bin_dir / "curriclab"), "--help")
    assert cli.returncode == 0 and "spl-demo" in cli.stdout


def test_jupyter_finds_a_python_kernel_and_the_widget_extension():
    from jupyter_client.kernelspec import KernelSpecManager

    assert "python3" in KernelSpecManager().find_kernel_specs()
    extensions = _run(sys.executable, "-m", "jupyter", "labextension", "list")
    assert "@jupyter-widgets/jupyterlab-manager" in extensions.stdout + extensions.stderr


def test_pytest_defaults_to_quick_mode_and_zero_means_full(monkeypatch):
    """The root conftest makes plain `pytest` the fast command; notebooks read the same switch."""
    from curriclab.core.config import QUICK_ENV, pick

    assert f'os.environ.setdefault("{QUICK_ENV}", "1")' in (ROOT / "conftest.py").read_text()
    for value, expected in [("1", "quick"), ("0", "full"), ("", "full"), ("yes", "quick")]:
        monkeypatch.setenv(QUICK_ENV, value)
        assert pick(full="full", quick="quick") == expected


def test_every_module_declares_its_public_names_and_they_exist():
    import importlib
    import pkgutil

    import curriclab

    for info in pkgutil.walk_packages(curriclab.__path__, "curriclab."):
        if info.ispkg or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        assert hasattr(module, "__all__"), f"{info.name} has no __all__"
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert not missing, f"{info.name}.__all__ names missing objects: {missing}"


def test_the_layers_import_one_way():
    """experiments -> methods -> core; plots never import experiments at run time; core imports
    nothing above it."""
    import ast

    forbidden = {"core": ("curriclab.methods", "curriclab.experiments", "curriclab.plots",
                          "curriclab.ui"),
                 "methods": ("curriclab.experiments", "curriclab.plots", "curriclab.ui"),
                 "plots": ("curriclab.experiments", "curriclab.ui")}
    for layer, prefixes in forbidden.items():
        for path in (ROOT / "curriclab" / layer).rglob("*.py"):
            tree = ast.parse(path.read_text())
            runtime = [node for node in tree.body if isinstance(node, ast.ImportFrom)]
            for node in runtime:
                assert not (node.module or "").startswith(prefixes), (
                    f"{path}: imports {node.module}"
                )
