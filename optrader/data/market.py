"""MarketData: validated, contiguous bars shared read-only by every env of a batch.

Arrays: ``bars`` float64 (5, T, A) open/high/low/close/volume (``kernels.enums.BarField``),
``timestamps`` int64 (T,) UTC nanoseconds, ``symbols`` tuple of A names; optional ``spread``
float64 (T, A) bps, ``tradable`` bool (T, A) (False where a symbol had no bar and the row is a
flat bar at its last close), ``day`` int64 (T,) trading-session ids from a calendar, ``extra``
name -> float64 (T, A) additional columns. Built from a pandas
DataFrame (wide single asset with a DatetimeIndex, or long with a ``symbol`` column), a Parquet or
CSV path, or the synthetic generator. Every problem is reported before any env exists, naming the
offending column and rows: every MarketData, however built, is checked on construction by
``optrader.data.checks.check_market``.

Long frames load without a per-symbol pass over the rows: one ``pd.factorize`` of the ``symbol``
column (of one row per run of equal symbols when runs are long; symbols keep their order of first
appearance), one stable sort of the codes (skipped when each symbol already is one block of
rows), vectorised per-symbol timestamp checks, and one gather per column straight into ``bars``.
When every symbol has the same timestamps (a regular panel) the intersection is skipped;
otherwise it is built symbol by symbol with ``np.searchsorted`` on the sorted timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from optrader.data.checks import (  # noqa: F401 - re-exported: the data layer's names
    OHLCV,
    DataError,
    check_market,
    mixed_timezones,
    no_shared_timestamps,
    validate_bars,
)


@dataclass(frozen=True)
class MarketData:
    """Bars shared read-only by every env of a batch; checked whenever one is constructed.

    Every way of making one (``from_arrays``, ``from_dataframe``, the file loader, a cache hit,
    the synthetic generator, or ``MarketData(...)`` by hand) runs ``__post_init__``, which
    raises DataError (a ValueError) for values and shapes and TypeError for types and dtypes,
    naming the field, the symbol, the row and the value (see ``check_market``). Arrays are
    exposed read-only (a read-only view of an array passed writeable by hand: the caller must
    not modify it afterwards). ``source`` names the data in error messages.
    """

    bars: np.ndarray  # float64 (5, T, A)
    timestamps: np.ndarray  # int64 (T,), UTC ns
    symbols: tuple
    periods_per_year: float = 252.0
    spread: np.ndarray | None = None  # float64 (T, A) quoted spread in bps, NaN where unknown
    tradable: np.ndarray | None = None  # bool (T, A); None: every bar is tradable
    day: np.ndarray | None = None  # int64 (T,) session ids; None: UTC calendar days
    extra: dict = field(default_factory=dict)  # name -> float64 (T, A)
    quality: Any = None  # the QualityReport of a file load (None for DataFrames and synthetic)
    source: str = field(default="MarketData", compare=False, repr=False)

    def __post_init__(self) -> None:
        check_market(self)

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
    bars = np.stack(arrays)  # the one copy: a fresh C-contiguous (5, T, A)
    return _from_bars(bars, timestamps, symbols, periods_per_year, source, spread, tradable, day,
                      extra, quality)


def _from_bars(bars: np.ndarray, timestamps, symbols, periods_per_year: float, source: str,
               spread=None, tradable=None, day=None, extra=None, quality=None) -> MarketData:
    """MarketData around ``bars``, a fresh C-contiguous float64 (5, T, A) that it takes over:
    made read-only in place, never copied, and validated by MarketData itself. The other
    arguments are converted to the dtypes MarketData requires (as in from_arrays)."""
    n_bars, n_assets = bars.shape[1:]
    if timestamps is None:
        timestamps = np.arange(n_bars, dtype=np.int64) * 86_400 * 10**9
    timestamps = np.ascontiguousarray(timestamps, dtype=np.int64)
    if periods_per_year is None or (isinstance(periods_per_year, (int, float))
                                    and periods_per_year == 0 and n_bars >= 2):
        periods_per_year = inferred_periods_per_year(timestamps)
    symbols = tuple(symbols) if symbols is not None else tuple(f"asset{a}" for a in range(n_assets))
    bars.setflags(write=False)
    timestamps.setflags(write=False)
    if spread is not None:
        spread = np.asarray(spread, dtype=np.float64)
        spread = np.ascontiguousarray(spread[:, None] if spread.ndim == 1 else spread)
        spread.setflags(write=False)
    if tradable is not None:
        tradable = np.ascontiguousarray(tradable, dtype=np.bool_)
        tradable.setflags(write=False)
    if day is not None:
        day = np.ascontiguousarray(day, dtype=np.int64)
        day.setflags(write=False)
    extra = {name: np.ascontiguousarray(x, dtype=np.float64) for name, x in (extra or {}).items()}
    for x in extra.values():
        x.setflags(write=False)
    return MarketData(bars, timestamps, symbols, float(periods_per_year), spread, tradable, day,
                      extra, quality, source)


def from_dataframe(df: pd.DataFrame, periods_per_year: float | None = None,
                   source: str = "DataFrame") -> MarketData:
    """Wide single-asset (DatetimeIndex + OHLCV) or long (``symbol`` column) bars.

    Column names match case-insensitively; a ``timestamp``/``date``/``time`` column may stand in
    for the index. Long frames are aligned on the timestamps every symbol has (intersection).
    ``periods_per_year`` None or 0: inferred from the bar spacing (``optrader.annualisation``).
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
        df.index = _datetime_index(df.index, source)
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
    return _from_long_frame(df, ts_all, periods_per_year, source)


