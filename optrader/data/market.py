"""MarketData: validated, contiguous bars shared read-only by every env of a batch.

Arrays: ``bars`` float64 (5, T, A) open/high/low/close/volume (``kernels.enums.BarField``),
``timestamps`` int64 (T,) UTC nanoseconds, ``symbols`` tuple of A names; optional ``spread``
float64 (T, A) bps, ``tradable`` bool (T, A) (False where a symbol had no bar and the row is a
flat bar at its last close), ``day`` int64 (T,) trading-session ids from a calendar, ``extra``
name -> float64 (T, A) additional columns. Built from a pandas
DataFrame (wide single asset with a DatetimeIndex, or long with a ``symbol`` column), a Parquet or
CSV path, or the synthetic generator. Every problem is reported before any env exists, naming the
offending column and rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

OHLCV = ("open", "high", "low", "close", "volume")


class DataError(ValueError):
    """Input bars are malformed; the message names the column and rows at fault."""


@dataclass(frozen=True)
class MarketData:
    bars: np.ndarray  # float64 (5, T, A)
    timestamps: np.ndarray  # int64 (T,), UTC ns
    symbols: tuple
    periods_per_year: float = 252.0
    spread: np.ndarray | None = None  # float64 (T, A) quoted spread in bps, NaN where unknown
    tradable: np.ndarray | None = None  # bool (T, A); None: every bar is tradable
    day: np.ndarray | None = None  # int64 (T,) session ids; None: UTC calendar days
    extra: dict = field(default_factory=dict)  # name -> float64 (T, A)
    quality: Any = None  # the QualityReport of a file load (None for DataFrames and synthetic)

    @property
    def n_bars(self) -> int:
        return self.bars.shape[1]

    @property
    def n_assets(self) -> int:
        return self.bars.shape[2]

    def trading_days(self) -> np.ndarray:
        """int64 (T,) day id of each bar: the calendar's sessions, else UTC calendar days."""
        if self.day is not None:
            return self.day
        return self.timestamps // (86_400 * 10**9)

    def field(self, name: str) -> np.ndarray:
        """(T, A) view of one of open/high/low/close/volume."""
        return self.bars[OHLCV.index(name)]

    def to_frame(self) -> pd.DataFrame:
        """Long DataFrame (timestamp index, symbol column, OHLCV columns)."""
        ts = pd.to_datetime(self.timestamps, utc=True)
        parts = []
        for a, sym in enumerate(self.symbols):
            df = pd.DataFrame({c: self.bars[k, :, a] for k, c in enumerate(OHLCV)}, index=ts)
            df.insert(0, "symbol", sym)
            parts.append(df)
        out = pd.concat(parts)
        out.index.name = "timestamp"
        return out


