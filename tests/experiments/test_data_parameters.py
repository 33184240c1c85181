"""The data-parameters notebook's runner: noisy subsets, relabelling, runs and their summary."""

import pytest
import torch

from curriclab.core.data import spl_toy_data
from curriclab.experiments.data_parameters import (
    DataParameterSetup,
    NoisyRun,
    final_accuracy,
    noisy_subset,
    relabel_into_classes,
    run_noisy_training,
)


def test_relabel_into_classes_reaches_the_requested_share():
    targets = torch.arange(5).repeat_interleave(100)
    noisy, mask = relabel_into_classes(targets, [1, 3], fraction=0.4, seed=0)
    for label in (1, 3):
        labelled = noisy == label
        assert float((mask & labelled).sum() / labelled.sum()) == pytest.approx(0.4, abs=0.01)
    assert torch.equal(noisy[~mask], targets[~mask]) and not torch.isin(targets[mask], torch.tensor([1, 3])).any()
    with pytest.raises(ValueError, match="fraction"):
        relabel_into_classes(targets, [1], fraction=1.0)
    with pytest.raises(ValueError, match="noisy_classes"):
        relabel_into_classes(targets, [7], fraction=0.2)


def test_noisy_subset_corrupts_the_requested_share(mnist_test):
    train, corrupted = noisy_subset(mnist_test, 1000, 0.3, seed=1)
    original = mnist_test.targets[train.source_indices]
    assert len(train) == 1000 and int(corrupted.sum()) == 300
    assert torch.all(train.targets[corrupted] != original[corrupted])
    assert torch.equal(train.targets[~corrupted], original[~corrupted])


def test_run_noisy_training_records_every_epoch_and_is_reproducible():
    data, _ = spl_toy_data(n_per_class=100, n_anomalies=20, seed=1)
    setup = DataParameterSetup(mode="joint", epochs=3, hidden=(8,), init_class=0.5, init_instance=0.5,
                               lr_instance=2.0, batch_size=50)
    first, second = (run_noisy_training(data, data, setup) for _ in range(2))
    assert len(first.test_accuracy) == 3 and first.plain_losses.shape == (3, 200)
    assert first.sample_sigma.shape == (4, 200) and first.class_sigma.shape == (4, 2)
    torch.testing.assert_close(first.sample_sigma[0], torch.ones(200))
    assert first.test_accuracy == second.test_accuracy
    assert torch.equal(first.sample_sigma, second.sample_sigma)
    baseline = run_noisy_training(data, data, DataParameterSetup(mode="baseline", epochs=1, hidden=(8,)))
    assert baseline.sample_sigma.numel() == 0 and baseline.plain_losses.shape == (1, 200)
    with pytest.raises(ValueError, match="empty"):
        run_noisy_training(data.subset([]), data, setup)


def test_final_accuracy_averages_the_last_epochs():
    run = NoisyRun(DataParameterSetup(), [0.1, 0.5, 0.6, 0.7], [], torch.empty(0), torch.empty(0), torch.empty(0))
    assert final_accuracy(run, last=3) == pytest.approx(0.6)
    assert final_accuracy(run, last=10) == pytest.approx(0.475)
    with pytest.raises(ValueError, match="last"):
        final_accuracy(run, last=0)
