"""Bar files (Parquet / CSV, via pyarrow) to the canonical long frame, and back to Parquet.

Canonical long frame: a pandas DataFrame with a default RangeIndex and the columns
``timestamp`` int64 (UTC nanoseconds since the epoch), ``symbol`` str, ``open``, ``high``,
``low``, ``close``, ``volume`` float64, then ``spread`` float64 when any file has one (NaN for the
files without), then the ``extra`` columns asked for (float64, lowercased names). Rows keep the
source order within each file and files follow in sorted path order; nothing is sorted,
deduplicated or price-checked here (that is the quality check's job).

Layouts: (a) long, a ``symbol`` column; (b) one file per symbol, no symbol column: the symbol is the
file stem (``AAPL.parquet`` -> "AAPL", or ``symbol=`` for a single file); (c) a directory
partitioned hive style (``root/symbol=AAPL/part-0.parquet``): the symbol is the partition value.

Filters: ``symbols`` and ``start``/``end`` are pushed down to the Parquet scan where the column
types allow (string symbols; timestamp-typed or integer-epoch times, a day wider than asked, then
filtered exactly on the UTC ns); CSV files and string/date timestamps are filtered after parsing.
Hive partitions of unrequested symbols are never opened; nor are files named after unrequested
symbols once any file stem equals a requested symbol (then the source is taken to be one file per
symbol; otherwise every file is opened and filtered on its symbol column).

Epoch numbers with ``timestamp_unit="auto"``: the unit is inferred per file from the largest
absolute value m: m < 1e11 -> s, m < 1e14 -> ms, m < 1e17 -> us, otherwise ns. Every instant from
1973-03-03 to the year 5138 is unambiguous under this rule; older epochs need an explicit unit.
Float epochs keep whole units exactly and round the fraction to the decimal step the float can
resolve (1 us for float seconds today). Naive wall-clock times that fall in a DST gap or repeated
hour of ``timezone`` are an error (store UTC or zone-aware timestamps for such data).

Every problem raises ``DataError`` naming the file, before anything is returned. Sources are only
ever opened for reading.
"""

from __future__ import annotations

import difflib
import glob
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from optrader.data.checks import OHLCV, DataError, mixed_timezones

__all__ = ["read_bars", "write_canonical"]

_SUFFIXES = {"parquet": (".parquet", ".pq"), "csv": (".csv", ".csv.gz")}
_NS_PER = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
_TS_NAMES = ("timestamp", "datetime", "date", "time")
_DAY_NS = 86_400 * 10**9
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_FS = pafs.LocalFileSystem()
_ARROW_ERRORS = (pa.ArrowException, OSError)


@dataclass(frozen=True)
class _Source:
    path: Path
    fmt: str  # "parquet" | "csv"
    fragment: ds.Fragment  # not opened yet
    symbol: str | None  # from the hive partition, the symbol= argument or the file stem
    from_partition: bool


@dataclass(frozen=True)
class _Options:
    columns: dict  # canonical name -> source name
    unit: str
    timezone: str
    symbols: list | None
    start: int | None  # UTC ns, inclusive
    end: int | None  # UTC ns, exclusive
    extra: list  # lowercased names


