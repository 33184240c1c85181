"""curriclab.core.stats against scipy.stats, the reference implementation."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from curriclab.core.stats import (
    interval_side,
    PairedComparison,
    average_ranks,
    chi_square_test,
    comparison_table,
    paired_comparison,
    pearson,
    pool_by_probability,
    roc_auc,
    roc_curve,
    spearman,
)
from tests.helpers.sampling import SEED_ALPHA, _generator

scipy_stats = pytest.importorskip("scipy.stats")

samples = st.lists(st.integers(-5, 5), min_size=3, max_size=40)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_pearson_and_spearman_match_scipy_with_ties(data):
    a = data.draw(samples)
    b = data.draw(st.lists(st.integers(-5, 5), min_size=len(a), max_size=len(a)))
    if len(set(a)) < 2 or len(set(b)) < 2:
        with pytest.raises(ValueError, match="constant"):
            pearson(torch.tensor(a), torch.tensor(b))
        return
    ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    assert pearson(ta, tb) == pytest.approx(scipy_stats.pearsonr(a, b).statistic, abs=1e-12)
    assert spearman(ta, tb) == pytest.approx(scipy_stats.spearmanr(a, b).statistic, abs=1e-12)


def test_average_ranks_match_a_brute_force_count_and_spearman_is_monotone_invariant():
    values = torch.tensor([1.0, 2.0, 2.0, 3.0, 5.0, 5.0, 5.0, 0.0])
    brute = [float((values < v).sum() + ((values == v).sum() + 1) / 2) for v in values]
    assert average_ranks(values).tolist() == brute
    a = torch.randn(200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert spearman(a, torch.exp(3 * a)) == pytest.approx(1.0)


def test_correlations_name_their_bad_input():
    with pytest.raises(ValueError, match="equal length"):
        pearson(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="at least 2"):
        spearman(torch.ones(1), torch.ones(1))
    with pytest.raises(ValueError, match="finite"):
        pearson(torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]))


def test_chi_square_matches_scipy_and_leaves_out_impossible_categories():
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.tensor([0.1, 0.2, 0.0, 0.3, 0.4], dtype=torch.float64)
    draws = torch.multinomial(probabilities, 500, True, generator=generator)
    observed = torch.bincount(draws, minlength=5)
    statistic, dof, p_value = chi_square_test(observed, probabilities)
    support = probabilities > 0
    expected = (500 * probabilities[support]).tolist()
    reference = scipy_stats.chisquare(observed[support].tolist(), expected)
    assert statistic == pytest.approx(reference.statistic, rel=1e-12)
    assert p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert dof == 3
    with pytest.raises(ValueError, match="probability 0"):
        chi_square_test(torch.tensor([1, 1, 1]), torch.tensor([0.5, 0.5, 0.0]))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_roc_auc_is_the_mann_whitney_u_statistic_over_all_pairs(data):
    scores = data.draw(st.lists(st.integers(0, 6), min_size=2, max_size=40))
    labels = data.draw(st.lists(st.booleans(), min_size=len(scores), max_size=len(scores)))
    if all(labels) or not any(labels):
        with pytest.raises(ValueError, match="both positive and negative"):
            roc_auc(torch.tensor(scores), torch.tensor(labels))
        return
    positive = [s for s, label in zip(scores, labels) if label]
    negative = [s for s, label in zip(scores, labels) if not label]
    u = scipy_stats.mannwhitneyu(positive, negative).statistic
    auc = roc_auc(torch.tensor(scores, dtype=torch.float64), torch.tensor(labels))
    assert auc == pytest.approx(u / (len(positive) * len(negative)), abs=1e-12)
    fpr, tpr = roc_curve(torch.tensor(scores, dtype=torch.float64), torch.tensor(labels))
    assert fpr[0].item() == tpr[0].item() == 0.0 and fpr[-1].item() == tpr[-1].item() == 1.0


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
    assert set(row) == {"difference", "low", "high", "confidence", "n", "a_lower", "a_higher",
                        "ties"}
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


# ---------------------------------------------------------------- detection and class noise


def test_roc_auc_equals_the_pairwise_probability_with_ties():
    generator = torch.Generator().manual_seed(4)
    scores = torch.randint(0, 6, (60,), generator=generator).float()
    positives = torch.rand(60, generator=generator) < 0.4
    pos, neg = scores[positives], scores[~positives]
    pairwise = ((pos[:, None] > neg[None]).double()
                + 0.5 * (pos[:, None] == neg[None]).double()).mean()
    assert roc_auc(scores, positives) == pytest.approx(pairwise.item())
    fpr, tpr = roc_curve(scores, positives)
    assert (fpr[0].item(), tpr[0].item(), fpr[-1].item(), tpr[-1].item()) == (0.0, 0.0, 1.0, 1.0)
    assert torch.all(fpr.diff() >= 0) and torch.all(tpr.diff() >= 0)
    assert roc_auc(torch.arange(4.0), torch.tensor([False, False, True, True])) == 1.0
    with pytest.raises(ValueError, match="positives"):
        roc_auc(torch.ones(3), torch.zeros(3, dtype=torch.bool))


def test_chi_square_p_values_match_closed_forms():
    # dof 2: p = exp(-x / 2); dof 1 at x = 3.841459: p = 0.05
    observed = torch.tensor([30.0, 50.0, 20.0])
    statistic, dof, p = chi_square_test(observed, torch.tensor([1 / 3, 1 / 3, 1 / 3]))
    expected = 100 / 3
    assert statistic == pytest.approx(sum((o - expected) ** 2 / expected for o in (30, 50, 20)))
    assert dof == 2 and p == pytest.approx(math.exp(-statistic / 2))
    _, _, p1 = chi_square_test(torch.tensor([50 + 3.841459**0.5 * 5, 50 - 3.841459**0.5 * 5]),
                               torch.tensor([0.5, 0.5]))
    assert p1 == pytest.approx(0.05, abs=1e-5)
    with pytest.raises(ValueError, match="probability 0"):
        chi_square_test(torch.tensor([1.0, 1.0, 1.0]), torch.tensor([0.5, 0.5, 0.0]))


def test_pooling_keeps_totals_and_balances_group_mass():
    p = torch.rand(500, generator=_generator(13)).double()
    p[:50] = 0
    p /= p.sum()
    draws = torch.multinomial(p, 600, True, generator=_generator(14))
    counts = torch.bincount(draws, minlength=500)
    pooled, mass = pool_by_probability(counts, p, groups=10)
    assert float(pooled.sum()) == 600 and float(mass.sum()) == pytest.approx(1.0)
    assert len(mass) == 10 and float(mass.max()) < 0.1 + float(p.max())
    assert chi_square_test(pooled, mass)[2] > SEED_ALPHA
    assert len(pool_by_probability(torch.zeros(0), torch.zeros(0))[0]) == 0
    # power: 600 uniform draws over the same support, pooled by p, fail the test against p
    uniform = (p > 0).double() / int((p > 0).sum())
    wrong = torch.bincount(torch.multinomial(uniform, 600, True, generator=_generator(15)),
                           minlength=500)
    assert chi_square_test(*pool_by_probability(wrong, p, groups=10))[2] < 1e-6


@pytest.mark.parametrize("shift", [-1.5, -0.4, 0.0, 0.4, 1.5])
def test_interval_side_agrees_with_a_two_sided_paired_t_test(shift):
    generator = np.random.default_rng(int(10 * shift) + 100)
    for _ in range(50):
        b = generator.normal(size=5)
        a = b + shift + generator.normal(size=5)
        comparison = paired_comparison(a, b)
        test = scipy_stats.ttest_rel(a, b)
        side = interval_side(comparison.low, comparison.high)
        if not math.isclose(test.pvalue, 0.05, abs_tol=1e-9):
            expected = 0 if test.pvalue > 0.05 else int(np.sign(test.statistic))
            assert side == expected


def test_interval_side_refuses_a_bad_interval_by_name():
    with pytest.raises(ValueError, match="low must not exceed high"):
        interval_side(1.0, 0.0)
    with pytest.raises(ValueError, match="finite"):
        interval_side(0.0, math.inf)
