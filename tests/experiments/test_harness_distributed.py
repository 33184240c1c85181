"""The harness under torch.distributed: `distribute` is the identity in one process, and under a
gloo group of 2 ranks every arm's run shards its epochs (disjoint shards covering the plan) and
ends with the same model (the same test loss, bit for bit) and the same per-sample state on both
ranks."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from curriclab.core.distributed import state_digest
from curriclab.core.protocol import SampleMethod
from curriclab.core.tracking import LossTracker
from curriclab.experiments.harness import Arm, ArmSetup, DataSpec, ModelSpec, Study, TrainSpec
from curriclab.experiments.harness import run_arm
from curriclab.experiments.harness.distributed import distribute, learns_locally
from curriclab.methods.batch_selection import TopLossSelection
from curriclab.methods.data_parameters import DataParameters
from curriclab.methods.spl import SPLLoss
from tests.helpers.distributed import scenario_results

WORLD = 2
STUDY = Study(
    "two ranks", DataSpec("blobs", train_size=200, validation_size=0, test_size=100),
    ModelSpec("logistic"), TrainSpec(lr=0.1, batch_size=16, epochs=2), seeds=(0,), track=(),
    arms=(Arm("uniform"), Arm("spl", "spl", {"threshold": 5.0}),
          Arm("data parameters", "data_parameters", {"learn_class": True}),
          Arm("sgds", "sgds", {"transient_epochs": 1})),
)


def test_distribute_changes_nothing_in_one_process():
    model, setup = nn.Linear(2, 2), ArmSetup(methods=[LossTracker(4)])
    assert distribute(setup, model, 4, seed=0) == (model, setup)
    assert distribute(setup, model, 4, seed=0)[1] is setup


def test_learns_locally_keeps_selectors_and_trained_modules_out_of_the_exchange():
    assert learns_locally(TopLossSelection(2, 4))
    assert learns_locally(DataParameters(2, 10, learn_instance=True))
    frozen = DataParameters(2, 10, learn_class=True)
    frozen.requires_grad_(False)
    assert not learns_locally(frozen)
    assert not learns_locally(SPLLoss(10, threshold=1.0))
    assert not learns_locally(LossTracker(10))


class _Draws(SampleMethod):
    """Records this rank's drawn dataset indices, per epoch."""

    def __init__(self) -> None:
        self.epochs: list[list[int]] = [[]]

    def objective(self, index, losses):
        self.epochs[-1] += index.tolist()

    def after_epoch(self, epoch: int) -> None:
        self.epochs.append([])


def _scenario(rank: int) -> dict:
    result = {}
    for arm in STUDY.arms:
        draws, setups = _Draws(), []

        def observe(setup: ArmSetup, draws=draws, setups=setups) -> list[SampleMethod]:
            setups.append(setup)
            return [draws]

        _, final, _ = run_arm(STUDY, arm, 0, observe=observe)
        result[arm.name] = {
            "draws": draws.epochs[:-1], "samples": final["samples"],
            "test": (final["test_loss"], final["test_accuracy"]),
            "state": state_digest([method.state_dict() for method in setups[0].methods]),
        }
    return result


def test_every_arm_shards_its_epochs_and_keeps_identical_state_on_every_rank(tmp_path: Path):
    results = scenario_results(_scenario, tmp_path, world=WORLD)
    for arm in STUDY.arms:
        ranks = [result[arm.name] for result in results]
        assert ranks[0]["state"] == ranks[1]["state"], arm.name
        assert ranks[0]["test"] == ranks[1]["test"], arm.name  # the same final model
        assert len(ranks[0]["draws"]) == STUDY.train.epochs
        for epoch, (first, second) in enumerate(zip(ranks[0]["draws"], ranks[1]["draws"])):
            assert len(first) == len(second), (arm.name, epoch)  # padded to equal shards
            if arm.method != "sgds":  # a permutation of the 200 samples, split in two halves
                assert sorted(first + second) == list(range(200)), (arm.name, epoch)
        assert sum(r["samples"] for r in ranks) == sum(len(d) for r in ranks for d in r["draws"])
    sgds = [result["sgds"]["draws"] for result in results]
    assert len(sgds[0][1]) + len(sgds[1][1]) == 200 - 20 + 2  # epoch 1 pruned, 1 % back
