"""Argument validators, one per kind of check; a leaf module (imports nothing from ``nprnn``).

Every validator returns the value in its canonical Python type and raises a ``ValueError`` whose
message has one form, ``"<name> must be <what>, got <value!r>"`` (:func:`one_of` names the kind
of choice instead). ``name`` is what the caller
calls the value (``"hidden_size"``, ``"config.model.gamma_x"``), so the same rule reads right in
the library and in a config check.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "floating_dtype",
    "one_of",
    "positive_gamma",
    "positive_int",
    "probability",
    "time_index",
]


def positive_int(name: str, value) -> int:
    """An integer >= 1 (``bool`` is refused: ``True`` is not a size)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def positive_gamma(name: str, value) -> float:
    """A positive finite real number (``bool`` and strings are refused)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def probability(name: str, value) -> float:
    """A real number in [0, 1): a dropout rate or a moving-average momentum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def time_index(name: str, value, shapes: Sequence[tuple] = ((),)):
    """A time index: integers >= 0 of one of ``shapes`` (a scalar by default).

    Python and NumPy integers and integer arrays are accepted, concrete or traced; the value is
    returned unchanged (an array stays an array). The values of a traced index (under
    ``jax.jit``) are not known before it runs, so only its dtype and shape are checked.
    """
    if isinstance(value, bool) or isinstance(value, np.bool_):
        raise ValueError(f"{name} must be a non-negative integer time index, got {value!r}")
    dtype = getattr(value, "dtype", None)
    if dtype is None and not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a non-negative integer time index, got {value!r}")
    if dtype is not None and not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"{name} must be a non-negative integer time index, got dtype {dtype}")
    shape = tuple(np.shape(value))
    if shape not in tuple(tuple(s) for s in shapes):
        expected = " or ".join(str(tuple(s)) for s in shapes)
        raise ValueError(f"{name} must have shape {expected}, got shape {shape}")
    if not isinstance(value, jax.core.Tracer) and np.any(np.asarray(value) < 0):
        raise ValueError(f"{name} must be a non-negative integer time index, got {value!r}")
    return value


def floating_dtype(name: str, dtype):
    """A floating-point dtype (``jnp.bfloat16``, ``"float32"``, ...); returned as a dtype."""
    try:
        resolved = jnp.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or not jnp.issubdtype(resolved, jnp.floating):
        shown = dtype if resolved is None else resolved
        raise ValueError(f"{name} must be a floating dtype, got {shown}")
    return resolved


def one_of(what: str, value, choices: Sequence):
    """One of ``choices``; ``what`` names the kind (``"LSTM variant"``, ``"variance method"``).

    This one message reads ``"unknown <what> <value!r>; expected one of <choices>"``.
    """
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; expected one of {tuple(choices)}")
    return value
