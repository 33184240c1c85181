"""Per-sample gradient norms: cost of each method as a multiple of one training step's backward.

For SmallConv and a 784-256-10 MLP on a batch of 128 MNIST-shaped inputs, prints the median
milliseconds per batch and the ratio to the floor (one forward + backward of the mean loss),
measured in this process with the methods interleaved (notebook 02's `time_methods`, which times
with torch.utils.benchmark's Timer):
- loop: one autograd.grad per sample, as in Zakka's blog-code (pr-lr) (timed with its own floor
  and fewer repeats);
- vmap: torch.func vmap(grad) (materialises every sample's gradient);
- hooks: curriclab's default (the registered per-layer functions, from one backward of the summed
  loss, each layer's form chosen by the cost rules), also with each strategy forced ("outer"
  materialises the per-sample weight gradients, "gram" uses Gram matrices of the positions);
- proxy: the norm of the gradient w.r.t. the logits.

Then the cost of recording every sample's norm while training: one epoch of `record_epoch` against
one plain `train_epoch` (mean loss, SGD with momentum) over the same 4 batches, per step, as a
ratio.

Methods that allocate large buffers (vmap; a strategy forced against the cost rule) are timed in a
group of their own: freeing those buffers hands memory back to the system, and whatever runs next
then pays page faults. Wall time on a shared machine includes waiting for a core (a backward pass
hands work between threads), so each table is printed twice: wall seconds and this process's CPU
seconds. Targets and past measurements: docs/importance.md.

Usage: python benchmarks/bench_importance.py [--repeats 15] [--loop-repeats 2] [--threads N]
"""

from __future__ import annotations

import argparse

import torch
from _report import interleaved, medians, report
from torch import nn

from curriclab.core.data import IndexedDataset, make_loader
from curriclab.core.models import MLP, SmallConv
from curriclab.core.training import seed_everything, train_epoch
from curriclab.experiments.gradient_norm_vs_loss import record_epoch, time_methods

BATCH_SIZE = 128
FAST = ("floor", "hooks", "proxy")
HEAVY = ("floor", "vmap", "hooks (outer)", "hooks (gram)")
TRAINING_BATCHES = 4


def time_recording(
    model: nn.Module, dataset: IndexedDataset, repeats: int, threads: int
) -> dict[str, float]:
    """Median CPU seconds per step of a plain training epoch and of a recorded one (interleaved).

    Args:
        model: trained in place by both runs (SGD with momentum, lr 1e-3).
        dataset: the batches of one epoch, in order.
        repeats: interleaved rounds.
        threads: torch threads of the timers.

    Returns:
        {"train step": seconds, "record_epoch": seconds}, medians per step.
    """
    loader = make_loader(dataset, BATCH_SIZE)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    runs = {
        "train step": lambda: train_epoch(model, loader, optimizer, progress=False),
        "record_epoch": lambda: record_epoch(model, loader, optimizer, progress=False),
    }
    return medians(interleaved(runs, repeats, threads=threads, clock="cpu"), scale=1 / len(loader))


def main() -> None:
    """Parse the arguments, time every table and print them (never pass/fail)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed runs of the fast methods")
    parser.add_argument("--loop-repeats", type=int, default=2, help="timed runs of the loop")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    seed_everything(0)
    x, y = torch.randn(BATCH_SIZE, 1, 28, 28), torch.randint(0, 10, (BATCH_SIZE,))
    for name, model in (("SmallConv", SmallConv()), ("MLP 784-256-10", MLP())):
        for clock in ("wall", "cpu"):
            fast = time_methods(model, x, y, FAST, repeats=args.repeats, clock=clock)
            report(f"{name}, per-sample gradient norms, batch {BATCH_SIZE}", fast, "floor",
                   threads=threads, clock=clock, repeats=args.repeats)
            heavy = time_methods(model, x, y, HEAVY, repeats=args.repeats, clock=clock)
            report(f"{name}, methods with large buffers, with their own floor", heavy, "floor",
                   threads=threads, clock=clock, repeats=args.repeats)
            if args.loop_repeats > 0:
                slow = time_methods(
                    model, x, y, ("floor", "loop"), repeats=args.loop_repeats, clock=clock
                )
                report(f"{name}, the loop with its own floor", slow, "floor", threads=threads,
                       clock=clock, repeats=args.loop_repeats)
    dataset = IndexedDataset(
        torch.randn(TRAINING_BATCHES * BATCH_SIZE, 1, 28, 28),
        torch.randint(0, 10, (TRAINING_BATCHES * BATCH_SIZE,)),
    )
    for name, model in (("SmallConv", SmallConv()), ("MLP 784-256-10", MLP())):
        seconds = time_recording(model, dataset, args.repeats, threads)
        report(f"{name}, recording while training, per step", seconds, "train step",
               threads=threads, clock="cpu", repeats=args.repeats)


if __name__ == "__main__":
    main()
