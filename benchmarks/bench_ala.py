"""What ALA costs per training epoch, as ratios to plain cross-entropy measured in the same process.

ALA evaluates the whole validation set after every student step (the discounted metric needs the
error after each of the K steps), so its cost grows with the validation size. Prints the median
ms per epoch of each loss over a few interleaved repeats (torch.utils.benchmark, wall clock) and the
ratio to cross-entropy; never pass/fail. Each timed run is one `run_arm` of notebook 07's study
(`ala_study`; the per-epoch validation pass of the harness included) from the next seed.

    CURRICLAB_DATA=/work/shared/data python benchmarks/bench_ala.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import itertools

import torch
from _report import interleaved, medians, report

from curriclab.experiments.adaptive_loss_alignment import ala_study
from curriclab.experiments.harness import Arm, Study, run_arm

ARMS = ("cross-entropy", "Phi = I", "ALA (paper rule)", "ALA (revised)")


def training_run(study: Study, arm: Arm):
    """A zero-argument function running `arm` of `study` once (`run_arm`, test unread), from the
    next seed."""
    seeds = itertools.count()
    return lambda: run_arm(study, arm, next(seeds), read_test=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for validation_size in (500, 2000):
        study = ala_study(args.train_size, validation_size, 2000, epochs=args.epochs, seeds=(0,),
                          interval=10)
        runs = {name: training_run(study, study.arm(name)) for name in ARMS}
        seconds = medians(interleaved(runs, args.repeats, threads=args.threads),
                          scale=1 / args.epochs)
        report(f"one epoch, MLP 784-128-10, Adam, batch 128, {args.train_size} training images, "
               f"validation {validation_size}, K = 10", seconds, "cross-entropy",
               threads=args.threads, clock="wall", repeats=args.repeats)


if __name__ == "__main__":
    main()
