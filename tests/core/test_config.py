"""curriclab.core.config: the quick/full switch."""

import pytest

from curriclab.core.config import pick


@pytest.mark.parametrize("value, quick", [("1", True), ("true", True), ("0", False), ("", False)])
def test_pick_follows_the_environment(monkeypatch, value, quick):
    monkeypatch.setenv("CURRICLAB_QUICK", value)
    assert pick(full="full", quick="quick") == ("quick" if quick else "full")
