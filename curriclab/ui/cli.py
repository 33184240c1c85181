"""Command-line entry point: `curriclab spl-demo --out spl.gif` (or `python -m curriclab ...`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from curriclab.core.data import spl_toy_data
from curriclab.experiments.self_paced_learning import demo_runs
from curriclab.plots.spl import animate_spl

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="curriclab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "spl-demo",
        help="train self-paced logistic regression on toy blobs and write an animated GIF",
        description="Train the self-paced learning demo on 2-D toy blobs (no download) and write a "
        "GIF with one frame per epoch: the source's schedule next to the paced, refreshed one.",
    )
    demo.add_argument("--out", required=True, help="path of the GIF to write")
    demo.add_argument("--epochs", type=int, default=10, help="epochs (frames), default 10")
    demo.add_argument("--seed", type=int, default=1, help="random seed, default 1")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "spl-demo":
        if args.epochs < 1:
            raise SystemExit("--epochs must be >= 1")
        data, flipped = spl_toy_data()
        runs = demo_runs(data, epochs=args.epochs, seed=args.seed)
        path = animate_spl(runs, data.inputs, data.targets, args.out, highlight=flipped)
        print(f"wrote {path}")
    return 0

