"""The samplers' cross-rank check (`check_plans_agree`, `verify_across_ranks`) on a real
two-process gloo group: what it gathers, when `set_epoch` runs it, and the error it raises."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from curriclab.methods.curriculum import CurriculumSampler, pacing_function
from curriclab.methods.infobatch import InfoBatchSampler
from curriclab.methods.sampling import SGDSSampler
from tests.helpers.distributed import scenario_results

WORLD = 2
N = 12


def _makers(rank: int) -> dict:
    """Each sampler kind, seeded differently on each rank (so their plans differ)."""
    return {
        "SGDSSampler": lambda **kw: SGDSSampler(
            N, generator=torch.Generator().manual_seed(rank), **kw),
        "InfoBatchSampler": lambda **kw: InfoBatchSampler(
            N, 4, generator=torch.Generator().manual_seed(rank), **kw),
        "CurriculumSampler": lambda **kw: CurriculumSampler(
            torch.arange(N).double(), pacing_function("linear", 8), 8, 2, "random", seed=rank,
            **kw),
    }


def _error(call) -> str | None:
    try:
        call()
    except ValueError as error:
        return str(error)
    return None


def _scenario(rank: int) -> dict:
    calls: list[int] = [0]
    original = dist.all_gather

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    def gathers(call) -> int:
        calls[0] = 0
        dist.all_gather = counted
        try:
            call()
        finally:
            dist.all_gather = original
        return calls[0]

    result = {}
    for name, make in _makers(rank).items():
        unchecked = make(verify_across_ranks=False)
        result[name] = {
            # unchecked: set_epoch gathers nothing, even though the plans differ
            "unchecked_gathers": gathers(lambda: (unchecked.set_epoch(0), unchecked.set_epoch(1))),
            # the explicit check: two all-gathers, and the error on every rank
            "explicit_error": _error(unchecked.check_plans_agree),
            "explicit_gathers": gathers(lambda: _error(unchecked.check_plans_agree)),
            # checked (the default): the first set_epoch of an epoch checks, repeats do not
            "checked_error": _error(lambda: make().set_epoch(0)),
            "wrong_rank_error": _error(lambda: make(rank=0, num_replicas=WORLD).set_epoch(0)),
        }
        checked = make()
        if name == "CurriculumSampler":  # same order and seed everywhere: the check passes
            checked = CurriculumSampler(torch.arange(N).double(), pacing_function("linear", 8),
                                        8, 2, "random", seed=5)
        else:
            checked.load_state_dict(_same_everywhere(checked))
        result[name]["checked_gathers"] = [
            gathers(lambda: checked.set_epoch(0)), gathers(lambda: checked.set_epoch(0)),
            gathers(lambda: checked.set_epoch(1))]
    return result


def _same_everywhere(sampler) -> dict:
    """Rank 0's state, so every rank holds the same plan and generator."""
    state = [sampler.state_dict()]
    dist.broadcast_object_list(state, src=0)
    return state[0]


def test_check_plans_agree_is_explicit_and_set_epoch_runs_it_once_per_epoch(tmp_path: Path):
    for result in scenario_results(_scenario, tmp_path, world=WORLD):
        for name, seen in result.items():
            differs = "order and seed" if name == "CurriculumSampler" else "plan"
            assert seen["unchecked_gathers"] == 0
            assert f"{name}'s {differs} for epoch 1" in seen["explicit_error"]
            assert "differs across ranks" in seen["explicit_error"]
            assert seen["explicit_gathers"] == 2  # the ranks' `rank`, then the plan's digest
            assert f"{name}'s {differs} for epoch 0" in seen["checked_error"]
            assert "rank must be different on every process" in seen["wrong_rank_error"]
            assert seen["checked_gathers"] == [2, 0, 2]
