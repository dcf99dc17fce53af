"""Per-env parameter values (``make_vec(per_env=...)``, ``envs.set_per_env``) as checked float64
arrays: one converter for data and simulation mode, so every key fails the same clear way."""

from __future__ import annotations

import numbers

import numpy as np


def per_env_array(key: str, values, shapes: list[tuple[int, ...]],
                  allow_inf: bool = False) -> np.ndarray:
    """``values`` as a new float64 array of one of ``shapes`` (a number fills ``shapes[0]``),
    without NaN, and without inf unless ``allow_inf`` (a key where inf means "none", e.g. no
    participation cap; the config's own check then judges it).

    Raises TypeError for values that are not numbers (strings, None, objects, booleans) and
    ValueError for a wrong shape or length, a ragged list, NaN or a forbidden inf; each message
    names the key, what was expected and what arrived.
    """
    n = shapes[0][0]
    expected = "a scalar or shape " + " or ".join(map(str, shapes))
    try:
        arr = np.asarray(values)
    except ValueError:  # a ragged list: numpy cannot make one array of it
        raise ValueError(f"per_env[{key!r}]: expected {expected}, got a ragged "
                         f"{type(values).__name__}") from None
    if arr.dtype.kind == "O":  # numbers held as objects convert; strings are not parsed
        bad = [x for x in arr.reshape(-1) if not _is_number(x)]
        if bad:
            raise TypeError(f"per_env[{key!r}]: expected numbers ({expected}), got an "
                            f"object array holding {type(bad[0]).__name__} {bad[0]!r}")
        arr = arr.astype(np.float64)
    if arr.dtype.kind not in "iuf":
        what = {"U": "strings", "S": "bytes", "b": "booleans", "c": "complex numbers",
                "M": "datetimes", "m": "timedeltas"}.get(arr.dtype.kind, "values")
        sample = arr.reshape(-1)[0].item() if arr.size else None
        raise TypeError(f"per_env[{key!r}]: expected numbers ({expected}), got {what} "
                        f"(dtype {arr.dtype}, e.g. {sample!r})")
    arr = arr.astype(np.float64)  # a copy: the caller's array is never kept or written
    if arr.ndim == 0:
        arr = np.full(shapes[0], float(arr))
    if arr.shape not in shapes:
        detail = (f" ({arr.shape[0]} values for {n} envs)"
                  if arr.ndim == 1 and all(len(s) == 1 for s in shapes) else "")
        raise ValueError(f"per_env[{key!r}]: expected {expected}, got shape {arr.shape}{detail}")
    ok = ~np.isnan(arr) if allow_inf else np.isfinite(arr)
    if not ok.all():
        envs = np.nonzero(~ok.reshape(n, -1).all(axis=1))[0]
        what = "numbers, not NaN" if allow_inf else "finite numbers"
        raise ValueError(f"per_env[{key!r}]: expected {what}, got "
                         f"{'NaN' if allow_inf else 'NaN or inf'} for envs {envs[:10].tolist()}")
    return arr


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))
