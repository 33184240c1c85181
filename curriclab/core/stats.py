"""Statistics the methods and notebooks share, each written once and tested against scipy.stats.

The Student-t quantile of the paired intervals comes from scipy (a runtime dependency for it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from scipy.stats import t as t_distribution
from torch import Tensor

__all__ = [
    "average_ranks",
    "chi_square_test",
    "comparison_table",
    "interval_side",
    "paired_comparison",
    "PairedComparison",
    "paired_samples",
    "pearson",
    "pool_by_probability",
    "roc_auc",
    "roc_curve",
    "spearman",
]


def paired_samples(a: Tensor, b: Tensor, needed_for: str = "a correlation"
                   ) -> tuple[Tensor, Tensor]:
    """Two finite 1-D float64 samples of equal length, at least 2 pairs.

    Args:
        a, b: the paired samples (anything `torch.as_tensor` accepts).
        needed_for: what needs them, for the message (e.g. "a correlation").

    Returns:
        (a, b) as float64 tensors [n], n >= 2.

    Raises:
        ValueError: not 1-D, unequal lengths, fewer than 2 pairs, or a NaN or inf entry.
    """
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"a and b must be 1-D of equal length; got {tuple(a.shape)}, "
                         f"{tuple(b.shape)}")
    if len(a) < 2:
        raise ValueError(f"{needed_for} needs at least 2 pairs, got {len(a)}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("a and b must be finite (no NaN or inf)")
    return a, b


def pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two 1-D samples (float64; the ddof cancels, so it is used nowhere).

    Args:
        a, b: paired samples, finite, n >= 2 (see `paired_samples`).

    Returns:
        The correlation, in [-1, 1].

    Raises:
        ValueError: as in `paired_samples`, or a or b is constant (the correlation is undefined).
    """
    a, b = paired_samples(a, b)
    a, b = a - a.mean(), b - b.mean()
    scale = (a.square().sum() * b.square().sum()).sqrt()
    if scale == 0:
        raise ValueError("a correlation is undefined when a or b is constant")
    return float((a * b).sum() / scale)


