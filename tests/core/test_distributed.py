"""curriclab.core.distributed and the samplers in DDP, with real two-process gloo groups on CPU.

Each group is two spawned processes that meet through a FileStore in `tmp_path`, with a timeout
on the process group (so a collective that cannot complete raises instead of hanging) and a
timeout on joining the processes (so a hung group fails the test instead of blocking CI). Every
rank saves what it saw; the assertions run here, in the test process.
"""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from curriclab.core.data import IndexedDataset, make_loader
from curriclab.core.distributed import (
    Synchronized,
    gather_observations,
    rank_and_world,
    state_digest,
    synchronize_sparse_gradients,
)
from curriclab.core.protocol import SampleMethod
from curriclab.core.tracking import LossTracker
from curriclab.core.training import fit, per_sample_losses, seed_everything
from curriclab.methods.data_parameters import DataParameters
from curriclab.methods.infobatch import InfoBatchSampler
from curriclab.methods.persistence import LossRecorder
from curriclab.methods.sampling import SGDSSampler
from curriclab.methods.spl import SPLLoss, linear_pace
from tests.helpers.distributed import run_ranks

WORLD = 2


N = 37  # odd, so a plan of N entries needs padding (or cutting) to split over two ranks


EPOCHS = 4


BATCH = 4


# ---------------------------------------------------------------- the group runner


def _worker(rank: int, directory: str, scenario: str, timeout_seconds: float) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{directory}/store", rank=rank, world_size=WORLD,
        timeout=timedelta(seconds=timeout_seconds),
    )
    result = SCENARIOS[scenario](rank, Path(directory))
    torch.save(result, f"{directory}/result{rank}.pt")
    if scenario != "lost_peer":  # there rank 1 has left the group on purpose
        dist.destroy_process_group()


def run_group(scenario: str, directory: Path, timeout_seconds: float = 60.0, *,
              check: bool = True) -> list[dict | None]:
    """Run `SCENARIOS[scenario]` on a two-process gloo group; each rank's result, by rank (None
    for a rank that saved none). `check`: every rank must exit with code 0."""
    codes = run_ranks(_worker, str(directory), scenario, timeout_seconds, world=WORLD)
    if check:
        assert codes == [0] * WORLD, f"exit codes {codes} of scenario {scenario!r}"
    files = [directory / f"result{rank}.pt" for rank in range(WORLD)]
    return [torch.load(file, weights_only=False) if file.exists() else None for file in files]


# ---------------------------------------------------------------- what the ranks run


def _data() -> IndexedDataset:
    generator = torch.Generator().manual_seed(0)
    return IndexedDataset(torch.randn(N, 6, generator=generator),
                          torch.randint(0, 3, (N,), generator=generator))


def _build(method: str) -> tuple[nn.Module, SampleMethod, list[SampleMethod], object]:
    """(model, the method under test, the stateful methods, the sampler) after one seed, so the
    test process rebuilds exactly what every rank built. Every run also has a LossTracker, and
    SPL (drawn by a DistributedSampler, which sees every sample each epoch) a LossRecorder."""
    seed_everything(0)
    model = nn.Linear(6, 3)
    tracker = LossTracker(N, momentum=0.5)
    if method == "sgds":
        main = SGDSSampler(N, transient_epochs=1, prune_fraction=0.2, reintroduce_fraction=0.1,
                           unbiased=True)
        return model, main, [main, tracker], main
    if method == "infobatch":
        main = InfoBatchSampler(N, total_epochs=EPOCHS, prune_ratio=0.5, delta=0.75, drop_last=True)
        return model, main, [main, tracker], main
    main = SPLLoss(N, threshold=1.2, pace=linear_pace(0.5, 1.0, EPOCHS))
    return model, main, [main, tracker, LossRecorder(N)], None


class Recorder(SampleMethod):
    """Keeps the (index, losses) pairs it is shown, the epoch ends, and the gradients after
    step 0."""

    def __init__(self, model: nn.Module | None = None, sampler: object = None):
        self.events: list = []
        self.model, self.sampler = model, sampler
        self.plans: list[list[int]] = []
        self.first_grad: list[torch.Tensor] | None = None

    def objective(self, index, losses):
        self.events.append((index.clone(), losses.detach().clone()))

    def after_step(self):
        if self.model is not None and self.first_grad is None:
            self.first_grad = [p.grad.clone() for p in self.model.parameters()]

    def after_epoch(self, epoch):
        self.events.append(epoch)
        if isinstance(self.sampler, (SGDSSampler, InfoBatchSampler)):
            self.plans.append(self.sampler.plan.indices.tolist())


