"""SparseSGD step time against torch.optim.SGD and against clone-and-restore implementations.

Set-up: one instance-parameter vector of N entries (default 60 000, one per MNIST training image)
of which a 128-sample minibatch touches 128. Prints medians of repeated timings as ratios to
torch.optim.SGD's step measured in the same process (wall times on a shared machine are noisy;
ratios are what carry over). Each step gets the next of --steps precomputed random minibatch
gradients; torch.utils.benchmark's blocked_autorange times blocks of steps for --min-run-time
seconds per optimizer and round, rounds interleaved. Run: python benchmarks/bench_sparse_sgd.py
[--entries N] [--batch B] [--threads T]
"""

from __future__ import annotations

import argparse
import itertools

import torch
from _report import interleaved, medians, report

from curriclab.core.training import seed_everything
from curriclab.methods.sparse_sgd import SparseSGD


class CloneRestoreSGD(torch.optim.SGD):
    """The reference approach: a full torch SGD step, then the value and the momentum buffer of
    every zero-gradient entry are copied back from clones taken before the step."""

    @torch.no_grad()
    def step(self, closure=None):
        saved = []
        for group in self.param_groups:
            for param in group["params"]:
                buffer = self.state.get(param, {}).get("momentum_buffer")
                saved.append((param, param.clone(), None if buffer is None else buffer.clone()))
        super().step(closure)
        for param, value, buffer in saved:
            absent = param.grad == 0
            self.restore(param, value, absent)
            if buffer is not None:
                self.restore(self.state[param]["momentum_buffer"], buffer, absent)

    @staticmethod
    def restore(target, saved, absent):
        """Copy `saved` back where `absent` is True.

        Boolean-mask assignment, as in apple/ml-data-parameters.
        """
        target[absent] = saved[absent]


class CloneWhereSGD(CloneRestoreSGD):
    """The same, restoring with one dense torch.where pass instead of boolean-mask indexing."""

    @staticmethod
    def restore(target, saved, absent):
        target.copy_(torch.where(absent, saved, target))


def stepper(optimizer_class, entries: int, batch: int, steps: int, seed: int):
    """A zero-argument function doing one optimizer step with the next of `steps` random
    minibatch gradients (cycled)."""
    generator = torch.Generator().manual_seed(seed)
    param = torch.zeros(entries, requires_grad=True)
    optimizer = optimizer_class([param], lr=0.1, momentum=0.9)
    grads = []
    for _ in range(steps):
        grad = torch.zeros(entries)
        values = torch.randn(batch, generator=generator)
        grad[torch.randperm(entries, generator=generator)[:batch]] = values
        grads.append(grad)
    cycle = itertools.cycle(grads)

    def step() -> None:
        param.grad = next(cycle)
        optimizer.step()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200, help="distinct minibatch gradients")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--min-run-time", type=float, default=0.2,
                        help="seconds of steps timed per optimizer and round")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 by default: on a shared, oversubscribed CPU "
                             "a 2-thread pool stalls whole ops for tens of ms, which says "
                             "nothing about the code)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seed_everything(0)
    candidates = {
        "torch.optim.SGD": torch.optim.SGD,
        "SparseSGD": SparseSGD,
        "clone + mask copy": CloneRestoreSGD,
        "clone + where": CloneWhereSGD,
    }
    runs = {name: stepper(optimizer_class, args.entries, args.batch, args.steps, seed=0)
            for name, optimizer_class in candidates.items()}
    measured = interleaved(runs, args.repeats, threads=args.threads, min_run_time=args.min_run_time)
    report(f"one step, {args.entries} entries, {args.batch} touched", medians(measured),
           "torch.optim.SGD", threads=args.threads, clock="wall", repeats=args.repeats)


if __name__ == "__main__":
    main()