def from_arrays(open_, high, low, close, volume, timestamps=None, symbols=None,
                periods_per_year: float = 252.0, source: str = "arrays",
                spread=None, tradable=None, day=None, extra=None, quality=None) -> MarketData:
    """Stack (T, A) arrays into MarketData after validating them (``spread``: optional (T, A)
    quoted spread in bps; NaN marks a bar without a quote; ``tradable`` bool (T, A), ``day``
    int64 (T,), ``extra`` name -> (T, A): see the module docstring)."""
    arrays = [np.asarray(x, dtype=np.float64) for x in (open_, high, low, close, volume)]
    arrays = [x[:, None] if x.ndim == 1 else x for x in arrays]
    shape = arrays[3].shape
    for name, x in zip(OHLCV, arrays, strict=True):
        if x.ndim != 2 or x.shape != shape:
            raise DataError(f"{source}: column {name!r} has shape {x.shape}, expected {shape} "
                            f"like 'close'")
    n_bars, n_assets = shape
    if timestamps is None:
        timestamps = np.arange(n_bars, dtype=np.int64) * 86_400 * 10**9
    timestamps = np.asarray(timestamps, dtype=np.int64)
    if timestamps.shape != (n_bars,):
        raise DataError(f"{source}: {timestamps.shape[0]} timestamps for {n_bars} bars")
    symbols = tuple(symbols) if symbols is not None else tuple(f"asset{a}" for a in range(n_assets))
    if len(symbols) != n_assets:
        raise DataError(f"{source}: {len(symbols)} symbols for {n_assets} assets")
    bars = np.ascontiguousarray(np.stack(arrays))
    validate_bars(bars, timestamps, symbols, source)
    bars.setflags(write=False)
    timestamps.setflags(write=False)
    if spread is not None:
        spread = np.asarray(spread, dtype=np.float64)
        spread = np.ascontiguousarray(spread[:, None] if spread.ndim == 1 else spread)
        if spread.shape != shape:
            raise DataError(f"{source}: column 'spread' has shape {spread.shape}, expected "
                            f"{shape} like 'close'")
        bad = np.isinf(spread) | (spread < 0)
        if bad.any():
            t_idx, a_idx = np.nonzero(bad)
            raise DataError(f"{source}: column 'spread' must be >= 0 bps (NaN for unknown), got "
                            f"{spread[t_idx[0], a_idx[0]]!r} at row {t_idx[0]} "
                            f"({symbols[a_idx[0]]})")
        spread.setflags(write=False)
    if tradable is not None:
        tradable = np.ascontiguousarray(tradable, dtype=np.bool_)
        if tradable.shape != shape:
            raise DataError(f"{source}: tradable mask has shape {tradable.shape}, expected "
                            f"{shape}")
        tradable.setflags(write=False)
    if day is not None:
        day = np.ascontiguousarray(day, dtype=np.int64)
        if day.shape != (n_bars,) or (np.diff(day) < 0).any():
            raise DataError(f"{source}: day ids must be non-decreasing, shape ({n_bars},); got "
                            f"shape {day.shape}")
        day.setflags(write=False)
    extra = dict(extra or {})
    for name, x in extra.items():
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.shape != shape:
            raise DataError(f"{source}: extra column {name!r} has shape {x.shape}, expected "
                            f"{shape}")
        x.setflags(write=False)
        extra[name] = x
    return MarketData(bars, timestamps, symbols, float(periods_per_year), spread, tradable, day,
                      extra, quality)


def validate_bars(bars: np.ndarray, timestamps: np.ndarray, symbols, source: str) -> None:
    """Raise DataError naming the first kind of defect found and up to five offending rows."""

    def rows_of(mask_2d) -> str:
        t_idx, a_idx = np.nonzero(mask_2d)
        shown = ", ".join(f"row {t} ({symbols[a]})" for t, a in zip(t_idx[:5], a_idx[:5],
                                                                      strict=True))
        more = f" and {len(t_idx) - 5} more" if len(t_idx) > 5 else ""
        return shown + more

    if bars.shape[1] == 0:
        raise DataError(f"{source}: no rows")
    for k, name in enumerate(OHLCV):
        bad = ~np.isfinite(bars[k])
        if bad.any():
            raise DataError(f"{source}: column {name!r} has NaN or inf at {rows_of(bad)}")
    for k, name in enumerate(OHLCV[:4]):
        bad = bars[k] <= 0.0
        if bad.any():
            raise DataError(f"{source}: column {name!r} must be > 0, got non-positive prices at "
                            f"{rows_of(bad)}")
    o, h, lo, c, v = bars
    bad = h < lo
    if bad.any():
        raise DataError(f"{source}: high < low at {rows_of(bad)}")
    for name, x in (("open", o), ("close", c)):
        bad = (x > h) | (x < lo)
        if bad.any():
            raise DataError(f"{source}: column {name!r} outside [low, high] at {rows_of(bad)}")
    bad = v < 0.0
    if bad.any():
        raise DataError(f"{source}: column 'volume' must be >= 0, got negative at {rows_of(bad)}")
    d = np.diff(timestamps)
    if (d == 0).any():
        rows = np.nonzero(d == 0)[0][:5] + 1
        raise DataError(f"{source}: duplicate timestamps at rows {rows.tolist()}")
    if (d < 0).any():
        rows = np.nonzero(d < 0)[0][:5] + 1
        raise DataError(f"{source}: timestamps not sorted ascending at rows {rows.tolist()}")


