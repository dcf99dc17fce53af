"""``python -m optrader.report RUN_DIR [--env K] [--format html|png|both] [--out PATH]
[--metric NAME] [--log] [--force]``: write a backtest tear sheet; exit 2 with a one-line message
on stderr for a bad input."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optrader.report.run import ReportError
from optrader.report.sheet import SUFFIXES, write_report


class _Parser(argparse.ArgumentParser):
    """Usage errors become ReportError, so every bad input gets the same one-line message."""

    def error(self, message: str):
        usage = " ".join(self.format_usage().split())
        raise ReportError(f"{message} ({usage})")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m optrader.report",
                description="Write a tear sheet (equity, drawdown, monthly returns, trades, "
                            "parameter heat map, key metrics) of one env of a backtest run.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="directory written by optrader.backtest")
    p.add_argument("--env", type=int, metavar="K",
                   help="env id (metrics.parquet 'env'); default: the best by the metric")
    p.add_argument("--format", choices=("html", "png", "both"),
                   help="default: from --out's suffix, else html")
    p.add_argument("--out", metavar="PATH",
                   help="output file (for 'both': the stem) or directory; default: "
                        "RUN_DIR/report.html / report.png")
    p.add_argument("--metric", metavar="NAME",
                   help="ranking metric (choosing the env, colouring the heat map); "
                        "default: backtest.json rank_by")
    p.add_argument("--log", action="store_true", help="equity on a log scale")
    p.add_argument("--force", action="store_true",
                   help="overwrite an existing --out file that is not an earlier report")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: sys.argv[1:]); returns the exit code (0 or 2)."""
    try:
        args = _parser().parse_args(argv)
        fmt = args.format
        if fmt is None:
            suffix = Path(args.out).suffix.lower() if args.out else ""
            fmt = next((f for f, s in SUFFIXES.items() if suffix in s), "html")
        paths = write_report(args.run_dir, env=args.env, fmt=fmt, out=args.out,
                             metric=args.metric, log=args.log, force=args.force)
    except ReportError as exc:
        print(f"optrader.report: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    for path in paths:
        print(path)
    return 0
