"""`fit(..., checkpoint=path)`: a run stopped at an epoch boundary and resumed from its checkpoint
is bitwise the run that never stopped, on one process and on two gloo ranks.

Each scenario trains a tiny model with one stateful method (SGD-S, InfoBatch, SPL with a pace,
data parameters + SparseSGD, a LossTracker). The reference run trains `EPOCHS` epochs in one
call. The interrupted run trains `STOP` epochs with a checkpoint, then every object is built
afresh under another seed (so nothing carries over but the file) and `fit` resumes from the
checkpoint to `EPOCHS`. Model parameters, every optimizer's state, every method's state and the
per-epoch training losses must be equal with `torch.equal` / `==`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from curriclab.core.checkpoint import load_checkpoint
from curriclab.core.data import IndexedDataset, make_loader
from curriclab.core.distributed import Synchronized, synchronize_sparse_gradients
from curriclab.core.tracking import LossTracker
from curriclab.core.training import fit, seed_everything
from curriclab.methods.data_parameters import DataParameters
from curriclab.methods.infobatch import InfoBatchSampler
from curriclab.methods.sampling import SGDSSampler
from curriclab.methods.spl import SPLLoss, linear_pace
from tests.helpers.distributed import run_ranks
from tests.helpers.state import differences

N, FEATURES, CLASSES, BATCH = 40, 5, 3, 8
EPOCHS, STOP = 5, 2
SCENARIOS = ("sgd_s", "infobatch", "spl_pace", "data_parameters", "loss_tracker")


def _data() -> IndexedDataset:
    generator = torch.Generator().manual_seed(7)
    inputs = torch.randn(N, FEATURES, generator=generator)
    return IndexedDataset(inputs, torch.randint(0, CLASSES, (N,), generator=generator))


def _build(scenario: str, seed: int, distributed: bool = False) -> dict:
    """The run's objects, built after seeding everything with `seed`."""
    seed_everything(seed)
    data = _data()
    model: nn.Module = nn.Sequential(nn.Linear(FEATURES, 16), nn.Tanh(), nn.Linear(16, CLASSES))
    if distributed:
        model = DistributedDataParallel(model)
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)]
    batch = BATCH // 2 if distributed else BATCH
    methods: list = []
    if scenario == "sgd_s":
        sampler = SGDSSampler(N, transient_epochs=1, prune_fraction=0.2,
                              reintroduce_fraction=0.05, unbiased=True)
        loader, methods = make_loader(data, batch, sampler=sampler), [sampler]
    elif scenario == "infobatch":
        sampler = InfoBatchSampler(N, total_epochs=EPOCHS, prune_ratio=0.5, delta=0.8)
        loader, methods = make_loader(data, batch, sampler=sampler), [sampler]
    elif scenario == "spl_pace":
        spl = SPLLoss(N, pace=linear_pace(0.3, 1.0, EPOCHS))
        spl.refresh(model, data)
        spl.follow_pace()
        loader = make_loader(data, batch, shuffle=True, generator=torch.Generator().manual_seed(
            seed + (dist.get_rank() if distributed else 0)))
        methods = [spl]
    elif scenario == "data_parameters":
        dp = DataParameters(CLASSES, N, learn_class=True, learn_instance=True, init_class=0.5,
                            init_instance=0.5, weight_decay_instance=1e-3)
        optimizers.append(dp.make_optimizer(lr_class=0.2, lr_instance=0.5))
        if distributed:
            synchronize_sparse_gradients(optimizers[-1])
        loader = make_loader(data, batch, shuffle=True)  # the global RNG shuffles
        methods = [dp]
    elif scenario == "loss_tracker":
        loader = make_loader(data, batch, shuffle=True)
        methods = [LossTracker(N, momentum=0.5)]
    else:
        raise ValueError(scenario)
    if distributed and scenario != "data_parameters":
        methods = [Synchronized(methods, num_samples=N)]
    if distributed and scenario in ("spl_pace", "loss_tracker"):
        # DistributedSampler's seed is configuration, not state: every run passes the same one
        loader = make_loader(data, batch, sampler=torch.utils.data.DistributedSampler(
            data, shuffle=True, seed=0))
    return {"model": model, "loader": loader, "optimizers": optimizers, "methods": methods}


def _fit(run: dict, epochs: int, checkpoint: Path | None) -> list:
    return fit(run["model"], run["loader"], run["optimizers"], epochs, methods=run["methods"],
               progress=False, checkpoint=checkpoint)


def _snapshot(run: dict, history: list) -> dict:
    return {
        "model": run["model"].state_dict(),
        "optimizers": [optimizer.state_dict() for optimizer in run["optimizers"]],
        "methods": [method.state_dict() for method in run["methods"]],
        "train_losses": [record.train.loss for record in history],
        "epochs": [record.epoch for record in history],
    }