def from_dataframe(df: pd.DataFrame, periods_per_year: float = 252.0,
                   source: str = "DataFrame") -> MarketData:
    """Wide single-asset (DatetimeIndex + OHLCV) or long (``symbol`` column) bars.

    Column names match case-insensitively; a ``timestamp``/``date``/``time`` column may stand in
    for the index. Long frames are aligned on the timestamps every symbol has (intersection).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"data: expected a pandas DataFrame, a path or None, got "
                        f"{type(df).__name__}")
    if len(df) == 0:
        raise DataError(f"{source}: no rows")
    df = df.rename(columns={c: str(c).lower() for c in df.columns})
    dup = sorted(set(df.columns[df.columns.duplicated()]))
    if dup:
        raise DataError(f"{source}: columns {dup} appear more than once (names are "
                        f"case-insensitive)")
    for cand in ("timestamp", "datetime", "date", "time"):
        if cand in df.columns and not isinstance(df.index, pd.DatetimeIndex):
            df = df.set_index(cand)
            break
    if not isinstance(df.index, pd.DatetimeIndex):
        try:
            if df.index.dtype.kind in "iufcb":  # a RangeIndex would become 1970-01-01 + n ns
                raise TypeError
            df.index = pd.DatetimeIndex(df.index)
        except (TypeError, ValueError):
            raise DataError(f"{source}: expected a DatetimeIndex or a 'timestamp' column, got an "
                            f"index of {df.index.dtype}") from None
    missing = [c for c in OHLCV if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing columns {missing}; expected {list(OHLCV)} "
                        f"(case-insensitive), got {list(df.columns)}")
    if df.index.hasnans:
        rows = np.nonzero(df.index.isna())[0][:5]
        raise DataError(f"{source}: missing (NaT) timestamps at rows {rows.tolist()}")
    idx = df.index.tz_convert("UTC") if df.index.tz is not None else df.index
    ts_all = idx.as_unit("ns").asi8
    has_spread = "spread" in df.columns
    if "symbol" not in df.columns:
        cols = [_numeric(df, c, source) for c in OHLCV]
        return from_arrays(*cols, timestamps=ts_all, symbols=("asset0",),
                           periods_per_year=periods_per_year, source=source,
                           spread=_numeric(df, "spread", source) if has_spread else None)

    symbols = tuple(pd.unique(df["symbol"].astype(str)))
    sym = df["symbol"].astype(str).to_numpy()
    per_symbol = {}
    for s in symbols:
        m = sym == s
        ts = ts_all[m]
        d = np.diff(ts)
        if (d == 0).any():
            rows = np.nonzero(m)[0][np.nonzero(d == 0)[0][:5] + 1]
            raise DataError(f"{source}: duplicate timestamps for symbol {s!r} at rows "
                            f"{rows.tolist()}")
        if (d < 0).any():
            rows = np.nonzero(m)[0][np.nonzero(d < 0)[0][:5] + 1]
            raise DataError(f"{source}: timestamps not sorted for symbol {s!r} at rows "
                            f"{rows.tolist()}")
        per_symbol[s] = (ts, np.nonzero(m)[0])
    common = per_symbol[symbols[0]][0]
    for s in symbols[1:]:
        common = np.intersect1d(common, per_symbol[s][0], assume_unique=True)
    if common.size == 0:
        raise DataError(f"{source}: symbols {list(symbols)} share no timestamps")
    names = (*OHLCV, "spread") if has_spread else OHLCV
    arrays = [np.empty((common.size, len(symbols))) for _ in names]
    columns = [_numeric(df, c, source) for c in names]
    for a, s in enumerate(symbols):
        ts, rows = per_symbol[s]
        keep = rows[np.isin(ts, common, assume_unique=True)]
        for k in range(len(names)):
            arrays[k][:, a] = columns[k][keep]
    return from_arrays(*arrays[:5], timestamps=common, symbols=symbols,
                       periods_per_year=periods_per_year, source=source,
                       spread=arrays[5] if has_spread else None)


def _numeric(df: pd.DataFrame, name: str, source: str) -> np.ndarray:
    """Column ``name`` as float64, or a DataError naming the column and the first bad rows."""
    try:
        return df[name].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        bad = pd.to_numeric(df[name], errors="coerce").isna() & df[name].notna()
        rows = np.nonzero(bad.to_numpy())[0][:5]
        raise DataError(f"{source}: column {name!r} is not numeric (dtype {df[name].dtype}); "
                        f"bad values at rows {rows.tolist()}") from None


def from_path(path, periods_per_year: float = 252.0) -> MarketData:
    """Bars from a Parquet or CSV file (pyarrow); the file is only read, never written."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"data: file not found: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(p, engine="pyarrow")
        elif suffix == ".csv":
            df = pd.read_csv(p, engine="pyarrow")
        else:
            raise DataError(f"data: {p}: unsupported file type {suffix!r}; expected .parquet or "
                            f".csv")
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a corrupt file
        raise DataError(f"data: cannot read {p}: {type(exc).__name__}: {exc}") from None
    return from_dataframe(df, periods_per_year, source=str(p))
