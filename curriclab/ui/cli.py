"""Command-line entry point: `curriclab spl-demo --out spl.gif`, `curriclab ddp-demo --method sgds`
(under torchrun), `curriclab execute-series` (re-run the notebooks in place), or
`python -m curriclab ...`."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch.distributed as dist

from curriclab.core.distributed import DIST_TIMEOUT_ENV, init_from_environment, naming_silent_peers
from curriclab.experiments.scaling_out import DEMO_METHODS, run_demo
from curriclab.experiments.harness import load_splits
from curriclab.experiments.self_paced_learning import demo_histories, demo_study
from curriclab.plots.spl import animate_spl
from curriclab.ui.publish import execute_notebook

__all__ = ["execute_series", "main"]


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse `type`: an int >= `minimum`; argparse names the flag when it refuses one."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = f"int >= {minimum}"
    return parse


def _positive_seconds(text: str) -> float:
    """An argparse `type`: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text!r}")
    return value



def build_parser() -> argparse.ArgumentParser:
    """The command line: `spl-demo`, `ddp-demo` and `execute-series`, each with its flags.

    Returns:
        The parser; a flag with an invalid value makes `parse_args` exit with argparse's usage
        error naming the flag (exit code 2).
    """
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
    demo.add_argument("--epochs", type=_int_at_least(1), default=10,
                      help="epochs (frames), default 10")
    demo.add_argument("--seed", type=_int_at_least(0), default=1, help="random seed, default 1")
    ddp = commands.add_parser(
        "ddp-demo",
        help="train one per-sample method on MNIST under torchrun; print each rank's state digest",
        description="Train SmallConv on MNIST ($CURRICLAB_DATA) with one per-sample method on "
        "every rank of a torch.distributed group (run under `torchrun --nproc_per_node 2 -m "
        "curriclab ddp-demo ...`, or alone). Each rank prints one line: 'rank R: state sha256 "
        "<hex> samples <n>', the digest of its per-sample state and the samples it drew.",
    )
    ddp.add_argument("--method", choices=DEMO_METHODS, required=True)
    ddp.add_argument("--epochs", type=_int_at_least(1), default=2, help="epochs, default 2")
    ddp.add_argument("--samples", type=_int_at_least(1), default=None,
                     help="train on a stratified subset of this many images (default: all 60 000)")
    ddp.add_argument("--batch-size", type=_int_at_least(1), default=64,
                     help="batch size per rank, default 64")
    ddp.add_argument("--seed", type=_int_at_least(0), default=0,
                     help="random seed (the same on every rank), default 0")
    ddp.add_argument("--timeout", type=_positive_seconds, default=None,
                     help=f"seconds a rank waits for its peers in a collective before the group "
                     f"fails naming the rank that did not answer (sets ${DIST_TIMEOUT_ENV}; "
                     f"default: ${DIST_TIMEOUT_ENV}, else 30)")
    ddp.add_argument("--report-json", metavar="PATH", default=None,
                     help="also write this rank's report as JSON (rank, world size, digest, "
                     "samples, training seconds, per-epoch plan/samples/index digests); '{rank}' "
                     "in PATH is replaced by the rank, and is required when several processes "
                     "run")
    series = commands.add_parser(
        "execute-series",
        help="re-execute notebooks in place (full scale by default) and store their outputs",
        description="Run every cell of each notebook in a fresh kernel and write the notebook back "
        "with its outputs, widget state, and a fingerprint of its code and run mode in its "
        "metadata (the test suite refuses stale or quick-mode outputs).",
    )
    series.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to execute (default: every notebooks/*.ipynb)")
    series.add_argument("--quick", action="store_true", help="quick mode (CURRICLAB_QUICK=1)")
    series.add_argument("--timeout", type=_int_at_least(1), default=3600,
                        help="seconds per cell, default 3600")
    return parser


def write_report(template: str, report: dict) -> Path:
    """Write `report` as JSON to `template` with '{rank}' replaced by the report's rank.

    Args:
        template: the path, possibly holding '{rank}'; missing folders are created.
        report: a JSON-serialisable dict with a "rank" entry (e.g. `DemoResult.report()`).

    Returns:
        The path written.

    Raises:
        KeyError: `report` has no "rank".
        OSError: the file cannot be written.
    """
    path = Path(template.replace("{rank}", str(report["rank"])))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command.

    Args:
        argv: the arguments after the program name (default `sys.argv[1:]`).

    Returns:
        The exit code: 0, or 1 when `execute-series` had failures.

    Raises:
        SystemExit: invalid flag values (argparse's usage error naming the flag, code 2);
            `ddp-demo --report-json` without '{rank}' under several processes; `execute-series`
            with no notebooks given or found.
    """
    args = build_parser().parse_args(argv)
    if args.command == "spl-demo":
        study = demo_study(epochs=args.epochs, seeds=(args.seed,))
        runs = demo_histories(study)[args.seed]
        splits = load_splits(study.data)
        path = animate_spl(runs, splits.train.inputs, splits.train.targets, args.out,
                           highlight=splits.corrupted)
        print(f"wrote {path}")
    elif args.command == "ddp-demo":
        several = int(os.environ.get("WORLD_SIZE", 1)) > 1
        if args.report_json and "{rank}" not in args.report_json and several:
            raise SystemExit("--report-json: put '{rank}' in the path (e.g. report{rank}.json) so "
                             "that each rank writes its own file")
        if args.timeout is not None:  # the collectives read it too, not only the group's set-up
            os.environ[DIST_TIMEOUT_ENV] = repr(args.timeout)
        joined = init_from_environment()
        try:
            with naming_silent_peers("ddp-demo"):  # a stalled or lost rank is named
                result = run_demo(args.method, args.epochs, samples=args.samples,
                                  batch_size=args.batch_size, seed=args.seed)
                if args.report_json:
                    write_report(args.report_json, result.report())
                # one write of the whole line: with unbuffered output print() would write the
                # text and its newline separately, and two ranks sharing a pipe could interleave
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
        return execute_series(paths, quick=args.quick, timeout=args.timeout)
    return 0


def execute_series(paths: Sequence[Path], *, quick: bool, timeout: int) -> int:
    """Execute every notebook in `paths`, also after one fails (a failed notebook's file is left
    unchanged); print one line per notebook and, if any failed, a summary naming them.

    Args:
        paths: the notebooks, executed in this order, each stored in place.
        quick: execute under `CURRICLAB_QUICK=1` (a test run; not a published output).
        timeout: seconds a cell may run (`execute_notebook`).

    Returns:
        0 if every notebook ran, else 1.
    """
    failed = []
    for path in paths:
        try:
            seconds = execute_notebook(path, quick=quick, timeout=timeout)
        except Exception as error:  # noqa: BLE001 - report it, go on with the next notebook
            failed.append(path)
            print(f"{path}: FAILED, left unchanged ({type(error).__name__}: "
                  f"{_summary_line(error)})", flush=True)
        else:
            print(f"{path}: {seconds:.0f} s", flush=True)
    if failed:
        print(f"{len(failed)} of {len(paths)} notebooks failed: "
              + ", ".join(str(path) for path in failed), file=sys.stderr, flush=True)
        return 1
    return 0


def _summary_line(error: BaseException) -> str:
    """The last non-empty line of an error's message (nbclient puts the cell's error there)."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""

