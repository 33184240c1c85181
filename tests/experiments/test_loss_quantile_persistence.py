"""Notebook 03's runner: training while recording per-sample losses."""

import math

import torch

from curriclab.core.models import LogisticRegression
from curriclab.experiments.loss_quantile_persistence import train_and_record
from tests.helpers.persistence import _toy

TOY_RUN = {
    "batch_size": 16, "lr": 0.05, "momentum": 0.9, "seed": 3,
    "model_factory": LogisticRegression, "progress": False,
}


def test_recorded_rows_average_to_the_epoch_training_loss():
    data = _toy()
    settings = {**TOY_RUN, "shuffle": True, "epochs": 3}
    run = train_and_record(data, end_of_epoch=True, **settings)
    assert run.losses.shape == run.end_of_epoch.shape == (3, len(data))
    for row, record in zip(run.losses, run.history):
        assert math.isclose(row.mean().item(), record.train.loss, rel_tol=1e-5)
    assert not torch.allclose(run.losses[0], run.losses[2])  # training moved the losses
    again = train_and_record(data, **settings)
    assert torch.equal(run.losses, again.losses) and again.end_of_epoch is None


def test_end_of_epoch_losses_are_those_of_the_model_after_the_epoch():
    data = _toy()
    settings = {**TOY_RUN, "shuffle": False}
    two = train_and_record(data, epochs=2, end_of_epoch=True, **settings)
    # The training-time losses of epoch 2's first batch were computed by the model that ended epoch 1.
    assert torch.allclose(two.losses[1, :16], two.end_of_epoch[0, :16], atol=1e-6)
    assert not torch.allclose(two.losses[1, 16:], two.end_of_epoch[0, 16:], atol=1e-6)
