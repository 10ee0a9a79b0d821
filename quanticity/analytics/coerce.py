"""Input coercion shared by the analytics kernels: bad numbers become NaN or a False mask, never an exception.

Feeds hand the kernels whatever arrived (strings from JSON, None, inf, huge floats); one place
decides how each is read so every family rejects the same inputs the same way.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray


def to_float(x: object) -> float:
    """``float(x)``, or NaN for anything that is not a number (never raises)."""
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return math.nan


def as_1d(x: ArrayLike, dtype: type = np.float64) -> NDArray:
    """A contiguous 1-D array of ``dtype`` (what the numba kernels take)."""
    return np.ascontiguousarray(np.asarray(x, dtype=dtype).reshape(-1))


def timestamps(x: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Integer ns timestamps and a validity mask (float input: non-finite or out-of-range entries are invalid)."""
    a = np.asarray(x).reshape(-1)
    if a.dtype.kind in "iub":
        return np.ascontiguousarray(a, dtype=np.int64), np.ones(a.size, dtype=np.bool_)
    f = np.asarray(a, dtype=np.float64)
    valid = np.isfinite(f) & (np.abs(f) < 9.2e18)
    return np.ascontiguousarray(np.where(valid, f, 0.0).astype(np.int64)), valid
