"""Training-time overhead of data parameters: one MNIST epoch with and without them.

For each model (784-256-10 MLP, the SmallConv of Zakka's blog post) it times a training epoch of
plain cross-entropy, then of instance-level and of joint (class + instance) data parameters: logits
divided by sigma, minibatch weight decay in its objective, a SparseSGD step that clamps what it
updates. Epochs are interleaved and repeated (torch.utils.benchmark, CPU clock); it prints median
CPU ms and the ratio to the plain epoch measured in the same process (target, issue 16: <= 1.10x).
Run: python benchmarks/bench_data_parameters.py [--samples N]
"""

from __future__ import annotations

import argparse

import torch
from _report import interleaved, medians, report

from curriclab.core.data import load_mnist, make_loader, stratified_subset
from curriclab.core.models import MLP, SmallConv
from curriclab.core.training import seed_everything, train_epoch
from curriclab.methods.data_parameters import DataParameters

MODELS = {"MLP 784-256-10": MLP, "SmallConv": SmallConv}
MODES = {"plain": None, "instance": (False, True), "joint": (True, True)}


def epoch_run(model_class, mode: str, train, batch_size: int):
    """A timed run (via _report): untimed, a freshly initialised model, optimizers and loader under
    `mode`; timed, one training epoch (CPU time of this process, which unlike wall time is not
    inflated by waiting for a core on a busy machine)."""
    return (lambda: _prepare(model_class, mode, train, batch_size),
            lambda state: train_epoch(*state[:3], methods=state[3], progress=False))


def _prepare(model_class, mode: str, train, batch_size: int):
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
    generator = torch.Generator().manual_seed(0)
    loader = make_loader(train, batch_size, shuffle=True, generator=generator)
    return model, loader, optimizers, methods


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
    for model_name, model_class in MODELS.items():
        runs = {mode: epoch_run(model_class, mode, train, args.batch) for mode in MODES}
        seconds = medians(interleaved(runs, args.repeats, threads=args.threads, clock="cpu"))
        report(f"{model_name}, one epoch of {args.samples} MNIST samples, batch {args.batch}",
               seconds, "plain", threads=args.threads, clock="cpu", repeats=args.repeats)


if __name__ == "__main__":
    main()