def read_bars(path, *, fmt: str | None = None, columns: dict | None = None,
              timestamp: str | None = None, timestamp_unit: str = "auto",
              timezone: str = "UTC", symbols: list | None = None, start: str | None = None,
              end: str | None = None, symbol: str | None = None,
              extra: list | None = None) -> pd.DataFrame:
    """Read bar files into the canonical long frame (see the module docstring).

    Args:
        path: a file, a glob (``data/*.parquet``), a directory (plain or hive-partitioned by
            symbol), or a list of these.
        fmt: "parquet" or "csv"; default: from each file's suffix (.parquet/.pq, .csv/.csv.gz).
        columns: canonical name -> source name for non-standard names, e.g.
            ``{"open": "Open Price", "timestamp": "Date"}``. Names match case-insensitively.
        timestamp: source name of the timestamp column (overrides ``columns["timestamp"]``);
            default: the first of timestamp, datetime, date, time.
        timestamp_unit: unit of numeric epoch timestamps: "s", "ms", "us", "ns" or "auto".
        timezone: zone of naive timestamps, dates (midnight) and naive ``start``/``end``, e.g.
            "America/New_York"; zone-aware timestamps are converted from their own zone.
        symbols: keep only these symbols; every one must be found.
        start, end: keep ``start <= timestamp < end`` (ISO strings or datetimes).
        symbol: the symbol of a single file that has no symbol column (instead of its stem).
        extra: further numeric source columns to include, as float64 with lowercased names.

    Returns:
        The canonical long frame.
    """
    opts = _options(fmt, columns, timestamp, timestamp_unit, timezone, symbols, start, end,
                    extra)
    sources, skipped = _sources(path, fmt, opts, symbol), []
    if opts.symbols is not None and any(s.symbol in opts.symbols for s in sources):
        # one file per symbol: files named after unrequested symbols are not even opened
        skipped = [s for s in sources if not (s.from_partition or s.symbol in opts.symbols)]
        sources = [s for s in sources if s.from_partition or s.symbol in opts.symbols]
    parts = [_read_source(s, opts, symbol is not None) for s in sources]
    names = ["timestamp", "symbol", *OHLCV]
    if any("spread" in p for p in parts):
        names.append("spread")
        for p in parts:
            if "spread" not in p:
                p["spread"] = pa.chunked_array([np.full(len(p["timestamp"]), np.nan)])
    names += opts.extra
    window = _describe_window(opts)
    if opts.symbols is not None:
        found = set().union(*(pc.unique(p["symbol"]).to_pylist() for p in parts))
        missing = [s for s in opts.symbols if s not in found]
        if missing:
            held = sorted({s.symbol for s in skipped} | _held_symbols(sources, opts))
            raise DataError(f"{_describe(path)}: symbols {missing} not found{window}; the "
                            f"files hold {held[:20]}{' ...' if len(held) > 20 else ''}")
    if sum(len(p["timestamp"]) for p in parts) == 0:
        raise DataError(f"{_describe(path)}: no rows{window}")
    return pa.concat_tables([pa.table({k: p[k] for k in names}) for p in parts]).to_pandas()


def _held_symbols(sources: list[_Source], opts: _Options) -> set:
    """Every symbol the sources hold (error path: reads the symbol columns, skips bad files)."""
    held = set()
    for src in sources:
        try:
            names = src.fragment.physical_schema.names
            col = None if src.from_partition else _match_columns(names, opts, "").get("symbol")
            if col is None:
                held.add(src.symbol)
            else:
                table = src.fragment.to_table(columns=[col])
                held.update(map(str, pc.unique(table.column(col)).to_pylist()))
        except (*_ARROW_ERRORS, DataError):
            continue
    return held


# ---------------------------------------------------------------------------------- arguments


def _options(fmt, columns, timestamp, unit, timezone, symbols, start, end, extra) -> _Options:
    if fmt is not None and fmt not in _SUFFIXES:
        raise DataError(f"fmt: expected 'parquet', 'csv' or None, got {fmt!r}")
    if unit not in (*_NS_PER, "auto"):
        raise DataError(f"timestamp_unit: expected 's', 'ms', 'us', 'ns' or 'auto', got {unit!r}")
    try:
        pc.assume_timezone(pa.array([0], pa.timestamp("s")), timezone)
    except (_ARROW_ERRORS + (TypeError,)) as exc:
        raise DataError(f"timezone: unknown time zone {timezone!r} (expected an IANA name like "
                        f"'America/New_York' or 'UTC'): {_first_line(exc)}") from None
    extra = [_check_name(x, "extra").lower() for x in (extra or [])]
    clash = [x for x in extra if x in ("timestamp", "symbol", *OHLCV, "spread")]
    if clash:
        raise DataError(f"extra: {clash} are canonical columns, read anyway; list only others")
    columns = dict(columns or {})
    allowed = ("timestamp", "symbol", *OHLCV, "spread", *extra)
    for key, value in columns.items():
        if key not in allowed:
            raise DataError(f"columns: unknown canonical name {key!r}; expected keys among "
                            f"{list(allowed)}")
        _check_name(value, f"columns[{key!r}]")
    if timestamp is not None:
        columns["timestamp"] = _check_name(timestamp, "timestamp")
    if isinstance(symbols, str):
        symbols = [symbols]
    if symbols is not None:
        symbols = [_check_name(s, "symbols") for s in symbols]
        if not symbols:
            raise DataError("symbols: empty list; pass None to read every symbol")
    lo, hi = _bound(start, "start", timezone), _bound(end, "end", timezone)
    if lo is not None and hi is not None and lo >= hi:
        raise DataError(f"start={start!r} is not before end={end!r}")
    return _Options(columns, unit, timezone, symbols, lo, hi, extra)


