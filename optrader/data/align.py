"""Align a canonical long frame into dense (time, asset) arrays.

The CANONICAL LONG FRAME has one row per (symbol, bar): ``timestamp`` int64 UTC ns, ``symbol``
str, ``open``/``high``/``low``/``close``/``volume`` float64, optionally ``spread`` (bps) and extra
numeric columns. Rows are expected sorted by timestamp within each symbol with no duplicate
(symbol, timestamp) — the data quality check runs before. ``align`` places every row by its
timestamp, so it does not depend on the row order, but a duplicate is still caught (for free) and
reported as a DataError. Symbols may be interleaved in any way.

``align`` is numpy only (a stable sort of the timestamps, flat scatter/gather, a forward fill by
``np.maximum.accumulate``), no per-row Python.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from optrader.data.checks import OHLCV, DataError, mixed_timezones, no_shared_timestamps

_RESERVED = ("timestamp", "symbol", *OHLCV, "spread")


class LongArrays(NamedTuple):
    """A canonical long frame split into numpy columns (row order unchanged)."""

    timestamps: np.ndarray  # int64 (n,) UTC ns
    codes: np.ndarray  # int64 (n,) symbol index, first-appearance order
    symbols: tuple  # A names
    columns: dict  # name -> float64 (n,): OHLCV, then "spread" if present, then extras
    extra: tuple  # names of the extra columns, frame order
    has_spread: bool


class Aligned(NamedTuple):
    """Dense bars on a common timestamp axis (T timestamps, A assets)."""

    timestamps: np.ndarray  # int64 (T,) UTC ns, ascending
    symbols: tuple  # A names, first-appearance order in the frame
    bars: np.ndarray  # float64 (5, T, A) open/high/low/close/volume
    tradable: np.ndarray  # bool (T, A), False where the asset had no bar at that timestamp
    spread: np.ndarray | None  # float64 (T, A) bps, NaN where unknown or no bar; None if absent
    extra: dict  # name -> float64 (T, A)


def long_arrays(df: pd.DataFrame, source: str = "long frame") -> LongArrays:
    """Validate the columns of a canonical long frame and split it into numpy arrays.

    Raises DataError naming the missing or non-numeric columns or the rows without a symbol. The
    row order is not checked here (see ``optrader.data.resample`` for the sortedness check).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in ("timestamp", "symbol", *OHLCV) if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing columns {missing}; expected 'timestamp', 'symbol', "
                        f"{list(OHLCV)} (+ optional 'spread' and extra numeric columns), got "
                        f"{list(df.columns)}")
    ts_col = df["timestamp"]
    if isinstance(ts_col.dtype, pd.DatetimeTZDtype) or ts_col.dtype.kind == "M":
        ts = pd.DatetimeIndex(ts_col)
        ts = (ts.tz_convert("UTC") if ts.tz is not None else ts).as_unit("ns").asi8
    elif ts_col.dtype.kind in "iu":
        ts = ts_col.to_numpy(dtype=np.int64)
    else:
        mixed = mixed_timezones(ts_col, f"{source}: column 'timestamp'") \
            if ts_col.dtype.kind in "OUT" or ts_col.dtype == "str" else None
        if mixed:
            raise DataError(mixed)
        raise DataError(f"{source}: column 'timestamp' must be int64 UTC nanoseconds, got dtype "
                        f"{ts_col.dtype}")
    codes, uniques = pd.factorize(df["symbol"], sort=False)
    if (codes < 0).any():
        rows = np.flatnonzero(codes < 0)[:5]
        raise DataError(f"{source}: column 'symbol' is missing at rows {rows.tolist()}")
    symbols = tuple(str(s) for s in uniques)
    extra = tuple(c for c in df.columns if c not in _RESERVED)
    has_spread = "spread" in df.columns
    columns = {}
    for name in (*OHLCV, *(("spread",) if has_spread else ()), *extra):
        col = df[name]
        if col.dtype.kind not in "fiub":
            raise DataError(f"{source}: column {name!r} must be numeric (float64), got dtype "
                            f"{col.dtype}")
        columns[name] = col.to_numpy(dtype=np.float64, na_value=np.nan)
    codes = codes.astype(np.int64, copy=False)
    return LongArrays(ts, codes, symbols, columns, extra, has_spread)


