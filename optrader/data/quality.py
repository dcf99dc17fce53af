"""Data quality report for the canonical long frame of the market data layer.

Input: a pandas DataFrame with ``timestamp`` (int64 UTC ns, or datetime64), ``symbol`` and float64
``open``/``high``/``low``/``close``/``volume`` columns, optionally ``spread`` (bps, NaN = no quote)
and other float columns, rows in source order. Row numbers in the report are 0-based positions in
that frame; the frame itself is never modified. Every check is vectorised over all rows; Python
loops run only over symbols (and over at most 10 examples per issue).

Severities: ``error`` marks a row a simulator cannot use as is (duplicate, NaN/inf price or volume,
non-positive price, high < low, open/close outside [low, high], negative volume, inf or negative
spread, NaT timestamp) and a bar missing from an explicit grid; ``warning`` marks an unsorted row,
a price jump, a zero-volume run, NaN/inf in an extra column and a gap against an inferred grid.
A symbol whose volume is zero on every row is a feed without volume (most FX quotes), not a
defect: it is reported as ``no_volume`` (a warning that marks no row, so the score is unchanged);
the env then refuses a participation cap on it and names ``execution.max_participation=null``.

Score (in [0, 1])::

    score = (clean_rows + 0.5 * warning_rows) / (rows + missing_bars + 0.5 * inferred_missing_bars)

``clean_rows`` have no defect, ``warning_rows`` have warnings only, ``missing_bars`` are absent
against ``expected`` or ``freq_ns`` and ``inferred_missing_bars`` against the inferred frequency.
Turning a clean row into a defective one, or a warning into an error, or losing a bar inside a
symbol's range never raises the score; a clean frame scores exactly 1.0, an empty one 0.0.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from optrader.data.market import OHLCV, DataError

ISSUE_KINDS = ("duplicate", "unsorted", "non_finite", "non_positive_price", "high_below_low",
               "outside_range", "negative_volume", "negative_spread", "zero_volume_run",
               "no_volume", "price_jump", "missing_bars")
ERROR, WARNING = "error", "warning"
MAX_EXAMPLES = 10
MAD_TO_SIGMA = 1.4826  # MAD of a normal sample x 1.4826 estimates its standard deviation


@dataclass
class Issue:
    """One kind of defect in one symbol (``symbol`` None: not tied to a symbol)."""

    kind: str  # one of ISSUE_KINDS
    symbol: str | None
    count: int  # rows affected; bars for missing_bars and zero_volume_run
    rows: list[int]  # up to 10 example row positions, ascending (zero_volume_run: run starts)
    severity: str  # "error" (row unusable) | "warning"
    detail: str  # a human sentence
    # missing_bars: up to 10 missing timestamps (int ns); zero_volume_run: run lengths for `rows`
    examples: list[int] = field(default_factory=list)

    def line(self) -> str:
        """One plain line: severity, kind, symbol, detail and example rows."""
        where = f" {self.symbol}" if self.symbol is not None else ""
        runs = self.kind == "zero_volume_run"
        unit = "bars" if runs or self.kind == "missing_bars" else "rows"
        rows = ""
        if self.rows:
            more = ", ..." if self.count > len(self.rows) and not runs else ""
            rows = f"; {'runs start at ' if runs else ''}rows {str(self.rows)[:-1]}{more}]"
        return f"{self.severity} [{self.kind}]{where}: {self.detail} ({self.count} {unit}{rows})"


@dataclass
class QualityReport:
    """Outcome of ``quality_report``; see the module docstring for the score."""

    source: str
    rows: int
    symbols: list[str]
    start: int | None  # first timestamp, UTC ns
    end: int | None  # last timestamp, UTC ns
    # symbol -> rows, start, end, expected_bars (None: unchecked), missing_bars, error_rows,
    # warning_rows (rows with warnings but no error)
    per_symbol: dict[str, dict]
    issues: list[Issue]
    score: float
    freq_ns: int | None = None  # bar spacing used for missing bars (given or inferred)
    missing_mode: str = "none"  # "expected" | "freq" | "inferred" | "none"
    # what the expected timestamps are, e.g. "daily bars, Mon-Fri (inferred, dates in UTC)"
    expected_from: str | None = None

    def ok(self, threshold: float) -> bool:
        return self.rows > 0 and self.score >= threshold

    def to_dict(self) -> dict:
        """JSON-safe dict; timestamps (start, end, missing-bar examples) as ISO 8601 strings."""
        issues = []
        for i in self.issues:
            d = asdict(i)
            if i.kind == "missing_bars":
                d["examples"] = [_iso(x) for x in i.examples]
            issues.append(d)
        per_symbol = {s: {k: _iso(v) if k in ("start", "end") else v for k, v in d.items()}
                      for s, d in self.per_symbol.items()}
        return {"source": self.source, "rows": self.rows, "symbols": list(self.symbols),
                "start": _iso(self.start), "end": _iso(self.end), "score": self.score,
                "freq_ns": self.freq_ns, "missing_mode": self.missing_mode,
                "expected_from": self.expected_from,
                "per_symbol": per_symbol, "issues": issues}

    def to_json(self, path) -> None:
        """Write ``to_dict()`` to ``path`` atomically (temp file + rename; replaces a report)."""
        p = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.to_dict(), f, indent=2)
                f.write("\n")
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; a report is not a secret
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _range(self) -> str:
        return "no timestamps" if self.start is None else _fmt_span(self.start, self.end)

    def summary(self) -> str:
        """A few plain lines (for exception messages and logs)."""
        lines = [f"{self.source}: {self.rows:,} rows, {len(self.symbols)} symbols, "
                 f"{self._range()}, quality score {self.score:.4f}"]
        if self.expected_from is not None:
            lines.append(f"  expected bars: {self.expected_from}")
        shown = sorted(self.issues, key=lambda i: i.severity != ERROR)[:8]
        lines += [f"  {i.line()}" for i in shown]
        if len(self.issues) > len(shown):
            lines.append(f"  ... and {len(self.issues) - len(shown)} more issues")
        return "\n".join(lines)

    def render(self, console=None) -> None:
        """Print a summary table, a per-symbol table and the issues with rich."""
        from rich.console import Console
        from rich.table import Table

        console = console if console is not None else Console()
        color = "green" if self.score >= 0.99 else "yellow" if self.score >= 0.95 else "red"
        head = Table(title=f"Data quality: {self.source}", show_header=False)
        head.add_column(style="bold")
        head.add_column()
        names = ", ".join(self.symbols[:20]) + (" ..." if len(self.symbols) > 20 else "")
        for k, v in (("rows", f"{self.rows:,}"), ("symbols", f"{len(self.symbols)}: {names}"),
                     ("range", self._range()), ("missing bars", self._missing_note()),
                     ("score", f"[{color}]{self.score:.4f}[/]")):
            head.add_row(k, v)
        console.print(head)
        if self.per_symbol:
            per = Table(title="Per symbol")
            for c in ("symbol", "rows", "start", "end", "expected", "missing", "error rows",
                      "warning rows"):
                per.add_column(c, justify="left" if c in ("symbol", "start", "end") else "right")
            for s, d in self.per_symbol.items():
                per.add_row(s, f"{d['rows']:,}", *(_fmt_ts(d[k]) if d[k] is not None else "-"
                                                    for k in ("start", "end")),
                            "-" if d["expected_bars"] is None else f"{d['expected_bars']:,}",
                            f"{d['missing_bars']:,}", f"{d['error_rows']:,}",
                            f"{d['warning_rows']:,}")
            console.print(per)
        if not self.issues:
            console.print("[green]no issues[/]")
            return
        tab = Table(title=f"Issues ({len(self.issues)})")
        for c in ("severity", "kind", "symbol", "count", "rows", "detail"):
            tab.add_column(c, justify="right" if c == "count" else "left")
        for i in self.issues:
            sev = f"[red]{i.severity}[/]" if i.severity == ERROR else f"[yellow]{i.severity}[/]"
            tab.add_row(sev, i.kind, i.symbol or "-", f"{i.count:,}",
                        ", ".join(map(str, i.rows)) or "-", i.detail)
        console.print(tab)

    def _missing_note(self) -> str:
        if self.missing_mode == "none":
            return "not checked"
        total = sum(d["missing_bars"] for d in self.per_symbol.values())
        if self.missing_mode == "expected" or self.freq_ns is None:
            return f"{total:,} vs expected timestamps" + (
                f" ({self.expected_from})" if self.expected_from else "")
        how = {"freq": f"vs a {_fmt_dur(self.freq_ns)} grid",
               "inferred": f"vs the inferred {_fmt_dur(self.freq_ns)} grid (warnings)"}
        return f"{total:,} {how[self.missing_mode]}"


def check_or_raise(report: QualityReport, threshold: float = 0.95) -> list[str]:
    """Raise DataError (message contains ``report.summary()``) when the score is below
    ``threshold`` or the frame is empty; else return one line per issue for the caller to log
    (errors the threshold tolerates included)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold: expected a number in [0, 1], got {threshold!r}")
    if report.rows == 0:
        raise DataError(f"{report.source}: no rows")
    if not report.ok(threshold):
        raise DataError(f"{report.source}: data quality score {report.score:.4f} is below the "
                        f"threshold {threshold}\n{report.summary()}")
    return [i.line() for i in report.issues]


