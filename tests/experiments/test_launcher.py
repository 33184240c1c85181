"""curriclab.experiments.launcher: the demo's commands, shards, throughput and a real launch."""

import pytest
import torch

from curriclab.experiments.launcher import (
    DemoLaunch,
    demo_command,
    demo_shards,
    interleave,
    launch_demo,
    throughput,
)
from curriclab.experiments.scaling_out import padded_plan


def test_commands_use_torchrun_only_for_several_processes():
    one = demo_command("sgds", 1, samples=100, epochs=2)
    two = demo_command("sgds", 2, samples=100, epochs=2, report="r{rank}.json")
    assert one[1:4] == ["-m", "curriclab", "ddp-demo"] and "torch.distributed.run" not in one
    assert two[1:3] == ["-m", "torch.distributed.run"] and two[-2:] == ["--report-json",
                                                                        "r{rank}.json"]
    with pytest.raises(ValueError, match="method"):
        demo_command("nope", 2, samples=1, epochs=1)
    with pytest.raises(ValueError, match="processes"):
        demo_command("sgds", 0, samples=1, epochs=1)


def test_the_peer_timeout_becomes_the_demo_timeout_flag():
    assert "--timeout" not in demo_command("sgds", 2, samples=100, epochs=2)
    command = demo_command("sgds", 2, samples=100, epochs=2, peer_timeout=5)
    assert command[-2:] == ["--timeout", "5.0"]
    for bad in (0, -1.0, float("nan"), float("inf"), "5"):
        with pytest.raises(ValueError, match="peer_timeout"):
            demo_command("sgds", 2, samples=100, epochs=2, peer_timeout=bad)


@pytest.mark.parametrize("method", ["sgds", "infobatch"])
def test_shards_interleave_back_into_the_padded_plan(method):
    losses = torch.distributions.Exponential(1.0).sample((101,))
    shards, plan, _ = demo_shards(method, 101, 2, 1, 3, losses)
    padded = torch.cat([plan, plan[: padded_plan(len(plan), 3) - len(plan)]])
    assert torch.equal(interleave(shards), padded)


def test_interleave_refuses_unequal_shards():
    with pytest.raises(ValueError, match="equal lengths"):
        interleave([torch.arange(3), torch.arange(2)])


def test_throughput_is_all_samples_over_the_slowest_rank():
    launch = DemoLaunch("x", [], [{"samples": 300, "seconds": 2.0}, {"samples": 100,
                                                                    "seconds": 4.0}], 9.0)
    assert throughput(launch) == 100.0


def test_a_one_process_launch_reports_its_plan(mnist_train, tmp_path):
    launch = launch_demo("sgds", 1, samples=200, epochs=1, work=tmp_path, timeout=600)
    assert len(launch.lines) == 1 and launch.reports[0]["world_size"] == 1
    assert launch.reports[0]["samples"] == 200 and launch.command.startswith("python -m curriclab")


def test_a_launch_that_overruns_its_timeout_is_killed_with_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="did not finish within"):
        launch_demo("sgds", 1, samples=200, epochs=1, work=tmp_path, timeout=0.5)
