"""Load bar files into MarketData: read (pyarrow) -> quality report -> clean -> resample ->
align -> calendar -> validated arrays, cached on disk and memory-mapped.

``load_files(cfg)`` takes a validated ``FileDataConfig`` (``conf/data/parquet.yaml`` /
``csv.yaml``). The quality report runs on the rows as read; a score below
``quality.min_score`` stops the load with the report, otherwise its problems are logged as
warnings and rows with an error-severity defect (NaN/inf, non-positive prices, high < low,
open/close outside [low, high], negative volume) are dropped, rows are sorted by symbol and
time (assets in alphabetical order of their symbols) and duplicate timestamps keep their last
row. Source files are only ever read. A cache hit returns memory-mapped arrays, replays the
load's warnings, and has ``quality=None`` (the score is in the entry's meta.json).
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import pandas as pd

from optrader.data import cache as cache_mod
from optrader.data.align import align
from optrader.data.calendar import TradingCalendar
from optrader.data.io import read_bars, source_files
from optrader.data.market import OHLCV, DataError, MarketData, from_arrays
from optrader.data.quality import check_or_raise, quality_report
from optrader.data.resample import parse_rule, resample

log = logging.getLogger(__name__)


def calendar_from_config(cal) -> TradingCalendar:
    """A TradingCalendar from a CalendarConfig (preset, custom sessions or an exchange code)."""
    if cal.name in ("always_open", "us_equities"):
        return TradingCalendar.preset(cal.name)
    if cal.name == "custom":
        try:
            return TradingCalendar(timezone=cal.timezone,
                                   sessions=tuple(tuple(p) for p in cal.sessions),
                                   weekdays=tuple(cal.weekdays), holidays=tuple(cal.holidays))
        except ValueError as exc:
            raise DataError(f"data.calendar: {exc}") from None
    return TradingCalendar.from_exchange(cal.name)


def read_long(cfg) -> pd.DataFrame:
    """The configured files as a canonical long frame (no validation beyond parsing)."""
    columns = dict(cfg.columns)
    return read_bars(
        list(cfg.path) if isinstance(cfg.path, (list, tuple)) else cfg.path,
        fmt=cfg.source, columns=columns or None, timestamp=cfg.timestamp,
        timestamp_unit=cfg.timestamp_unit, timezone=cfg.timezone,
        symbols=list(cfg.symbols) if cfg.symbols is not None else None,
        start=cfg.start, end=cfg.end, extra=list(cfg.extra_columns) or None)


def clean_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop rows with an error-severity defect, sort by (symbol, time) with symbols in
    alphabetical order (so the asset axis does not depend on the files' row order), keep the
    last of each duplicate timestamp (a later row corrects an earlier one); returns (frame, rows
    dropped). Vectorised; an already clean, sorted frame is returned without a copy."""
    o, h, lo, c, v = (df[k].to_numpy() for k in OHLCV)
    with np.errstate(invalid="ignore"):
        good = (np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c)
                & np.isfinite(v) & (lo > 0) & (h >= lo) & (v >= 0)
                & (o >= lo) & (o <= h) & (c >= lo) & (c <= h))
    ts = df["timestamp"].to_numpy()
    codes = pd.factorize(df["symbol"], sort=True)[0]
    keep = np.nonzero(good)[0] if not good.all() else None
    if keep is not None:
        ts, codes = ts[keep], codes[keep]
    in_order = bool(np.all((codes[1:] > codes[:-1])
                           | ((codes[1:] == codes[:-1]) & (ts[1:] >= ts[:-1]))))
    order = None if in_order else np.lexsort((ts, codes))
    if order is not None:
        ts, codes = ts[order], codes[order]
        keep = order if keep is None else keep[order]
    # duplicates are adjacent now: drop every row followed by one with the same key
    dup = np.zeros(ts.size, dtype=np.bool_)
    dup[:-1] = (codes[1:] == codes[:-1]) & (ts[1:] == ts[:-1])
    if dup.any():
        idx = np.nonzero(~dup)[0]
        keep = idx if keep is None else keep[idx]
    if keep is None:
        return df, 0
    out = df.iloc[keep].reset_index(drop=True)
    return out, len(df) - len(out)


