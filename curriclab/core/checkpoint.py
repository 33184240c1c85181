"""Checkpoints of a training run at an epoch boundary, for `fit(..., checkpoint=path)`.

A checkpoint holds everything that decides what a run does next: the model's and every
optimizer's state, every plugged-in method's `state_dict()`, the global random states (torch,
NumPy, Python's `random`), the state of the loader's own generators, the number of epochs done
and the history so far. Restoring it and training on gives bitwise the run that never stopped.

The file holds plain values only (tensors, numbers, strings, lists, dicts), so it loads with
`torch.load(..., weights_only=True)`; it is written to a temporary file and then renamed, so an
interrupted save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import io
import os
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from curriclab.core.protocol import SampleMethod
from curriclab.core.state import (
    check_equal,
    check_int,
    check_keys,
    check_tensor,
    check_tensor_value,
)

__all__ = [
    "agree_on_epoch",
    "FORMAT",
    "generators_of",
    "load_checkpoint",
    "restore_training_state",
    "rng_states",
    "save_checkpoint",
    "set_rng_states",
    "training_state",
]

FORMAT = 1
"""The layout version of a checkpoint; a file of another version is refused."""

_KEYS = ("format", "epoch", "model", "optimizers", "methods", "method_types", "rng",
         "generators", "history")
_OWNER = "checkpoint"


def rng_states() -> dict:
    """The global random states of torch, NumPy and Python's `random`, as plain values.

    Returns:
        {"torch": uint8 tensor, "numpy": {"kind", "keys" (int64 [624]), "position", "has_gauss",
        "cached_gaussian"}, "python": {"version", "internal" (625 ints), "gauss"}}: only what
        `torch.load(..., weights_only=True)` restores; `set_rng_states` puts it back.
    """
    kind, keys, position, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                  "position": int(position), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }


def _check_rng_states(state: dict) -> None:
    check_keys(state, ("torch", "numpy", "python"), _OWNER, "rng")
    check_tensor(state, "torch", _OWNER, shape=tuple(torch.get_rng_state().shape),
                 dtype=torch.uint8, name="rng.torch")
    numpy_state = state["numpy"]
    check_keys(numpy_state, ("kind", "keys", "position", "has_gauss", "cached_gaussian"),
               _OWNER, "rng.numpy")
    check_equal(numpy_state, "kind", _OWNER, "MT19937", name="rng.numpy.kind")
    check_tensor(numpy_state, "keys", _OWNER, shape=(624,), dtype=torch.int64, low=0,
                 high=2**32 - 1, name="rng.numpy.keys")
    check_int(numpy_state, "position", _OWNER, low=0, high=624, name="rng.numpy.position")
    check_int(numpy_state, "has_gauss", _OWNER, low=0, high=1, name="rng.numpy.has_gauss")
    python_state = state["python"]
    check_keys(python_state, ("version", "internal", "gauss"), _OWNER, "rng.python")
    internal = python_state["internal"]
    if not isinstance(internal, list) or len(internal) != 625 or not all(
            isinstance(word, int) for word in internal):
        raise ValueError(f"{_OWNER}: state key 'rng.python.internal' must be a list of 625 ints")


def set_rng_states(state: dict) -> None:
    """Restore what `rng_states()` returned, after checking all of it (a refused state changes
    nothing).

    Args:
        state: a `rng_states()` dict (e.g. read back from a checkpoint).

    Raises:
        TypeError: `state` or one of its parts is not a dict.
        ValueError: naming the key ("rng.numpy.keys", ...) that is missing, extra or malformed.
    """
    _check_rng_states(state)
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"],
                         numpy_state["cached_gaussian"]))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"]),
                     python_state["gauss"]))


def generators_of(loader: object) -> list[torch.Generator]:
    """The torch generators a loader draws from besides the global one: its own `generator`
    (a shuffling DataLoader's) and its sampler's, each once.

    Args:
        loader: a DataLoader, or anything with optional `generator` / `sampler.generator`
            attributes.

    Returns:
        The distinct `torch.Generator`s found (the loader's first), possibly [].
    """
    found: list[torch.Generator] = []
    for owner in (loader, getattr(loader, "sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    return found


def training_state(
    *, epoch: int, model: nn.Module, optimizers: Sequence[torch.optim.Optimizer],
    methods: Sequence[SampleMethod], generators: Sequence[torch.Generator], history: list,
) -> dict:
    """Everything `restore_training_state` needs to continue after `epoch` finished epochs.

    Args:
        epoch: how many epochs are done (the next one to run).
        model, optimizers, methods: the run's objects.
        generators: the loader's own generators (`generators_of`).
        history: the epochs so far, as plain values (lists, dicts, numbers).

    Returns:
        A dict of plain values (format, epoch, each object's `state_dict()`, the method types, the
        global random states, the generators' states, the history), for `save_checkpoint`. The
        tensors are the live ones, not copies.
    """
    return {
        "format": FORMAT,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizers": [optimizer.state_dict() for optimizer in optimizers],
        "methods": [method.state_dict() for method in methods],
        "method_types": [type(method).__name__ for method in methods],
        "rng": rng_states(),
        "generators": [generator.get_state() for generator in generators],
        "history": history,
    }


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write `state` to `path` atomically: a temporary file in the same folder, then a rename, so a
    crash leaves the old checkpoint (or none), never half a file.

    Args:
        path: the checkpoint file; its folder must exist.
        state: what `training_state` returned.

    Raises:
        FileNotFoundError: the folder of `path` does not exist.
        OSError: the file cannot be written (the temporary file is removed).
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        torch.save(state, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint at `path`, read with `torch.load(..., weights_only=True)`.

    Args:
        path: a file `save_checkpoint` wrote.

    Returns:
        The saved dict, unchecked (`restore_training_state` checks it).

    Raises:
        FileNotFoundError: there is no file at `path`.
        pickle.UnpicklingError: the file holds objects a weights-only load refuses.
    """
    return torch.load(path, weights_only=True)


def restore_training_state(
    state: dict, *, epochs: int, model: nn.Module, optimizers: Sequence[torch.optim.Optimizer],
    methods: Sequence[SampleMethod], generators: Sequence[torch.Generator],
) -> tuple[int, list]:
    """Put a `training_state` back into the run's objects.

    The layout, the epoch and the random states are checked before anything changes. If then
    the model, an optimizer or a method refuses its part, every object restored before it is
    put back as it was, so a refused checkpoint changes nothing.

    Args:
        state: what `load_checkpoint` returned.
        epochs: the run's total number of epochs (the checkpoint must not be further).
        model, optimizers, methods, generators: the run's objects, in the order they were saved.

    Returns:
        (epochs done, in 0 .. epochs; the saved history). The global random states and the
        generators are restored too.

    Raises:
        TypeError: `state` is not a dict.
        ValueError: naming the key that does not fit this run (another format, more epochs done
            than `epochs`, another number of optimizers, methods of other types, ...) or the
            message of the object that refused its part.
    """
    check_keys(state, _KEYS, _OWNER)
    check_equal(state, "format", _OWNER, FORMAT)
    done = check_int(state, "epoch", _OWNER, low=0, high=epochs)
    types = [type(method).__name__ for method in methods]
    if state["method_types"] != types:
        raise ValueError(f"{_OWNER}: state key 'method_types' is {state['method_types']!r}, but "
                         f"this run plugs in {types!r}")
    for key, wanted in (("optimizers", len(optimizers)), ("methods", len(methods)),
                        ("generators", len(generators))):
        if not isinstance(state[key], list) or len(state[key]) != wanted:
            raise ValueError(f"{_OWNER}: state key '{key}' must list {wanted} entries, one per "
                             "object of this run")
    for position, saved in enumerate(state["generators"]):
        check_tensor_value(saved, f"generators.{position}", _OWNER, dtype=torch.uint8,
                           shape=tuple(generators[position].get_state().shape))
    _check_rng_states(state["rng"])
    if not isinstance(state["history"], list):
        raise ValueError(f"{_OWNER}: state key 'history' must be a list")
    parts = [("model", model, state["model"])]
    parts += [(f"optimizers.{k}", o, s) for k, (o, s) in
              enumerate(zip(optimizers, state["optimizers"]))]
    parts += [(f"methods.{k}", m, s) for k, (m, s) in enumerate(zip(methods, state["methods"]))]
    before = [torch.load(_in_memory(thing.state_dict()), weights_only=True)
              for _, thing, _ in parts]
    for position, (key, thing, entry) in enumerate(parts):
        try:
            thing.load_state_dict(entry)
        except (TypeError, ValueError, RuntimeError, KeyError) as error:
            for (_, loaded, _), saved in zip(parts[:position], before):
                loaded.load_state_dict(saved)
            raise ValueError(f"{_OWNER}: state key '{key}' ({type(thing).__name__}) was "
                             f"refused: {error}") from None
    set_rng_states(state["rng"])
    for generator, saved in zip(generators, state["generators"]):
        generator.set_state(saved)
    return done, state["history"]


def _in_memory(state: dict) -> io.BytesIO:
    """`state` serialised to a buffer: a deep copy that shares no storage with live tensors."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def agree_on_epoch(epoch: int) -> None:
    """Collective under torch.distributed: raise the same ValueError on every rank unless every
    rank resumes at the same epoch (a rank that found no checkpoint would otherwise train other
    epochs than its peers and hang the group). A no-op without a process group.

    Args:
        epoch: the epoch this rank resumes at (0 without a checkpoint).

    Raises:
        ValueError: on every rank, listing each rank's epoch, when they differ.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    mine = torch.tensor([epoch], dtype=torch.long)
    everyone = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(everyone, mine)
    epochs = [int(value) for value in everyone]
    if len(set(epochs)) > 1:
        found = ", ".join(f"rank {rank}: {value}" for rank, value in enumerate(epochs))
        raise ValueError(f"checkpoint: the ranks resume at different epochs ({found}); give every "
                         "rank its own checkpoint path and keep all of them")
