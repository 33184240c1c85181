"""SGD-S and InfoBatch-style pruning vs uniform SGD on MNIST/SmallConv, and the samplers' overhead.

Prints (never pass/fail):
1. the samplers' own cost per epoch (planning + yielding indices) for a data set of --overhead-size
   samples, as a ratio to torch's RandomSampler and as a share of one training epoch of SmallConv
   (the epoch time is extrapolated from --timing-batches timed batches), interleaved repeats timed
   with torch.utils.benchmark;
2. time to a validation target (the lowest, over the uniform seeds, of each seed's best validation
   accuracy) for every arm of notebook 04's short study at the blog's learning rate, read every
   --eval-every steps: samples and seconds to the target, the speed-up and the paired difference
   from uniform with its 95 % interval (`costs_to_target`), all measured in this process.

    CURRICLAB_DATA=/work/shared/data python benchmarks/bench_sampling.py --train-size 10000 \
        --seeds 3
"""

from __future__ import annotations

import argparse

import torch
from _report import interleaved, medians, report
from torch.utils.data import RandomSampler

from curriclab.core.data import make_loader
from curriclab.core.models import SmallConv
from curriclab.core.training import seed_everything, train_epoch
from curriclab.experiments.harness import DataSpec, load_splits, run, validation_target
from curriclab.experiments.sgd_s_resampling import costs_to_target, short_study
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
    train = load_splits(DataSpec(train_size=timing_batches * batch_size, validation_size=0,
                                 test_size=100)).train
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


def time_to_target(train_size: int, validation_size: int, test_size: int, seeds: int,
                   epochs: int, eval_every: int, threads: int) -> None:
    study = short_study(train_size, validation_size, test_size, epochs, range(seeds), eval_every)
    results = run(study)
    target = validation_target(results)
    costs = costs_to_target(results, target)
    seconds = costs[costs["cost"] == "seconds"].set_index("arm")["mean cost"].to_dict()
    report(f"training seconds to validation accuracy {target:.4f}, {train_size} train images, "
           f"{epochs} epochs, batch {study.train.batch_size}, evaluated every {eval_every} steps",
           seconds, "uniform", threads=threads, clock="wall", repeats=seeds)
    print()
    print(costs.to_string())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--validation-size", type=int, default=2000)
    parser.add_argument("--test-size", type=int, default=4000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--eval-every", type=int, default=40, help="steps between evaluations")
    parser.add_argument("--overhead-size", type=int, default=60000)
    parser.add_argument("--timing-batches", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (SmallConv gains nothing from more on a shared CPU)")
    parser.add_argument("--skip-training", action="store_true", help="only the overhead part")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overhead(args.overhead_size, args.repeats, args.timing_batches, batch_size=64,
             threads=args.threads)
    if not args.skip_training:
        time_to_target(args.train_size, args.validation_size, args.test_size, args.seeds,
                       args.epochs, args.eval_every, args.threads)


if __name__ == "__main__":
    main()
