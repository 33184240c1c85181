"""Notebook 06's runner: arms that share weights and minibatches, and their summaries."""

import pytest
import torch

from curriclab.core.models import MLP
from curriclab.experiments.dynamic_loss_l2t import errors_by_arm, evaluate_arms, phi_trajectory
from curriclab.methods.l2t import TeachingConfig
from curriclab.methods.teacher import LossTeacher
from tests.helpers.teacher import _blobs


def test_arms_share_initial_weights_and_minibatches():
    train, dev, test = _blobs(60, 4), _blobs(30, 5), _blobs(30, 6)
    config = TeachingConfig(steps=6, warmup_steps=3, lr=0.3, batch_size=16, episode=3, dev_batch=10)
    results = evaluate_arms(lambda: MLP(2, (4,), 3), {"a": None, "b": None, "c": LossTeacher(3, hidden=0)},
                            train, dev, test, config, seed=0)
    assert [r.arm for r in results] == ["a", "b", "c"]
    assert results[0].test_error == results[1].test_error and results[0].dev_error == results[1].dev_error
    assert results[0].log.dev_error == results[1].log.dev_error
    assert len(results[2].log.phi) == 2  # one Phi_t per taught episode
    torch.testing.assert_close(results[2].log.state[1][0], torch.tensor(6 / 9))  # progress after 3 + 3 steps
    table = errors_by_arm(results + results, "dev")
    assert list(table) == ["a", "b", "c"] and table["c"] == [results[2].dev_error] * 2
    with pytest.raises(ValueError, match="split"):
        errors_by_arm(results, "train")


def test_arms_can_have_their_own_config_and_phi_is_summarised():
    train, dev, test = _blobs(60, 4), _blobs(30, 5), _blobs(30, 6)
    config = TeachingConfig(steps=6, warmup_steps=3, lr=0.3, batch_size=16, episode=3, dev_batch=10)
    longer = TeachingConfig(steps=6, warmup_steps=0, lr=0.3, batch_size=16, episode=2, dev_batch=10)
    arms = {"ce": None, "identity": LossTeacher(3, hidden=0)}
    results = evaluate_arms(lambda: MLP(2, (4,), 3), arms, train, dev, test, config, seed=0,
                            configs={"identity": longer})
    summary = phi_trajectory(results[1].log)
    assert len(summary["diagonal"]) == 3 and summary["progress"] == pytest.approx([0, 2 / 6, 4 / 6])
    assert summary["diagonal"] == pytest.approx([1.0] * 3) and summary["off_diagonal"] == pytest.approx([0.0] * 3)
    with pytest.raises(ValueError, match="no Phi_t"):
        phi_trajectory(results[0].log)
    with pytest.raises(ValueError, match="configs"):
        evaluate_arms(lambda: MLP(2, (4,), 3), arms, train, dev, test, config, seed=0, configs={"x": longer})
