
import os

import pytest
import torch

from curriclab.core.data import (
    IndexedDataset,
    corrupt_labels,
    load_fashion_mnist,
    load_images,
    load_mnist,
    missing_mnist_files,
    make_loader,
    spl_toy_data,
    stratified_split,
    stratified_subset,
)

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def _tagged_dataset(n: int = 50) -> IndexedDataset:
    """Each input row holds its own position, so an item can be checked against its index."""
    inputs = torch.arange(n, dtype=torch.float32).unsqueeze(1).repeat(1, 3)
    return IndexedDataset(inputs, torch.arange(n) % 4)


def test_items_are_index_input_target():
    data = _tagged_dataset()
    index, x, y = data[7]
    assert int(index) == 7 and torch.equal(x, data.inputs[7]) and int(y) == 7 % 4
    batch_index, xs, ys = data.__getitems__([3, 9, 9, 0])
    assert batch_index.tolist() == [3, 9, 9, 0]
    assert torch.equal(xs[:, 0], torch.tensor([3.0, 9.0, 9.0, 0.0]))
    assert ys.tolist() == [3, 1, 1, 0]


def test_shuffled_loader_yields_every_index_once_with_its_own_sample():
    data = _tagged_dataset(103)
    loader = make_loader(data, 10, shuffle=True, generator=torch.Generator().manual_seed(1))
    seen = []
    for index, x, y in loader:
        assert torch.equal(x[:, 0].long(), index)
        assert torch.equal(y, data.targets[index])
        seen += index.tolist()
    assert sorted(seen) == list(range(103)) and seen != list(range(103))


def test_any_sampler_works_and_repeated_indices_are_kept():
    data = _tagged_dataset(20)
    sampler = torch.utils.data.WeightedRandomSampler(torch.ones(20), 40, replacement=True)
    draws = torch.cat([index for index, x, _ in make_loader(data, 8, sampler=sampler)])
    assert len(draws) == 40 and draws.max() < 20


def test_subset_reindexes_and_remembers_source_through_two_levels():
    data = _tagged_dataset(60)
    first = data.subset([5, 10, 20, 30, 40, 50])
    second = first.subset([1, 3, 5])
    assert second.source_indices.tolist() == [10, 30, 50]
    for index, x, _ in make_loader(second, 2, shuffle=True):
        assert torch.equal(data.inputs[second.source_indices[index]], x)
    with pytest.raises(ValueError, match="indices"):
        data.subset([60])


def test_stratified_subset_keeps_class_shares_and_is_seeded():
    targets = torch.tensor([0] * 70 + [1] * 20 + [2] * 10)
    data = IndexedDataset(torch.randn(100, 2), targets)
    subset = stratified_subset(data, 30, seed=3)
    assert torch.bincount(subset.targets).tolist() == [21, 6, 3]
    assert torch.equal(data.targets[subset.source_indices], subset.targets)
    assert torch.equal(subset.source_indices, stratified_subset(data, 30, seed=3).source_indices)
    other = stratified_subset(data, 30, seed=4)
    assert not torch.equal(subset.source_indices, other.source_indices)
    assert len(stratified_subset(data, 0)) == 0
    with pytest.raises(ValueError, match="size"):
        stratified_subset(data, 101)


def test_stratified_split_is_a_partition():
    data = _tagged_dataset(41)
    first, rest = stratified_split(data, 12, seed=0)
    both = torch.cat([first.source_indices, rest.source_indices]).sort().values
    assert len(first) == 12 and torch.equal(both, torch.arange(41))


def test_spl_toy_data_layout_anomaly_and_seed():
    data, flipped = spl_toy_data(n_per_class=500, n_anomalies=3, seed=0)
    assert data.inputs.shape == (1000, 2) and int(flipped.sum()) == 3
    clean = ~flipped
    for label, centre in ((0, torch.zeros(2)), (1, torch.full((2,), 3.0))):
        members = data.inputs[clean & (data.targets == label)]
        assert torch.allclose(members.mean(0), centre, atol=0.15)
        assert torch.allclose(members.std(0), torch.ones(2), atol=0.1)
    distance = (data.inputs - 3.0).norm(dim=1)
    assert distance[flipped].min() >= distance[clean].max()
    again, _ = spl_toy_data(n_per_class=500, n_anomalies=3, seed=0)
    other, _ = spl_toy_data(n_per_class=500, n_anomalies=3, seed=1)
    assert torch.equal(again.inputs, data.inputs) and not torch.equal(other.inputs, data.inputs)


