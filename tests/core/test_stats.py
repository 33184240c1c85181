"""The paired comparison over seeds and the Student-t pieces it rests on, checked against scipy.stats."""

import math

import numpy as np
import pytest
from scipy import special
from scipy import stats as scipy_stats

from curriclab.core.stats import (
    PairedComparison,
    comparison_table,
    paired_comparison,
    regularized_beta,
    t_quantile,
    t_upper_tail,
)


@pytest.mark.parametrize("a, b", [(0.5, 0.5), (1.0, 0.5), (2.5, 0.5), (7.0, 3.0), (0.3, 9.0)])
@pytest.mark.parametrize("x", [1e-6, 0.01, 0.3, 0.5, 0.77, 0.999])
def test_regularized_beta_matches_scipy(a, b, x):
    assert regularized_beta(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-10, abs=1e-14)


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 9, 29, 200])
def test_t_tail_and_quantile_match_scipy(dof):
    for t in (-3.0, -0.4, 0.0, 0.7, 2.1, 12.0):
        assert t_upper_tail(t, dof) == pytest.approx(scipy_stats.t.sf(t, dof), rel=1e-9, abs=1e-14)
    for p in (0.025, 0.5, 0.9, 0.975, 0.995):
        assert t_quantile(p, dof) == pytest.approx(scipy_stats.t.ppf(p, dof), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("n, confidence", [(2, 0.95), (3, 0.95), (5, 0.95), (10, 0.9), (30, 0.99)])
def test_paired_comparison_matches_ttest_rel(n, confidence):
    rng = np.random.default_rng(n)
    a = rng.normal(0.05, 0.01, n)
    b = a + rng.normal(0.004, 0.003, n)
    result = paired_comparison(a, b, confidence)
    reference = scipy_stats.ttest_rel(a, b).confidence_interval(confidence)
    assert result.difference == pytest.approx(np.mean(a - b), rel=1e-12)
    assert (result.low, result.high) == pytest.approx((reference.low, reference.high), rel=1e-9)
    half = scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * np.std(a - b, ddof=1) / math.sqrt(n)
    assert result.high - result.low == pytest.approx(2 * half, rel=1e-9)
    assert result.n == n and result.confidence == confidence


def test_sign_counts_and_dict():
    result = paired_comparison([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 2.0, 1.0, 5.0, 6.0])
    assert (result.a_lower, result.a_higher, result.ties) == (3, 1, 1)
    row = result.as_dict()
    assert set(row) == {"difference", "low", "high", "confidence", "n", "a_lower", "a_higher", "ties"}
    assert row["difference"] == pytest.approx(-0.2)
    assert "a < b in 3/5" in str(result)
    assert isinstance(result, PairedComparison)


def test_constant_differences_collapse_the_interval():
    result = paired_comparison([0.1, 0.2, 0.3], [0.2, 0.3, 0.4])
    assert result.low == pytest.approx(-0.1) and result.high == pytest.approx(-0.1)
    assert result.a_lower == 3


@pytest.mark.parametrize("a, b, match", [
    ([1.0], [2.0], "at least 2 pairs"),
    ([1.0, 2.0], [1.0, 2.0, 3.0], "equal length"),
    ([[1.0, 2.0]], [[1.0, 2.0]], "1-D"),
    ([1.0, float("nan")], [1.0, 2.0], "finite"),
])
def test_paired_comparison_rejects_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        paired_comparison(a, b)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="confidence"):
        paired_comparison([1.0, 2.0], [1.0, 3.0], confidence=1.0)
    with pytest.raises(ValueError, match="probability"):
        t_quantile(1.5, 3)
    with pytest.raises(ValueError, match="dof"):
        t_upper_tail(1.0, 0)
    with pytest.raises(ValueError, match="x must lie"):
        regularized_beta(1.0, 1.0, 1.5)


def test_comparison_table_pairs_every_entry_with_the_reference():
    values = {"ce": [2.0, 2.1, 1.9], "a": [1.8, 2.0, 1.9], "b": [2.5, 2.2, 2.4]}
    rows = comparison_table(values, "ce")
    assert [row["name"] for row in rows] == ["a", "b"]
    reference = scipy_stats.ttest_rel(values["a"], values["ce"]).confidence_interval(0.95)
    assert rows[0]["mean"] == pytest.approx(1.9)
    assert (rows[0]["low"], rows[0]["high"]) == pytest.approx((reference.low, reference.high))
    assert rows[1]["a_higher"] == 3
    with pytest.raises(ValueError, match="reference"):
        comparison_table(values, "missing")