def _check_name(value, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise DataError(f"{what}: expected non-empty strings, got {value!r}")
    return value


def _bound(value, what: str, timezone: str) -> int | None:
    """``value`` as UTC ns; naive values are wall-clock times in ``timezone``."""
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
        if ts is pd.NaT:
            raise ValueError("NaT")
        if ts.tzinfo is not None:
            return int(ts.tz_convert("UTC").as_unit("ns").value)
        wall = pa.array([ts.as_unit("ns").value], pa.timestamp("ns"))
        return pc.assume_timezone(wall, timezone).cast(pa.int64())[0].as_py()
    except (ValueError, TypeError, OverflowError, pa.ArrowException) as exc:
        raise DataError(f"{what}: cannot read {value!r} as a time in {timezone}: "
                        f"{_first_line(exc)}") from None


def _describe(path) -> str:
    return ", ".join(map(str, path)) if isinstance(path, (list, tuple)) else str(path)


def _describe_window(opts: _Options) -> str:
    if opts.start is None and opts.end is None:
        return ""
    show = [pd.Timestamp(x, tz="UTC").isoformat() if x is not None else "..."
            for x in (opts.start, opts.end)]
    return f" in [{show[0]}, {show[1]})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ------------------------------------------------------------------------------------ sources


def _format_of(p: Path, fmt: str | None) -> str | None:
    if fmt is not None:
        return fmt
    name = p.name.lower()
    return next((f for f, suffixes in _SUFFIXES.items() if name.endswith(suffixes)), None)


def source_files(path, fmt: str | None) -> list[tuple[Path, Path | None]]:
    """(file, directory it was found in or None) for every file ``path`` names."""
    items = list(path) if isinstance(path, (list, tuple)) else [path]
    if not items:
        raise DataError("path: empty list of paths")
    found: dict[str, tuple[Path, Path | None]] = {}
    for item in items:
        p = Path(item)
        if p.is_file():
            hits = [(p, None)]
        elif p.is_dir():
            hits = _dir_files(p, fmt)
        elif any(ch in str(item) for ch in "*?["):
            matched = sorted(glob.glob(str(item), recursive=True))
            if not matched:
                raise DataError(f"{item}: glob matched nothing")
            hits = []
            for m in map(Path, matched):
                hits += _dir_files(m, fmt) if m.is_dir() else [(m, None)]
        else:
            raise DataError(f"{item}: no such file or directory")
        for f, root in hits:
            found.setdefault(os.path.abspath(f), (f, root))
    return [found[k] for k in sorted(found)]


def _dir_files(root: Path, fmt: str | None) -> list[tuple[Path, Path]]:
    files = [f for f in sorted(root.rglob("*")) if f.is_file()
             and not any(part.startswith((".", "_")) for part in f.relative_to(root).parts)]
    if not files:
        raise DataError(f"{root}: empty directory (no data files)")
    data = [(f, root) for f in files if _format_of(f, fmt) is not None]
    if not data:
        raise DataError(f"{root}: no .parquet/.pq/.csv/.csv.gz files among {len(files)} files "
                        f"(e.g. {files[0].name!r}); pass fmt='parquet' or fmt='csv'")
    return data


def _sources(path, fmt: str | None, opts: _Options, symbol: str | None) -> list[_Source]:
    files = source_files(path, fmt)
    if symbol is not None:
        _check_name(symbol, "symbol")
        if len(files) != 1:
            raise DataError(f"symbol={symbol!r} names the symbol of a single file, but "
                            f"{_describe(path)} holds {len(files)} files")
    sym_key = opts.columns.get("symbol", "symbol").lower()
    sources, hive = [], {}
    for f, root in files:
        kind = _format_of(f, fmt)
        if kind is None:
            raise DataError(f"{f}: unknown file type; expected .parquet, .pq, .csv or .csv.gz, "
                            f"or pass fmt='parquet' / fmt='csv'")
        if root is not None and any("=" in part for part in f.relative_to(root).parts[:-1]):
            hive.setdefault((root, kind), []).append(f)
            continue
        frag = _file_format(kind).make_fragment(str(f), filesystem=_FS)
        # a file inside .../symbol=AAPL/ reached directly or by a glob keeps its partition
        value = next((unquote(d.name.split("=", 1)[1]) for d in f.parents
                      if d.name.lower().startswith(sym_key + "=")), None)
        sources.append(_Source(f, kind, frag, value or symbol or _stem(f), value is not None))
    for (root, kind), group in hive.items():
        keys = sorted({part.split("=", 1)[0] for f in group
                       for part in f.relative_to(root).parts[:-1] if "=" in part})
        part_schema = pa.schema([(k, pa.string()) for k in keys])  # "0700" stays a string
        dataset = ds.dataset([str(f) for f in group], format=_file_format(kind), filesystem=_FS,
                             partitioning=ds.partitioning(part_schema, flavor="hive"),
                             partition_base_dir=str(root), schema=part_schema)  # opens nothing
        key = next((k for k in keys if k.lower() == sym_key), None)
        keep = (pc.field(key).isin(opts.symbols) if key is not None and opts.symbols is not None
                else None)
        for frag in dataset.get_fragments(filter=keep):
            value = ds.get_partition_keys(frag.partition_expression).get(key) if key else None
            f = Path(frag.path)
            sources.append(_Source(f, kind, frag, value or symbol or _stem(f), value is not None))
    return sorted(sources, key=lambda s: os.path.abspath(s.path))


def _file_format(kind: str) -> ds.FileFormat:
    return ds.ParquetFileFormat() if kind == "parquet" else ds.CsvFileFormat()


def _stem(p: Path) -> str:
    name = p.name
    for suffix in (*_SUFFIXES["parquet"], *_SUFFIXES["csv"]):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return p.stem


# ------------------------------------------------------------------------------ reading a file


def _read_source(src: _Source, opts: _Options, symbol_given: bool) -> dict:
    """Canonical columns (pyarrow ChunkedArrays) of one file, filtered."""
    name = str(src.path)
    if src.path.stat().st_size == 0:
        raise DataError(f"{name}: file is empty (0 bytes), no rows")
    what = ("cannot read as Parquet (corrupt, truncated or not a Parquet file?)"
            if src.fmt == "parquet" else "cannot parse as CSV")
    try:
        schema = src.fragment.physical_schema
        n_rows = src.fragment.metadata.num_rows if src.fmt == "parquet" else None
    except _ARROW_ERRORS as exc:
        raise DataError(f"{name}: {what}: {_first_line(exc)}") from None
    if n_rows == 0:
        raise DataError(f"{name}: file has no rows")
    cols = _match_columns(schema.names, opts, name)
    sym_col = cols.pop("symbol", None)
    if src.from_partition:  # the partition names the symbol, whatever the file holds
        sym_col = None
    if sym_col is not None and symbol_given:
        raise DataError(f"{name}: symbol={src.symbol!r} given, but the file has a symbol column "
                        f"{sym_col!r}; filter with symbols=[...] instead")
    ts_col, ts_type = cols["timestamp"], schema.field(cols["timestamp"]).type
    unit = opts.unit
    if unit == "auto" and _is_number(ts_type) and src.fmt == "parquet":
        unit = _unit_from_stats(src.fragment, ts_col) or "auto"
    # Pushdown only narrows: the bounds are widened by a day (covering any wall-clock offset
    # of naive timestamps) and the exact filter runs on the converted UTC ns below.
    push, sym_pushed = [], False
    if src.fmt == "parquet":  # a CSV is parsed whole anyway
        if (opts.symbols is not None and sym_col is not None
                and _is_text(schema.field(sym_col).type)):
            push.append(pc.field(sym_col).isin(opts.symbols))
            sym_pushed = True
        push += _time_pushdown(ts_col, ts_type, unit, opts)
    projection = list(dict.fromkeys([*cols.values(), *([sym_col] if sym_col else [])]))
    try:
        table = src.fragment.to_table(schema=schema, columns=projection,
                                      filter=_all(push) if push else None)
    except _ARROW_ERRORS as exc:
        raise DataError(f"{name}: {what}: {_first_line(exc)}") from None
    if n_rows is None and table.num_rows == 0:
        raise DataError(f"{name}: file has no rows (header only)")

    def reread(col: str) -> pa.ChunkedArray:  # error path: rows numbered as in the file
        return src.fragment.to_table(schema=schema, columns=[col]).column(col)

    out = {"timestamp": _to_utc_ns(table.column(ts_col), unit, opts.timezone, name, ts_col,
                                   reread)}
    if sym_col is not None:
        sym = table.column(sym_col)
        if sym.null_count:
            rows = _rows(reread(sym_col).is_null())
            raise DataError(f"{name}: column {sym_col!r} has missing symbols at {rows}")
        out["symbol"] = sym.cast(pa.string())
    else:
        out["symbol"] = pa.chunked_array([pa.repeat(src.symbol, table.num_rows)], pa.string())
    for canon, col in cols.items():
        if canon != "timestamp":
            out[canon] = _to_float(table.column(col), name, canon, col, reread)
    return _filter(out, opts, sym_pushed)


def _filter(out: dict, opts: _Options, symbols_done: bool) -> dict:
    mask = None
    ts = out["timestamp"]
    if opts.start is not None:
        mask = pc.greater_equal(ts, opts.start)
    if opts.end is not None:
        m = pc.less(ts, opts.end)
        mask = m if mask is None else pc.and_(mask, m)
    if opts.symbols is not None and not symbols_done:
        m = pc.is_in(out["symbol"], value_set=pa.array(opts.symbols, pa.string()))
        mask = m if mask is None else pc.and_(mask, m)
    if mask is None or pc.all(mask).as_py() is not False:
        return out
    return {k: v.filter(mask) for k, v in out.items()}


def _match_columns(names: list, opts: _Options, name: str) -> dict:
    """canonical -> source column, for timestamp, OHLCV, [spread], [symbol] and extras."""
    by_lower: dict[str, list[str]] = {}
    for n in names:
        by_lower.setdefault(n.lower(), []).append(n)

    def find(want: str) -> str | None:
        if names.count(want) == 1:
            return want
        hits = by_lower.get(want.lower(), [])
        if len(hits) > 1:
            raise DataError(f"{name}: columns {hits} differ only in case; name one with "
                            f"columns={{...: {hits[0]!r}}} or rename them")
        return hits[0] if hits else None

    mapping, missing = {}, []
    ts_name = opts.columns.get("timestamp")
    ts = find(ts_name) if ts_name else next(filter(None, map(find, _TS_NAMES)), None)
    if ts is None:
        missing.append(("timestamp", ts_name or "timestamp/datetime/date/time"))
    mapping["timestamp"] = ts
    for canon in (*OHLCV, "spread", "symbol", *opts.extra):
        src = opts.columns.get(canon, canon)
        hit = find(src)
        if hit is not None:
            mapping[canon] = hit
        elif canon in (*OHLCV, *opts.extra) or canon in opts.columns:
            missing.append((canon, src))
    if missing:
        hints = ""
        for canon, src in missing:
            close = difflib.get_close_matches(src.lower(), list(by_lower), n=1, cutoff=0.6)
            if close:
                hints += f"{canon!r}: did you mean {by_lower[close[0]][0]!r}? "
        raise DataError(
            f"{name}: missing column(s) {[src for _, src in missing]}; expected open, high, low, "
            f"close, volume and a timestamp column (timestamp/datetime/date/time), matched "
            f"case-insensitively; found {names}. {hints}Map other names with "
            f"columns={{'open': 'Open Price', ...}} or timestamp='<name>'")
    return mapping


def _time_pushdown(col: str, typ: pa.DataType, unit: str, opts: _Options) -> list:
    """Coarse row filters on the raw timestamp column (a day wider than the exact window)."""
    if pa.types.is_timestamp(typ):
        per, make = _NS_PER[typ.unit], (lambda v: pa.scalar(v, type=typ))
    elif pa.types.is_integer(typ) and unit in _NS_PER:
        per, make = _NS_PER[unit], (lambda v: pa.scalar(v, type=pa.int64()))
    else:
        return []  # strings and dates: filtered after parsing
    out = []
    if opts.start is not None:
        out.append(pc.field(col) >= make(max(opts.start - _DAY_NS, _I64_MIN) // per))
    if opts.end is not None:
        out.append(pc.field(col) < make(min(opts.end + _DAY_NS, _I64_MAX) // per + 1))
    return out


def _all(exprs: list):
    expr = exprs[0]
    for e in exprs[1:]:
        expr = expr & e
    return expr


def _is_text(typ: pa.DataType) -> bool:
    if pa.types.is_dictionary(typ):
        typ = typ.value_type
    return pa.types.is_string(typ) or pa.types.is_large_string(typ)


def _is_number(typ: pa.DataType) -> bool:
    return pa.types.is_integer(typ) or pa.types.is_floating(typ)


def _infer_unit(max_abs: float) -> str:
    """Epoch unit from the largest absolute value (see the module docstring)."""
    for unit, limit in (("s", 1e11), ("ms", 1e14), ("us", 1e17)):
        if max_abs < limit:
            return unit
    return "ns"


def _unit_from_stats(fragment, col: str) -> str | None:
    """Epoch unit from Parquet row-group min/max statistics, None when they are missing."""
    md = fragment.metadata
    paths = [md.schema.column(i).path for i in range(md.num_columns)]
    if col not in paths:
        return None
    j, largest = paths.index(col), 0.0
    for r in range(md.num_row_groups):
        st = md.row_group(r).column(j).statistics
        if st is None or not st.has_min_max:
            return None
        largest = max(largest, abs(float(st.min)), abs(float(st.max)))
    return _infer_unit(largest)


def _rows(mask) -> str:
    """'rows [3, 7, ...] and N more' for the true entries of a boolean (Arrow/NumPy) array."""
    idx = np.flatnonzero(np.asarray(mask))
    more = f" and {idx.size - 5} more" if idx.size > 5 else ""
    return f"rows {idx[:5].tolist()}{more}"


def _to_float(arr: pa.ChunkedArray, name: str, canon: str, col: str, reread) -> pa.ChunkedArray:
    """A numeric column as float64; NaN/null values pass through (the quality check's job)."""
    typ = arr.type.value_type if pa.types.is_dictionary(arr.type) else arr.type
    if arr.type != typ:
        arr = arr.cast(typ)
    if _is_number(typ) or pa.types.is_decimal(typ) or pa.types.is_null(typ):
        return arr.cast(pa.float64(), safe=False)  # int64 beyond 2**53 rounds, as in pandas
    if _is_text(typ):
        try:
            return arr.cast(pa.float64())
        except pa.ArrowInvalid:
            full = reread(col).cast(typ).to_pandas()
            bad = (pd.to_numeric(full, errors="coerce").isna() & full.notna()).to_numpy()
            first = full[bad].iloc[0] if bad.any() else None
            raise DataError(f"{name}: column {_label(canon, col)} is not numeric; values like "
                            f"{first!r} at {_rows(bad)}") from None
    raise DataError(f"{name}: column {_label(canon, col)} is not numeric: type {typ}")


def _label(canon: str, col: str) -> str:
    return repr(canon) if canon == col else f"{canon!r} (source {col!r})"


def _to_utc_ns(arr: pa.ChunkedArray, unit: str, timezone: str, name: str, col: str,
               reread) -> pa.ChunkedArray:
    """Any supported timestamp column as int64 UTC ns (see the module docstring)."""
    typ = arr.type.value_type if pa.types.is_dictionary(arr.type) else arr.type
    if arr.type != typ:
        arr = arr.cast(typ)
    where = f"{name}: column {col!r}"
    try:
        if pa.types.is_date(typ):
            arr, typ = arr.cast(pa.timestamp("ms")), pa.timestamp("ms")
        if _is_text(typ):
            arr = _parse_strings(arr, where, reread, col)
            typ = arr.type
        if pa.types.is_timestamp(typ):
            if typ.tz is None and timezone != "UTC":
                arr = _localize(arr, timezone, where)
            out = arr.cast(pa.timestamp("ns", tz=arr.type.tz)).cast(pa.int64())
        elif _is_number(typ):
            out = _epoch_to_ns(arr, unit, where)
        else:
            raise DataError(f"{where}: cannot read timestamps of type {typ}; expected a "
                            f"timestamp, date, ISO-8601 string or epoch number column")
    except pa.ArrowInvalid as exc:  # cast out of the int64-ns range (years 1677-2262)
        raise DataError(f"{where}: timestamps out of range for int64 nanoseconds (years "
                        f"1677-2262): {_first_line(exc)}") from None
    if out.null_count:
        raise DataError(f"{where}: missing timestamps at {_rows(reread(col).is_null())}")
    return out


def _parse_strings(arr: pa.ChunkedArray, where: str, reread, col: str) -> pa.ChunkedArray:
    """ISO-8601 strings: naive ones stay naive, ones with a zone offset become UTC."""
    for typ in (pa.timestamp("ns"), pa.timestamp("ns", tz="UTC")):
        try:
            return arr.cast(typ)
        except pa.ArrowInvalid:
            pass
    text = reread(col).cast(pa.string()).to_pandas()
    parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    bad = (parsed.isna() & text.notna()).to_numpy()
    if bad.any():
        raise DataError(f"{where}: unparseable timestamps (expected ISO-8601 like "
                        f"'2024-01-02 09:30:00') such as {text[bad].iloc[0]!r} at "
                        f"{_rows(bad)}")
    mixed = mixed_timezones(text, where)
    if mixed:
        raise DataError(mixed)
    raise DataError(f"{where}: timestamps lie outside the int64-nanosecond range (years "
                    f"1677-2262)")


def _localize(arr: pa.ChunkedArray, timezone: str, where: str) -> pa.ChunkedArray:
    try:
        return pc.assume_timezone(arr, timezone)
    except pa.ArrowInvalid as exc:
        raise DataError(f"{where}: naive timestamps are not valid wall-clock times in "
                        f"{timezone} (a DST gap or repeated hour): {' '.join(str(exc).split())}; "
                        f"store UTC or zone-aware timestamps") from None


def _epoch_to_ns(arr: pa.ChunkedArray, unit: str, where: str) -> pa.ChunkedArray:
    if unit == "auto":
        mm = pc.min_max(arr)
        lo, hi = mm["min"].as_py(), mm["max"].as_py()
        largest = max(abs(lo), abs(hi)) if lo is not None else 0.0
        unit = _infer_unit(largest if largest == largest else 0.0)  # NaN -> s
    per = _NS_PER[unit]
    if pa.types.is_integer(arr.type):
        return pc.multiply_checked(arr.cast(pa.int64()), per)
    x = arr.cast(pa.float64())
    bad = pc.fill_null(pc.invert(pc.is_finite(x)), False)
    if pc.any(bad).as_py():
        raise DataError(f"{where}: non-finite epoch values at {_rows(bad)}")
    # Whole units exactly; the fraction rounded to the decimal step the float can resolve
    # (1 us for float seconds around today), so 0.1 s reads as 100 ms, not 99.999905 ms.
    mm = pc.min_max(x)
    largest = max(abs(mm["min"].as_py() or 0.0), abs(mm["max"].as_py() or 0.0))
    step = 10 ** int(np.ceil(np.log10(max(np.spacing(largest) * per, 1.0))))
    whole = pc.floor(x)
    frac = pc.multiply(pc.round(pc.divide(pc.multiply(pc.subtract(x, whole), float(per)),
                                          float(step))), float(step)).cast(pa.int64())
    return pc.add_checked(pc.multiply_checked(whole.cast(pa.int64()), per), frac)


# -------------------------------------------------------------------------------------- write


def write_canonical(df: pd.DataFrame, dst, *, overwrite: bool = False) -> Path:
    """Write a canonical long frame to Parquet, sorted by symbol then timestamp.

    ``timestamp`` is stored as Arrow ``timestamp("ns", tz="UTC")``, ``symbol`` as string, every
    other column as float64, zstd-compressed. The file appears atomically (a temp file in the
    same directory, then a rename): a crash leaves either the old ``dst`` or none.

    Args:
        df: the canonical long frame (``timestamp`` int64 UTC ns or datetime64, ``symbol``,
            OHLCV, optional spread and extra numeric columns).
        dst: the Parquet file to write.
        overwrite: replace an existing ``dst``; refused otherwise (DataError).

    Returns:
        ``dst`` as a Path.
    """
    dst = Path(dst)
    missing = [c for c in ("timestamp", "symbol", *OHLCV) if c not in df.columns]
    if missing:
        raise DataError(f"write_canonical({dst}): missing columns {missing}; got "
                        f"{list(df.columns)}")
    if dst.is_dir():
        raise DataError(f"write_canonical: {dst} is a directory, expected a file path")
    if dst.exists() and not overwrite:
        raise DataError(f"write_canonical: {dst} exists; pass overwrite=True to replace it")
    for c in ("timestamp", "symbol"):
        if df[c].isna().any():
            raise DataError(f"write_canonical({dst}): column {c!r} has missing values at "
                            f"{_rows(df[c].isna().to_numpy())}")
    ts = df["timestamp"]
    if ts.dtype.kind == "M":
        ts = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
        ns = ts.dt.as_unit("ns").array.asi8
    elif ts.dtype.kind in "iu":
        ns = ts.to_numpy(np.int64)
    else:
        raise DataError(f"write_canonical({dst}): column 'timestamp' must be int64 UTC ns or "
                        f"datetime64, got {ts.dtype}")
    arrays = {"timestamp": pa.array(ns, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
              "symbol": pa.array(df["symbol"].astype("str")).cast(pa.string())}
    for c in df.columns:
        if c not in arrays:
            try:
                arrays[str(c)] = pa.array(df[c].to_numpy(np.float64))
            except (TypeError, ValueError):
                raise DataError(f"write_canonical({dst}): column {c!r} is not numeric "
                                f"({df[c].dtype})") from None
    table = pa.table(arrays).sort_by([("symbol", "ascending"), ("timestamp", "ascending")])
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as fh:  # on disk before the rename makes it visible
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, dst)
        else:
            _link_new(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def _link_new(tmp: Path, dst: Path) -> None:
    """Publish ``tmp`` as ``dst`` only if ``dst`` does not exist (even if it appeared meanwhile)."""
    try:
        os.link(tmp, dst)
    except FileExistsError:
        raise DataError(f"write_canonical: {dst} exists; pass overwrite=True to replace "
                        f"it") from None
    except OSError:  # no hard links on this file system: check, then rename
        if dst.exists():
            raise DataError(f"write_canonical: {dst} exists; pass overwrite=True to replace "
                            f"it") from None
        os.replace(tmp, dst)