@pytest.mark.parametrize("fraction", [0.0, 0.013, 0.4, 1.0])
def test_corrupt_labels_exact_count_never_same_class(fraction):
    targets = torch.arange(1000) % 10
    noisy, mask = corrupt_labels(targets, fraction, num_classes=10, seed=0)
    assert int(mask.sum()) == round(fraction * 1000)
    assert torch.equal(mask, noisy != targets)
    assert torch.equal(targets, torch.arange(1000) % 10)  # input untouched


def test_corrupt_labels_moves_uniformly_to_the_other_classes():
    targets = torch.zeros(90000, dtype=torch.long)
    noisy, _ = corrupt_labels(targets, 1.0, num_classes=4, seed=0)
    counts = torch.bincount(noisy, minlength=4)[1:].double()
    chi_square = float(((counts - 30000) ** 2 / 30000).sum())
    assert int(counts.sum()) == 90000 and float(chi_square) < 13.8  # chi2(2 dof) 0.999 quantile


@pytest.mark.parametrize(
    "kwargs, name",
    [({"fraction": 1.5}, "fraction"), ({"fraction": -0.1}, "fraction"),
     ({"num_classes": 1}, "num_classes")],
)
def test_corrupt_labels_rejects_bad_input(kwargs, name):
    arguments = {"targets": torch.tensor([0, 1, 1]), "fraction": 0.5, "num_classes": 2, **kwargs}
    with pytest.raises(ValueError, match=name):
        corrupt_labels(**arguments)


def test_missing_mnist_error_names_files_directory_and_variable(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_mnist(train=False, root=tmp_path, download=False)
    message = str(error.value)
    assert "t10k-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert str(tmp_path / "MNIST" / "raw") in message and "CURRICLAB_DATA" in message


def test_data_root_comes_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CURRICLAB_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_mnist(train=True, download=False)


def test_mnist_shapes_normalisation_and_class_counts(mnist_train, mnist_test):
    assert mnist_train.inputs.shape == (60000, 1, 28, 28)
    assert mnist_train.inputs.dtype == torch.float32
    assert mnist_test.inputs.shape == (10000, 1, 28, 28)
    assert abs(float(mnist_train.inputs.mean())) < 1e-3
    assert abs(float(mnist_train.inputs.std()) - 1.0) < 1e-3
    assert torch.bincount(mnist_train.targets).tolist() == MNIST_TRAIN_COUNTS
    background = (0.0 - 0.1307) / 0.3081
    assert float(mnist_train.inputs.min()) == pytest.approx(background, abs=1e-5)


def test_missing_fashion_mnist_error_names_its_own_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_fashion_mnist(train=True, root=tmp_path, download=False)
    assert str(tmp_path / "FashionMNIST" / "raw") in str(error.value)


def test_unknown_image_source_is_refused_by_name():
    with pytest.raises(ValueError, match="name"):
        load_images("cifar10", download=False)


def test_fashion_mnist_is_balanced_normalised_and_not_mnist(mnist_test):
    root = os.environ.get("CURRICLAB_DATA")
    if not root or missing_mnist_files(root, False, "fashion_mnist"):
        pytest.skip("Fashion-MNIST files are not available (set CURRICLAB_DATA)")
    test = load_fashion_mnist(train=False, download=False)
    assert test.inputs.shape == (10000, 1, 28, 28) and test.targets.dtype == torch.int64
    assert torch.equal(torch.bincount(test.targets), torch.full((10,), 1000))
    # normalised by the training split's statistics: the test split lands close to 0 and 1
    assert abs(float(test.inputs.mean())) < 0.02 and abs(float(test.inputs.std()) - 1) < 0.02
    assert not torch.equal(test.inputs, mnist_test.inputs)
