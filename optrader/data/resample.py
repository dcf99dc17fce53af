"""Resample a canonical long frame to a coarser fixed bar duration.

Input and output are CANONICAL LONG FRAMES (see ``optrader.data.align``): ``timestamp`` int64 UTC
ns, ``symbol`` str, ``open``/``high``/``low``/``close``/``volume`` float64, optional ``spread`` and
extra numeric columns. Input rows must be sorted by timestamp within each symbol with no duplicate
(symbol, timestamp) (the data quality check runs before; a violation is still reported as a
DataError). OHLCV values are assumed finite.

The work is numpy only: one stable radix sort of the symbol codes to find the runs of equal
(symbol, bucket) when symbols are interleaved (skipped when rows are already grouped by symbol),
bucket ids by integer floor division, then ``ufunc.at``/``np.bincount`` per run on the columns in
frame order, so no column is permuted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import Day, Tick

from optrader.data.align import long_arrays
from optrader.data.calendar import NS_PER_DAY, TradingCalendar
from optrader.data.market import DataError


def parse_rule(rule) -> int:
    """Fixed bar duration in ns from a pandas-style rule ("5min", "1h", "4h", "1D"), a Timedelta
    or a positive int of ns. Calendar-dependent rules ("W", "ME", "B", ...) raise DataError."""
    if isinstance(rule, (int, np.integer)) and not isinstance(rule, bool):
        ns = int(rule)
    elif isinstance(rule, (pd.Timedelta, np.timedelta64)) or hasattr(rule, "total_seconds"):
        ns = pd.Timedelta(rule).value
    elif isinstance(rule, str):
        try:
            offset = to_offset(rule)
        except ValueError as exc:
            raise DataError(f"rule: expected a fixed duration such as '5min', '1h', '4h' or '1D', "
                            f"got {rule!r}, which pandas cannot parse ({exc}); calendar-dependent "
                            f"rules (weeks, months, business days) are not supported") from None
        if not isinstance(offset, (Tick, Day)):
            raise DataError(f"rule: expected a fixed duration such as '5min', '1h', '4h' or '1D', "
                            f"got the calendar-dependent rule {rule!r} ({offset!r}); weekly, "
                            f"monthly and business-day bars are not supported (use a "
                            f"TradingCalendar with '1D' for session days)")
        ns = int(offset.nanos)
    else:
        raise DataError(f"rule: expected a pandas duration string, a Timedelta or int ns, got "
                        f"{type(rule).__name__} {rule!r}")
    if ns <= 0:
        raise DataError(f"rule: expected a positive duration, got {rule!r}")
    return ns


def resample(df: pd.DataFrame, rule, *, calendar: TradingCalendar | None = None,
             source: str = "long frame") -> pd.DataFrame:
    """Aggregate each symbol's bars into buckets of ``rule``.

    Buckets are ``[k * rule, (k + 1) * rule)`` counted from the Unix epoch in UTC (pandas
    ``resample(rule, origin="epoch")``), labelled by their start. With a ``calendar`` and
    ``rule >= 1 day``, bars are bucketed by the calendar's local session day instead (``day_ids``;
    a multi-day rule groups ``rule / 1 day`` consecutive calendar dates counted from the epoch)
    and each bucket is labelled by the timestamp of its first bar over all symbols, so symbols
    stay aligned. Bars outside sessions are not dropped (filter with ``calendar.is_open`` first).

    Per symbol and bucket: open first, high max, low min, close last, volume sum, spread mean of
    its non-NaN values (NaN if none), extra columns their last non-NaN value (pandas ``last``).
    Empty buckets are dropped.

    Args:
        df: canonical long frame, sorted by timestamp within each symbol, no duplicate
            (symbol, timestamp).
        rule: fixed duration, see ``parse_rule``.
        calendar: optional TradingCalendar for session-day buckets.
        source: name used in error messages.

    Returns:
        Canonical long frame with the input's columns, rows grouped by symbol (first-appearance
        order) and ascending in time within each symbol, a fresh RangeIndex.
    """
    rule_ns = parse_rule(rule)
    if calendar is not None and not isinstance(calendar, TradingCalendar):
        raise TypeError(f"calendar: expected a TradingCalendar or None, got "
                        f"{type(calendar).__name__}")
    if isinstance(df, pd.DataFrame) and len(df) == 0:
        return df.iloc[:0].copy()
    la = long_arrays(df, source)
    order = _group_order(la.codes, len(la.symbols))
    ts = _take(la.timestamps, order)
    codes = _take(la.codes, order)
    _check_sorted(ts, codes, order, la.symbols, source)
    n = ts.size

    by_session = calendar is not None and rule_ns >= NS_PER_DAY
    if by_session:
        bucket = (calendar.day_ids(ts) * NS_PER_DAY) // rule_ns
    else:
        bucket = ts // rule_ns  # floor division: correct before 1970 too

    # runs of equal (symbol, bucket) in symbol-grouped order; gid maps each frame row to its run
    new = np.empty(n, dtype=np.bool_)
    new[0] = True
    np.not_equal(bucket[1:], bucket[:-1], out=new[1:])
    new[1:] |= codes[1:] != codes[:-1]
    starts = np.flatnonzero(new)
    lasts = np.append(starts[1:], n) - 1
    gid = np.cumsum(new) - 1
    if order is not None:
        gid_grouped, gid = gid, np.empty_like(gid)
        gid[order] = gid_grouped
    n_groups = starts.size

    out = {}
    if by_session:
        # label = first bar of the bucket over all symbols
        uniq, inv = np.unique(bucket[starts], return_inverse=True)
        label = np.full(uniq.size, np.iinfo(np.int64).max)
        np.minimum.at(label, inv, ts[starts])
        out["timestamp"] = label[inv]
    else:
        out["timestamp"] = bucket[starts] * rule_ns
    out["symbol"] = pd.array(list(la.symbols), dtype="str").take(codes[starts])
    # ufunc.at/bincount work in frame order (no column is permuted); within a run, frame order is
    # time order, so sums accumulate in time order and the largest row index is the last bar
    cols = la.columns
    out["open"] = cols["open"][starts if order is None else order[starts]]
    out["high"] = _reduce_at(np.fmax, cols["high"], gid, n_groups)
    out["low"] = _reduce_at(np.fmin, cols["low"], gid, n_groups)
    out["close"] = cols["close"][lasts if order is None else order[lasts]]
    out["volume"] = np.bincount(gid, weights=cols["volume"], minlength=n_groups)
    if la.has_spread:
        out["spread"] = _nanmean_at(cols["spread"], gid, lasts - starts + 1)
    for name in la.extra:
        out[name] = _last_valid_at(cols[name], gid, n_groups)
    return pd.DataFrame({c: out[c] for c in df.columns})


def _group_order(codes: np.ndarray, n_groups: int) -> np.ndarray | None:
    """Stable permutation putting equal codes together, or None if they already are in order."""
    if codes.size < 2 or (codes[1:] >= codes[:-1]).all():
        return None
    # numpy's stable sort is a linear radix sort for integers of 16 bits or less
    small = codes.astype(np.int16) if n_groups <= np.iinfo(np.int16).max else codes
    return np.argsort(small, kind="stable")


def _take(x: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    return x if order is None else x[order]


def _check_sorted(ts: np.ndarray, codes: np.ndarray, order: np.ndarray | None, symbols: tuple,
                  source: str) -> None:
    """DataError unless timestamps strictly increase within each symbol (rows grouped by symbol
    with ``order``; ``ts``/``codes`` already permuted)."""
    bad = np.flatnonzero((ts[1:] <= ts[:-1]) & (codes[1:] == codes[:-1])) + 1
    if bad.size:
        kind = "duplicate" if ts[bad[0]] == ts[bad[0] - 1] else "unsorted"
        rows = bad[:5] if order is None else order[bad[:5]]
        raise DataError(f"{source}: timestamps must increase strictly within each symbol "
                        f"(sorted, no duplicates), got {kind} timestamps for symbol "
                        f"{symbols[codes[bad[0]]]!r} at rows {np.sort(rows).tolist()}")


def _reduce_at(ufunc, x: np.ndarray, gid: np.ndarray, n_groups: int) -> np.ndarray:
    """``ufunc`` (fmax/fmin: NaN-skipping) over the rows of each group; NaN if all NaN."""
    out = np.full(n_groups, np.nan)
    ufunc.at(out, gid, x)
    return out


def _nanmean_at(x: np.ndarray, gid: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Mean of the non-NaN values of each group; NaN if none (``sizes``: rows per group)."""
    nan = np.isnan(x)
    if not nan.any():
        return np.bincount(gid, weights=x, minlength=sizes.size) / sizes
    total = np.bincount(gid, weights=np.where(nan, 0.0, x), minlength=sizes.size)
    count = np.bincount(gid, weights=~nan, minlength=sizes.size)
    return np.divide(total, count, out=np.full(sizes.size, np.nan), where=count > 0)


def _last_valid_at(x: np.ndarray, gid: np.ndarray, n_groups: int) -> np.ndarray:
    """Last (largest row index) non-NaN value of each group; NaN if none."""
    pos = np.where(np.isnan(x), -1, np.arange(x.size, dtype=np.int64))
    last = np.full(n_groups, -1, dtype=np.int64)
    np.maximum.at(last, gid, pos)
    return np.where(last >= 0, x[np.maximum(last, 0)], np.nan)
