"""What ALA costs per training epoch, as ratios to plain cross-entropy measured in the same process.

ALA evaluates the whole validation set after every student step (the discounted metric needs the
error after each of the K steps), so its cost grows with the validation size. Prints the median
ms per epoch of each loss over a few interleaved repeats (torch.utils.benchmark, wall clock) and the
ratio to cross-entropy; never pass/fail. Each timed run trains from the next seed.

    CURRICLAB_DATA=/work/shared/data python benchmarks/bench_ala.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import itertools

import torch
from _report import interleaved, medians, report

from curriclab.core.data import load_mnist, stratified_split, stratified_subset
from curriclab.experiments.adaptive_loss_alignment import (
    StudentSetup,
    ala_factory,
    cross_entropy_factory,
    identity_phi_factory,
    train_student,
)


def training_run(setup: StudentSetup, factory):
    """A zero-argument function training one student with `factory`, from the next seed."""
    seeds = itertools.count()
    return lambda: train_student(setup, "bench", factory, seed=next(seeds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mnist = load_mnist(train=True)
    test = stratified_subset(load_mnist(train=False), 2000, seed=2)
    factories = {"cross-entropy": cross_entropy_factory, "Phi = I": identity_phi_factory,
                 "ALA, K = 10": ala_factory(interval=10)}
    for validation_size in (500, 2000):
        validation, rest = stratified_split(mnist, validation_size, seed=0)
        train = stratified_subset(rest, args.train_size, seed=1)
        setup = StudentSetup(train, validation, test, epochs=args.epochs)
        runs = {name: training_run(setup, factory) for name, factory in factories.items()}
        seconds = medians(interleaved(runs, args.repeats, threads=args.threads),
                          scale=1 / args.epochs)
        report(f"one epoch, MLP 784-128-10, Adam, batch 128, {args.train_size} training images, "
               f"validation {validation_size}", seconds, "cross-entropy", threads=args.threads,
               clock="wall", repeats=args.repeats)


if __name__ == "__main__":
    main()
