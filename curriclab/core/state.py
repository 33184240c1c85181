"""Checks for `load_state_dict`: one place that says what a valid saved state looks like.

Every stateful class in curriclab validates a state completely *before* it changes anything, so
a refused state leaves the object exactly as it was. The checks name the key they reject (nested
keys with dots, e.g. `tracker.latest`) in a `ValueError` (a `TypeError` only where the whole
state is not a dict), so a damaged or mismatched checkpoint says what is wrong with it:

    check_keys(state, {"latest", "epoch"}, "LossTracker")
    latest = check_tensor(state, "latest", "LossTracker", shape=(n,), dtype=torch.float32)
    epoch = check_int(state, "epoch", "LossTracker", low=0)

Values are the plain types `torch.load(..., weights_only=True)` restores: tensors, ints, floats,
strings, lists, tuples, dicts and None.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, TypedDict

import torch
from torch import Tensor

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "check_choice",
    "check_equal",
    "check_float",
    "check_generator_state",
    "check_int",
    "check_keys",
    "check_tensor",
    "check_tensor_value",
    "finite_or_raise",
    "nested",
]


def _where(owner: str, key: str) -> str:
    return f"{owner}.load_state_dict: state key '{key}'"


def check_keys(state: object, expected: Iterable[str], owner: str, prefix: str = "") -> None:
    """Raise unless `state` is a dict whose keys are exactly `expected`.

    Args:
        state: the object handed to `load_state_dict`.
        expected: the keys a valid state has.
        owner: the class name the message starts with.
        prefix: the dotted path of `state` inside an outer state ("" at the top).

    Raises:
        TypeError: `state` is not a dict (a mapping).
        ValueError: naming every missing and every unexpected key.
    """
    where = f"state '{prefix}'" if prefix else "state"
    if not isinstance(state, Mapping):
        raise TypeError(f"{owner}.load_state_dict: {where} must be a dict, got "
                        f"{type(state).__name__}")
    expected = set(expected)
    missing = sorted(expected - set(state))
    extra = sorted(set(state) - expected, key=repr)
    if missing or extra:
        parts = []
        if missing:
            parts.append("missing key(s) " + ", ".join(f"'{_join(prefix, k)}'" for k in missing))
        if extra:
            parts.append("unexpected key(s) " + ", ".join(f"'{_join(prefix, k)}'" for k in extra))
        raise ValueError(f"{owner}.load_state_dict: {where} has " + " and ".join(parts))


def _join(prefix: str, key: object) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def nested(prefix: str, key: str) -> str:
    """The dotted name of `key` inside the sub-state at `prefix` (for messages).

    Args:
        prefix: the sub-state's dotted key ("" at the top).
        key: a key inside it.

    Returns:
        "prefix.key", or `key` when `prefix` is "".
    """
    return _join(prefix, key)


class _TensorRequirements(TypedDict, total=False):
    """The requirements `check_tensor` passes on to `check_tensor_value` (all optional)."""

    shape: tuple[int | None, ...] | None
    dtype: torch.dtype | tuple[torch.dtype, ...] | None
    low: float | None
    high: float | None
    allow_nan: bool
    allow_inf: bool


def check_tensor(state: Mapping, key: str, owner: str, *, name: str | None = None,
                 **requirements: Unpack[_TensorRequirements]) -> Tensor:
    """`state[key]` if it is a tensor of the given shape, dtype and range, else a ValueError.

    Args:
        state: the state (or sub-state) the value lives in.
        key: the value's key in `state`.
        owner: the class name for the message.
        name: the dotted key for the message (default `key`).
        **requirements: `shape`, `dtype`, `low`, `high`, `allow_nan`, `allow_inf`, as in
            `check_tensor_value`.

    Returns:
        The tensor itself (not copied).

    Raises:
        ValueError: naming the key, when the value is no tensor or breaks a requirement.
        KeyError: `key` is not in `state` (check the keys first, with `check_keys`).
    """
    return check_tensor_value(state[key], name or key, owner, **requirements)


def check_tensor_value(
    value: object,
    name: str,
    owner: str,
    *,
    shape: tuple[int | None, ...] | None = None,
    dtype: torch.dtype | tuple[torch.dtype, ...] | None = None,
    low: float | None = None,
    high: float | None = None,
    allow_nan: bool = False,
    allow_inf: bool = False,
) -> Tensor:
    """`value` if it is a dense tensor of the given shape, dtype and range, else a ValueError; for
    a value that sits in a list (e.g. entry 3 of a saved window). `check_tensor` reads it from a
    state by key.

    Args:
        value: the saved value.
        name: its dotted key for the message (e.g. "window.3").
        owner: the class name for the message.
        shape: the required shape (None in a position: any size there; None: any shape).
        dtype: the required dtype (or one of several).
        low, high: inclusive bounds every non-NaN entry must lie within (not checked for bool).
        allow_nan, allow_inf: whether NaN (e.g. "never seen") or infinite entries may occur
            (floating tensors only; both default to False).

    Returns:
        The tensor itself (not copied).

    Raises:
        ValueError: naming the key, when the value is no tensor, is sparse, or breaks a
            requirement.
    """
    where = _where(owner, name)
    if not isinstance(value, Tensor):
        raise ValueError(f"{where} must be a tensor, got {type(value).__name__}")
    if value.is_sparse or value.layout != torch.strided:
        raise ValueError(f"{where} must be a dense tensor, got layout {value.layout}")
    if dtype is not None:
        allowed = dtype if isinstance(dtype, tuple) else (dtype,)
        if value.dtype not in allowed:
            names = " or ".join(str(d) for d in allowed)
            raise ValueError(f"{where} must have dtype {names}, got {value.dtype}")
    if shape is not None and (
        value.ndim != len(shape)
        or any(want is not None and got != want for got, want in zip(value.shape, shape))
    ):
        wanted = tuple("any" if s is None else s for s in shape)
        raise ValueError(f"{where} must have shape {wanted}, got {tuple(value.shape)}")
    if value.is_floating_point() and value.numel():
        if not allow_nan and bool(value.isnan().any()):
            raise ValueError(f"{where} must not contain NaN")
        if not allow_inf and bool(value.isinf().any()):
            raise ValueError(f"{where} must not contain inf")
    if value.numel() and (low is not None or high is not None) and value.dtype != torch.bool:
        present = value[~value.isnan()] if value.is_floating_point() else value
        if present.numel():
            smallest, largest = float(present.min()), float(present.max())
            if (low is not None and smallest < low) or (high is not None and largest > high):
                raise ValueError(f"{where} must lie in [{low}, {high}], got values "
                                 f"{smallest}..{largest}")
    return value


def check_int(
    state: Mapping, key: str, owner: str, *, low: int | None = None, high: int | None = None,
    name: str | None = None,
) -> int:
    """`state[key]` if it is an int (not a bool) within [low, high], else a ValueError naming it.

    Args:
        state: the state (or sub-state) the value lives in.
        key: the value's key in `state`.
        owner: the class name for the message.
        low, high: inclusive bounds (None: unbounded on that side).
        name: the dotted key for the message (default `key`).

    Returns:
        The int.

    Raises:
        ValueError: naming the key, when the value is no int (or a bool) or out of range.
    """
    where = _where(owner, name or key)
    value = state[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where} must be an int, got {type(value).__name__}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{where} must lie in [{low}, {high}], got {value}")
    return value


def check_float(
    state: Mapping, key: str, owner: str, *, low: float | None = None, high: float | None = None,
    low_open: bool = False, high_open: bool = False, allow_nan: bool = False,
    allow_inf: bool = False, name: str | None = None,
) -> float:
    """`state[key]` as a float if it is a real number (int or float, not bool) in range.

    Args:
        state: the state (or sub-state) the value lives in.
        key: the value's key in `state`.
        owner: the class name for the message.
        low, high: bounds (None: unbounded on that side), inclusive unless `low_open` /
            `high_open`.
        low_open, high_open: make the bound on that side exclusive.
        allow_nan: accept NaN (which then skips the range check).
        allow_inf: accept +-inf (still range-checked).
        name: the dotted key for the message (default `key`).

    Returns:
        The value as a float.

    Raises:
        ValueError: naming the key, when the value is no number, a refused NaN or inf, or out of
            range.
    """
    where = _where(owner, name or key)
    value = state[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value):
        if allow_nan:
            return value
        raise ValueError(f"{where} must not be NaN")
    if math.isinf(value) and not allow_inf:
        raise ValueError(f"{where} must be finite, got {value}")
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{where} must lie in {left}{low}, {high}{right}, got {value}")
    return value


def check_equal(state: Mapping, key: str, owner: str, expected: object,
                name: str | None = None) -> None:
    """Raise a ValueError naming the key unless `state[key] == expected` (a constructor setting
    that a state may not change, e.g. the number of samples).

    Args:
        state: the state (or sub-state) the value lives in.
        key: the value's key in `state`.
        owner: the class name for the message.
        expected: the value this object was built with; the saved one must also have its type.
        name: the dotted key for the message (default `key`).

    Raises:
        ValueError: naming the key, the saved value and `expected`.
    """
    value = state[key]
    if type(value) is not type(expected) or value != expected:
        raise ValueError(f"{_where(owner, name or key)} is {value!r}, but this object was built "
                         f"with {expected!r}")


def check_choice(state: Mapping, key: str, owner: str, choices: Iterable[object],
                 name: str | None = None) -> object:
    """`state[key]` if it is one of `choices`, else a ValueError naming the key.

    Args:
        state: the state (or sub-state) the value lives in.
        key: the value's key in `state`.
        owner: the class name for the message.
        choices: the allowed values (compared by `in`).
        name: the dotted key for the message (default `key`).

    Returns:
        The value.

    Raises:
        ValueError: naming the key and the allowed values.
    """
    value = state[key]
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{_where(owner, name or key)} must be one of {choices}, got {value!r}")
    return value


def check_generator_state(state: Mapping, key: str, owner: str, name: str | None = None) -> Tensor:
    """`state[key]` if it is a CPU `torch.Generator` state (uint8, the generator's size).

    Args:
        state: the state (or sub-state) the value lives in.
        key: the value's key in `state`.
        owner: the class name for the message.
        name: the dotted key for the message (default `key`).

    Returns:
        The state tensor itself, for `generator.set_state`.

    Raises:
        ValueError: naming the key, when the value is no uint8 tensor of that shape.
    """
    expected = torch.Generator().get_state().shape
    return check_tensor(state, key, owner, shape=tuple(expected), dtype=torch.uint8, name=name)


def finite_or_raise(name: str, value: Tensor, owner: str) -> None:
    """Raise a ValueError naming the argument `name` if the tensor `value` has a NaN or inf
    entry (for inputs to methods that keep per-sample state).

    Args:
        name: the argument's name, for the message.
        value: the tensor to check (any shape; an empty one passes).
        owner: the method's name, for the message (e.g. "LossTracker.update").

    Raises:
        ValueError: some entry is NaN or infinite.
    """
    if value.numel() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{owner}: {name} must be finite (got NaN or inf); the state is "
                         "unchanged: did training diverge?")
