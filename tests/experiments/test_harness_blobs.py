"""The harness's toy-blob source, per-seed data draws and the "tracked" arm (no MNIST needed)."""

import dataclasses

import pytest
import torch

from curriclab.core.data import spl_toy_data
from curriclab.core.training import per_sample_losses
from curriclab.experiments.harness import (
    Arm,
    DataSpec,
    ModelSpec,
    Study,
    TrainSpec,
    load_splits,
    run,
)

pytestmark = pytest.mark.usefixtures("one_thread")

BLOBS = DataSpec("blobs", train_size=400, validation_size=100, test_size=200)


def test_the_blob_training_split_is_the_toy_draw_with_its_farthest_points_flipped():
    spec = dataclasses.replace(BLOBS, label_noise=0.05, noise_pattern="farthest", split_seed=3)
    splits = load_splits(spec)
    expected, flipped = spl_toy_data(200, n_anomalies=20, seed=3)
    assert torch.equal(splits.train.inputs, expected.inputs)
    assert torch.equal(splits.train.targets, expected.targets)
    assert torch.equal(splits.corrupted, flipped) and int(flipped.sum()) == 20
    distance = (splits.train.inputs - torch.tensor([3.0, 3.0])).norm(dim=1)
    assert float(distance[flipped].min()) >= float(distance[~flipped].max())
    clean, _ = spl_toy_data(200, n_anomalies=0, seed=3)
    assert torch.equal(splits.train.targets != clean.targets, flipped)
    # validation and test: clean draws of their own, half of each class
    assert [len(splits.validation), len(splits.test)] == [100, 200]
    assert torch.bincount(splits.test.targets).tolist() == [100, 100]
    clean_test, _ = spl_toy_data(100, n_anomalies=0, seed=6)
    assert torch.equal(splits.test.inputs, clean_test.inputs)
    assert not torch.equal(splits.validation.inputs, splits.test.inputs[:100])


def test_uniform_blob_noise_moves_exactly_the_share_and_only_on_train():
    splits = load_splits(dataclasses.replace(BLOBS, label_noise=0.1))
    clean, _ = spl_toy_data(200, n_anomalies=0, seed=0)
    assert torch.equal(splits.train.inputs, clean.inputs)
    assert torch.equal(splits.train.targets != clean.targets, splits.corrupted)
    assert int(splits.corrupted.sum()) == 40
    noisy = load_splits(dataclasses.replace(BLOBS, label_noise=0.1, noisy_holdout=True))
    clean_validation, _ = spl_toy_data(50, n_anomalies=0, seed=1)
    assert torch.equal(splits.validation.targets, clean_validation.targets)
    assert int((noisy.validation.targets != clean_validation.targets).sum()) == 10


def test_blob_specs_refuse_what_they_cannot_draw():
    with pytest.raises(ValueError, match="train_size must be even"):
        DataSpec("blobs", train_size=401)
    with pytest.raises(ValueError, match="noise_classes"):
        DataSpec("blobs", label_noise=0.1, noise_classes=(1,))
    with pytest.raises(ValueError, match="needs source='blobs'"):
        DataSpec("mnist", label_noise=0.1, noise_pattern="farthest")
    with pytest.raises(ValueError, match="noise_pattern"):
        DataSpec("blobs", noise_pattern="nearest")


def test_resample_per_seed_gives_every_run_its_own_draw():
    spec = dataclasses.replace(BLOBS, resample_per_seed=True, split_seed=10)
    assert spec.for_seed(2) == dataclasses.replace(BLOBS, split_seed=12)
    assert BLOBS.for_seed(2) is BLOBS
    study = Study("draws", spec, ModelSpec("logistic"),
                  TrainSpec(optimizer="adam", lr=0.01, batch_size=50, epochs=1),
                  arms=(Arm("tracked", "tracked"),), seeds=(0, 1))
    results = run(study, progress=False)
    for seed in (0, 1):
        tracked = results.artifacts[("tracked", seed)]
        train = load_splits(spec.for_seed(seed)).train  # the runner trained on this draw
        assert torch.equal(tracked["losses"], per_sample_losses(tracked["model"], train))
    first, second = (load_splits(spec.for_seed(s)).train.inputs for s in (0, 1))
    assert not torch.equal(first, second)


def test_the_tracked_arm_sees_every_sample_and_hands_back_the_final_losses():
    study = Study("tracked", BLOBS, ModelSpec("logistic"),
                  TrainSpec(optimizer="adam", lr=0.05, batch_size=64, epochs=2),
                  arms=(Arm("plain"), Arm("tracked", "tracked")), seeds=(4,))
    results = run(study, progress=False)
    tracked = results.artifacts[("tracked", 4)]
    train = load_splits(BLOBS).train
    assert tracked["seen"].all() and not tracked["latest"].isnan().any()
    assert torch.equal(tracked["losses"], per_sample_losses(tracked["model"], train))
    finals = {row["arm"]: row for row in results.finals}  # the tracker only observes
    assert finals["tracked"]["test_accuracy"] == finals["plain"]["test_accuracy"]
    assert finals["tracked"]["test_loss"] == finals["plain"]["test_loss"]
