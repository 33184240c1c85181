"""benchmarks/_report.py: the benchmarks' shared timing (torch.utils.benchmark) and output
format."""

import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "_report", Path(__file__).resolve().parents[1] / "benchmarks" / "_report.py"
)
_report = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_report)


def test_interleaved_times_every_run_each_round_and_prepares_before_each_call():
    calls = []
    runs = {
        "a": lambda: calls.append("a"),
        "b": (lambda: calls.append("prepare b") or 7, lambda state: calls.append(("b", state))),
    }
    measured = _report.interleaved(runs, 3, threads=1, clock="cpu", rotate=True)
    assert {name: len(ms) for name, ms in measured.items()} == {"a": 3, "b": 3}
    # each round: untimed warm-up call, then one timed call (blocked_autorange, min_run_time=0)
    assert calls.count("a") == 6 and calls.count(("b", 7)) == 6
    assert calls.count("prepare b") >= 6
    assert all(m.number_per_run == 1 for ms in measured.values() for m in ms)
    assert set(_report.medians(measured)) == {"a", "b"}
    with pytest.raises(ValueError, match="repeats"):
        _report.interleaved(runs, 0, threads=1)
    with pytest.raises(ValueError, match="clock"):
        _report.interleaved(runs, 1, threads=1, clock="gpu")


def test_report_prints_the_header_and_ratios_to_the_baseline(capsys):
    table = _report.report("what", {"base": 0.002, "other": 0.003}, "base", threads=1,
                           clock="wall", repeats=4)
    assert list(table.columns) == ["median ms", "ratio to base"]
    assert table.loc["other", "ratio to base"] == pytest.approx(1.5)
    assert table.loc["base", "median ms"] == pytest.approx(2.0)
    out = capsys.readouterr().out
    assert "| what | threads 1 | clock wall | repeats 4" in out and "ratio to base" in out
    with pytest.raises(ValueError, match="baseline"):
        _report.report("what", {"a": 1.0}, "b", threads=1, clock="wall", repeats=1)
