"""SGD-S and InfoBatch-style pruning vs uniform SGD on MNIST/SmallConv, and the samplers' overhead.

Prints (never pass/fail):
1. the samplers' own cost per epoch (planning + yielding indices) for a data set of --overhead-size
   samples, as a ratio to torch's RandomSampler and as a share of one training epoch of SmallConv
   (the epoch time is extrapolated from --timing-batches timed batches);
2. time and samples to a target test accuracy (the lowest final accuracy of the uniform seeds) for
   every method, medians over seeds and ratios to uniform, all measured in this process.

    CURRICLAB_DATA=/work/shared/data python benchmarks/bench_sampling.py --train-size 10000 --seeds 3
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch.utils.data import RandomSampler

from curriclab.core.data import make_loader
from curriclab.core.models import SmallConv
from curriclab.core.timing import median_seconds
from curriclab.core.training import seed_everything, train_epoch
from curriclab.experiments.sgd_s_resampling import (
    METHODS,
    RunSettings,
    claim_table,
    claim_table_markdown,
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


def overhead(size: int, repeats: int, timing_batches: int, batch_size: int) -> None:
    random_sampler = median_seconds(lambda: list(RandomSampler(range(size))), repeats)
    samplers = {
        "SGD-S": steady_epoch(lambda: SGDSSampler(size, transient_epochs=1)),
        "InfoBatch": steady_epoch(lambda: InfoBatchSampler(size, total_epochs=4)),
    }
    train, _ = mnist_subsets(timing_batches * batch_size, 100)
    seed_everything(0)
    model = SmallConv()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99)
    loader = make_loader(train, batch_size, shuffle=True)
    train_epoch(model, loader, optimizer, progress=False)  # warm-up
    batches = median_seconds(lambda: train_epoch(model, loader, optimizer, progress=False), repeats)
    epoch = batches * size / len(train)
    print(f"\n## Sampler overhead, {size} samples, medians of {repeats}")
    print(f"RandomSampler epoch: {random_sampler * 1e3:.1f} ms; "
          f"SmallConv training epoch (extrapolated): {epoch:.1f} s")
    for name, action in samplers.items():
        seconds = median_seconds(action, repeats)
        print(f"{name}: {seconds * 1e3:.1f} ms per epoch = {seconds / random_sampler:.1f}x "
              f"RandomSampler = {seconds / epoch:.2%} of a training epoch")


def time_to_accuracy(train_size: int, test_size: int, seeds: int, epochs: int) -> None:
    train, test = mnist_subsets(train_size, test_size)
    settings = RunSettings(epochs=epochs)
    records = compare_methods(train, test, settings, list(range(seeds)))
    target = reachable_target(records)
    print(f"\n## Time to test accuracy {target:.4f}: {train_size} train / {test_size} test images, "
          f"{seeds} seeds, {epochs} epochs, batch {settings.batch_size}")
    for method in METHODS:
        runs = [r for r in records if r.method == method]
        seconds = statistics.median(cost_to_accuracy(r, target, "seconds") for r in runs)
        samples = statistics.median(cost_to_accuracy(r, target, "samples") for r in runs)
        print(f"{method:15s} median time to target {seconds:8.1f} s, samples {samples:10.0f}, "
              f"total samples {statistics.median(r.samples[-1] for r in runs):.0f}")
    print()
    print(claim_table_markdown(claim_table(records, target, settings)))


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
    overhead(args.overhead_size, args.repeats, args.timing_batches, batch_size=64)
    if not args.skip_training:
        time_to_accuracy(args.train_size, args.test_size, args.seeds, args.epochs)


if __name__ == "__main__":
    main()
