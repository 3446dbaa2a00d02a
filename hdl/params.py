"""Checks of the generator's parameters, shared by the engines: the same mistake gets the same
exception and message wherever it is made."""

from __future__ import annotations

import numpy as np

from ..model import arith


def codes(label: str, array, ndim: int) -> np.ndarray:
    """An integer numpy array of Q2.6 codes (-128..127) with ``ndim`` dimensions, none empty;
    returned as int64."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{label} must be a numpy array, not {type(array).__name__}")
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{label} must hold integer codes, not dtype {array.dtype}")
    if array.ndim != ndim or 0 in array.shape:
        raise ValueError(f"{label} must have {ndim} non-empty dimensions, got shape {list(array.shape)}")
    if array.min() < arith.QMIN or array.max() > arith.QMAX:
        raise ValueError(f"{label} codes must lie in {arith.QMIN}..{arith.QMAX}")
    return array.astype(np.int64)


def positive(label: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{label} must be a positive integer, not {value!r}")
    return value


def flag(label: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{label} must be a bool, not {value!r}")
    return value


def arithmetic(value) -> arith.LayerArithmetic:
    """An engine's arithmetic: its layer's ``LayerArithmetic`` (an ``Arithmetic`` without
    activation formats stands for its Q2.6 layer)."""
    return arith.as_layer(value)


def name(value) -> str:
    if not isinstance(value, str) or not value.isidentifier():
        raise ValueError(f"name must be an identifier-like string, not {value!r}")
    return value
