"""Command-line entry point: `curriclab spl-demo --out spl.gif`, `curriclab ddp-demo --method sgds`
(under torchrun), `curriclab execute-series` (re-run the notebooks in place), or
`python -m curriclab ...`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from collections.abc import Sequence

import torch.distributed as dist

from curriclab.core.distributed import init_from_environment
from curriclab.experiments.scaling_out import DEMO_METHODS, run_demo
from curriclab.experiments.harness import load_splits
from curriclab.experiments.self_paced_learning import demo_histories, demo_study
from curriclab.plots.spl import animate_spl
from curriclab.ui.publish import execute_notebook

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="curriclab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "spl-demo",
        help="train self-paced logistic regression on toy blobs and write an animated GIF",
        description="Train the self-paced learning demo on 2-D toy blobs (no download) and write a "
        "GIF with one frame per epoch: the wenig/spl demo's schedule next to the paced, refreshed "
        "one.",
    )
    demo.add_argument("--out", required=True, help="path of the GIF to write")
    demo.add_argument("--epochs", type=int, default=10, help="epochs (frames), default 10")
    demo.add_argument("--seed", type=int, default=1, help="random seed, default 1")
    ddp = commands.add_parser(
        "ddp-demo",
        help="train one per-sample method on MNIST under torchrun; print each rank's state digest",
        description="Train SmallConv on MNIST ($CURRICLAB_DATA) with one per-sample method on every "
        "rank of a torch.distributed group (run under `torchrun --nproc_per_node 2 -m curriclab "
        "ddp-demo ...`, or alone). Each rank prints one line: 'rank R: state sha256 <hex> samples "
        "<n>', the digest of its per-sample state and the samples it drew.",
    )
    ddp.add_argument("--method", choices=DEMO_METHODS, required=True)
    ddp.add_argument("--epochs", type=int, default=2, help="epochs, default 2")
    ddp.add_argument("--samples", type=int, default=None,
                     help="train on a stratified subset of this many images (default: all 60 000)")
    ddp.add_argument("--batch-size", type=int, default=64, help="batch size per rank, default 64")
    ddp.add_argument("--seed", type=int, default=0, help="random seed (the same on every rank), default 0")
    ddp.add_argument("--report-json", metavar="PATH", default=None,
                     help="also write this rank's report as JSON (rank, world size, digest, samples, "
                     "training seconds, per-epoch plan/samples/index digests); '{rank}' in PATH is "
                     "replaced by the rank, and is required when several processes run")
    series = commands.add_parser(
        "execute-series",
        help="re-execute notebooks in place (full scale by default) and store their outputs",
        description="Run every cell of each notebook in a fresh kernel and write the notebook back "
        "with its outputs, widget state, and a fingerprint of its code and run mode in its metadata "
        "(the test suite refuses stale or quick-mode outputs).",
    )
    series.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to execute (default: every notebooks/*.ipynb)")
    series.add_argument("--quick", action="store_true", help="quick mode (CURRICLAB_QUICK=1)")
    series.add_argument("--timeout", type=int, default=3600, help="seconds per cell, default 3600")
    return parser


def write_report(template: str, report: dict) -> Path:
    """Write `report` as JSON to `template` with '{rank}' replaced by the report's rank."""
    path = Path(template.replace("{rank}", str(report["rank"])))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "spl-demo":
        if args.epochs < 1:
            raise SystemExit("--epochs must be >= 1")
        study = demo_study(epochs=args.epochs, seeds=(args.seed,))
        runs = demo_histories(study)[args.seed]
        splits = load_splits(study.data)
        path = animate_spl(runs, splits.train.inputs, splits.train.targets, args.out,
                           highlight=splits.corrupted)
        print(f"wrote {path}")
    elif args.command == "ddp-demo":
        if args.epochs < 1:
            raise SystemExit("--epochs must be >= 1")
        if args.report_json and "{rank}" not in args.report_json and int(os.environ.get("WORLD_SIZE", 1)) > 1:
            raise SystemExit("--report-json: put '{rank}' in the path (e.g. report{rank}.json) so that "
                             "each rank writes its own file")
        joined = init_from_environment()
        try:
            result = run_demo(args.method, args.epochs, samples=args.samples,
                              batch_size=args.batch_size, seed=args.seed)
            if args.report_json:
                write_report(args.report_json, result.report())
            # one write of the whole line: with unbuffered output print() would write the text
            # and its newline separately, and two ranks sharing a pipe could interleave them
            sys.stdout.write(result.line() + "\n")
            sys.stdout.flush()
            if joined:
                dist.barrier()  # no rank tears gloo down while a peer still uses it
        finally:
            if joined:
                dist.destroy_process_group()
    elif args.command == "execute-series":
        paths = args.notebooks or sorted(Path("notebooks").glob("*.ipynb"))
        if not paths:
            raise SystemExit("no notebooks given and none found in ./notebooks")
        for path in paths:
            seconds = execute_notebook(path, quick=args.quick, timeout=args.timeout)
            print(f"{path}: {seconds:.0f} s", flush=True)
    return 0

