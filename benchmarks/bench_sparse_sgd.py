"""SparseSGD step time against torch.optim.SGD and against clone-and-restore implementations.

Set-up: one instance-parameter vector of N entries (default 60 000, one per MNIST training image)
of which a 128-sample minibatch touches 128. Prints medians of repeated timings as ratios to
torch.optim.SGD's step measured in the same process (wall times on a shared machine are noisy;
ratios are what carry over). Run: python benchmarks/bench_sparse_sgd.py [--entries N] [--batch B] [--threads T]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

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
        """Copy `saved` back where `absent` is True (boolean-mask assignment, as in the original)."""
        target[absent] = saved[absent]


class CloneWhereSGD(CloneRestoreSGD):
    """The same, restoring with one dense torch.where pass instead of boolean-mask indexing."""

    @staticmethod
    def restore(target, saved, absent):
        target.copy_(torch.where(absent, saved, target))


def time_steps(optimizer_class, entries: int, batch: int, steps: int, seed: int) -> float:
    """Median seconds per step over `steps` steps, each with a fresh random minibatch gradient."""
    generator = torch.Generator().manual_seed(seed)
    param = torch.zeros(entries, requires_grad=True)
    optimizer = optimizer_class([param], lr=0.1, momentum=0.9)
    grads = []
    for _ in range(steps):
        grad = torch.zeros(entries)
        grad[torch.randperm(entries, generator=generator)[:batch]] = torch.randn(batch, generator=generator)
        grads.append(grad)
    times = []
    for grad in grads:
        param.grad = grad
        start = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[5:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 by default: on a shared, oversubscribed CPU a 2-thread "
                             "pool stalls whole ops for tens of ms, which says nothing about the code)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seed_everything(0)
    candidates = {
        "torch.optim.SGD": torch.optim.SGD,
        "SparseSGD": SparseSGD,
        "clone + mask copy": CloneRestoreSGD,
        "clone + where": CloneWhereSGD,
    }
    medians: dict[str, list[float]] = {name: [] for name in candidates}
    for repeat in range(args.repeats):  # interleaved, so load changes hit every candidate alike
        for name, optimizer_class in candidates.items():
            medians[name].append(time_steps(optimizer_class, args.entries, args.batch, args.steps, repeat))
    baseline = statistics.median(medians["torch.optim.SGD"])
    print(f"{args.entries} entries, {args.batch} touched per step, {torch.get_num_threads()} threads")
    for name, values in medians.items():
        value = statistics.median(values)
        print(f"{name:>18}: {value * 1e6:8.1f} us/step   ratio to torch SGD {value / baseline:5.2f}")


if __name__ == "__main__":
    main()