def _datetime_index(index: pd.Index, source: str) -> pd.DatetimeIndex:
    """``index`` (datetimes or ISO-8601 strings) as a DatetimeIndex.

    Zone-aware stamps with different UTC offsets (local times across a DST change) are
    converted to UTC; naive and aware stamps mixed are an error naming the first of each.
    """
    expected = DataError(f"{source}: expected a DatetimeIndex or a 'timestamp' column, got an "
                         f"index of {index.dtype}")
    if index.dtype.kind in "iufcb":  # a RangeIndex would become 1970-01-01 + n ns
        raise expected
    try:
        return pd.DatetimeIndex(index)
    except (TypeError, ValueError):
        pass
    mixed = mixed_timezones(index, source)
    if mixed:
        raise DataError(mixed)
    try:  # every stamp carries a zone, but not the same one
        return pd.DatetimeIndex(pd.to_datetime(index, utc=True, format="ISO8601"))
    except (TypeError, ValueError):
        raise expected from None


def _from_long_frame(df: pd.DataFrame, ts_all: np.ndarray, periods_per_year: float,
                     source: str) -> MarketData:
    """MarketData of a long frame (``symbol`` column), aligned on the shared timestamps.

    ``ts_all`` int64 (N,) UTC ns of each row. Checks in the order the per-symbol loop this
    replaces made them: timestamps per symbol (first symbol at fault), an empty intersection,
    non-numeric columns, then the values (validate_bars) and the spread.
    """
    heads, codes, symbols = _symbol_runs(df["symbol"])
    order, starts = _group_rows(heads, codes, len(df), len(symbols))
    ts = ts_all if order is None else ts_all[order]
    regular = _one_calendar(ts, starts)
    # with one shared calendar symbol 0's defects are every symbol's, and it is reported first
    n_checked = 1 if regular else len(symbols)
    _check_symbol_timestamps(ts[:starts[n_checked]], order, starts[:n_checked + 1], symbols,
                             source)
    common, pos = _align_symbols(ts, starts, regular, symbols, source)
    names = (*OHLCV, "spread") if "spread" in df.columns else OHLCV
    columns = [_numeric(df, c, source) for c in names]
    shape = (common.size, len(symbols))
    index = _aligned_rows(order, pos, len(symbols))
    bars = np.empty((len(OHLCV), *shape))
    for k in range(len(OHLCV)):
        _gather(columns[k], index, bars[k])
    spread = _gather(columns[5], index, np.empty(shape)) if len(names) > 5 else None
    return _from_bars(bars, common, symbols, periods_per_year, source, spread=spread)


