"""SGD-S and InfoBatch-style pruning vs uniform SGD on MNIST/SmallConv, and the samplers' overhead.

Prints (never pass/fail):
1. the samplers' own cost per epoch (planning + yielding indices) for a data set of --overhead-size
   samples, as a ratio to torch's RandomSampler and as a share of one training epoch of SmallConv
   (the epoch time is extrapolated from --timing-batches timed batches), interleaved repeats timed
   with torch.utils.benchmark;
2. time to a target test accuracy (the lowest final accuracy of the uniform seeds) for every
   method, medians over seeds and ratios to uniform (timed by the training runner), then the
   claim table (accuracy, samples, speed-ups paired by seed), all measured in this process.

    CURRICLAB_DATA=/work/shared/data python benchmarks/bench_sampling.py --train-size 10000 --seeds 3
"""

from __future__ import annotations

import argparse
import statistics

import pandas as pd
import torch
from _report import interleaved, medians, report
from torch.utils.data import RandomSampler

from curriclab.core.data import make_loader
from curriclab.core.models import SmallConv
from curriclab.core.training import seed_everything, train_epoch
from curriclab.experiments.sgd_s_resampling import (
    METHODS,
    RunSettings,
    claim_table,
    compare_methods,
    cost_to_accuracy,
    mnist_subsets,
    reachable_target,
)
from curriclab.methods.infobatch import InfoBatchSampler
from curriclab.methods.sampling import SGDSSampler


def steady_epoch(make):
    """A callable that runs one steady-state epoch of a fresh sampler (plan + yield every index)."""
    def action():
        sampler = make()
        sampler.set_epoch(0)
        sampler.update(torch.arange(sampler.num_samples), torch.rand(sampler.num_samples))
        sampler.set_epoch(1)
        for _ in sampler:
            pass
    return action


def overhead(size: int, repeats: int, timing_batches: int, batch_size: int, threads: int) -> None:
    train, _ = mnist_subsets(timing_batches * batch_size, 100)
    seed_everything(0)
    model = SmallConv()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99)
    loader = make_loader(train, batch_size, shuffle=True)
    runs = {
        "RandomSampler": lambda: list(RandomSampler(range(size))),
        "SGD-S": steady_epoch(lambda: SGDSSampler(size, transient_epochs=1)),
        "InfoBatch": steady_epoch(lambda: InfoBatchSampler(size, total_epochs=4)),
        "training batches": lambda: train_epoch(model, loader, optimizer, progress=False),
    }
    seconds = medians(interleaved(runs, repeats, threads=threads))
    epoch = seconds.pop("training batches") * size / len(train)
    report(f"sampler epoch (plan + yield), {size} samples", seconds, "RandomSampler",
           threads=threads, clock="wall", repeats=repeats)
    shares = {"SmallConv training epoch (extrapolated)": epoch, "SGD-S": seconds["SGD-S"],
              "InfoBatch": seconds["InfoBatch"]}
    report(f"sampler cost as a share of a training epoch, {size} samples, batch {batch_size}",
           shares, "SmallConv training epoch (extrapolated)", threads=threads, clock="wall",
           repeats=repeats)


def time_to_accuracy(train_size: int, test_size: int, seeds: int, epochs: int, threads: int) -> None:
    train, test = mnist_subsets(train_size, test_size)
    settings = RunSettings(epochs=epochs)
    records = compare_methods(train, test, settings, list(range(seeds)))
    target = reachable_target(records)
    seconds = {method: statistics.median(cost_to_accuracy(r, target, "seconds")
                                         for r in records if r.method == method)
               for method in METHODS}
    report(f"time to test accuracy {target:.4f}, {train_size} train / {test_size} test images, "
           f"{epochs} epochs, batch {settings.batch_size}", seconds, "uniform", threads=threads,
           clock="wall", repeats=seeds)
    print()
    print(pd.DataFrame(claim_table(records, target, settings)).set_index("method").to_string())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--test-size", type=int, default=4000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--overhead-size", type=int, default=60000)
    parser.add_argument("--timing-batches", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (SmallConv gains nothing from more on a shared CPU)")
    parser.add_argument("--skip-training", action="store_true", help="only the overhead part")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overhead(args.overhead_size, args.repeats, args.timing_batches, batch_size=64, threads=args.threads)
    if not args.skip_training:
        time_to_accuracy(args.train_size, args.test_size, args.seeds, args.epochs, args.threads)


if __name__ == "__main__":
    main()