def load_files(cfg, *, use_cache: bool | None = None) -> MarketData:
    """MarketData for a FileDataConfig, from the cache when the files and config are unchanged."""
    if cfg.path is None:
        raise DataError(f"data.path: expected a file, glob or directory of {cfg.source} bars, "
                        f"got null (set data.path=...)")
    paths = list(cfg.path) if isinstance(cfg.path, (list, tuple)) else [cfg.path]
    files = [f for p in paths for f, _ in source_files(p, cfg.source)]
    use_cache = cfg.cache.enabled if use_cache is None else use_cache
    # the files are keyed by identity (resolved path, size, mtime), not by how they were named
    key_cfg = {k: v for k, v in dataclasses.asdict(cfg).items()
               if k not in ("cache", "split", "path")}
    root = cache_mod.cache_root(cfg.cache.dir)
    key = cache_mod.cache_key(files, key_cfg) if use_cache else None
    if use_cache:
        entry = cache_mod.load_entry(root, key)
        if entry is not None:
            meta = entry["meta"]
            for w in meta["warnings"]:
                log.warning("%s", w)
            return MarketData(entry["bars"], entry["timestamps"], tuple(meta["symbols"]),
                              float(meta["periods_per_year"]), entry["spread"],
                              entry["tradable"], entry["day"], entry["extra"], None)
    t0 = time.perf_counter()
    market = build_market(cfg)
    log.info("loaded %s: %d bars x %d symbols in %.2f s", market.symbols, market.n_bars,
             market.n_assets, time.perf_counter() - t0)
    if use_cache:
        arrays = {"bars": market.bars, "timestamps": market.timestamps,
                  "tradable": market.tradable, "day": market.day, "spread": market.spread,
                  **{f"extra_{n}": x for n, x in market.extra.items()}}
        meta = {"symbols": list(market.symbols), "periods_per_year": market.periods_per_year,
                "has_spread": market.spread is not None, "extra": list(market.extra),
                "source": [str(f) for f in files], "score": market.quality.score,
                "warnings": _warnings(market.quality)}
        cache_mod.save_entry(root, key, arrays, meta)
    return market


def build_market(cfg) -> MarketData:
    """Read, check, clean, resample, align and validate (no cache)."""
    source = _describe(cfg.path)
    df = read_long(cfg)
    calendar = calendar_from_config(cfg.calendar)
    report = quality_report(df, source=source, jump_sigma=cfg.quality.jump_sigma,
                            zero_volume_run=cfg.quality.zero_volume_run,
                            expected=expected_grid(df, calendar))
    try:
        warnings = check_or_raise(report, cfg.quality.min_score)
    except DataError as exc:
        hint = ""
        if any(i.kind == "missing_bars" for i in report.issues) and \
                cfg.calendar.name == "always_open":
            hint = ("\nhint: if the missing bars are outside trading hours, set "
                    "data.calendar.name=us_equities (or a custom calendar)")
        raise DataError(f"{exc}{hint}\n(data.quality.min_score={cfg.quality.min_score}; "
                        f"`python -m optrader.data validate PATH` prints the full report)") \
            from None
    for w in warnings:
        log.warning("%s: %s", source, w)
    df, dropped = clean_rows(df)
    if dropped:
        log.warning("%s: dropped %d rows with defects (see the quality report)", source, dropped)
    if df.empty:
        raise DataError(f"{source}: no usable rows after dropping defects")
    if cfg.resample is not None:
        try:
            parse_rule(cfg.resample)
        except DataError as exc:
            raise DataError(f"data.resample: {exc}") from None
        df = resample(df, cfg.resample, calendar=calendar, source=source)
    aligned = align(df, cfg.align, source=source)
    day = calendar.day_ids(aligned.timestamps)
    off = off_hours(aligned.timestamps, calendar)
    if off.any():
        first = pd.to_datetime(aligned.timestamps[off][:3], utc=True)
        log.warning("%s: %d of %d bars fall outside the calendar's sessions (%s), e.g. %s",
                    source, int(off.sum()), off.size, cfg.calendar.name,
                    ", ".join(str(t) for t in first))
    return from_arrays(*aligned.bars, timestamps=aligned.timestamps, symbols=aligned.symbols,
                       periods_per_year=cfg.periods_per_year, source=source,
                       spread=aligned.spread, tradable=aligned.tradable, day=day,
                       extra=aligned.extra, quality=report)


def off_hours(timestamps: np.ndarray, calendar: TradingCalendar) -> np.ndarray:
    """bool (T,): intraday bars stamped outside the calendar's sessions (daily or coarser bars
    are stamped at midnight and are never flagged)."""
    d = np.diff(timestamps)
    if d.size == 0 or np.median(d) >= 86_400 * 10**9:
        return np.zeros(timestamps.shape, dtype=np.bool_)
    return ~calendar.is_open(timestamps)


def expected_grid(df: pd.DataFrame, calendar: TradingCalendar) -> np.ndarray | None:
    """The bar grid of the calendar at the data's typical bar spacing (None if it cannot be
    inferred, e.g. a single bar per symbol)."""
    ts = df["timestamp"].to_numpy()
    sym = df["symbol"].to_numpy()
    if ts.size < 3:
        return None
    same = sym[1:] == sym[:-1]
    d = np.diff(ts)[same]
    d = d[d > 0]
    if d.size == 0:
        return None
    values, counts = np.unique(d, return_counts=True)
    freq = int(values[np.argmax(counts)])
    if freq >= 86_400 * 10**9:
        return None  # daily or coarser bars: sessions, not a clock grid (see the report's gaps)
    return calendar.expected_timestamps(int(ts.min()), int(ts.max()) + 1, freq)


def _warnings(report) -> list[str]:
    return [] if report is None else [f"{report.source}: {i.line()}" for i in report.issues]


def _describe(path) -> str:
    if isinstance(path, (list, tuple)):
        return ", ".join(map(str, path[:3])) + (" ..." if len(path) > 3 else "")
    return str(path)
