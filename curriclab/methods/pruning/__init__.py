"""Data pruning by training dynamics: score every training sample, then keep a fraction.

- `forgetting`: `ForgettingEvents`, the observer counting forgetting events (Toneva et al. 2019);
- `scores`: EL2N and GraNd (Paul et al. 2021), the loss and the random control, from models;
- `selection`: ranking, `prune_by_score` and the scores' rank agreement.
"""

from curriclab.methods.pruning.forgetting import ForgettingEvents
from curriclab.methods.pruning.scores import (
    MEASURES,
    Measure,
    averaged_scores,
    el2n_norms,
    grand_norms,
    loss_values,
    random_scores,
    score_dataset,
)
from curriclab.methods.pruning.selection import (
    KEEP,
    kept_count,
    prune_by_score,
    rank_by_score,
    score_agreement,
)

__all__ = [
    "averaged_scores",
    "el2n_norms",
    "ForgettingEvents",
    "grand_norms",
    "KEEP",
    "kept_count",
    "loss_values",
    "Measure",
    "MEASURES",
    "prune_by_score",
    "random_scores",
    "rank_by_score",
    "score_agreement",
    "score_dataset",
]