def quality_report(df: pd.DataFrame, *, source: str = "data",
                   expected: dict | np.ndarray | None = None, freq_ns: int | None = None,
                   jump_sigma: float = 10.0, zero_volume_run: int = 10,
                   expected_from: str | None = None) -> QualityReport:
    """Check a canonical long frame and return its QualityReport (never raises on bad values).

    Args:
        df: long frame (see module docstring); extra float columns are checked for NaN/inf.
        source: name used in messages (a path, "DataFrame", ...).
        expected: int64 ns timestamps every symbol should have, or a dict symbol -> such array
            (symbols absent from the dict are not checked); only timestamps inside each
            symbol's own [first, last] count. Takes precedence over ``freq_ns``.
        freq_ns: bar spacing in ns of a regular grid from each symbol's first to last bar. If
            neither is given the spacing is inferred as the most common step and gaps are warnings.
        jump_sigma: a price jump is |log close-to-close return| > jump_sigma x 1.4826 x MAD of
            that symbol's returns (symbols with zero MAD are skipped).
        zero_volume_run: minimum number of consecutive zero-volume bars reported as a run.
        expected_from: what ``expected`` is (shown in the report), e.g. the calendar it came
            from (``optrader.data.sessions.Expected.describe``).

    Returns:
        QualityReport. Raises DataError only for a frame of the wrong shape (missing columns,
        a timestamp column that is not integer or datetime) and ValueError/TypeError for bad
        arguments.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"quality_report: expected a pandas DataFrame, got {type(df).__name__}")
    freq_ns = _check_args(freq_ns, jump_sigma, zero_volume_run)
    if isinstance(expected, dict):
        expected = {str(k): _as_ns(x) for k, x in expected.items()}
    elif expected is not None:
        expected = _as_ns(expected)
    missing = [c for c in ("timestamp", "symbol", *OHLCV) if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing columns {missing}; expected "
                        f"{['timestamp', 'symbol', *OHLCV]}, got {list(df.columns)}")
    n = len(df)
    if n == 0:
        return QualityReport(source, 0, [], None, None, {}, [], 0.0,
                             expected_from=expected_from)
    ts, ts_ok = _timestamps(df["timestamp"], source)
    codes, uniques = pd.factorize(df["symbol"], use_na_sentinel=False)
    symbols = [str(s) for s in uniques]
    codes = codes.astype(np.uint8 if len(symbols) <= 2**8 else
                         np.uint16 if len(symbols) <= 2**16 else np.int64)  # radix-sortable
    col = _Collector(codes, symbols, n)

    # --- row-wise checks -----------------------------------------------------------------
    # a NaN/inf is reported once, as non_finite, not again by the comparisons it would fail
    px = {c: _float_column(df, c) for c in OHLCV}
    fin = {}
    for name, x in px.items():
        fin[name] = np.isfinite(x)
        col.mask("non_finite", ERROR, ~fin[name], f"column {name!r} is NaN, inf or not numeric")
    if ts_ok is not None:
        col.mask("non_finite", ERROR, ~ts_ok, "column 'timestamp' is NaT")
    col.mask("non_finite", ERROR, df["symbol"].isna().to_numpy(), "column 'symbol' is missing")
    for name in OHLCV[:4]:
        col.mask("non_positive_price", ERROR, (px[name] <= 0.0) & fin[name],
                 f"column {name!r} <= 0")
    o, h, lo, c, v = px.values()
    hl = h < lo
    col.mask("high_below_low", ERROR, hl & fin["high"] & fin["low"], "high < low")
    for name, x in (("open", o), ("close", c)):  # only meaningful where [low, high] is a range
        col.mask("outside_range", ERROR, ((x > h) | (x < lo)) & ~hl & fin[name] & fin["high"]
                 & fin["low"], f"column {name!r} outside [low, high]")
    col.mask("negative_volume", ERROR, (v < 0.0) & fin["volume"], "volume < 0")
    if "spread" in df.columns:  # NaN spread marks a bar without a quote (market.from_arrays)
        sp = _float_column(df, "spread")
        inf = np.isinf(sp)
        col.mask("non_finite", ERROR, inf, "column 'spread' is inf (NaN = no quote)")
        col.mask("negative_spread", ERROR, (sp < 0.0) & ~inf, "spread < 0 bps")
    for name in df.columns:
        if name not in ("timestamp", "symbol", "spread", *OHLCV) and \
                pd.api.types.is_float_dtype(df[name].dtype):
            col.mask("non_finite", WARNING, ~np.isfinite(_float_column(df, name)),
                     f"column {name!r} is NaN or inf")

    # --- order: rows of each symbol contiguous, in source order, then in time order ---------
    pos = np.argsort(codes if ts_ok is None else codes[ts_ok], kind="stable")
    if ts_ok is not None:
        pos = np.flatnonzero(ts_ok)[pos]
    g, t = codes[pos], ts[pos]
    same = g[1:] == g[:-1]  # consecutive entries belong to the same symbol
    back = same & (t[1:] < t[:-1])
    col.rows("unsorted", WARNING, np.sort(pos[1:][back]),
             "timestamp earlier than the symbol's previous row (sort before use)")
    if back.any():
        by_t = np.argsort(t, kind="stable")
        by_t = by_t[np.argsort(g[by_t], kind="stable")]  # symbol, then time, then source order
        pos, g, t = pos[by_t], g[by_t], t[by_t]
        same = g[1:] == g[:-1]
    dup = same & (t[1:] == t[:-1])
    if dup.any():  # the first copy of a (symbol, timestamp) stays, later copies are defects
        col.rows("duplicate", ERROR, np.sort(pos[1:][dup]),
                 "timestamp repeats an earlier row of the symbol")
        keep = np.concatenate(([True], ~dup))
        pos, g, t = pos[keep], g[keep], t[keep]
        same = g[1:] == g[:-1]
    counts = np.bincount(g, minlength=len(symbols))
    bounds = np.concatenate(([0], np.cumsum(counts)))

    _zero_volume_runs(col, pos, g, same, v[pos], zero_volume_run)
    _price_jumps(col, pos, t, same, c[pos], bounds, jump_sigma)
    exp_bars, miss, mode, freq_ns, severity = _missing_bars(col, t, g, same, bounds, expected,
                                                            freq_ns)

    # --- per symbol and score -------------------------------------------------------------
    bad = col.error
    warn = col.warning & ~bad
    rows_per = np.bincount(codes, minlength=len(symbols))
    err_per = np.bincount(codes[bad], minlength=len(symbols))
    warn_per = np.bincount(codes[warn], minlength=len(symbols))
    has = counts > 0
    first = np.where(has, t[np.minimum(bounds[:-1], len(t) - 1)], 0) if len(t) else counts
    last = np.where(has, t[np.maximum(bounds[1:] - 1, 0)], 0) if len(t) else counts
    per_symbol = {s: {"rows": int(rows_per[k]),
                      "start": int(first[k]) if has[k] else None,
                      "end": int(last[k]) if has[k] else None,
                      "expected_bars": None if exp_bars[k] < 0 else int(exp_bars[k]),
                      "missing_bars": int(miss[k]), "error_rows": int(err_per[k]),
                      "warning_rows": int(warn_per[k])}
                  for k, s in enumerate(symbols)}
    n_miss = int(miss.sum())
    denom = n + (n_miss if severity == ERROR else 0.5 * n_miss)
    score = float((n - int(bad.sum()) - 0.5 * int(warn.sum())) / denom)
    order = {k: i for i, k in enumerate(ISSUE_KINDS)}
    issues = sorted(col.issues, key=lambda i: (order[i.kind], col.index[i.symbol], i.detail))
    return QualityReport(source, n, symbols, int(first[has].min()) if has.any() else None,
                         int(last[has].max()) if has.any() else None, per_symbol, issues,
                         max(0.0, min(1.0, score)), freq_ns, mode,
                         expected_from if mode == "expected" else None)


class _Collector:
    """Issues plus the error/warning row masks the score is computed from."""

    def __init__(self, codes: np.ndarray, symbols: list[str], n: int):
        self.codes, self.symbols = codes, symbols
        self.index = {s: k for k, s in enumerate(symbols)}
        self.error = np.zeros(n, dtype=np.bool_)
        self.warning = np.zeros(n, dtype=np.bool_)
        self.issues: list[Issue] = []

    def mask(self, kind: str, severity: str, mask: np.ndarray, detail: str) -> None:
        self.rows(kind, severity, np.flatnonzero(mask), detail)

    def rows(self, kind: str, severity: str, rows: np.ndarray, detail: str) -> None:
        """One Issue per symbol for ``rows`` (ascending source positions)."""
        if rows.size == 0:
            return
        (self.error if severity == ERROR else self.warning)[rows] = True
        sym = self.codes[rows]
        by_sym = np.argsort(sym, kind="stable")
        rows, sym = rows[by_sym], sym[by_sym]
        counts = np.bincount(sym, minlength=len(self.symbols))
        starts = np.concatenate(([0], np.cumsum(counts)))
        for k in np.flatnonzero(counts):
            first = starts[k]
            self.add(kind, k, counts[k], rows[first:min(first + MAX_EXAMPLES, starts[k + 1])],
                     severity, detail)

    def add(self, kind, k, count, rows, severity, detail, examples=()) -> None:
        self.issues.append(Issue(kind, self.symbols[k], int(count), [int(r) for r in rows],
                                 severity, detail, [int(x) for x in examples]))


def _zero_volume_runs(col, pos, g, same, vol, min_run) -> None:
    """Runs of >= min_run consecutive zero-volume bars (time order, per symbol): warnings."""
    z = vol == 0.0
    cont = np.zeros_like(z)
    cont[1:] = z[1:] & z[:-1] & same  # bar continues the run of the bar before it
    starts = np.flatnonzero(z & ~cont)
    ends = np.flatnonzero(z & ~np.append(cont[1:], False))
    length = ends - starts + 1
    keep = length >= min_run
    starts, ends, length = starts[keep], ends[keep], length[keep]
    # a run over every row of its symbol: a feed without volume, reported but not scored
    edge_of_symbol = np.concatenate(([True], ~same, [True]))  # [k]: rows k-1, k differ
    whole = edge_of_symbol[starts] & edge_of_symbol[ends + 1]
    for s, ln in zip(starts[whole], length[whole], strict=True):
        col.add("no_volume", g[s], ln, [pos[s]], WARNING,
                "volume is 0 on every bar: a feed without volume (e.g. FX quotes); trading it "
                "needs execution.max_participation=null (no cap on the bar's volume)")
    starts, ends, length = starts[~whole], ends[~whole], length[~whole]
    if starts.size == 0:
        return
    edge = np.zeros(z.size + 1, dtype=np.int64)
    edge[starts] += 1
    edge[ends + 1] -= 1
    col.warning[pos[np.cumsum(edge[:-1]) > 0]] = True
    run_sym = g[starts]  # runs are already grouped by symbol, in time order
    for k in np.unique(run_sym):
        sel = run_sym == k
        ln, st = length[sel], pos[starts[sel]]
        big = int(np.argmax(ln))
        col.add("zero_volume_run", k, ln.sum(), st[:MAX_EXAMPLES], WARNING,
                f"{ln.size} run(s) of >= {min_run} zero-volume bars, longest {ln[big]} bars "
                f"from row {st[big]}", ln[:MAX_EXAMPLES])


def _price_jumps(col, pos, t, same, close, bounds, sigma) -> None:
    """|log close-to-close return| > sigma x robust scale of the symbol's returns: warnings."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lc = np.log(np.where(close > 0.0, close, np.nan))
        ret = np.full(close.size, np.nan)
        ret[1:] = np.where(same, np.diff(lc), np.nan)  # return into bar i from bar i - 1
    ret[~np.isfinite(ret)] = np.nan
    for k in range(bounds.size - 1):
        r = ret[bounds[k]:bounds[k + 1]]
        fin = r[~np.isnan(r)]
        if fin.size < 3:
            continue
        scale = MAD_TO_SIGMA * float(np.median(np.abs(fin - np.median(fin))))
        if not scale > 0.0:  # constant prices: no scale to measure jumps against
            continue
        hit = np.flatnonzero(np.abs(r) > sigma * scale)
        if hit.size == 0:
            continue
        col.warning[pos[bounds[k] + hit]] = True
        big = hit[np.argmax(np.abs(r[hit]))]
        rows = np.sort(pos[bounds[k] + hit])
        col.add("price_jump", k, hit.size, rows[:MAX_EXAMPLES], WARNING,
                f"|log return| > {sigma:g} x robust sigma {scale:.3g}; largest {r[big]:+.3g} at "
                f"{_fmt_ts(t[bounds[k] + big])}")


