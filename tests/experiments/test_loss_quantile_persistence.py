"""Notebook 03's study module: the "loss_record" arm (its tables against a hand-written loop),
the summary scalars in the final rows, the readers of the record and the verdict in words."""

import itertools

import pandas as pd
import pytest
import torch

from curriclab.core.data import make_loader
from curriclab.core.training import cross_entropy_per_sample, seed_everything
from curriclab.experiments.harness import (
    build_model, build_optimizer, load_splits, paired_table, run,
)
from curriclab.experiments.loss_quantile_persistence import (
    SHUFFLE_METRICS,
    blog_comparison,
    loss_tables,
    matches_by_seed,
    persistence_study,
    persistence_summary,
    shuffle_comparison,
    shuffle_verdict,
)
from curriclab.methods.persistence import percent_match

EPOCHS = 3


def _study(**changes):
    settings = dict(train_size=200, test_size=100, seeds=(0, 1), epochs=EPOCHS, model="logistic",
                    lr=0.05, momentum=0.9, batch_size=32)
    return persistence_study("test", **{**settings, **changes})


@pytest.fixture(scope="module")
def results():
    return run(_study(), progress=False)


def _reference_tables(study, arm_name, seed):
    """The same run written out by hand: seed, model, optimizer, loader; every loss and every
    end-of-epoch loss stored by dataset index."""
    arm = study.arm(arm_name)
    splits = load_splits(study.data)
    seed_everything(seed)
    model = build_model(study.model, splits)
    optimizer = build_optimizer(study.train_spec(arm), model)
    generator = torch.Generator().manual_seed(seed)
    shuffle = arm.params["shuffle"]
    loader = make_loader(splits.train, study.train.batch_size, shuffle=shuffle,
                         generator=generator if shuffle else None)
    n = len(splits.train)
    during, after = torch.full((EPOCHS, n), float("nan")), torch.full((EPOCHS, n), float("nan"))
    for epoch in range(EPOCHS):
        for index, x, y in loader:
            losses = cross_entropy_per_sample(model(x), y)
            during[epoch, index] = losses.detach()
            optimizer.zero_grad()
            losses.mean().backward()
            optimizer.step()
        with torch.no_grad():
            after[epoch] = cross_entropy_per_sample(model(splits.train.inputs),
                                                    splits.train.targets)
    return during, after


@pytest.mark.parametrize("arm", ["shuffled", "not shuffled"])
def test_recorded_tables_match_a_hand_written_loop(results, arm):
    for seed in results.study.seeds:
        during, after = _reference_tables(results.study, arm, seed)
        artifacts = results.artifacts[(arm, seed)]
        assert torch.allclose(artifacts["losses"], during, atol=1e-5)
        assert torch.allclose(artifacts["end_of_epoch"], after, atol=1e-5)


def test_the_fixed_order_feeds_the_first_batch_first(results):
    """Without shuffling, epoch 2's first batch is scored by the model that ended epoch 1, and
    the rest of the batches by later models."""
    table = results.artifacts[("not shuffled", 0)]
    assert torch.allclose(table["losses"][1, :32], table["end_of_epoch"][0, :32], atol=1e-6)
    assert not torch.allclose(table["losses"][1, 32:], table["end_of_epoch"][0, 32:], atol=1e-6)


def test_final_rows_carry_each_tables_summary_and_pair_by_seed(results):
    finals = results.final_frame().set_index(["arm", "seed"])
    for (arm, seed), artifacts in results.artifacts.items():
        expected = {**persistence_summary(artifacts["losses"]),
                    **persistence_summary(artifacts["end_of_epoch"], suffix="_end")}
        for key, value in expected.items():
            assert finals.loc[(arm, seed), key] == pytest.approx(value)
    table = paired_table(results, "match_last_two", baseline="shuffled").set_index("arm")
    values = results.final_values("match_last_two")
    differences = [a - b for a, b in zip(values["not shuffled"], values["shuffled"])]
    assert table.loc["not shuffled", "difference"] == pytest.approx(sum(differences) / 2)


