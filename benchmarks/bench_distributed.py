"""Cost of keeping per-sample state identical across ranks, as a share of a DDP training step.

Set-up: two processes (gloo on the CPU, one torch thread each, a FileStore rendezvous), SmallConv
in DistributedDataParallel, B MNIST-shaped random images per rank and step. Printed (rank 0):
  - one DDP step (forward, per-sample cross-entropy, backward with DDP's gradient all-reduce,
    SGD step) with an SGD-S sampler and a LossTracker fed this rank's own pairs;
  - the same step with them inside `Synchronized` (one exchange of the gathered pairs);
  - `gather_observations` alone;
  - data parameters (an N-entry instance table, B rows touched per rank): averaging the gradient
    by `synchronize_sparse_gradients` vs a dense all-reduce of the whole table.
Medians over steps, timed with torch.utils.benchmark (a barrier before every timed call, untimed)
and run alternately so machine noise hits every variant alike (the cost of synchronising is the
median of the paired step differences); ratios carry over, wall times on a shared machine do not.
Run: python benchmarks/bench_distributed.py [--batch B] [--steps S] [--threads 1]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
from datetime import timedelta

import torch
import torch.distributed as dist
from _report import interleaved, medians, report
from torch.nn.parallel import DistributedDataParallel

from curriclab.core.distributed import (
    Synchronized,
    gather_observations,
    synchronize_sparse_gradients,
)
from curriclab.core.models import SmallConv
from curriclab.core.protocol import combined_objective
from curriclab.core.tracking import LossTracker
from curriclab.core.training import cross_entropy_per_sample, seed_everything
from curriclab.methods.sampling import SGDSSampler

WORLD = 2


def _rank(rank: int, store: str, args: argparse.Namespace, results: dict) -> None:
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD,
                            timeout=timedelta(minutes=2))
    seed_everything(args.seed)
    model = SmallConv()
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    sampler = SGDSSampler(args.samples, transient_epochs=0, unbiased=True)
    tracker = LossTracker(args.samples)
    local = [sampler, tracker]
    synchronized = [Synchronized([sampler, tracker], num_samples=args.samples)]
    generator = torch.Generator().manual_seed(args.seed + rank)
    x = torch.randn(args.batch, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (args.batch,), generator=generator)
    index = torch.randint(0, args.samples, (args.batch,), generator=generator)

    def step(methods) -> None:
        losses = cross_entropy_per_sample(ddp(x), y)
        objective = combined_objective(methods, index, losses)
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()

    rows = torch.randperm(args.entries, generator=generator)[: args.batch]

    def exchange(kind: str):
        table = torch.zeros(args.entries, requires_grad=True)
        optimizer = torch.optim.SGD([table], lr=0.0)
        synchronize_sparse_gradients(optimizer, exchange=kind)

        def run() -> None:
            table.grad = torch.zeros(args.entries).index_put_((rows,), torch.randn(args.batch))
            optimizer.step()

        return run

    variants = {
        "DDP step, local sampler + tracker": lambda: step(local),
        "DDP step, Synchronized sampler + tracker": lambda: step(synchronized),
        "gather_observations alone": lambda: gather_observations(index, torch.rand(args.batch),
                                                                 num_samples=args.samples),
        "data parameters: touched rows": exchange("touched"),
        "data parameters: dense all-reduce": exchange("dense"),
    }
    barrier = dist.barrier
    runs = {name: (barrier, lambda _, run=run: run()) for name, run in variants.items()}
    measured = interleaved(runs, args.steps, threads=args.threads, rotate=True)
    if rank == 0:
        results.update(medians(measured))
        paired = [synced.median - alone.median for synced, alone in zip(
            measured["DDP step, Synchronized sampler + tracker"],
            measured["DDP step, local sampler + tracker"])]
        results["paired difference"] = statistics.median(paired)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=128, help="samples per rank and step")
    parser.add_argument("--samples", type=int, default=60_000, help="training set size")
    parser.add_argument("--entries", type=int, default=60_000, help="data-parameter table size")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as directory, context.Manager() as manager:
        results = manager.dict()
        processes = [context.Process(target=_rank, args=(rank, f"{directory}/store", args, results))
                     for rank in range(WORLD)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        if any(process.exitcode for process in processes):
            raise SystemExit(f"a rank failed: exit codes {[p.exitcode for p in processes]}")
        results = dict(results)
    extra = results.pop("paired difference")
    base = "DDP step, local sampler + tracker"
    report(f"{WORLD} ranks (gloo), SmallConv, batch {args.batch} per rank, rank 0", results, base,
           threads=args.threads, clock="wall", repeats=args.steps)
    report("synchronisation cost per step (median of paired differences; target <= 5 %)",
           {base: results[base], "Synchronized minus local": extra}, base, threads=args.threads,
           clock="wall", repeats=args.steps)
    touched = "data parameters: touched rows"
    report(f"data parameters, {args.entries} rows, {args.batch} touched per rank",
           {touched: results[touched],
            "data parameters: dense all-reduce": results["data parameters: dense all-reduce"]},
           touched, threads=args.threads, clock="wall", repeats=args.steps)


if __name__ == "__main__":
    main()
