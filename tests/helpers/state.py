"""Comparing nested states (state dicts, snapshots of a run) bitwise, shared by the resume and
bad-state tests."""

from __future__ import annotations

import io

import torch
from torch import Tensor


def flatten(value: object, prefix: str = "") -> dict[str, object]:
    """A nested state as {dotted key: leaf}, for an entry-by-entry comparison.

    Args:
        value: dicts, lists and tuples nest; anything else is a leaf.
        prefix: the dotted key of `value` itself ("" at the top).

    Returns:
        Every leaf under its dotted key (list and tuple positions as numbers): {"a.0.b": leaf}.
    """
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return {prefix: value}
    flat: dict[str, object] = {}
    for key, item in items:
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def weights_only_round_trip(state: dict) -> dict:
    """`state` after `torch.save` and `torch.load(..., weights_only=True)`: a deep copy that also
    proves the state holds only what a weights-only load accepts.

    Args:
        state: a (nested) state dict.

    Returns:
        The loaded copy.

    Raises:
        pickle.UnpicklingError: the state holds an object a weights-only load refuses.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def differences(first: dict, second: dict) -> list[str]:
    """The dotted keys at which two nested states differ.

    Tensors are equal when dtype, shape and every entry are (`torch.equal`, NaN equal to NaN);
    other leaves by `==`, NaN equal to NaN.

    Args:
        first, second: nested states (see `flatten`).

    Returns:
        The sorted keys only one side has, if the key sets differ; else the keys whose leaves
        differ, in `first`'s order. [] when the states are bitwise equal.
    """
    left, right = flatten(first), flatten(second)
    if set(left) != set(right):
        return sorted(set(left) ^ set(right))
    different = []
    for key, value in left.items():
        other = right[key]
        if isinstance(value, Tensor):
            same = isinstance(other, Tensor) and value.dtype == other.dtype and torch.equal(
                value.nan_to_num(-7.0) if value.is_floating_point() else value,
                other.nan_to_num(-7.0) if other.is_floating_point() else other)
        else:
            same = value == other or (value != value and other != other)  # NaN == NaN
        if not same:
            different.append(key)
    return different