def _symbol_runs(column: pd.Series) -> tuple[np.ndarray | None, np.ndarray, tuple]:
    """Each run of rows with one symbol as an integer code, and the symbols in order of first
    appearance.

    Long frames mostly hold each symbol in a few long runs, and comparing neighbouring rows then
    factorizing one row per run costs a fraction of factorizing every row. Symbols are the
    values of ``column.astype(str)`` (so 7 and "7" are one symbol). A missing symbol stays NaN:
    it is listed where it first appears but owns no rows, so a frame with one always ends in
    "share no timestamps", as it did when rows were matched by ``==``.

    Returns:
        heads: int64 (R,) first frame row of each run, ascending from 0; None when runs are
            too short to pay off and every row is coded on its own.
        codes: int64 (R,) (or (N,) when ``heads`` is None) index into ``symbols``; -1 for a
            missing symbol.
        symbols: tuple of A str (NaN for the missing symbol).
    """
    if column.dtype != "str":
        column = column.astype(str)  # NaN for missing, which makes `!=` plain numpy bool
    values = column.array
    heads = np.flatnonzero(values[1:] != values[:-1]) + 1  # NaN != NaN: a run of its own
    heads = np.concatenate(([0], heads))
    if heads.size * 4 <= len(values):  # runs of 4+ rows on average
        codes, uniques = pd.factorize(values.take(heads), sort=False)
    else:
        heads = None
        codes, uniques = pd.factorize(values, sort=False)
    codes = codes.astype(np.int64, copy=False)
    symbols = tuple(uniques)
    if codes.min() < 0:
        first = int(np.argmax(codes < 0))
        # codes number symbols by first appearance, so those seen before `first` are 0..k-1
        k = int(codes[:first].max()) + 1 if first else 0
        symbols = (*symbols[:k], np.nan, *symbols[k:])
        codes = np.where(codes >= k, codes + 1, codes)
    return heads, codes, symbols


def _group_rows(heads: np.ndarray | None, codes: np.ndarray, n_rows: int,
                n_symbols: int) -> tuple[np.ndarray | None, np.ndarray]:
    """Frame rows grouped by symbol, in frame order within each symbol.

    Args:
        heads, codes: runs of rows from _symbol_runs (-1: rows that belong to no symbol).
        n_rows: N.
        n_symbols: A.

    Returns:
        order: int64 (M,) frame rows of symbol 0, then symbol 1, ... (rows coded -1 left out),
            or None when the frame already is one block of rows per symbol (order[i] == i).
        starts: int64 (A + 1,) symbol a's rows are order[starts[a]:starts[a + 1]].
    """
    if heads is not None:
        if codes.size == n_symbols and (codes == np.arange(n_symbols)).all():
            return None, np.append(heads, n_rows)  # one run per symbol: grouped already
        codes = np.repeat(codes, np.diff(np.append(heads, n_rows)))
    valid = codes if codes.min() >= 0 else codes[codes >= 0]
    n_missing = codes.size - valid.size
    starts = np.zeros(n_symbols + 1, dtype=np.int64)
    np.cumsum(np.bincount(valid, minlength=n_symbols), out=starts[1:])
    if n_missing == 0 and (codes[1:] >= codes[:-1]).all():
        return None, starts
    # a stable argsort of 16-bit keys is a radix sort: ~4x faster than on int64 for 10M rows
    keys = codes.astype(np.int16) if n_symbols < 2**15 else codes
    order = np.argsort(keys, kind="stable")[n_missing:]  # rows coded -1 sort first
    return order, starts


def _check_symbol_timestamps(ts: np.ndarray, order: np.ndarray | None, starts: np.ndarray,
                             symbols: tuple, source: str) -> None:
    """Raise DataError if a symbol repeats a timestamp or goes back in time.

    ``ts`` int64 (M,) grouped as by _group_rows. Reports the first symbol at fault, its
    duplicates before its unsorted rows, naming up to five frame rows.
    """
    d = np.diff(ts)
    bounds = starts[1:-1]
    bounds = bounds[(bounds > 0) & (bounds < ts.size)]
    d[bounds - 1] = 1  # one symbol's last bar to the next one's first bar: no defect
    if d.size == 0 or d.min() > 0:
        return
    p = int(np.argmax(d <= 0))
    a = int(np.searchsorted(starts, p, side="right")) - 1  # the symbol whose rows p, p+1 are
    steps = d[starts[a]:starts[a + 1] - 1]
    dup = steps == 0
    kind = "duplicate timestamps" if dup.any() else "timestamps not sorted"
    pos = np.flatnonzero(dup if dup.any() else steps < 0)[:5] + starts[a] + 1
    rows = pos if order is None else order[pos]
    raise DataError(f"{source}: {kind} for symbol {symbols[a]!r} at rows {rows.tolist()}")


