"""Shared fixtures: MNIST is loaded once per test session (skipped, with the reason, when absent)."""

import pytest

from curriclab.core.data import default_data_root, load_mnist, missing_mnist_files


def _mnist_or_skip(train: bool):
    root = default_data_root()
    if missing_mnist_files(root, train):
        pytest.skip(f"MNIST files not found under {root}; set CURRICLAB_DATA (see README, Data)")
    return load_mnist(train=train, download=False)


@pytest.fixture(scope="session")
def mnist_train():
    return _mnist_or_skip(True)


@pytest.fixture(scope="session")
def mnist_test():
    return _mnist_or_skip(False)
