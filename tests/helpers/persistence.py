"""Toy data shared by the loss-persistence tests."""

from curriclab.core.data import spl_toy_data


def _toy(n_per_class: int = 60):
    data, _ = spl_toy_data(n_per_class=n_per_class, seed=1)
    return data
