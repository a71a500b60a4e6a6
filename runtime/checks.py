"""Argument checks of the embedding API: a wrong type or value fails at the call, naming the argument
(TypeError for the wrong kind of value, ValueError for a value out of range), never deep inside."""
from __future__ import annotations

import math
import numbers


def real(name: str, value, bounds: tuple[float, float] | None = None) -> float:
    """A finite real number (not a bool, string or complex), optionally within `bounds`, as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or (bounds is not None and not bounds[0] <= value <= bounds[1]):
        where = f"in [{bounds[0]}, {bounds[1]}]" if bounds is not None else "finite"
        raise ValueError(f"{name} must be a number {where}, got {value}")
    return value


def integer(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an integer in [{minimum}, {'∞' if maximum is None else maximum}], got {value}")
    return value


def text(name: str, value) -> str:
    """A non-empty string."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a text (str), got {type(value).__name__} {value!r}")
    if not value.strip():
        raise ValueError(f"{name} is empty; describe the edit, e.g. 'a face with purple hair'")
    return value


def choice(name: str, value, options) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, sorted(options)))}, got {value!r}")
    return value


def items(name: str, value, expected: str, refused: tuple = ()) -> list:
    """An iterable (not a string, bytes, dict or one of `refused`) as a list; else a TypeError saying that
    `name` must be `expected`."""
    if isinstance(value, (str, bytes, dict, *refused)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}")
    return list(value)


def real_array(name: str, value, shape_hint: str):
    """`value` as a float32 numpy array; TypeError for None, strings, objects, booleans or complex numbers."""
    import numpy as np

    if value is None or isinstance(value, (str, bytes, dict)):
        raise TypeError(f"{name} must be an array {shape_hint}, got {type(value).__name__}")
    try:
        array = np.asarray(value)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"{name} must be an array {shape_hint} ({err})") from None
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got {array.dtype} values")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, which the callers refuse by name
        return array.astype(np.float32, copy=False)


class ToolWarning(UserWarning):
    """Something the user should know that is not an error (the CLI prints it as one `warning:` line)."""