def _train(rank: int, directory: Path) -> dict:
    results = {}
    data = _data()
    for method in ("sgds", "infobatch", "spl"):
        model, main, stateful, sampler = _build(method)
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        if sampler is None:
            sampler = DistributedSampler(data, seed=0)
        local = Recorder(sampler=sampler)  # unwrapped: sees this rank's own batches
        gathered = Recorder(model)
        loader = make_loader(data, BATCH, sampler=sampler)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        methods = [local, Synchronized([*stateful, gathered], num_samples=N)]
        fit(DistributedDataParallel(model), loader, optimizer, EPOCHS, methods=methods,
            progress=False)
        results[method] = {
            "initial": initial, "local": local.events, "plans": local.plans,
            "gathered": gathered.events, "first_grad": gathered.first_grad,
            "states": [m.state_dict() for m in stateful],
            "digests": [state_digest(m.state_dict()) for m in stateful],
        }
        if method == "sgds":
            results["resume"] = _resume(rank, directory, main)
        if method == "spl":
            fresh = SPLLoss(N)
            fresh.refresh(model, data)
            results["refresh"] = {"model": model.state_dict(), "losses": fresh.sample_losses}
    results["data-parameters"] = _train_data_parameters(data)
    results["uneven"] = _uneven_step(rank, data)
    return results


def _uneven_step(rank: int, data: IndexedDataset) -> dict:
    """One DDP step on uneven batches (3 samples on rank 0, 5 on rank 1) through Synchronized."""
    torch.manual_seed(1)
    model = nn.Linear(6, 3)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    ddp = DistributedDataParallel(model)  # kept alive: its reducer averages the gradients
    index = torch.arange(3) if rank == 0 else torch.arange(3, 8)
    losses = nn.functional.cross_entropy(ddp(data.inputs[index]), data.targets[index],
                                         reduction="none")
    Synchronized([SPLLoss(N, threshold=1.2, reduction="selected")], num_samples=N).objective(
        index, losses).backward()
    return {"initial": initial, "grad": [p.grad.clone() for p in model.parameters()]}


def _data_parameters_run() -> tuple:
    """A linear model, joint data parameters and their two optimizers, after one seed."""
    seed_everything(0)
    model = nn.Linear(6, 3)
    parameters = DataParameters(3, N, learn_class=True, learn_instance=True, init_class=0.5,
                                init_instance=0.5)
    optimizers = [torch.optim.SGD(model.parameters(), lr=0.1), parameters.make_optimizer(0.2, 0.3)]
    return model, parameters, optimizers


def _train_data_parameters(data) -> dict:
    result = {}
    for sync in ("touched", "dense"):
        model, parameters, optimizers = _data_parameters_run()
        synchronize_sparse_gradients(optimizers[1], exchange=sync)
        recorder = Recorder()
        loader = make_loader(data, BATCH, sampler=DistributedSampler(data, seed=0))
        fit(DistributedDataParallel(model), loader, optimizers, 2, progress=False,
            methods=[parameters, Synchronized([recorder], num_samples=N)])
        result[sync] = {"digest": state_digest(parameters.state_dict()),
                        "tables": parameters.state_dict(), "model": model.state_dict(),
                        "gathered": recorder.events}
    return result


def _resume(rank: int, directory: Path, live: SGDSSampler) -> dict:
    """Rank 0 saves the sampler; every rank resumes from that file; both go on alike."""
    if rank == 0:
        torch.save(live.state_dict(), directory / "sampler.pt")
    dist.barrier()
    resumed = SGDSSampler(N, transient_epochs=1, prune_fraction=0.2, reintroduce_fraction=0.1,
                          unbiased=True, generator=torch.Generator())
    resumed.load_state_dict(torch.load(directory / "sampler.pt"))
    same_at_load = state_digest(resumed.state_dict()) == state_digest(live.state_dict())
    for sampler in (live, resumed):
        indices = torch.arange(N)
        sampler.update(indices, (indices % 5).float() + 0.5)
        sampler.after_epoch(sampler.epoch)
    return {"same_at_load": same_at_load, "shards": [list(live), list(resumed)],
            "digests": [state_digest(live.state_dict()), state_digest(resumed.state_dict())]}