def _missing_bars(col, t, g, same, bounds, expected, freq_ns):
    """Missing bars per symbol; returns (expected_bars, missing, mode, freq_ns, severity), with
    expected_bars -1 where unchecked."""
    nsym = bounds.size - 1
    exp_bars = np.full(nsym, -1, dtype=np.int64)
    miss = np.zeros(nsym, dtype=np.int64)
    if expected is not None:
        for k in range(nsym):
            grid = expected if not isinstance(expected, dict) else \
                expected.get(col.symbols[k])
            if grid is None or bounds[k] == bounds[k + 1]:
                continue
            ts = t[bounds[k]:bounds[k + 1]]
            e = grid[np.searchsorted(grid, ts[0]):np.searchsorted(grid, ts[-1], side="right")]
            present = ts[np.minimum(np.searchsorted(ts, e), ts.size - 1)] == e
            exp_bars[k], miss[k] = e.size, e.size - int(present.sum())
            if miss[k]:
                # longest run of absent expected stamps, bracketed by the bars around it
                edges = np.diff(np.concatenate(([1], present.astype(np.int8), [1])))
                a, b = np.flatnonzero(edges == -1), np.flatnonzero(edges == 1) - 1
                j = int(np.argmax(b - a))
                lo, hi = np.searchsorted(ts, e[a[j]]) - 1, np.searchsorted(ts, e[b[j]])
                col.add("missing_bars", k, miss[k], [], ERROR,
                        f"{miss[k]} missing bars vs the expected timestamps, longest gap "
                        f"{_fmt_span(ts[lo], ts[hi])}", e[~present][:MAX_EXAMPLES])
        return exp_bars, miss, "expected", None, ERROR
    mode, severity = "freq", ERROR
    if t.size == 0:  # every timestamp is NaT
        return exp_bars, miss, "none", freq_ns, severity
    step = np.diff(t)
    d = step[same]
    if freq_ns is None:
        if d.size == 0:
            return exp_bars, miss, "none", None, WARNING
        vc = pd.Series(d).value_counts(sort=False)  # hash count: no 10 M-element sort
        freq_ns = int(vc.index[vc.to_numpy() == vc.max()].min())
        mode, severity = "inferred", WARNING
    has = bounds[1:] > bounds[:-1]
    first = np.where(has, t[np.minimum(bounds[:-1], t.size - 1)], 0)
    last = np.where(has, t[np.maximum(bounds[1:] - 1, 0)], 0)
    if mode == "freq":  # grid points first + j * freq strictly between bars i and i + 1
        f0 = first[g[1:]]
        gap = np.where(same, (t[1:] - 1 - f0) // freq_ns - (t[:-1] - f0) // freq_ns, 0)
    else:  # no grid to trust: a gap of d holds ceil(d / freq) - 1 bars
        gap = np.where(same, (step - 1) // freq_ns, 0)
    miss = np.bincount(g[1:], weights=gap, minlength=nsym).round().astype(np.int64)
    grid_bars = (last - first) // freq_ns + 1 if mode == "freq" else np.diff(bounds) + miss
    exp_bars = np.where(has, grid_bars, -1)
    for k in np.flatnonzero(miss):
        lo, hi = bounds[k], bounds[k + 1] - 1  # gap[i] sits between t[i] and t[i + 1]
        gk = gap[lo:hi]
        j = lo + int(np.argmax(gk))
        examples: list[int] = []
        for i in lo + np.flatnonzero(gk)[:MAX_EXAMPLES]:
            nxt = first[k] + ((t[i] - first[k]) // freq_ns + 1) * freq_ns if mode == "freq" \
                else t[i] + freq_ns
            examples += range(int(nxt), int(t[i + 1]), freq_ns)[:MAX_EXAMPLES - len(examples)]
        how = (f"freq {_fmt_dur(freq_ns)} inferred from the most common step" if mode ==
               "inferred" else f"on a {_fmt_dur(freq_ns)} grid")
        col.add("missing_bars", k, miss[k], [], severity,
                f"{miss[k]} missing bars ({how}), longest gap {_fmt_span(t[j], t[j + 1])}",
                examples)
    return exp_bars, miss, mode, freq_ns, severity


def _check_args(freq_ns, jump_sigma, zero_volume_run):
    if freq_ns is not None:
        if isinstance(freq_ns, bool) or not isinstance(freq_ns, (int, np.integer)) or freq_ns <= 0:
            raise ValueError(f"freq_ns: expected a positive int (bar spacing in ns), got "
                             f"{freq_ns!r}")
        freq_ns = int(freq_ns)
    if not (isinstance(jump_sigma, (int, float)) and np.isfinite(jump_sigma) and jump_sigma > 0):
        raise ValueError(f"jump_sigma: expected a positive finite number, got {jump_sigma!r}")
    if isinstance(zero_volume_run, bool) or not isinstance(zero_volume_run, (int, np.integer)) \
            or zero_volume_run < 1:
        raise ValueError(f"zero_volume_run: expected an int >= 1, got {zero_volume_run!r}")
    return freq_ns


def _as_ns(x) -> np.ndarray:
    """Sorted unique int64 ns from an int64 array or datetime-like values."""
    if isinstance(x, pd.DatetimeIndex):
        x = (x.tz_convert("UTC") if x.tz is not None else x).as_unit("ns").asi8
    a = np.asarray(x)
    if a.dtype.kind == "M":
        a = a.astype("datetime64[ns]").view(np.int64)
    elif a.dtype.kind not in "iu":
        raise TypeError(f"expected: int64 ns timestamps or datetime64, got dtype {a.dtype}")
    return np.unique(a.astype(np.int64).ravel())


def _timestamps(s: pd.Series, source: str):
    """(int64 ns array, ok mask or None when every timestamp is present)."""
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        idx = pd.DatetimeIndex(s)
        idx = idx.tz_convert("UTC") if idx.tz is not None else idx
        ok = ~idx.isna()
        return idx.as_unit("ns").asi8, None if ok.all() else ok
    if pd.api.types.is_integer_dtype(s.dtype):
        ok = s.notna().to_numpy()
        ts = s.to_numpy(dtype=np.int64, na_value=0) if not ok.all() else s.to_numpy(np.int64)
        return ts, None if ok.all() else ok
    raise DataError(f"{source}: column 'timestamp' must be int64 UTC ns or datetime64, got "
                    f"dtype {s.dtype}")


def _float_column(df: pd.DataFrame, name: str) -> np.ndarray:
    """Column as float64 (no copy when it already is); values that are not numbers become NaN."""
    s = df[name]
    if s.dtype == np.float64:
        return s.to_numpy()
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _iso(ns) -> str | None:
    return None if ns is None else pd.Timestamp(int(ns), tz="UTC").isoformat()


def _fmt_ts(ns) -> str:
    t = pd.Timestamp(int(ns), tz="UTC")
    if t.microsecond or t.nanosecond:
        return t.isoformat()
    return t.strftime("%Y-%m-%d %H:%M:%S" if t.second else "%Y-%m-%d %H:%M")


def _fmt_span(a, b) -> str:
    sa, sb = _fmt_ts(a), _fmt_ts(b)
    if sa[:11] == sb[:11] and len(sb) > 10 and "T" not in sb:
        sb = sb[11:]  # same day: "2024-01-03 10:00 -> 10:12"
    return f"{sa} -> {sb}"


def _fmt_dur(ns) -> str:
    for unit, size in (("d", 86_400 * 10**9), ("h", 3_600 * 10**9), ("min", 60 * 10**9),
                       ("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"