def _one_calendar(ts: np.ndarray, starts: np.ndarray) -> bool:
    """True when every symbol has exactly the same timestamps (a regular panel).

    ``ts`` int64 (M,) UTC ns grouped by symbol, ``starts`` int64 (A + 1,) as in _group_rows.
    """
    counts = np.diff(starts)
    if (counts != counts[0]).any():
        return False
    first = ts[:starts[1]]
    # symbol by symbol: stops at the first difference and needs no (M,) temporary
    return all(np.array_equal(ts[starts[a]:starts[a + 1]], first)
               for a in range(1, counts.size))


def _align_symbols(ts: np.ndarray, starts: np.ndarray, regular: bool, symbols: tuple,
                   source: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The timestamps every symbol has, and where each symbol's bar for them is.

    Args:
        ts: int64 (M,) UTC ns grouped by symbol (``starts`` as in _group_rows), strictly
            ascending within each symbol.
        regular: every symbol has the same timestamps (_one_calendar).

    Returns:
        common: int64 (T,) ascending, a fresh array.
        pos: int64 (A, T) index into ``ts`` of symbol a's bar at common[t], or None when
            ``regular`` (pos[a, t] == a * T + t).
    """
    n_symbols = len(symbols)
    if regular:  # no set algebra
        common, pos = ts[:starts[1]].copy(), None
    else:
        common = ts[starts[0]:starts[1]]
        for a in range(1, n_symbols):
            common = common[_isin_sorted(common, ts[starts[a]:starts[a + 1]])]
        pos = np.empty((n_symbols, common.size), dtype=np.int64)
        for a in range(n_symbols):
            pos[a] = starts[a] + np.searchsorted(ts[starts[a]:starts[a + 1]], common)
    if common.size == 0:
        raise DataError(no_shared_timestamps(
            source, symbols, [ts[starts[a]:starts[a + 1]] for a in range(n_symbols)]))
    return common, pos


def _aligned_rows(order: np.ndarray | None, pos: np.ndarray | None,
                  n_symbols: int) -> np.ndarray | None:
    """int64 (T, A) frame row of each aligned bar (``order`` from _group_rows, ``pos`` from
    _align_symbols), or None when the frame is A blocks of T rows in bar order."""
    if pos is None:
        if order is None:
            return None
        rows = order.reshape(n_symbols, -1)
    else:
        rows = pos if order is None else order[pos]
    return np.ascontiguousarray(rows.T)  # C order: np.take then writes (T, A) sequentially


def _isin_sorted(x: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """bool (len(x),): x[i] is in ``pool``; both int64, strictly ascending."""
    if pool.size == 0:
        return np.zeros(x.size, dtype=np.bool_)
    at = np.minimum(np.searchsorted(pool, x), pool.size - 1)
    return pool[at] == x


def _gather(column: np.ndarray, index: np.ndarray | None, out: np.ndarray) -> np.ndarray:
    """Fill ``out`` float64 (T, A) with column[index] and return it.

    ``column`` float64 (N,) one frame column; ``index`` int64 (T, A) frame rows, or None when
    the frame is A blocks of T rows (one transposing copy, ~2x faster than an index gather).
    """
    if index is None:
        np.copyto(out, column.reshape(out.shape[1], out.shape[0]).T)
    else:
        np.take(column, index, out=out)
    return out


def _numeric(df: pd.DataFrame, name: str, source: str) -> np.ndarray:
    """Column ``name`` as float64, or a DataError naming the column and the first bad rows."""
    try:
        return df[name].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        bad = pd.to_numeric(df[name], errors="coerce").isna() & df[name].notna()
        rows = np.nonzero(bad.to_numpy())[0][:5]
        raise DataError(f"{source}: column {name!r} is not numeric (dtype {df[name].dtype}); "
                        f"bad values at rows {rows.tolist()}") from None


def from_path(path, periods_per_year: float | None = None) -> MarketData:
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


def inferred_periods_per_year(timestamps, calendar: str | None = None) -> float:
    """Bars per year read off int64 ns ``timestamps`` (and a calendar name, if any): the value a
    data config's ``periods_per_year: 0`` stands for (``optrader.annualisation``)."""
    from optrader.annualisation import infer_periods_per_year

    if calendar in ("auto", "always_open"):  # the default: the timestamps decide
        calendar = None
    try:
        return infer_periods_per_year(timestamps, calendar).periods_per_year
    except ValueError as exc:
        raise DataError(f"data.periods_per_year: 0 asks to infer it from the bar timestamps, "
                        f"which failed ({exc}); set it explicitly") from None