def _error_of(function) -> str | None:
    try:
        function()
    except Exception as error:  # noqa: BLE001 - the test compares what every rank raised
        return f"{type(error).__name__}: {error}"
    return None


class Poison(SampleMethod):
    """Cross-entropy losses, NaN on rank 1: a rank whose training diverged."""

    def compute_losses(self, output, target, index):
        losses = nn.functional.cross_entropy(output, target, reduction="none")
        return losses * math.nan if rank_and_world()[0] == 1 else losses


def _bad_input(rank: int, directory: Path) -> dict:
    good = torch.tensor([1.0, 2.0])
    errors = {
        "nan": _error_of(lambda: gather_observations(
            torch.tensor([0, 1]), torch.tensor([1.0, math.nan]) if rank == 1 else good,
            num_samples=N)),
        "range": _error_of(lambda: gather_observations(
            torch.tensor([0, N + 5]) if rank == 0 else torch.tensor([0, 1]), good, num_samples=N)),
        "dtype": _error_of(lambda: gather_observations(
            torch.tensor([0, 1]), good.double() if rank == 1 else good, num_samples=N)),
        "type": _error_of(lambda: gather_observations(
            torch.tensor([0, 1]), "two losses" if rank == 0 else good, num_samples=N)),
    }
    data = _data()
    model = nn.Linear(6, 3)
    loader = make_loader(data, BATCH, sampler=DistributedSampler(data, seed=0))
    tracker = LossTracker(N)
    errors["fit"] = _error_of(lambda: fit(
        DistributedDataParallel(model), loader, torch.optim.SGD(model.parameters(), lr=0.1), 1,
        methods=[Synchronized([Poison(), tracker], num_samples=N)], progress=False))
    errors["seed"] = _error_of(
        lambda: SGDSSampler(N, generator=torch.Generator().manual_seed(rank)).set_epoch(0))
    # The group survived the errors above: uneven batches (3 and 5 pairs, then 0 and 2) still
    # gather.
    # Counting all-gathers: 3 while the capacity grows, then 2 per exchange.
    sizes = [(3, 0, 1), (5, 2, 4)][rank]
    uneven, calls, capacity = [], [], 0
    original = dist.all_gather

    def counted(*args, **kwargs):
        calls[-1] += 1
        return original(*args, **kwargs)

    dist.all_gather = counted
    for size in sizes:
        index = torch.arange(size) + 10 * rank
        calls.append(0)
        uneven.append(gather_observations(index, index.float() / 7, num_samples=N,
                                          capacity=capacity))
        capacity = uneven[-1].capacity
    dist.all_gather = original
    return {"errors": errors, "uneven": uneven, "calls": calls,
            "tracker": state_digest(tracker.state_dict())}


def _lost_peer(rank: int, directory: Path) -> dict:
    """Rank 1 leaves before the exchange (a crash elsewhere); rank 0 must fail, not hang."""
    if rank == 1:
        return {}
    return {"error": _error_of(lambda: gather_observations(torch.tensor([0]), torch.tensor([1.0])))}


SCENARIOS = {"train": _train, "bad_input": _bad_input, "lost_peer": _lost_peer}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> list[dict]:
    return run_group("train", tmp_path_factory.mktemp("train"))


def test_single_process_gather_is_the_identity_and_checks_input():
    index, losses = torch.tensor([3, 1]), torch.tensor([0.5, 0.25], requires_grad=True)
    gathered = gather_observations(index, losses, num_samples=4)
    assert gathered.index.tolist() == [3, 1] and gathered.counts == [2] and gathered.offset == 0
    assert not gathered.losses.requires_grad
    with pytest.raises(ValueError, match=r"index must lie in \[0, 4\)"):
        gather_observations(torch.tensor([4]), torch.tensor([1.0]), num_samples=4)
    with pytest.raises(ValueError, match="finite"):
        gather_observations(torch.tensor([0]), torch.tensor([math.inf]))
    with pytest.raises(ValueError, match="equal length"):
        gather_observations(torch.tensor([0, 1]), torch.tensor([1.0]))


