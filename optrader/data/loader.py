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
import functools
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from optrader.config import CalendarConfig, FileDataConfig
from optrader.data import cache as cache_mod
from optrader.data.align import align
from optrader.data.calendar import MissingCalendarPackage, TradingCalendar
from optrader.data.io import _format_of, read_bars, source_files
from optrader.data.market import (
    OHLCV,
    DataError,
    MarketData,
    from_arrays,
    inferred_periods_per_year,
)
from optrader.data.quality import check_or_raise, quality_report
from optrader.data.resample import parse_rule, resample
from optrader.data.sessions import Expected, describe_weekdays, expected_bars

log = logging.getLogger(__name__)


def calendar_from_config(cal, start=None, end=None) -> TradingCalendar | None:
    """A TradingCalendar from a CalendarConfig (preset, custom sessions or an exchange code;
    ``start``/``end`` bound an exchange's schedule), or None for ``auto`` (inferred from the
    bars, see ``optrader.data.sessions``). A bad name or setting is a DataError."""
    if cal.name == "auto":
        return None
    try:
        if cal.name == "custom":
            return TradingCalendar(timezone=cal.timezone,
                                   sessions=tuple(tuple(p) for p in cal.sessions),
                                   weekdays=tuple(cal.weekdays), holidays=tuple(cal.holidays))
        return TradingCalendar.named(cal.name, start, end)
    except MissingCalendarPackage:
        raise
    except ValueError as exc:
        raise DataError(f"data.calendar: {exc}") from None


def expectation(df: pd.DataFrame, cal, timezone: str = "UTC"):
    """(calendar, Expected or None) of a long frame under CalendarConfig ``cal``: the configured
    calendar (``auto``: the inferred one, or always_open when nothing can be inferred) and the
    bars a complete feed would hold. ``timezone``: the zone naive timestamps were read in, tried
    first for dating daily bars and inferring sessions."""
    ts = df["timestamp"].to_numpy()
    ts = ts.astype("M8[ns]").view(np.int64) if ts.dtype.kind == "M" else \
        ts.astype(np.int64, copy=False)
    lo, hi = (pd.Timestamp(int(ts.min()), tz="UTC"), pd.Timestamp(int(ts.max()), tz="UTC")) \
        if ts.size else (None, None)
    calendar = calendar_from_config(cal, lo, hi)
    expected = expected_bars(ts, calendar, zones=(timezone,))
    if calendar is None:
        calendar = expected.calendar if expected is not None else TradingCalendar()
    return calendar, expected


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
    """Drop rows with an error-severity defect (the quality report's row errors: NaN/inf,
    non-positive prices, high < low, open/close outside [low, high], negative volume, inf or
    negative spread, and duplicates), sort by (symbol, time) with symbols in
    alphabetical order (so the asset axis does not depend on the files' row order), keep the
    last of each duplicate timestamp (a later row corrects an earlier one); returns (frame, rows
    dropped). Vectorised; an already clean, sorted frame is returned without a copy."""
    o, h, lo, c, v = (df[k].to_numpy() for k in OHLCV)
    with np.errstate(invalid="ignore"):
        good = (np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c)
                & np.isfinite(v) & (lo > 0) & (h >= lo) & (v >= 0)
                & (o >= lo) & (o <= h) & (c >= lo) & (c <= h))
        if "spread" in df.columns:  # NaN = no quote (kept); inf or negative is a defect
            sp = df["spread"].to_numpy(dtype=np.float64)
            good &= ~np.isinf(sp) & ~(sp < 0)
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


class DataFileNotFound(DataError, FileNotFoundError):
    """A data path names no file or directory (a DataError and a FileNotFoundError)."""


def file_config(data_cfg, data=None):
    """The data config a load really uses: a file path passed as ``data`` (or the dataframe
    source's ``data.path``) becomes the ``FileDataConfig`` of ``data=csv|parquet
    data.path=PATH``, so every file goes through one path (``load_files``: quality gate,
    cleaning, alignment, calendar, cache) and splits the same way.

    The format comes from the suffix (``.parquet``/``.pq``, ``.csv``/``.csv.gz``; a directory
    or glob: from its files). The other settings come from ``data_cfg`` when it is already a file
    config; from the dataframe source its ``periods_per_year`` and ``split``; otherwise (the
    synthetic default) the file sources' defaults. Any other ``data`` returns ``data_cfg``.
    """
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
    elif data is None and data_cfg.source == "dataframe" and data_cfg.path is not None:
        path = os.fspath(data_cfg.path)
    else:
        return data_cfg
    fmt = _path_format(path, data_cfg.source if isinstance(data_cfg, FileDataConfig) else None)
    if isinstance(data_cfg, FileDataConfig):
        return dataclasses.replace(data_cfg, source=fmt, path=path)
    cfg = dataclasses.replace(_group_defaults(fmt), path=path)
    if data_cfg.source == "dataframe":
        cfg = dataclasses.replace(cfg, periods_per_year=data_cfg.periods_per_year,
                                  split=data_cfg.split)
    return cfg


@functools.lru_cache(maxsize=2)
def _group_defaults(fmt: str) -> FileDataConfig:
    """The ``data=csv`` / ``data=parquet`` group exactly as composed from conf/data/*.yaml."""
    from optrader.config import compose, load_spec

    return load_spec(compose(overrides=[f"data={fmt}"])).data


