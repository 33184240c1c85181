"""Training-time overhead of data parameters: one MNIST epoch with and without them.

For each model (784-256-10 MLP, the blog's SmallConv) it times a training epoch of plain
cross-entropy, then of instance-level and of joint (class + instance) data parameters: logits
divided by sigma, minibatch weight decay in its objective, a SparseSGD step and a clamp after it.
Epochs are interleaved and repeated; it prints median CPU seconds and the ratio to the plain
epoch measured in the same process (target, issue 16: <= 1.10x). Run: python benchmarks/bench_data_parameters.py [--samples N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from curriclab.core.data import load_mnist, make_loader, stratified_subset
from curriclab.core.models import MLP, SmallConv
from curriclab.core.training import seed_everything, train_epoch
from curriclab.methods.data_parameters import DataParameters

MODELS = {"MLP 784-256-10": MLP, "SmallConv": SmallConv}
MODES = {"plain": None, "instance": (False, True), "joint": (True, True)}


def epoch_seconds(model_class, mode: str, train, batch_size: int) -> float:
    """CPU seconds of this process for one training epoch of a freshly initialised model under
    `mode` (CPU time, unlike wall time, is not inflated by waiting for a core on a busy machine)."""
    seed_everything(0)
    model = model_class()
    optimizers = [torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)]
    methods = []
    if MODES[mode] is not None:
        learn_class, learn_instance = MODES[mode]
        data_parameters = DataParameters(
            10, len(train), learn_class=learn_class, learn_instance=learn_instance,
            weight_decay_class=1e-4, weight_decay_instance=1e-4,
        )
        optimizers.append(data_parameters.make_optimizer(lr_class=0.1, lr_instance=1.0))
        methods = [data_parameters]
    loader = make_loader(train, batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    start = time.process_time()
    train_epoch(model, loader, optimizers, methods=methods, progress=False)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=10_000, help="training samples per epoch")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 by default: a 2-thread pool on a shared CPU stalls)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = stratified_subset(load_mnist(train=True), args.samples, seed=0)
    print(f"{args.samples} MNIST samples, batch {args.batch}, {args.threads} thread(s), "
          f"median of {args.repeats} interleaved epochs")
    for model_name, model_class in MODELS.items():
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(args.repeats):
            for mode in MODES:
                times[mode].append(epoch_seconds(model_class, mode, train, args.batch))
        plain = statistics.median(times["plain"])
        for mode, values in times.items():
            value = statistics.median(values)
            print(f"{model_name:>15} {mode:>8}: {value:6.2f} s/epoch   ratio to plain {value / plain:5.2f}")


if __name__ == "__main__":
    main()
