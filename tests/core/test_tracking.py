import math

import pytest
import torch

from curriclab.core.tracking import LossTracker, check_momentum


def test_latest_average_and_epoch_follow_the_definition():
    tracker = LossTracker(5, momentum=0.5)
    assert not tracker.seen.any() and math.isnan(float(tracker.latest[0]))
    tracker.update(torch.tensor([1, 3]), torch.tensor([2.0, 4.0]))
    tracker.set_epoch(1)
    tracker.update(torch.tensor([1]), torch.tensor([6.0]))
    assert tracker.latest[1].item() == 6.0
    assert tracker.average[1].item() == pytest.approx(0.5 * 2.0 + 0.5 * 6.0)
    assert tracker.average[3].item() == 4.0 and tracker.last_epoch.tolist() == [-1, 1, -1, 0, -1]
    assert tracker.seen.tolist() == [False, True, False, True, False]


def test_round_trip_and_errors():
    tracker = LossTracker(4, momentum=0.9)
    tracker.update(torch.tensor([0, 2]), torch.tensor([1.0, 3.0]))
    tracker.set_epoch(2)
    copy = LossTracker(4)
    copy.load_state_dict(tracker.state_dict())
    for name in ("latest", "average", "last_epoch"):
        assert torch.equal(getattr(copy, name).nan_to_num(-7),
                           getattr(tracker, name).nan_to_num(-7))
    assert copy.epoch == 2 and copy.momentum == 0.9
    with pytest.raises(ValueError, match="indices"):
        tracker.update(torch.tensor([4]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="losses"):
        tracker.update(torch.tensor([0, 1]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="momentum"):
        LossTracker(3, momentum=1.0)
    with pytest.raises(ValueError, match="shape"):
        LossTracker(3).load_state_dict(tracker.state_dict())
    tracker.update(torch.tensor([], dtype=torch.long), torch.tensor([]))  # an empty batch is fine


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_check_momentum_refuses_values_outside_zero_to_one_by_name(bad):
    with pytest.raises(ValueError, match=r"baseline_momentum must lie in \[0, 1\)"):
        check_momentum(bad, "baseline_momentum")
    assert check_momentum(0.0) == 0.0 and check_momentum(0.999) == 0.999
