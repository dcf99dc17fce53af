"""``python -m optrader.data``: check and convert bar files.

  validate PATH [--json OUT] [--min-score 0.95] [--calendar NAME] [--timezone TZ] ...
      prints the quality report (rich tables); exit 0 if the score reaches --min-score, 1 if
      not, 2 if the files cannot be read. --calendar auto (the default) infers the sessions
      from the bars; a failing score that the inferred calendar would pass prints that hint.
  convert SRC DST.parquet [--clean] [--force] [--timezone TZ] ...
      reads SRC (CSV or Parquet, any accepted layout) and writes the canonical long Parquet
      (timestamp UTC ns, symbol, OHLCV[, spread]). Rows with defects (the quality report's row
      errors: duplicates, NaN/inf, non-positive prices, high < low, open/close outside
      [low, high], negative volume, bad spread) are never written silently: without --clean it
      writes nothing and exits 1 with one line naming them; with --clean it drops them (a
      duplicate keeps its last row, as loading does) and says how many of each it dropped.
      Refuses to overwrite DST without --force and never overwrites a source file; exit 2 when
      SRC cannot be read or DST cannot be written (a directory, an unwritable place).

Sources are only read. Reader options: --format, --timestamp COL, --timestamp-unit, --timezone,
--column canonical=yours (repeatable), --symbols A,B, --start, --end.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

from rich.console import Console

from optrader.data.io import read_bars, source_files, write_canonical
from optrader.data.loader import auto_calendar_fix, clean_rows, expectation
from optrader.data.market import DataError
from optrader.data.quality import ERROR, quality_report
from optrader.output_paths import output_file_problem


def _reader_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("parquet", "csv"), default=None)
    p.add_argument("--timestamp", default=None, help="timestamp column name")
    p.add_argument("--timestamp-unit", default="auto", choices=("auto", "s", "ms", "us", "ns"))
    p.add_argument("--timezone", default="UTC", help="zone of naive timestamps")
    p.add_argument("--column", action="append", default=[], metavar="CANONICAL=YOURS",
                   help="map a canonical column to yours, e.g. open='Open Price'")
    p.add_argument("--symbols", default=None, help="comma-separated symbols to read")
    p.add_argument("--start", default=None)
    p.add_argument("--end", default=None)


def _read(args) -> object:
    columns = {}
    for item in args.column:
        if "=" not in item:
            raise DataError(f"--column: expected CANONICAL=YOURS, got {item!r}")
        k, v = item.split("=", 1)
        columns[k.strip().lower()] = v
    return read_bars(args.path if hasattr(args, "path") else args.src, fmt=args.format,
                     columns=columns or None, timestamp=args.timestamp,
                     timestamp_unit=args.timestamp_unit, timezone=args.timezone,
                     symbols=args.symbols.split(",") if args.symbols else None,
                     start=args.start, end=args.end)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optrader.data",
                                     description="Check and convert bar files.")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="print a quality report of bar files")
    v.add_argument("path")
    v.add_argument("--json", default=None, help="also write the report as JSON here")
    v.add_argument("--min-score", type=float, default=0.95)
    v.add_argument("--calendar", default="auto",
                   help="auto (inferred from the bars) | always_open | us_equities | an exchange "
                        "code such as XNYS (pip install optrader[calendars])")
    v.add_argument("--jump-sigma", type=float, default=10.0)
    v.add_argument("--zero-volume-run", type=int, default=10)
    _reader_args(v)
    c = sub.add_parser("convert", help="write bar files as the canonical Parquet layout")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    c.add_argument("--clean", action="store_true",
                   help="drop rows with defects (and say which) instead of refusing")
    _reader_args(c)
    args = parser.parse_args(argv)
    console = Console()
    # where the command writes, checked before anything is read
    out, make = (args.dst, True) if args.command == "convert" else (args.json, False)
    problem = None if out is None else output_file_problem(out, make_parents=make)
    if problem is not None:
        return _fail(console, DataError(f"{'DST' if make else '--json'}: {problem}"))
    try:
        if args.command == "convert":
            return _convert(args, console)
        df = _read(args)
        from optrader.config import CalendarConfig, QualityConfig

        quality = QualityConfig(min_score=args.min_score, jump_sigma=args.jump_sigma,
                                zero_volume_run=args.zero_volume_run)
        _, expected = expectation(df, CalendarConfig(name=args.calendar), args.timezone)
        report = quality_report(df, source=args.path, jump_sigma=args.jump_sigma,
                                zero_volume_run=args.zero_volume_run,
                                expected=None if expected is None else expected.grid,
                                expected_from=None if expected is None else expected.describe())
    except (ValueError, OSError, ImportError) as exc:  # DataError and bad settings included
        return _fail(console, exc)
    report.render(console)
    if args.json:
        try:
            report.to_json(args.json)
        except OSError as exc:  # a directory, a missing folder, no permission
            return _fail(console, exc)
        console.print(f"report written to {args.json}")
    ok = report.ok(args.min_score)
    console.print(f"score {report.score:.4f} {'>=' if ok else '<'} min score {args.min_score}: "
                  f"{'OK' if ok else 'FAILED'}")
    if not ok:
        auto = auto_calendar_fix(df, report, args.calendar, args.timezone, quality)
        if auto is not None:
            console.print(f"hint: the bars follow {auto.describe()}; pass --calendar auto",
                          highlight=False, soft_wrap=True)
    return 0 if ok else 1


def _convert(args, console) -> int:
    """``convert``: refuse (exit 1) or clean defective rows, never touch a source file."""
    dst = Path(args.dst)
    srcs = {os.path.realpath(f) for f, _ in source_files(args.src, args.format)}
    if os.path.realpath(dst) in srcs:
        raise DataError(f"convert: {dst} is a source file; convert never overwrites its "
                        f"source, choose another DST")
    if dst.is_dir():
        raise DataError(f"convert: {dst} is a directory, expected a .parquet file path")
    if dst.exists() and not args.force:
        raise DataError(f"convert: {dst} exists; pass --force to replace it")
    df = _read(args)
    report = quality_report(df, source=str(args.src))
    bad = Counter({i.kind: 0 for i in report.issues})
    for i in report.issues:
        if i.severity == ERROR and i.kind != "missing_bars":
            bad[i.kind] += i.count
    bad = {k: n for k, n in bad.items() if n}
    what = ", ".join(f"{n} {k}" for k, n in bad.items())
    if bad and not args.clean:
        return _fail(console, DataError(
            f"{args.src}: rows with defects ({what}); nothing written. Pass --clean to drop "
            f"them, or see `python -m optrader.data validate {args.src}`"), code=1)
    dropped = 0
    if bad:
        df, dropped = clean_rows(df)
    out = write_canonical(df, dst, overwrite=args.force)
    note = f"; dropped {dropped} rows with defects ({what})" if dropped else ""
    console.print(f"wrote {len(df)} rows, {df['symbol'].nunique()} symbols to {out}{note}",
                  highlight=False, soft_wrap=True)
    return 0


def _fail(console, exc, code: int = 2) -> int:
    """One line ``optrader.data: message`` on stderr, as every command reports (cli_errors)."""
    from optrader.cli_errors import one_line

    print(f"optrader.data: {one_line(exc).replace('pass overwrite=True', 'pass --force')}",
          file=sys.stderr)
    return code


if __name__ == "__main__":
    from optrader.cli_errors import run

    sys.exit(run("optrader.data", main))  # one line, exit 2, for errors main does not report
