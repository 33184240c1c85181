"""The irreducible-loss model: the loop's training, the scores by index, the counted cost; and
RHO-LOSS on two gloo ranks (per-rank selection, identical irreducible losses everywhere)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from curriclab.core.data import IndexedDataset, make_loader
from curriclab.core.distributed import state_digest
from curriclab.core.training import fit, per_sample_losses
from curriclab.methods.batch_selection import RhoLossSelection
from curriclab.methods.irreducible_loss import irreducible_losses
from tests.helpers.distributed import run_ranks

WORLD = 2


def _data(n: int = 96, seed: int = 0) -> IndexedDataset:
    generator = torch.Generator().manual_seed(seed)
    return IndexedDataset(torch.randn(n, 5, generator=generator),
                          torch.randint(0, 3, (n,), generator=generator))


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))


def test_losses_are_the_hand_trained_models_losses_and_the_cost_is_counted():
    holdout, train = _data(40, seed=1), _data(96)
    model, reference = _model(), _model()
    result = irreducible_losses(model, holdout, train, torch.optim.SGD(model.parameters(), lr=0.2),
                                epochs=3, batch_size=16, seed=4)
    loader = make_loader(holdout, 16, shuffle=True, generator=torch.Generator().manual_seed(4))
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.2)
    for _ in range(3):
        for _, x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(reference(x), y, reduction="none").mean().backward()
            optimizer.step()
    assert torch.equal(result.losses, per_sample_losses(reference, train))
    assert result.losses.shape == (96,) and bool(torch.isfinite(result.losses).all())
    assert result.steps == 3 * 3 and result.samples_backpropagated == 3 * 40
    assert result.samples_forwarded == 3 * 40 + 96 and result.seconds > 0


def test_training_lowers_the_holdout_models_loss_on_training_data_from_the_same_source():
    generator = torch.Generator().manual_seed(2)
    inputs = torch.randn(400, 5, generator=generator)
    data = IndexedDataset(inputs, (inputs[:, 0] > 0).long())  # a learnable rule
    holdout, train = data.subset(torch.arange(200)), data.subset(torch.arange(200, 400))
    before = per_sample_losses(_model(), train).mean()
    model = _model()
    after = irreducible_losses(model, holdout, train, torch.optim.SGD(model.parameters(), lr=0.5),
                               epochs=10, batch_size=32).losses.mean()
    assert after < 0.5 * before


def test_bad_arguments_and_a_diverged_model_are_refused():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="holdout must not be empty"):
        irreducible_losses(model, _data().subset([]), _data(), optimizer, epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        irreducible_losses(model, _data(), _data(), optimizer, epochs=-1)
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        irreducible_losses(model, _data(), _data(), optimizer, epochs=0)


# ---------------------------------------------------------------- two gloo ranks


class _Recording(RhoLossSelection):
    """RHO-LOSS that keeps what it saw and chose, for the brute-force check in the test process."""

    def select(self, index, output, target):
        chosen = super().select(index, output, target)
        self.log.append((index.clone(), output.clone(), target.clone(), chosen.clone()))
        return chosen


def _rank(rank: int, directory: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{directory}/store", rank=rank,
                            world_size=WORLD, timeout=timedelta(seconds=60))
    holdout, train = _data(40, seed=1), _data(96)
    small = _model()
    result = irreducible_losses(small, holdout, train, torch.optim.SGD(small.parameters(), lr=0.2),
                                epochs=2, batch_size=16)
    selector = _Recording(result.losses, k=4, batch_size=12)
    selector.log = []
    model = DistributedDataParallel(_model())
    sampler = DistributedSampler(train, num_replicas=WORLD, rank=rank, shuffle=True, seed=3)
    fit(model, make_loader(train, 12, sampler=sampler),
        torch.optim.SGD(model.parameters(), lr=0.1), 2, methods=[selector], progress=False)
    torch.save({"losses": result.losses, "state": state_digest(selector.state_dict()),
                "forwarded": result.samples_forwarded, "log": selector.log,
                "weights": state_digest(model.module.state_dict())}, f"{directory}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    directory = tmp_path_factory.mktemp("rho_ddp")
    assert run_ranks(_rank, str(directory), world=WORLD) == [0] * WORLD
    return [torch.load(Path(directory) / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_irreducible_losses_are_identical_on_every_rank_and_match_one_process(ranks):
    assert torch.equal(ranks[0]["losses"], ranks[1]["losses"])
    assert ranks[0]["state"] == ranks[1]["state"]
    model = _model()
    alone = irreducible_losses(model, _data(40, seed=1), _data(96),
                               torch.optim.SGD(model.parameters(), lr=0.2), epochs=2,
                               batch_size=16)
    torch.testing.assert_close(ranks[0]["losses"], alone.losses)
    assert [r["forwarded"] for r in ranks] == [2 * 40 + 48] * 2  # each rank scores half


def test_each_rank_selects_the_top_reducible_losses_of_its_own_shard(ranks):
    losses = ranks[0]["losses"]
    for rank in ranks:
        assert len(rank["log"]) == 2 * 4  # 48 samples per rank per epoch, 12 per batch
        for index, output, target, chosen in rank["log"]:
            scores = (F.cross_entropy(output, target, reduction="none") - losses[index]).tolist()
            order = sorted(range(len(index)), key=lambda p: (-scores[p], int(index[p])))
            assert chosen.tolist() == order[:4]
    shards = [torch.cat([entry[0] for entry in rank["log"][:4]]) for rank in ranks]
    assert not set(shards[0].tolist()) & set(shards[1].tolist())  # disjoint candidate shards
    assert ranks[0]["weights"] == ranks[1]["weights"]  # DDP kept the models equal
