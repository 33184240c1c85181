"""Shared fixtures: MNIST is loaded once per test session (skipped, with the reason, when absent);
the ALA toy study (runner and plot tests); one torch thread for the sampler tests."""

import pytest
import torch

from curriclab.core.data import default_data_root, load_mnist, missing_mnist_files
from curriclab.experiments.harness import load_splits
from tests.helpers.ala import TOY_STUDY


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


@pytest.fixture(scope="module")
def toy_splits():
    return load_splits(TOY_STUDY.data)


@pytest.fixture(scope="module")
def one_thread():
    """The models here are tiny; a second thread only adds contention on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