def align(df: pd.DataFrame, how: str = "intersection", source: str = "long frame") -> Aligned:
    """Dense (T, A) arrays from a canonical long frame.

    Rows are expected sorted by timestamp within each symbol with no duplicate (symbol,
    timestamp) — the data quality check runs before. Each row is placed by its timestamp, so the
    row order does not change the result; a duplicate is still reported as a DataError.

    Args:
        df: canonical long frame (see module docstring).
        how: ``"intersection"`` keeps the timestamps every symbol has (all tradable);
            ``"union"`` keeps every timestamp any symbol has. Where asset ``a`` has no bar at
            ``t``, ``tradable[t, a]`` is False and the bar is flat at the last known close
            (open = high = low = close, volume 0, spread NaN, extra columns carried forward), so
            positions are marked at the last price; before the asset's first bar it is flat at
            its first open and extra columns take their first-bar values.
        source: name used in error messages.

    Returns:
        Aligned(timestamps int64 (T,), symbols tuple, bars float64 (5, T, A), tradable bool
        (T, A), spread float64 (T, A) or None, extra dict name -> float64 (T, A)).

    Raises:
        DataError: no rows, bad columns, a duplicate (symbol, timestamp), or an empty
            intersection (the message gives each symbol's range and number of timestamps and
            names the symbols without which the others would share timestamps).
    """
    if how not in ("intersection", "union"):
        raise ValueError(f"how: expected 'intersection' or 'union', got {how!r}")
    if isinstance(df, pd.DataFrame) and len(df) == 0:
        raise DataError(f"{source}: no rows")
    la = long_arrays(df, source)
    n_assets, n_rows = len(la.symbols), la.timestamps.size
    grid, t_idx = _unique_inverse(la.timestamps)
    n_t = grid.size
    cell = t_idx * n_assets + la.codes  # flat index into (T, A)
    tradable = np.zeros(n_t * n_assets, dtype=np.bool_)
    tradable[cell] = True
    tradable = tradable.reshape(n_t, n_assets)
    if np.count_nonzero(tradable) != n_rows:
        _raise_duplicates(la, cell, source)

    rows = None  # rows of the frame kept (None: all)
    a_idx = la.codes
    if how == "intersection":
        full = tradable.all(axis=1)
        if not full.any():
            order = np.argsort(la.codes, kind="stable")
            ends = np.cumsum(np.bincount(la.codes, minlength=n_assets))
            per_symbol = np.split(la.timestamps[order], ends[:-1])
            raise DataError(no_shared_timestamps(source, la.symbols, per_symbol))
        if not full.all():
            rows = full[t_idx]
            t_idx, a_idx = (np.cumsum(full) - 1)[t_idx[rows]], a_idx[rows]
            grid, tradable = grid[full], tradable[full]
            n_t = grid.size
    # Scatter each column into (T, A). When the frame is grouped by symbol, writing (A, T) rows
    # sequentially and transposing once is several times faster than strided (T, A) writes.
    grouped = a_idx.size < 2 or bool((a_idx[1:] >= a_idx[:-1]).all())
    cell = a_idx * n_t + t_idx if grouped else t_idx * n_assets + a_idx
    scratch = np.empty((n_assets, n_t) if grouped else 0, dtype=np.float64)

    def scatter(name: str, dest: np.ndarray) -> np.ndarray:
        values = la.columns[name] if rows is None else la.columns[name][rows]
        if grouped:
            scratch.reshape(-1)[cell] = values
            dest[...] = scratch.T
        else:
            dest.reshape(-1)[cell] = values
        return dest

    bars = np.empty((5, n_t, n_assets), dtype=np.float64)
    for k, name in enumerate(OHLCV):
        scatter(name, bars[k])
    def plane() -> np.ndarray:
        return np.empty((n_t, n_assets), dtype=np.float64)

    spread = scatter("spread", plane()) if la.has_spread else None
    extra = {name: scatter(name, plane()) for name in la.extra}

    if how == "union":
        hole = np.flatnonzero(~tradable.reshape(-1))
        if hole.size:
            # per cell, the row of the asset's last bar at or before t (-1 before its first bar)
            last = np.where(tradable, np.arange(n_t, dtype=np.int64)[:, None], -1)
            np.maximum.accumulate(last, axis=0, out=last)
            asset = hole % n_assets
            src_t = last.reshape(-1)[hole]
            before = src_t < 0
            first = tradable.argmax(axis=0)  # every asset has at least one bar
            src = np.where(before, first[asset], src_t) * n_assets + asset
            # flat at the last close; before the first bar, at the first open
            mark = np.where(before, bars[0].reshape(-1)[src], bars[3].reshape(-1)[src])
            for k in range(4):
                bars[k].reshape(-1)[hole] = mark
            bars[4].reshape(-1)[hole] = 0.0
            if spread is not None:
                spread.reshape(-1)[hole] = np.nan
            for x in extra.values():
                flat = x.reshape(-1)
                flat[hole] = flat[src]
    return Aligned(grid, la.symbols, bars, tradable, spread, extra)


def _unique_inverse(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique timestamps and each row's index into them.

    A stable argsort (timsort) is near-linear on a frame made of a few sorted per-symbol runs and
    free on a globally sorted frame; ``np.unique(return_inverse=True)`` would sort from scratch.
    """
    if ts.size > 1 and (ts[1:] >= ts[:-1]).all():
        order, s = None, ts
    else:
        order = np.argsort(ts, kind="stable")
        s = ts[order]
    new = np.empty(s.size, dtype=np.bool_)
    new[:1] = True
    np.not_equal(s[1:], s[:-1], out=new[1:])
    ids = np.cumsum(new) - 1
    if order is None:
        return s[new], ids
    inverse = np.empty_like(ids)
    inverse[order] = ids
    return s[new], inverse


def _raise_duplicates(la: LongArrays, cell: np.ndarray, source: str) -> None:
    """DataError naming the first rows that repeat a (symbol, timestamp) (error path only)."""
    _, first_idx, counts = np.unique(cell, return_index=True, return_counts=True)
    dup_cells = np.flatnonzero(counts > 1)
    rows = np.flatnonzero(np.isin(cell, cell[first_idx[dup_cells]]))[:5]
    raise DataError(f"{source}: duplicate timestamps for symbol "
                    f"{la.symbols[la.codes[rows[0]]]!r} at rows {rows.tolist()}; expected one bar "
                    f"per (symbol, timestamp)")