def test_persistence_summary_is_the_mean_of_brute_force_matches():
    torch.manual_seed(0)
    losses = torch.rand(4, 30)
    losses[1:] = 0.7 * losses[:1] + 0.3 * torch.rand(3, 30)   # some persistence
    ranks = losses.argsort(dim=1, descending=True)
    members = [[set(ranks[e, 10 * j:10 * (j + 1)].tolist()) for j in range(3)] for e in range(4)]

    def brute(first, last):
        return sum(100 * len(set.intersection(*(members[e][j] for e in range(first, last))))
                   / 10 for j in range(3)) / 3
    summary = persistence_summary(losses, 3)
    assert summary["match_last_two"] == pytest.approx(brute(2, 4))
    assert summary["match_all"] == pytest.approx(brute(0, 4))
    with pytest.raises(ValueError, match="epochs >= 2"):
        persistence_summary(losses[:1], 3)


def test_readers_of_the_record(results):
    tables = loss_tables(results, "end_of_epoch")
    assert list(tables) == ["shuffled", "not shuffled"] and list(tables["shuffled"]) == [0, 1]
    ranges = {"1-3": (1, 3), "2-3": (2, 3)}
    matches = matches_by_seed(results, ranges, 5)
    for arm, seed in itertools.product(tables, (0, 1)):
        row = results.study.seeds.index(seed)
        losses = results.artifacts[(arm, seed)]["losses"]
        assert torch.equal(matches[arm]["2-3"][row], percent_match(losses, 5, 2, 3))
    with pytest.raises(ValueError, match="kind must be one of"):
        loss_tables(results, "gradients")


def test_one_epoch_or_a_step_budget_is_rejected():
    with pytest.raises(ValueError, match="at least 2"):
        run(_study(epochs=1, seeds=(0,)), progress=False)


def test_blog_comparison_reports_mean_and_seed_range():
    table = torch.tensor([[30.0, 1.0, 20.0], [40.0, 2.0, 10.0]])   # 2 seeds, 3 quantiles
    matches = {"a": {"r": table}}
    frame = blog_comparison(matches, {"a": {"r": (33, 18)}})
    top, bottom = frame.loc[("a", "r", "top")], frame.loc[("a", "r", "bottom")]
    assert (top["ours"], top["lowest seed"], top["highest seed"], top["Zakka"]) == (35, 30, 40, 33)
    assert (bottom["ours"], bottom["lowest seed"], bottom["highest seed"]) == (15, 10, 20)


def test_shuffle_comparison_rows_are_the_paired_tables(results):
    comparison = shuffle_comparison(results)
    assert list(comparison.index) == list(SHUFFLE_METRICS)
    for label, metric in SHUFFLE_METRICS.items():
        values = results.final_values(metric)
        differences = torch.tensor(values["not shuffled"]) - torch.tensor(values["shuffled"])
        row = comparison.loc[label]
        assert row["difference"] == pytest.approx(float(differences.mean()))
        assert row["low"] < row["difference"] < row["high"]
        assert row["shuffled"] == pytest.approx(sum(values["shuffled"]) / 2)
        assert row["higher"] == int((differences > 0).sum()) and row["seeds"] == 2


@pytest.mark.parametrize("low, high, word", [(1.0, 5.0, "persists more"),
                                             (-5.0, -1.0, "persists less"),
                                             (-1.0, 5.0, "no clear difference")])
def test_shuffle_verdict_follows_the_interval(low, high, word):
    comparison = pd.DataFrame([{"summary": "s", "shuffled": 50.0, "not shuffled": 52.0,
                                "difference": 2.0, "low": low, "high": high, "higher": 2,
                                "seeds": 3}]).set_index("summary")
    text = shuffle_verdict(comparison, "s")
    assert word in text and "(2 of 3 seeds higher)" in text
    assert f"[{low:+.1f}, {high:+.1f}]" in text
    with pytest.raises(ValueError, match="no paired interval"):
        shuffle_verdict(comparison.assign(low=float("nan")), "s")
