"""Every dotted `curriclab.<module>...<name>` reference in the prose resolves to something real.

Scanned: README.md and docs/*.md (all text), the docstrings and comments of every .py file under
curriclab/, benchmarks/, tests/ and conftest.py, and the markdown and code cells of every notebook.
A reference resolves when its longest importable module prefix imports and the remaining names
are attributes (or dataclass fields / annotated attributes) of what that gives.
"""

from __future__ import annotations

import ast
import importlib
import io
import json
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = re.compile(r"(?<![\w./-])curriclab(?:\.[A-Za-z_]\w*)+")


def python_prose(source: str) -> list[tuple[int, str]]:
    """(line, text) of every docstring and comment of a Python source."""
    pieces = [
        (token.start[0], token.string)
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    pieces.append((body[0].lineno, body[0].value.value))
    return pieces


def notebook_prose(path: Path) -> list[tuple[str, str]]:
    """(where, text) of every markdown and code cell of a notebook."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [
        (f"cell {number} ({cell['cell_type']})", "".join(cell["source"]))
        for number, cell in enumerate(cells)
        if cell["cell_type"] in ("markdown", "code")
    ]


def sources() -> list[Path]:
    """Every file whose prose is scanned, relative to the repository root."""
    files = [ROOT / "README.md", ROOT / "conftest.py", *sorted((ROOT / "docs").glob("*.md"))]
    for folder in ("curriclab", "benchmarks", "tests"):
        files += sorted((ROOT / folder).rglob("*.py"))
    files += sorted((ROOT / "notebooks").glob("*.ipynb"))
    return [path.relative_to(ROOT) for path in files if path.is_file()]


def references(path: Path) -> list[tuple[str, str]]:
    """(where, dotted reference) for every reference in one scanned file."""
    full = ROOT / path
    if full.suffix == ".py":
        texts = [(f"line {line}", text) for line, text in python_prose(full.read_text("utf-8"))]
    elif full.suffix == ".ipynb":
        texts = notebook_prose(full)
    else:
        texts = [("", full.read_text(encoding="utf-8"))]
    return [(where, match) for where, text in texts for match in REFERENCE.findall(text)]


def resolves(reference: str) -> bool:
    """Whether the longest importable module prefix imports and the rest are its attributes.

    A module that exists but fails to import raises (that is a bug of its own, not of a reference).
    """
    parts = reference.split(".")
    for split in range(len(parts), 0, -1):
        name = ".".join(parts[:split])
        try:
            target = importlib.import_module(name)
        except ModuleNotFoundError as missing:
            if missing.name is not None and not name.startswith(missing.name):
                raise
            continue
        for attribute in parts[split:]:
            declared = getattr(target, "__dataclass_fields__", {}) or getattr(
                target, "__annotations__", {}
            )
            if hasattr(target, attribute):
                target = getattr(target, attribute)
            elif isinstance(target, type) and attribute in declared:
                return attribute == parts[-1]  # a field has no attributes to follow
            else:
                return False
        return True
    return False


def test_the_resolver_tells_a_moved_name_from_a_real_one():
    assert resolves("curriclab.core.config.pick")
    assert resolves("curriclab.methods.importance.BatchImportance.grad_norms")  # a field
    assert resolves("curriclab.methods.importance")
    assert not resolves("curriclab.config.pick")  # the module moved to curriclab.core
    assert not resolves("curriclab.core.data.no_such_loader")
    assert not resolves("curriclab.methods.importance.BatchImportance.no_such_field")


def test_the_scanner_finds_references_in_every_kind_of_source():
    found: dict[str, list] = {}
    for path in sources():
        found.setdefault(path.suffix, []).extend(references(path))
    assert len(found[".md"]) > 10 and len(found[".py"]) > 0 and len(found[".ipynb"]) > 0
    assert python_prose('"""See curriclab.a.b."""\nx = "curriclab.c.d"  # curriclab.e.f\n') == [
        (2, "# curriclab.e.f"), (1, "See curriclab.a.b."),
    ]
    assert REFERENCE.findall("`curriclab.plots.*`, curriclab/core/data.py, curriclab.core.") == [
        "curriclab.plots", "curriclab.core",
    ]


@pytest.mark.parametrize("path", sources(), ids=str)
def test_every_reference_resolves(path):
    broken = [f"{where}: {ref}" for where, ref in references(path) if not resolves(ref)]
    assert not broken, f"{path} names what does not exist:\n" + "\n".join(broken)