def test_single_process_synchronized_is_its_methods():
    tracker, spl = LossTracker(4), SPLLoss(4, threshold=1.0)
    wrapped = Synchronized([tracker, spl], num_samples=4)
    losses = torch.tensor([0.5, 2.0], requires_grad=True)
    objective = wrapped.objective(torch.tensor([0, 2]), losses)
    assert objective.item() == pytest.approx(0.25) and objective.requires_grad
    assert tracker.latest[[0, 2]].tolist() == [0.5, 2.0]


# ---------------------------------------------------------------- two processes


@pytest.mark.parametrize("method", ["sgds", "infobatch"])
def test_shards_are_disjoint_and_cover_each_epoch_plan(trained, method):
    ranks = [result[method] for result in trained]
    assert ranks[0]["plans"] == ranks[1]["plans"]  # the same plan on every rank
    drop_last = method == "infobatch"
    for epoch, plan in enumerate(ranks[0]["plans"]):
        drawn = [_local_epochs(result["local"])[epoch] for result in ranks]
        assert len(drawn[0]) == len(drawn[1])
        size = len(plan) - len(plan) % WORLD if drop_last else len(plan) + len(plan) % WORLD
        padded = (plan + plan)[:size]
        # disjoint positions, all covered
        assert [i for pair in zip(*drawn) for i in pair] == padded
        if method == "infobatch" or epoch == 0:  # permutations: disjoint samples too
            assert not set(drawn[0]) & set(drawn[1]) or not drop_last and len(plan) % WORLD


def _local_epochs(events: list) -> list[list[int]]:
    epochs, current = [], []
    for event in events:
        if isinstance(event, int):
            epochs.append(current)
            current = []
        else:
            current.extend(event[0].tolist())
    return epochs


@pytest.mark.parametrize("method", ["sgds", "infobatch", "spl"])
def test_every_rank_holds_bitwise_identical_state(trained, method):
    first, second = (result[method] for result in trained)
    assert first["digests"] == second["digests"]
    assert len(_local_epochs(first["gathered"])) == EPOCHS
    local = [len(sum(_local_epochs(result[method]["local"]), [])) for result in trained]
    gathered = len(sum(_local_epochs(first["gathered"]), []))
    assert sum(local) == gathered  # the gathered batches hold every rank's pairs, nothing else


@pytest.mark.parametrize("method", ["sgds", "infobatch", "spl"])
def test_gathered_state_equals_one_process_fed_the_same_losses(trained, method):
    _, _, stateful, sampler = _build(method)
    if sampler is not None:
        sampler.num_replicas, sampler.rank = 1, 0  # one process: the whole plan
        sampler.set_epoch(0)
    for event in trained[0][method]["gathered"]:
        for m in stateful:
            if isinstance(event, int):
                m.after_epoch(event)
            else:
                m.objective(*event)
    assert [state_digest(m.state_dict()) for m in stateful] == trained[0][method]["digests"]


def test_ddp_gradient_equals_one_process_gradient_on_the_global_batch(trained):
    """Synchronized scales its objective by the world size, so DDP's averaged gradient is the
    gradient of SPL's objective over the whole global batch."""
    result = trained[0]["spl"]
    model = nn.Linear(6, 3)
    model.load_state_dict(result["initial"])
    index, _ = result["gathered"][0]
    data = _data()
    losses = nn.functional.cross_entropy(model(data.inputs[index]), data.targets[index],
                                         reduction="none")
    SPLLoss(N, threshold=1.2).objective(index, losses).backward()
    for mine, theirs in zip((p.grad for p in model.parameters()), result["first_grad"]):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


def test_uneven_batches_still_give_the_global_batch_gradient(trained):
    result = trained[0]["uneven"]
    assert all(torch.equal(a, b) for a, b in zip(result["grad"], trained[1]["uneven"]["grad"]))
    model = nn.Linear(6, 3)
    model.load_state_dict(result["initial"])
    data, index = _data(), torch.arange(8)
    losses = nn.functional.cross_entropy(model(data.inputs[index]), data.targets[index],
                                         reduction="none")
    SPLLoss(N, threshold=1.2, reduction="selected").objective(index, losses).backward()
    for mine, theirs in zip((p.grad for p in model.parameters()), result["grad"]):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


def test_refresh_measures_a_share_per_rank_and_gathers_all_losses(trained):
    first, second = (result["refresh"] for result in trained)
    assert state_digest(first["losses"]) == state_digest(second["losses"])
    model = nn.Linear(6, 3)
    model.load_state_dict(first["model"])
    torch.testing.assert_close(first["losses"], per_sample_losses(model, _data()))


