"""The scaling-out runner: the DDP demo under torchrun and in one process."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch

from curriclab.core.distributed import digest
from curriclab.experiments.scaling_out import demo_sampler, padded_plan
from curriclab.ui.cli import main
from tests.helpers.distributed import JOIN_SECONDS


def test_ddp_demo_under_torchrun_prints_identical_digests(mnist_train, tmp_path):
    """The CLI under torchrun (2 processes): one line per rank, the same digest, and the samples
    drawn add up to the plan (400 in epoch 0; 400 - 40 pruned + 4 back in epoch 1). The JSON
    reports agree with the lines, and epoch 0's drawn indices are `demo_sampler`'s shards."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2",
               "-m", "curriclab", "ddp-demo", "--method", "sgds", "--epochs", "2",
               "--samples", "400",
               "--report-json", str(tmp_path / "rank{rank}.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=JOIN_SECONDS)
    causes = [line for line in done.stderr.splitlines() if "Error" in line or "what()" in line]
    assert done.returncode == 0, "\n".join(causes[:20])
    pattern = r"^rank (\d): state sha256 ([0-9a-f]{64}) samples (\d+)$"
    lines = sorted(re.findall(pattern, done.stdout, re.M))
    assert [rank for rank, _, _ in lines] == ["0", "1"], done.stdout
    assert lines[0][1] == lines[1][1]
    assert sum(int(count) for _, _, count in lines) == 400 + 364
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for (rank, sha, count), report in zip(lines, reports):
        assert (report["rank"], report["world_size"], report["digest"]) == (int(rank), 2, sha)
        assert report["samples"] == int(count) == sum(report["epoch_samples"])
        assert report["epoch_plan"] == [400, 364] and report["seconds"] > 0
    for rank, report in enumerate(reports):
        sampler = demo_sampler("sgds", 400, 2, seed=0, num_replicas=2, rank=rank)
        sampler.set_epoch(0)
        assert report["epoch_indices"][0] == digest(torch.tensor(list(sampler)))


def test_ddp_demo_report_json_in_one_process(mnist_train, tmp_path, capsys):
    """Without torchrun the report is written to the path as given; one process draws the whole
    plan every epoch, and a path without '{rank}' is refused when several processes run."""
    path = tmp_path / "report.json"
    assert main(["ddp-demo", "--method", "data-parameters", "--epochs", "2", "--samples", "120",
                 "--batch-size", "32", "--report-json", str(path)]) == 0
    line = capsys.readouterr().out.strip()
    report = json.loads(path.read_text())
    assert line == f"rank 0: state sha256 {report['digest']} samples {report['samples']}"
    assert report["world_size"] == 1
    assert report["epoch_plan"] == report["epoch_samples"] == [120, 120]
    assert report["samples"] == 240
    assert report["samples_per_second"] == pytest.approx(240 / report["seconds"])
    assert len(set(report["epoch_indices"])) == 2  # reshuffled every epoch
    assert padded_plan(37, 2) == 38
    assert padded_plan(37, 2, drop_last=True) == 36
    assert padded_plan(36, 2) == 36
