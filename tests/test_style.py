"""The style rules CI promises (`ruff check .` with pyproject.toml's rules, 100 columns included)
hold for the whole checkout, so `pytest` alone catches a long line or an unused import."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing_in_the_checkout():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_100_column_limit_is_among_the_checked_rules():
    config = (ROOT / "pyproject.toml").read_text()
    assert "line-length = 100" in config and '"E501"' in config
