"""Data path: curriclab's tensor-indexed MNIST vs torchvision's per-image pipeline.

Prints medians of interleaved repeated runs (torch.utils.benchmark, wall clock) and their ratios,
all measured in this process:
1. gathering one epoch of shuffled batch-128 batches (no model), each way;
2. one SmallConv training epoch (SGD, batch 128), each way;
3. the share of a training epoch spent gathering data (gathering as a ratio to the epoch).
Targets (issue 2): gathering >= 10x faster; the data path <= 5 % of a training epoch.

Usage:
  CURRICLAB_DATA=... python benchmarks/bench_data.py [--repeats 3] [--train-repeats 1] [--threads 1]
On a busy machine pass --threads 1: torch's parallel kernels stall when the cores are
oversubscribed.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
from _report import interleaved, medians, report

from curriclab.core.data import MNIST_MEAN, MNIST_STD, default_data_root, load_mnist, make_loader
from curriclab.core.models import SmallConv
from curriclab.core.training import seed_everything, train_epoch

BATCH_SIZE = 128


def drain(loader: Iterable) -> None:
    for _ in loader:
        pass


def torchvision_loader() -> DataLoader:
    """The usual pipeline: PIL image -> ToTensor -> Normalize per item, default collate."""
    normalize = transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))
    transform = transforms.Compose([transforms.ToTensor(), normalize])
    mnist = datasets.MNIST(str(default_data_root()), train=True, download=False,
                           transform=transform)
    return DataLoader(mnist, batch_size=BATCH_SIZE, shuffle=True)


def train_one_epoch(loader: Iterable) -> None:
    model = SmallConv()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    train_epoch(model, loader, optimizer, progress=False)


def with_index(loader: DataLoader) -> Iterable:
    """Adapt torchvision's (x, y) batches to the loop's (index, x, y) (the index is unused here)."""
    for x, y in loader:
        yield torch.empty(0, dtype=torch.long), x, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the gathering runs")
    parser.add_argument("--train-repeats", type=int, default=1,
                        help="repeats of the training epochs")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    seed_everything(0)
    ours = make_loader(load_mnist(train=True), BATCH_SIZE, shuffle=True)
    theirs = torchvision_loader()

    gather = medians(interleaved({"curriclab": lambda: drain(ours),
                                  "torchvision": lambda: drain(theirs)},
                                 args.repeats, threads=threads))
    train = medians(interleaved({"curriclab": lambda: train_one_epoch(ours),
                                 "torchvision": lambda: train_one_epoch(with_index(theirs))},
                                args.train_repeats, threads=threads))
    report(f"gathering one epoch of shuffled batch-{BATCH_SIZE} MNIST batches", gather, "curriclab",
           threads=threads, clock="wall", repeats=args.repeats)
    report("one SmallConv training epoch", train, "curriclab", threads=threads, clock="wall",
           repeats=args.train_repeats)
    for name in gather:
        report(f"data path share of a {name} training epoch",
               {"training epoch": train[name], "gathering batches": gather[name]}, "training epoch",
               threads=threads, clock="wall", repeats=args.train_repeats)


if __name__ == "__main__":
    main()
