"""Time and peak memory of a hypergradient through T unrolled SGD steps, relative to T plain steps.

Student: a 784-100-10 MLP on random MNIST-shaped minibatches of 64, dynamic loss with a learnable
Phi; dev objective: expected error on 500 samples. Compared for T = 5, 10, 20:
  plain     T ordinary SGD steps (module + torch.optim.SGD): the baseline
  reverse   curriclab.methods.hypergradient.hypergradient (stores T weight snapshots,
            recomputes each step)
  autograd  curriclab.methods.hypergradient.unrolled_hypergradient (keeps every step's graph)
Times are medians of interleaved repeats in this process (torch.utils.benchmark). Peak memory is
the highest heap use (glibc mallinfo2, which counts torch's CPU tensors) seen after any torch
operation of one run, minus the heap use before it: a TorchDispatchMode samples it after every op.
Never pass/fail.

    python benchmarks/bench_hypergradient.py [--repeats 5] [--threads 1] [--batch 64]
"""

from __future__ import annotations

import argparse
import ctypes
import statistics

import torch
from _report import interleaved, medians, report
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode

from curriclab.core.data import IndexedDataset
from curriclab.core.models import MLP
from curriclab.core.training import seed_everything
from curriclab.methods.dynamic_loss import dynamic_loss, expected_error
from curriclab.methods.hypergradient import hypergradient, unrolled_hypergradient
from curriclab.methods.l2t import TeachingConfig, teach
from curriclab.methods.teacher import LossTeacher

STEPS = (5, 10, 20)
METHODS = ("plain", "reverse", "autograd")


def make_run(method: str, steps: int, batch: int = 64):
    """A zero-argument function doing one `method` run over `steps` minibatches."""
    seed_everything(0)
    model = MLP(784, (100,), 10)
    xs, ys = torch.randn(steps, batch, 1, 28, 28), torch.randint(0, 10, (steps, batch))
    dev_x, dev_y = torch.randn(500, 1, 28, 28), torch.randint(0, 10, (500,))
    phi = torch.eye(10, requires_grad=True)
    params = {name: p.detach().clone() for name, p in model.named_parameters()}

    def inner(weights, t):
        return dynamic_loss(functional_call(model, weights, (xs[t],)), ys[t], phi)

    def outer(weights):
        return expected_error(functional_call(model, weights, (dev_x,)), dev_y)

    if method == "plain":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

        def run():
            for t in range(steps):
                optimizer.zero_grad()
                dynamic_loss(model(xs[t]), ys[t], phi.detach()).backward()
                optimizer.step()
        return run
    method_fn = hypergradient if method == "reverse" else unrolled_hypergradient
    return lambda: method_fn(params, inner, outer, [phi], steps, 0.1)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


_LIBC = ctypes.CDLL("libc.so.6")
_LIBC.mallinfo2.restype = _MallInfo2


def heap_in_use() -> int:
    """Bytes currently allocated by malloc (small-block arena plus mmapped blocks)."""
    info = _LIBC.mallinfo2()
    return info.uordblks + info.hblkhd


class PeakHeap(TorchDispatchMode):
    """Records the highest heap use observed after any torch operation run inside the mode."""

    def __enter__(self):
        self.start = self.peak = heap_in_use()
        return super().__enter__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, heap_in_use())
        return out


def peak_rise_mib(run) -> float:
    """Peak heap rise (MiB) during one call of `run`, after a warm-up call."""
    run()
    with PeakHeap() as mode:
        run()
    return (mode.peak - mode.start) / 2**20


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against xs."""
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    return covariance / sum((x - mean_x) ** 2 for x in xs)


def teacher_loop_seconds(steps: int, batch: int, repeats: int, threads: int) -> dict[str, float]:
    """Median CPU seconds of `curriclab.methods.l2t.teach` with plain cross-entropy steps and with a
    teacher that learns after every episode (hypergradient through it), over 2 episodes of
    `steps` student steps (784-100-10 student, random MNIST-shaped data); runs interleaved."""
    generator = torch.Generator().manual_seed(0)
    train = IndexedDataset(torch.randn(4 * batch, 1, 28, 28, generator=generator),
                           torch.randint(0, 10, (4 * batch,), generator=generator))
    dev = IndexedDataset(torch.randn(500, 1, 28, 28, generator=generator),
                         torch.randint(0, 10, (500,), generator=generator))
    config = TeachingConfig(steps=2 * steps, warmup_steps=0, batch_size=batch, episode=steps)

    def prepare(learn: bool):
        seed_everything(0)
        student, teacher = MLP(784, (100,), 10), LossTeacher(num_classes=10)
        meta = torch.optim.Adam(teacher.parameters(), lr=1e-3) if learn else None
        return student, teacher if learn else None, meta

    def run(state) -> None:
        student, teacher, meta = state
        teach(student, train, dev, config, teacher, meta)

    runs = {f"plain steps, T = {steps}": (lambda: prepare(False), run),
            f"learning teacher, T = {steps}": (lambda: prepare(True), run)}
    return medians(interleaved(runs, repeats, threads=threads, clock="cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    for t in STEPS:
        runs = {m: make_run(m, t, args.batch) for m in METHODS}
        seconds = medians(interleaved(runs, args.repeats, threads=args.threads), scale=1 / t)
        report(f"hypergradient through T = {t} steps, per step, batch {args.batch}", seconds,
               "plain", threads=args.threads, clock="wall", repeats=args.repeats)
    memory = {(m, t): peak_rise_mib(make_run(m, t, args.batch)) for t in STEPS for m in METHODS}
    print("\npeak heap rise (MiB), plain / reverse / autograd")
    for t in STEPS:
        print(f"T = {t:>2}: {memory[('plain', t)]:.2f} / {memory[('reverse', t)]:.2f} / "
              f"{memory[('autograd', t)]:.2f}")
    for m in METHODS:
        per_step = slope(list(STEPS), [memory[(m, t)] for t in STEPS])
        print(f"peak memory growth per extra step, {m}: {per_step:.2f} MiB")
    params = sum(p.numel() for p in MLP(784, (100,), 10).parameters())
    print(f"(one weight snapshot = {params} floats = {params * 4 / 2**20:.2f} MiB)")
    for t in STEPS:
        seconds = teacher_loop_seconds(t, args.batch, 3 * args.repeats, args.threads)
        report(f"the teacher's loop (l2t.teach, 2 episodes of T = {t} steps)", seconds,
               f"plain steps, T = {t}", threads=args.threads, clock="cpu", repeats=3 * args.repeats)


if __name__ == "__main__":
    main()