def _reference_and_resumed(scenario: str, directory: Path, distributed: bool = False):
    reference = _build(scenario, seed=0, distributed=distributed)
    reference_snapshot = _snapshot(reference, _fit(reference, EPOCHS, None))
    path = directory / f"{scenario}.pt"
    interrupted = _build(scenario, seed=0, distributed=distributed)
    _fit(interrupted, STOP, path)
    saved_epoch = load_checkpoint(path)["epoch"]
    resumed = _build(scenario, seed=99, distributed=distributed)  # nothing carries over
    resumed_snapshot = _snapshot(resumed, _fit(resumed, EPOCHS, path))
    return reference_snapshot, resumed_snapshot, saved_epoch


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_resumed_run_is_bitwise_the_uninterrupted_one(scenario, tmp_path):
    reference, resumed, saved_epoch = _reference_and_resumed(scenario, tmp_path)
    assert saved_epoch == STOP
    assert resumed["epochs"] == list(range(EPOCHS))
    assert differences(reference, resumed) == []


def test_a_fresh_start_differs_so_the_comparison_can_fail(tmp_path):
    """Control: a run built under the other seed without the checkpoint ends elsewhere, so the
    equality above is evidence of the restore, not of a comparison that always holds."""
    reference = _build("sgd_s", seed=0)
    fresh = _build("sgd_s", seed=99)
    assert differences(_snapshot(reference, _fit(reference, EPOCHS, None)),
                        _snapshot(fresh, _fit(fresh, EPOCHS, None))) != []


def test_spl_pace_ends_where_the_uninterrupted_run_ends(tmp_path):
    """The issue's symptom: SPL with a pace resumed through fit ended at another threshold."""
    reference = _build("spl_pace", seed=0)
    _fit(reference, EPOCHS, None)
    path = tmp_path / "spl.pt"
    _fit(_build("spl_pace", seed=0), STOP, path)
    resumed = _build("spl_pace", seed=5)
    _fit(resumed, EPOCHS, path)
    assert resumed["methods"][0].threshold == reference["methods"][0].threshold
    assert resumed["methods"][0].epoch == reference["methods"][0].epoch == EPOCHS


def test_a_checkpoint_of_another_run_is_refused_and_changes_nothing(tmp_path):
    path = tmp_path / "tracker.pt"
    _fit(_build("loss_tracker", seed=0), STOP, path)
    other = _build("sgd_s", seed=0)  # another method type
    before = _snapshot(other, [])
    with pytest.raises(ValueError, match="method_types"):
        _fit(other, EPOCHS, path)
    assert differences(before, _snapshot(other, [])) == []
    with pytest.raises(ValueError, match="'epoch'"):
        _fit(_build("loss_tracker", seed=0), STOP - 1, path)  # the file is further than that


def test_a_refused_method_state_rolls_back_what_was_restored(tmp_path):
    """A checkpoint whose tracker state is damaged: the model (restored first) is put back."""
    path = tmp_path / "tracker.pt"
    _fit(_build("loss_tracker", seed=0), STOP, path)
    state = load_checkpoint(path)
    state["methods"][0]["momentum"] = 5.0
    torch.save(state, path)
    run = _build("loss_tracker", seed=3)
    before = _snapshot(run, [])
    with pytest.raises(ValueError, match=r"methods\.0.*momentum"):
        _fit(run, EPOCHS, path)
    assert differences(before, _snapshot(run, [])) == []


def test_checkpoint_loads_with_weights_only_and_holds_every_part(tmp_path):
    path = tmp_path / "dp.pt"
    _fit(_build("data_parameters", seed=0), STOP, path)
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == STOP and len(state["optimizers"]) == 2
    assert state["method_types"] == ["DataParameters"]
    assert set(state["rng"]) == {"torch", "numpy", "python"}
    assert [record["epoch"] for record in state["history"]] == list(range(STOP))


# ---------------------------------------------------------------- two gloo ranks

WORLD = 2


def _worker(rank: int, directory: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{directory}/store", rank=rank,
                            world_size=WORLD, timeout=timedelta(seconds=60))
    results = {}
    for scenario in SCENARIOS:
        own = Path(directory) / f"rank{rank}"
        own.mkdir(exist_ok=True)
        reference, resumed, saved_epoch = _reference_and_resumed(scenario, own, distributed=True)
        results[scenario] = {"differences": differences(reference, resumed),
                             "saved_epoch": saved_epoch, "epochs": resumed["epochs"],
                             "model": reference["model"]}
    torch.save(results, f"{directory}/result{rank}.pt")
    dist.destroy_process_group()


def test_resume_is_bitwise_on_two_gloo_ranks(tmp_path):
    assert run_ranks(_worker, str(tmp_path), world=WORLD) == [0] * WORLD
    results = [torch.load(tmp_path / f"result{rank}.pt", weights_only=False)
               for rank in range(WORLD)]
    for scenario in SCENARIOS:
        for rank in range(WORLD):
            outcome = results[rank][scenario]
            assert outcome["saved_epoch"] == STOP, (scenario, rank)
            assert outcome["epochs"] == list(range(EPOCHS)), (scenario, rank)
            assert outcome["differences"] == [], (scenario, rank)
        # DDP keeps the model identical on both ranks: the runs really were one distributed run
        assert differences(results[0][scenario]["model"], results[1][scenario]["model"]) == []


def test_a_checkpoint_in_a_missing_folder_is_refused_before_training(tmp_path):
    run = _build("loss_tracker", seed=0)
    before = _snapshot(run, [])
    with pytest.raises(ValueError, match="checkpoint"):
        _fit(run, EPOCHS, tmp_path / "absent" / "run.pt")
    assert differences(before, _snapshot(run, [])) == []
