"""Shared by the tests of curriclab.core.distributed and of the scaling-out runner."""

from __future__ import annotations

JOIN_SECONDS = 240  # a hung group fails the test after this, instead of blocking the run
