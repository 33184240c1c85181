"""From scores to a pruned training set: rank, keep a fraction, and compare scores with each other.

Every score here is "higher = harder" (more forgetting events, larger EL2N or GraNd). Keeping the
hard samples keeps the highest scores; keeping the easy ones the lowest. Ties are broken
deterministically: by a random permutation drawn from `generator` when one is given (so tied
samples, e.g. the many unforgettable ones with 0 events, are chosen at random but reproducibly),
otherwise by dataset index (the lower index first, whichever end is kept).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
import torch
from torch import Tensor

from curriclab.core.stats import spearman

__all__ = ["KEEP", "kept_count", "prune_by_score", "rank_by_score", "score_agreement"]

KEEP = ("hard", "easy")


def _check_scores(scores: Tensor, name: str = "scores") -> Tensor:
    if not isinstance(scores, Tensor):
        raise TypeError(f"{name} must be a torch tensor, got {type(scores).__name__}")
    if scores.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one score per sample), got {tuple(scores.shape)}")
    if scores.dtype.is_complex or scores.dtype == torch.bool:
        raise TypeError(f"{name} must be real numbers, got {scores.dtype}")
    if scores.numel() and not bool(torch.isfinite(scores).all()):
        raise ValueError(f"{name} must be finite (got NaN or inf)")
    return scores.detach().cpu()


def rank_by_score(scores: Tensor, *, descending: bool = True,
                  generator: torch.Generator | None = None) -> Tensor:
    """Dataset indices ordered by score, the hardest (highest) first when `descending`.

    Args:
        scores: finite scores [N], one per dataset index.
        descending: highest first (True) or lowest first (False).
        generator: breaks ties by a random permutation drawn from it; None: lower index first.

    Returns:
        int64 permutation of 0..N-1.

    Raises:
        TypeError: scores is not a real tensor.
        ValueError: scores is not 1-D or not finite.
    """
    scores = _check_scores(scores)
    if generator is None:
        base = torch.arange(len(scores))
    else:
        base = torch.randperm(len(scores), generator=generator)
    order = torch.argsort(scores[base], descending=descending, stable=True)
    return base[order]


def kept_count(num_samples: int, fraction: float) -> int:
    """How many of `num_samples` a kept `fraction` means: the nearest integer, halves rounded up.

    Args:
        num_samples: N >= 0.
        fraction: the share kept, in [0, 1].

    Returns:
        An int in [0, N]: min(N, floor(fraction * N + 0.5)).

    Raises:
        TypeError: fraction is not a number.
        ValueError: fraction outside [0, 1].
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise TypeError(f"fraction must be a number in [0, 1], got {type(fraction).__name__}")
    if math.isnan(fraction) or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    return min(num_samples, math.floor(fraction * num_samples + 0.5))


def prune_by_score(scores: Tensor, fraction: float, keep: str = "hard",
                   generator: torch.Generator | None = None) -> Tensor:
    """The dataset indices kept when `fraction` of the samples is kept by score.

    Args:
        scores: finite scores [N] ("higher = harder"), one per dataset index.
        fraction: share kept, in [0, 1]; `kept_count(N, fraction)` samples (0 gives an empty
            selection).
        keep: "hard" keeps the highest scores, "easy" the lowest.
        generator: breaks ties at the cut at random (reproducibly); None: lower index first.

    Returns:
        int64 kept indices in ascending order (ready for `IndexedDataset.subset`).

    Raises:
        TypeError: scores is not a real tensor or fraction not a number.
        ValueError: scores not 1-D or not finite, fraction outside [0, 1], keep unknown.
    """
    if keep not in KEEP:
        raise ValueError(f"keep must be one of {KEEP}, got {keep!r}")
    count = kept_count(len(_check_scores(scores)), fraction)
    order = rank_by_score(scores, descending=keep == "hard", generator=generator)
    return torch.sort(order[:count]).values


def score_agreement(scores: Mapping[str, Tensor]) -> pd.DataFrame:
    """Spearman rank correlation between every pair of scores of the same samples.

    Args:
        scores: name -> finite scores [N] (N >= 2, equal for all), e.g. {"forgetting": ...,
            "EL2N": ..., "GraNd": ..., "random": ...}.

    Returns:
        A names x names DataFrame of Spearman's rho (ties share their mean rank), 1 on the
        diagonal.

    Raises:
        TypeError: a score is not a real tensor.
        ValueError: no scores, lengths differ, fewer than 2 samples, a score not finite, or a
            constant score (its correlation is undefined; the message names it).
    """
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError("scores must be a non-empty mapping of name -> scores")
    checked = {name: _check_scores(value, f"scores[{name!r}]") for name, value in scores.items()}
    lengths = {name: len(value) for name, value in checked.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"every score must cover the same samples; lengths {lengths}")
    if next(iter(lengths.values())) < 2:
        raise ValueError("score_agreement needs at least 2 samples")
    for name, value in checked.items():
        if bool((value == value[0]).all()):
            raise ValueError(f"scores[{name!r}] is constant: its rank correlation is undefined")
    names = list(checked)
    table = pd.DataFrame(1.0, index=names, columns=names)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            rho = spearman(checked[first], checked[second])
            table.loc[first, second] = table.loc[second, first] = rho
    return table
