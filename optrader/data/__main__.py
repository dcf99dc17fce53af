"""``python -m optrader.data``: check and convert bar files.

  validate PATH [--json OUT] [--min-score 0.95] [--calendar NAME] [--timezone TZ] ...
      prints the quality report (rich tables); exit 0 if the score reaches --min-score, 1 if
      not, 2 if the files cannot be read.
  convert SRC DST.parquet [--force] [--timezone TZ] ...
      reads SRC (CSV or Parquet, any accepted layout) and writes the canonical long Parquet
      (timestamp UTC ns, symbol, OHLCV[, spread]); refuses to overwrite DST without --force.

Sources are only read. Reader options: --format, --timestamp COL, --timestamp-unit, --timezone,
--column canonical=yours (repeatable), --symbols A,B, --start, --end.
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from optrader.data.io import read_bars, write_canonical
from optrader.data.loader import calendar_from_config, expected_grid
from optrader.data.market import DataError
from optrader.data.quality import quality_report


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
    v.add_argument("--calendar", default="always_open",
                   help="always_open | us_equities | an exchange code (exchange_calendars)")
    v.add_argument("--jump-sigma", type=float, default=10.0)
    v.add_argument("--zero-volume-run", type=int, default=10)
    _reader_args(v)
    c = sub.add_parser("convert", help="write bar files as the canonical Parquet layout")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    _reader_args(c)
    args = parser.parse_args(argv)
    console = Console()
    try:
        df = _read(args)
        if args.command == "convert":
            out = write_canonical(df, args.dst, overwrite=args.force)
            console.print(f"wrote {len(df)} rows, {df['symbol'].nunique()} symbols to {out}")
            return 0
        from optrader.config import CalendarConfig

        calendar = calendar_from_config(CalendarConfig(name=args.calendar))
        report = quality_report(df, source=args.path, expected=expected_grid(df, calendar),
                                jump_sigma=args.jump_sigma,
                                zero_volume_run=args.zero_volume_run)
    except (DataError, FileNotFoundError, ImportError) as exc:
        msg = str(exc).replace("pass overwrite=True", "pass --force")
        console.print(f"[red]error:[/red] {msg}", highlight=False)
        return 2
    report.render(console)
    if args.json:
        report.to_json(args.json)
        console.print(f"report written to {args.json}")
    ok = report.ok(args.min_score)
    console.print(f"score {report.score:.4f} {'>=' if ok else '<'} min score {args.min_score}: "
                  f"{'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