def average_ranks(values: Tensor) -> Tensor:
    """Ranks 1..n of a 1-D tensor, tied values sharing the mean of their ranks.

    Args:
        values: [n] values (any ordered dtype).

    Returns:
        float64 [n] ranks in [1, n], summing to n (n + 1) / 2.
    """
    values = torch.as_tensor(values)
    order = torch.argsort(values, stable=True)
    _, inverse, counts = torch.unique_consecutive(
        values[order], return_inverse=True, return_counts=True
    )
    last = counts.cumsum(0).double()
    ranks = torch.empty(len(values), dtype=torch.float64)
    ranks[order] = (last - (counts.double() - 1) / 2)[inverse]
    return ranks


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation: Pearson correlation of the average ranks (ties handled).

    Args:
        a, b: paired samples, finite, n >= 2 (see `paired_samples`).

    Returns:
        The rank correlation, in [-1, 1].

    Raises:
        ValueError: as in `pearson` (e.g. a sample whose values are all tied).
    """
    a, b = paired_samples(a, b)
    return pearson(average_ranks(a), average_ranks(b))


def pool_by_probability(counts: Tensor, probabilities: Tensor, groups: int = 20
                        ) -> tuple[Tensor, Tensor]:
    """Group the samples with p > 0, in order of p, into at most `groups` runs of roughly equal
    total probability. Chi-square needs a few expected draws per category, which one epoch gives
    per group but not per sample.

    Args:
        counts: [N] draw counts per sample.
        probabilities: [N] draw probabilities (>= 0); samples with p = 0 are left out.
        groups: the largest number of groups (>= 1).

    Returns:
        (float64 draw counts [G], float64 probabilities [G]) per group, G <= groups, in order of
        increasing p; for `chi_square_test`.

    Raises:
        ValueError: `groups` < 1.
    """
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    counts = torch.as_tensor(counts, dtype=torch.float64)
    probabilities = torch.as_tensor(probabilities, dtype=torch.float64)
    support = torch.nonzero(probabilities > 0).squeeze(1)
    order = support[torch.argsort(probabilities[support], stable=True)]
    mass = probabilities[order].cumsum(0) / probabilities[order].sum()
    group = torch.clamp((mass * groups).ceil().long() - 1, 0, groups - 1)
    used, group = torch.unique(group, return_inverse=True)
    pooled_counts = torch.zeros(len(used), dtype=torch.float64).index_add_(0, group, counts[order])
    pooled_p = torch.zeros(len(used), dtype=torch.float64).index_add_(0, group,
                                                                        probabilities[order])
    return pooled_counts, pooled_p


def _finite_non_negative(name: str, values: Tensor) -> Tensor:
    """`values` as a 1-D float64 tensor; a ValueError naming `name` if any is NaN, inf or < 0."""
    values = torch.as_tensor(values, dtype=torch.float64)
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(values.shape)}")
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    if bool((values < 0).any()):
        raise ValueError(f"{name} must be >= 0, got a minimum of {float(values.min())}")
    return values


def chi_square_test(observed: Tensor, probabilities: Tensor) -> tuple[float, int, float]:
    """Pearson's chi-square goodness of fit of draw counts to probabilities.

    Args:
        observed: 1-D draw counts per category (finite, >= 0).
        probabilities: 1-D category probabilities (finite, >= 0, any positive total; they are
            normalised), one per category. Categories with probability 0 are left out and must
            have no draws.

    Returns:
        (statistic, degrees of freedom, p-value).

    Raises:
        ValueError: NaN, inf or negative entries, unequal lengths, draws in a category of
            probability 0, or fewer than two categories of positive probability.
    """
    observed = _finite_non_negative("observed", observed)
    probabilities = _finite_non_negative("probabilities", probabilities)
    if observed.shape != probabilities.shape:
        raise ValueError(f"observed {tuple(observed.shape)} and probabilities "
                         f"{tuple(probabilities.shape)} must have one entry per category")
    support = probabilities > 0
    if bool((observed[~support] > 0).any()):
        raise ValueError("observed has draws in categories of probability 0")
    if int(support.sum()) < 2:
        raise ValueError("need at least two categories with positive probability")
    expected = observed.sum() * probabilities[support] / probabilities[support].sum()
    statistic = float(((observed[support] - expected) ** 2 / expected).sum())
    dof = int(support.sum()) - 1
    p_value = float(torch.special.gammaincc(torch.tensor(dof / 2.0, dtype=torch.float64),
                                            torch.tensor(statistic / 2.0, dtype=torch.float64)))
    return statistic, dof, p_value


def roc_curve(scores: Tensor, positives: Tensor) -> tuple[Tensor, Tensor]:
    """False- and true-positive rates of the detector "score >= threshold" over all thresholds.

    Tied scores move together (one point per distinct score). Scores may be +-inf (they sort first
    or last).

    Args:
        scores: [N] detector scores (higher: more likely positive), not NaN.
        positives: [N] booleans or 0/1, with both classes present.

    Returns:
        (false-positive rates, true-positive rates), float64 [D + 1] each for D distinct scores,
        non-decreasing from 0 to 1.

    Raises:
        ValueError: naming `scores` on NaN scores; `positives` other than booleans or 0/1 or of
            one class only; shapes not 1-D and equal.
    """
    scores, positives = torch.as_tensor(scores).double(), torch.as_tensor(positives)
    if scores.shape != positives.shape or scores.ndim != 1:
        raise ValueError("scores and positives must be 1-D of the same length")
    if bool(torch.isnan(scores).any()):
        raise ValueError(f"scores must not be NaN (got {int(torch.isnan(scores).sum())} NaN)")
    if positives.dtype != torch.bool:
        if not bool(((positives == 0) | (positives == 1)).all()):
            raise ValueError("positives must be booleans or 0/1")
        positives = positives.bool()
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("positives must contain both positive and negative samples")
    order = torch.argsort(scores, descending=True)
    sorted_scores, hits = scores[order], positives[order].double()
    last_of_tie = torch.ones(len(scores), dtype=torch.bool)
    last_of_tie[:-1] = sorted_scores[1:] != sorted_scores[:-1]
    tp = torch.cumsum(hits, 0)[last_of_tie]
    fp = torch.cumsum(1.0 - hits, 0)[last_of_tie]
    zero = torch.zeros(1, dtype=torch.float64)
    return torch.cat([zero, fp / n_neg]), torch.cat([zero, tp / n_pos])


def roc_auc(scores: Tensor, positives: Tensor) -> float:
    """Area under the ROC curve: the probability that a random positive outscores a random
    negative (ties count one half).

    Args:
        scores, positives: as for `roc_curve`.

    Returns:
        The AUC, in [0, 1] (0.5: no better than chance).

    Raises:
        ValueError: as in `roc_curve` (e.g. NaN scores).
    """
    fpr, tpr = roc_curve(scores, positives)
    return float(torch.trapezoid(tpr, fpr))


@dataclass(frozen=True)
class PairedComparison:
    """Paired differences a_i - b_i over seeds: their mean, a t interval for it, and sign counts.

    For errors, "A beats B" is supported when the whole interval lies below zero (`high < 0`).

    Attributes:
        difference: the mean of a_i - b_i.
        low, high: the two-sided Student-t interval for it (low <= difference <= high).
        confidence: the interval's level, in (0, 1).
        n: the number of pairs (>= 2).
        a_lower, a_higher, ties: how often a_i < b_i, a_i > b_i, a_i = b_i (they add up to n).
    """

    difference: float
    low: float
    high: float
    confidence: float
    n: int
    a_lower: int
    a_higher: int
    ties: int

    def as_dict(self) -> dict[str, float | int]:
        """The fields as a flat dict (one row of a pandas DataFrame).

        Returns:
            {field name: value}, in field order.
        """
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.difference:+.3g} [{self.low:+.3g}, {self.high:+.3g}] "
                f"({100 * self.confidence:.0f} % t interval, n={self.n}); "
                f"a < b in {self.a_lower}/{self.n}, a > b in {self.a_higher}/{self.n}")


def paired_comparison(a: Sequence[float] | Tensor, b: Sequence[float] | Tensor,
                      confidence: float = 0.95) -> PairedComparison:
    """Compare two paired samples (e.g. the test errors of methods A and B on the same seeds).

    With identical differences the interval collapses to that value.

    Args:
        a, b: paired samples, finite, n >= 2, pair i from the same seed.
        confidence: the interval's level, in (0, 1).

    Returns:
        The mean of a_i - b_i, its two-sided Student-t interval at `confidence` (the interval of
        `scipy.stats.ttest_rel(a, b).confidence_interval`), and how often a_i < b_i, a_i > b_i,
        a_i = b_i.

    Raises:
        ValueError: as in `paired_samples`, or `confidence` outside (0, 1).
    """
    a, b = paired_samples(a, b, "a paired interval over seeds")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    differences = a - b
    n = len(differences)
    mean = float(differences.mean())
    quantile = t_distribution.ppf(0.5 + confidence / 2.0, n - 1)
    half_width = quantile * float(differences.std()) / math.sqrt(n)
    return PairedComparison(
        difference=mean, low=mean - half_width, high=mean + half_width, confidence=confidence, n=n,
        a_lower=int((differences < 0).sum()), a_higher=int((differences > 0).sum()),
        ties=int((differences == 0).sum()),
    )


def comparison_table(values: Mapping[str, Sequence[float]], reference: str,
                     confidence: float = 0.95) -> list[dict[str, float | int | str]]:
    """One row per entry other than `reference`: its name, mean, and `paired_comparison` with the
    reference (same seeds, same order).

    Args:
        values: {name: paired sample}, every sample over the same seeds in the same order.
        reference: the entry every other one is compared with (B in a - b).
        confidence: the intervals' level, in (0, 1).

    Returns:
        Flat dicts ready for `pandas.DataFrame`, in `values`' order: "name", "mean" and the
        fields of `PairedComparison`.

    Raises:
        ValueError: `reference` is not among `values`, or as in `paired_comparison`.
    """
    if reference not in values:
        raise ValueError(f"reference {reference!r} is not among the entries {sorted(values)}")
    return [{"name": name, "mean": float(torch.as_tensor(v, dtype=torch.float64).mean()),
             **paired_comparison(v, values[reference], confidence).as_dict()}
            for name, v in values.items() if name != reference]


def interval_side(low: float, high: float) -> int:
    """Which side of zero a confidence interval lies on: the sign a verdict is read from.

    Args:
        low: the interval's lower end.
        high: the interval's upper end (>= low).

    Returns:
        1 if the whole interval lies above 0, -1 if it lies below 0, 0 if it holds 0.

    Raises:
        ValueError: an end that is not finite, or `low` above `high`.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"the interval's ends must be finite, got low={low}, high={high}")
    if low > high:
        raise ValueError(f"low must not exceed high, got low={low}, high={high}")
    return 1 if low > 0 else -1 if high < 0 else 0