def test_data_parameter_tables_stay_identical_and_match_one_process(trained):
    first, second = (result["data-parameters"] for result in trained)
    for sync in ("touched", "dense"):
        assert first[sync]["digest"] == second[sync]["digest"]
    assert first["touched"]["digest"] == first["dense"]["digest"]  # the two exchanges agree bitwise
    # One process stepping on the gathered global batches gets the same tables and model.
    model, parameters, optimizers = _data_parameters_run()
    data = _data()
    for event in first["touched"]["gathered"]:
        if isinstance(event, int):
            continue
        index = event[0]
        losses = parameters.compute_losses(model(data.inputs[index]), data.targets[index], index)
        for optimizer in optimizers:
            optimizer.zero_grad()
        parameters.objective(index, losses).backward()
        for optimizer in optimizers:
            optimizer.step()
    for name, table in parameters.state_dict().items():
        torch.testing.assert_close(table, first["touched"]["tables"][name])
    for name, weight in model.state_dict().items():
        torch.testing.assert_close(weight, first["touched"]["model"][name])


def test_resume_from_rank_zero_state_dict(trained):
    for result in trained:
        resume = result["resume"]
        assert resume["same_at_load"]
        assert resume["shards"][0] == resume["shards"][1]
        assert resume["digests"][0] == resume["digests"][1]
    assert trained[0]["resume"]["digests"] == trained[1]["resume"]["digests"]


def test_a_bad_rank_fails_the_whole_group_with_a_clear_error(tmp_path):
    first, second = run_group("bad_input", tmp_path, timeout_seconds=20.0)
    for result in (first, second):
        errors = result["errors"]
        assert "ValueError" in errors["nan"] and "rank 1: losses must be finite" in errors["nan"]
        assert f"rank 0: index must lie in [0, {N})" in errors["range"]
        assert "one dtype on every rank" in errors["dtype"]
        assert "rank 0: index and losses must be tensors" in errors["type"]
        assert "rank 1: losses must be finite" in errors["fit"]
        assert "SGDSSampler's plan for epoch 0" in errors["seed"]
        assert "differs across ranks" in errors["seed"]
    assert first["tracker"] == second["tracker"]  # nobody recorded the poisoned step
    for result in (first, second):
        full, partial, third = result["uneven"]
        assert full.counts == [3, 5] and full.index.tolist() == [0, 1, 2, 10, 11, 12, 13, 14]
        assert torch.equal(full.losses, full.index.float() / 7)
        assert partial.counts == [0, 2] and partial.index.tolist() == [10, 11]
        assert third.index.tolist() == [0, 10, 11, 12, 13] and third.losses.dtype == torch.float32
        assert result["calls"] == [3, 2, 2] and third.capacity == 5


def test_a_rank_that_leaves_makes_the_others_fail_instead_of_hang(tmp_path):
    """Gloo reports the lost peer (or the group's timeout fires): rank 0 raises, or gloo aborts
    its process; either way run_group returns, so nothing hangs."""
    first, _ = run_group("lost_peer", tmp_path, timeout_seconds=20.0, check=False)
    assert first is None or first["error"] is not None


# ---------------------------------------------------------------- settings and timeouts, alone

def test_method_settings_show_scalar_settings_but_not_the_rank():
    from curriclab.core.distributed import method_settings

    settings = method_settings(SGDSSampler(10, prune_fraction=0.25, num_replicas=2, rank=1))
    assert settings.startswith("SGDSSampler(") and "prune_fraction=0.25" in settings
    assert "num_replicas=2" in settings and "rank=" not in settings.replace("num_replicas", "")
    other_rank = method_settings(SGDSSampler(10, prune_fraction=0.25, num_replicas=2, rank=0))
    assert other_rank == settings  # ranks differ by design; their settings must not


def test_alone_the_settings_check_and_the_silent_peer_naming_do_nothing():
    from curriclab.core.distributed import check_distinct_ranks, naming_silent_peers

    synchronized = Synchronized([LossTracker(3)], num_samples=3)
    synchronized.capacity = 7
    synchronized.check_settings()  # nothing to compare with
    check_distinct_ranks(5, "alone")
    with pytest.raises(RuntimeError, match="Timed out waiting"):  # passed on unchanged
        with naming_silent_peers("alone"):
            raise RuntimeError("Timed out waiting 5000ms for recv operation to complete")
