"""Argument checks shared by every constructor: one wording, the parameter always named.

Each ``check_*`` returns the value in its canonical type (``int``, ``float``, a float array) or
raises: ``TypeError`` for a value of the wrong kind (a string for a number, a bool for an
integer), ``ValueError`` for a value of the right kind outside its range (NaN, inf, 0.5 for an
integer, a negative rate). Messages read ``<name> must be <what was expected>, got <value>``.

:func:`check_memory` guards allocations whose size follows from the arguments: the size is
computed in closed form *before* anything is allocated and compared with
:func:`memory_limit` (``$PREFZOO_MAX_GAME_GB`` gibibytes, default :data:`DEFAULT_MAX_GAME_GB`).
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
from typing import Any, Callable, Sequence

import numpy as np

DEFAULT_MAX_GAME_GB = 4.0  # the largest dense game (P and its temporaries) built without asking
MAX_GAME_GB_ENV = "PREFZOO_MAX_GAME_GB"
SIMPLEX_ATOL = 1e-6  # rows of a distribution must sum to 1 within this


def closest_hint(name: str, valid) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name, or an empty string."""
    match = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def check_choice(name: str, value: Any, choices) -> Any:
    """``value`` if it is one of ``choices``, else ``ValueError`` ``unknown <name> 'value' (did you
    mean …?); expected one of …``."""
    choices = tuple(choices)
    try:
        ok = value in choices
    except TypeError:  # an unhashable value against a dict's keys
        ok = False
    if not ok:
        raise ValueError(f"unknown {name} {value!r}{closest_hint(value, choices)}; expected one of {choices}")
    return value


def _bounds(low, high, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is True or False (numpy's too), else a TypeError naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int`` in [low, high] (an integral float such as ``4.0`` is accepted)."""
    expected = f"an integer{_bounds(low, high, False, False)}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    if not (isinstance(value, numbers.Integral) or (math.isfinite(value) and float(value).is_integer())):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value


def check_real(name: str, value: Any, low: float | None = None, high: float | None = None, *,
               low_open: bool = False, high_open: bool = False, finite: bool = True) -> float:
    """``value`` as a ``float`` in the interval given by ``low``/``high`` (closed unless
    ``low_open``/``high_open``); NaN is always refused, ±inf unless ``finite=False``."""
    expected = f"a {'finite ' if finite else ''}number{_bounds(low, high, low_open, high_open)}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    value = float(value)
    if math.isnan(value) or (finite and math.isinf(value)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value


def check_probability(name: str, value: Any, *, low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a ``float`` in [0, 1] (ends excluded on request)."""
    return check_real(name, value, 0.0, 1.0, low_open=low_open, high_open=high_open)


def check_array(name: str, value: Any, shape: tuple[int | None, ...] | None = None, *, finite: bool = True,
                nonneg: bool = False, simplex: bool = False) -> np.ndarray:
    """``value`` as a float64 array; ``shape`` entries ``None`` match any length. ``simplex``: every
    row (last axis) is a distribution (implies ``nonneg``)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of numbers, got {type(value).__name__}") from None
    if shape is not None and (array.ndim != len(shape) or any(s is not None and s != n
                                                               for s, n in zip(shape, array.shape, strict=True))):
        wanted = "[" + ", ".join("any" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} must have shape {wanted}, got {list(array.shape)}")
    if finite and not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite; it contains NaN or inf")
    if (nonneg or simplex) and array.size and array.min() < 0:
        raise ValueError(f"{name} must be non-negative; its smallest entry is {array.min():.3g}")
    if simplex and array.size:
        sums = np.atleast_1d(array.sum(axis=-1))
        bad = int(np.argmax(np.abs(sums - 1.0)))
        if abs(sums[bad] - 1.0) > SIMPLEX_ATOL:
            where = f"each row of {name} must sum to 1; row {bad}" if array.ndim > 1 else f"{name} must sum to 1; it"
            raise ValueError(f"{where} sums to {sums[bad]:.6g} (a distribution)")
    return array


def check_step(started: bool, action_space, action: Any, expected: str, episode: str) -> None:
    """An env's ``step`` checks: ``reset`` came first (``episode`` says why it is needed), and the
    action lies in ``action_space`` (``expected`` names what it must be)."""
    if not started:
        raise RuntimeError(f"call reset() before step() ({episode})")
    if not action_space.contains(action):
        raise ValueError(f"action must be {expected} in {action_space}, got {action!r}")


def expanded_size(root: Any, children: Callable[[Any], Sequence]) -> int:
    """Nodes of the graph under ``root`` with every shared node counted each time it is reached (the
    size of the tree that expanding it would build), computed once per distinct node, without
    building anything: a guard against small inputs that expand to gigabytes (YAML aliases, pickled
    shared lists). ``children(node)`` lists a node's children (empty for a leaf).

    Raises:
        ValueError: a node that contains itself (the expansion would never end).
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key not in sizes:
            if key in open_nodes:
                raise ValueError("a node contains itself (a recursive structure)")
            open_nodes.add(key)
            sizes[key] = 1 + sum(size(child) for child in children(node))
            open_nodes.discard(key)
        return sizes[key]

    return size(root)


def memory_limit() -> float:
    """The allocation limit in bytes: ``$PREFZOO_MAX_GAME_GB`` GiB, default :data:`DEFAULT_MAX_GAME_GB`."""
    raw = os.environ.get(MAX_GAME_GB_ENV)
    gib = DEFAULT_MAX_GAME_GB if raw is None else check_real(f"${MAX_GAME_GB_ENV}", _number(raw), 0, low_open=True)
    return gib * 2**30


def _number(raw: str) -> Any:
    try:
        return float(raw)
    except ValueError:
        return raw


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units (``1.5 GiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"


def check_memory(what: str, n_bytes: float, hint: str = "") -> None:
    """``ValueError`` when ``what`` would need more than :func:`memory_limit` bytes (``n_bytes``,
    computed in closed form by the caller before allocating); ``hint`` says how to shrink it."""
    limit = memory_limit()
    if n_bytes > limit:
        raise ValueError(f"{what} would need about {format_bytes(n_bytes)} of memory, over the limit of "
                         f"{format_bytes(limit)} (raise it with ${MAX_GAME_GB_ENV}){'; ' + hint if hint else ''}")
