"""What ALA costs per training epoch, as ratios to plain cross-entropy measured in the same process.

ALA evaluates the whole validation set after every student step (the discounted metric needs the
error after each of the K steps), so its cost grows with the validation size. Prints the median
seconds per epoch of each loss over a few repeats and the ratio to cross-entropy; never pass/fail.

    CURRICLAB_DATA=/work/shared/data python benchmarks/bench_ala.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from curriclab.core.data import load_mnist, stratified_split, stratified_subset
from curriclab.experiments.adaptive_loss_alignment import (
    StudentSetup,
    ala_factory,
    cross_entropy_factory,
    identity_phi_factory,
    train_student,
)


def seconds_per_epoch(setup: StudentSetup, factory, repeats: int) -> float:
    times = []
    for repeat in range(repeats):
        start = time.perf_counter()
        train_student(setup, "bench", factory, seed=repeat)
        times.append((time.perf_counter() - start) / setup.epochs)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(2)
    mnist = load_mnist(train=True)
    test = stratified_subset(load_mnist(train=False), 2000, seed=2)
    print(f"MLP 784-128-10, Adam, batch 128, {args.train_size} training images; median of {args.repeats} repeats")
    rows = []
    for validation_size in (500, 2000):
        validation, rest = stratified_split(mnist, validation_size, seed=0)
        setup = StudentSetup(stratified_subset(rest, args.train_size, seed=1), validation, test, epochs=args.epochs)
        baseline = seconds_per_epoch(setup, cross_entropy_factory, args.repeats)
        rows.append((f"cross-entropy (val {validation_size})", baseline, 1.0))
        for name, factory in (("Phi = I", identity_phi_factory), ("ALA, K = 10", ala_factory(interval=10))):
            seconds = seconds_per_epoch(setup, factory, args.repeats)
            rows.append((f"{name} (val {validation_size})", seconds, seconds / baseline))
    for name, seconds, ratio in rows:
        print(f"{name:28s} {seconds:7.3f} s/epoch   x{ratio:.2f} vs cross-entropy")


if __name__ == "__main__":
    main()
