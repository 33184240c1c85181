"""Paths of the checkout the tests run in."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository root (README.md, notebooks/, docs/)."""
