"""Cost of SPLLoss against plain cross-entropy for one SmallConv step on MNIST-sized batches.

Prints (never pass/fail) the median time of forward + loss + backward over interleaved repeats,
as a ratio to plain mean cross-entropy measured in the same process (target: <= 1.05), for each
regularizer and reduction; then the median time of SPLLoss's own work alone (weighing a batch's
losses and recording them by index; rows ending in "work alone", their ratio is the share of
the plain step): on a shared, loaded CPU the whole-step ratios are noisy, and this share is the
stabler estimate of the overhead. Inputs are random [B, 1, 28, 28] tensors: the cost does not
depend on the pixel values, and SPLLoss keeps its per-sample state for a 60 000-sample data set.

    python benchmarks/bench_spl.py --batch-size 128 --repeats 60 --threads 1
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from _report import interleaved, medians, report

from curriclab.core.models import SmallConv
from curriclab.core.training import seed_everything
from curriclab.methods.spl import REGULARIZERS, SPLLoss

DATASET_SIZE = 60_000


def step(model, x, y, index, loss):
    """A timed run (torch.utils.benchmark, via _report): zero the gradients untimed, then time one
    forward, loss and backward pass."""
    return (lambda: model.zero_grad(set_to_none=True),
            lambda _: loss(model(x), y, index).backward())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seed_everything(0)
    model = SmallConv()
    x = torch.randn(args.batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch_size,))
    index = torch.randperm(DATASET_SIZE)[: args.batch_size]
    losses = {"plain cross-entropy": lambda output, target, _: F.cross_entropy(output, target)}
    spls: dict[str, SPLLoss] = {}
    for regularizer in REGULARIZERS:
        for reduction in ("mean", "selected"):
            # lambda 2.3 ~ ln(10): about half of an untrained model's samples are selected
            spl = SPLLoss(
                DATASET_SIZE, threshold=2.3 if regularizer != "logarithmic" else 0.99,
                regularizer=regularizer, reduction=reduction,
            )
            spls[f"SPLLoss {regularizer}, {reduction}"] = spl
            losses[f"SPLLoss {regularizer}, {reduction}"] = (
                lambda output, target, index, spl=spl: spl.objective(
                    index, F.cross_entropy(output, target, reduction="none")
                )
            )
    runs = {name: step(model, x, y, index, loss) for name, loss in losses.items()}
    # interleaved and rotated: load changes hit every variant alike
    seconds = medians(interleaved(runs, args.repeats, threads=args.threads, rotate=True))
    output = model(x).detach().requires_grad_()
    per_sample = F.cross_entropy(output, y, reduction="none")
    alone = {f"{name}: work alone": lambda spl=spl: spl.objective(index, per_sample)
             for name, spl in spls.items()}
    seconds.update(medians(interleaved(alone, args.repeats, threads=args.threads,
                                       min_run_time=0.01)))
    report(f"SmallConv forward+loss+backward, batch {args.batch_size}", seconds,
           "plain cross-entropy", threads=args.threads, clock="wall", repeats=args.repeats)


if __name__ == "__main__":
    main()
