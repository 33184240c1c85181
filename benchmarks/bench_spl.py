"""Cost of SPLLoss against plain cross-entropy for one SmallConv step on MNIST-sized batches.

Prints (never pass/fail) the median time of forward + loss + backward over interleaved repeats,
as a ratio to plain mean cross-entropy measured in the same process (target: <= 1.05), for each
regularizer and reduction; then the median time of SPLLoss's own work alone (weighing a batch's
losses and recording them by index), as a share of the plain step: on a shared, loaded CPU the
whole-step ratios are noisy, and this share is the stabler estimate of the overhead. Inputs are random [B, 1, 28, 28] tensors: the cost does not depend
on the pixel values, and SPLLoss keeps its per-sample state for a 60 000-sample data set.

    python benchmarks/bench_spl.py --batch-size 128 --repeats 60 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from curriclab.core.models import SmallConv
from curriclab.core.training import seed_everything
from curriclab.methods.spl import REGULARIZERS, SPLLoss

DATASET_SIZE = 60_000


def timed(action) -> float:
    """Seconds taken by `action()`."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def step_time(model, x, y, index, loss) -> float:
    """Seconds for one forward, loss and backward pass."""
    model.zero_grad(set_to_none=True)
    return timed(lambda: loss(model(x), y, index).backward())


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
    times: dict[str, list[float]] = {name: [] for name in losses}
    for name, loss in losses.items():  # warm-up
        step_time(model, x, y, index, loss)
    names = list(losses)
    for repeat in range(args.repeats):  # interleaved and rotated: load changes hit every variant alike
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(step_time(model, x, y, index, losses[name]))
    baseline = statistics.median(times["plain cross-entropy"])
    print(f"SmallConv forward+backward, batch {args.batch_size}, torch threads "
          f"{torch.get_num_threads()}, median of {args.repeats} repeats")
    print(f"{'loss':32s} {'ms/step':>8s} {'ratio':>6s}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:32s} {1000 * median:8.2f} {median / baseline:6.3f}")
    output = model(x).detach().requires_grad_()
    per_sample = F.cross_entropy(output, y, reduction="none")
    print(f"{'SPLLoss work alone':32s} {'ms':>8s} {'share of plain step':>20s}")
    for name, spl in spls.items():
        alone = statistics.median(
            timed(lambda spl=spl: spl.objective(index, per_sample)) for _ in range(args.repeats)
        )
        print(f"{name:32s} {1000 * alone:8.3f} {alone / baseline:20.4f}")


if __name__ == "__main__":
    main()