def _path_format(path: str, default: str | None) -> str:
    """``parquet`` or ``csv`` for a path by its suffix, its files' suffixes, or ``default``;
    a path that names nothing raises what ``load_files`` raises for it."""
    p = Path(path)
    pattern = any(ch in path for ch in "*?[")
    if not pattern:
        _check_paths_exist([path])
    if p.is_dir() or pattern:
        fmt = default or _format_of(p, None)  # "bars/*.csv" names its format
        if fmt is not None:
            return fmt
        fmts = {_format_of(f, None) for f, _ in source_files(path, None)} - {None}
        if len(fmts) != 1:
            raise DataError(f"data: {path}: expected .parquet or .csv files, found "
                            f"{sorted(fmts) or 'none'}; pass data=csv or data=parquet with "
                            f"data.path={path}")
        return fmts.pop()
    fmt = _format_of(p, None)
    if fmt is None:
        suffix = "".join(p.suffixes[-2:]) if p.name.lower().endswith(".gz") else p.suffix
        raise DataError(f"data: {p}: unsupported file type {suffix.lower()!r}; expected "
                        f".parquet or .csv (or .pq, .csv.gz)")
    return fmt


def _check_paths_exist(paths) -> None:
    for p in paths:
        if not any(ch in str(p) for ch in "*?[") and not Path(p).exists():
            raise DataFileNotFound(f"data.path: {p}: no such file or directory")


def load_files(cfg, *, use_cache: bool | None = None) -> MarketData:
    """MarketData for a FileDataConfig, from the cache when the files and config are unchanged."""
    if cfg.path is None:
        raise DataError(f"data.path: expected a file, glob or directory of {cfg.source} bars, "
                        f"got null (set data.path=...)")
    paths = list(cfg.path) if isinstance(cfg.path, (list, tuple)) else [cfg.path]
    _check_paths_exist(paths)
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
            return entry["market"]  # verified (checksums) and validated by load_entry
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
    calendar, expected = expectation(df, cfg.calendar, cfg.timezone)
    report = _report(df, source, cfg.quality, expected)
    try:
        warnings = check_or_raise(report, cfg.quality.min_score)
    except DataError as exc:
        hint = calendar_hint(df, cfg, report)
        raise DataError(f"{exc}{hint}\n(data.quality.min_score={cfg.quality.min_score}; "
                        f"`python -m optrader.data validate PATH` prints the full report)") \
            from None
    if expected is not None and expected.inferred:
        log.info("%s: data.calendar.name=auto: expecting %s", source, expected.describe())
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
                    source, int(off.sum()), off.size, _calendar_name(cfg, calendar),
                    ", ".join(str(t) for t in first))
    return from_arrays(*aligned.bars, timestamps=aligned.timestamps, symbols=aligned.symbols,
                       periods_per_year=cfg.periods_per_year or inferred_periods_per_year(
                           aligned.timestamps, cfg.calendar.name), source=source,
                       spread=aligned.spread, tradable=aligned.tradable, day=day,
                       extra=aligned.extra, quality=report)


def off_hours(timestamps: np.ndarray, calendar: TradingCalendar) -> np.ndarray:
    """bool (T,): intraday bars stamped outside the calendar's sessions (daily or coarser bars
    are stamped at midnight and are never flagged)."""
    d = np.diff(timestamps)
    if d.size == 0 or np.median(d) >= 86_400 * 10**9:
        return np.zeros(timestamps.shape, dtype=np.bool_)
    return ~calendar.is_open(timestamps)


def auto_calendar_fix(df: pd.DataFrame, report, calendar_name: str, timezone: str,
                      quality) -> Expected | None:
    """The inferred calendar's expected bars when missing bars failed ``report`` under the named
    calendar ``calendar_name`` and the inferred calendar lets the same check pass (so a hint to
    use it always works); else None. ``quality``: a QualityConfig (min_score, jump_sigma,
    zero_volume_run)."""
    if calendar_name == "auto" or not any(i.kind == "missing_bars" for i in report.issues):
        return None
    _, auto = expectation(df, CalendarConfig(name="auto"), timezone)
    if auto is None or not _report(df, report.source, quality, auto).ok(quality.min_score):
        return None
    return auto


def calendar_hint(df: pd.DataFrame, cfg, report) -> str:
    """A hint line proposing ``data.calendar.name=auto`` when it would let the load pass."""
    auto = auto_calendar_fix(df, report, cfg.calendar.name, cfg.timezone, cfg.quality)
    if auto is None:
        return ""
    return (f"\nhint: the bars follow {auto.describe()}; set data.calendar.name=auto to expect "
            f"only those sessions")


def _report(df, source, quality, expected):
    return quality_report(df, source=source, jump_sigma=quality.jump_sigma,
                          zero_volume_run=quality.zero_volume_run,
                          expected=None if expected is None else expected.grid,
                          expected_from=None if expected is None else expected.describe())


def _calendar_name(cfg, calendar) -> str:
    if cfg.calendar.name != "auto":
        return cfg.calendar.name
    return f"auto: {describe_weekdays(calendar.weekdays)} " + \
        ", ".join(f"{o}-{c}" for o, c in calendar.sessions) + f" {calendar.timezone}"


def _warnings(report) -> list[str]:
    return [] if report is None else [f"{report.source}: {i.line()}" for i in report.issues]


def _describe(path) -> str:
    if isinstance(path, (list, tuple)):
        return ", ".join(map(str, path[:3])) + (" ..." if len(path) > 3 else "")
    return str(path)
