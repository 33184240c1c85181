"""curriclab.core.timing."""

import pytest


def test_median_seconds_calls_the_function_repeats_plus_warmup_times():
    from curriclab.core.timing import median_seconds

    calls = []
    assert median_seconds(lambda: calls.append(1), 3, warmup=True) >= 0.0
    assert len(calls) == 4
    with pytest.raises(ValueError, match="repeats"):
        median_seconds(lambda: None, 0)
