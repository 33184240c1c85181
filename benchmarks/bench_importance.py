"""Per-sample gradient norms: cost of each method as a multiple of one training step's backward.

For SmallConv and a 784-256-10 MLP on a batch of 128 MNIST-shaped inputs, prints the median
milliseconds per batch and the ratio to the floor (one forward + backward of the mean loss),
measured in this process with the methods interleaved:
- loop: the blog's one autograd.grad per sample (timed with its own floor and fewer repeats);
- vmap: torch.func vmap(grad) (materialises every sample's gradient);
- hooks: curriclab's default (Linear/Conv2d identities from one backward of the summed loss),
  also with each convolution strategy forced ("outer" materialises the small per-sample weight
  gradient, "gram" uses Gram matrices of the unfolded positions);
- proxy: the norm of the gradient w.r.t. the logits.
Target (issue 4): hooks <= 2.5x the floor on both models.

Wall time on a shared machine includes waiting for a core (a backward pass hands work between
threads), so each table is printed twice: wall seconds and this process's CPU seconds.

Usage: python benchmarks/bench_importance.py [--repeats 15] [--loop-repeats 2] [--threads N]
"""

from __future__ import annotations

import argparse

import torch

from curriclab.core.models import MLP, SmallConv
from curriclab.core.training import seed_everything
from curriclab.experiments.gradient_norm_vs_loss import time_methods, timing_table

BATCH_SIZE = 128
FAST = ("floor", "vmap", "hooks", "hooks (outer)", "hooks (gram)", "proxy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed runs of the fast methods")
    parser.add_argument("--loop-repeats", type=int, default=2, help="timed runs of the loop")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    seed_everything(0)
    print(f"batch {BATCH_SIZE}, {torch.get_num_threads()} torch thread(s), medians")
    x, y = torch.randn(BATCH_SIZE, 1, 28, 28), torch.randint(0, 10, (BATCH_SIZE,))
    for name, model in (("SmallConv", SmallConv()), ("MLP 784-256-10", MLP())):
        for clock in ("wall", "cpu"):
            fast = time_methods(model, x, y, FAST, repeats=args.repeats, clock=clock)
            print(f"\n{name}, {clock} clock ({args.repeats} repeats)\n{timing_table(fast)}")
            if args.loop_repeats > 0:
                slow = time_methods(
                    model, x, y, ("floor", "loop"), repeats=args.loop_repeats, clock=clock
                )
                print(f"the loop with its own floor ({args.loop_repeats} repeats)")
                print(timing_table(slow))


if __name__ == "__main__":
    main()
