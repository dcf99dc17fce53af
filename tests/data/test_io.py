"""read_bars: every layout and timestamp form reads to the same canonical long frame, filters return
exactly the requested rows, every defect is a DataError naming the file, and sources are never
touched; write_canonical round-trips, refuses to clobber and never leaves a partial file."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optrader.data.io import read_bars, write_canonical
from optrader.data.market import OHLCV, DataError

T0 = pd.Timestamp("2024-01-02 14:30", tz="UTC")
MIN_NS = 60 * 10**9


def canonical(symbols=("AAA", "BBB"), n=40, seed=0, step_ns=MIN_NS, t0=T0) -> pd.DataFrame:
    """A canonical long frame: per symbol n bars, step_ns apart, symbol-major order."""
    rng = np.random.default_rng(seed)
    ts = t0.as_unit("ns").value + np.arange(n, dtype=np.int64) * step_ns
    parts = []
    for k, s in enumerate(symbols):
        close = 100.0 * (k + 1) + rng.standard_normal(n).cumsum()
        open_ = close + rng.standard_normal(n) * 0.1
        parts.append(pd.DataFrame({
            "timestamp": ts, "symbol": s, "open": open_,
            "high": np.maximum(open_, close) + 0.5, "low": np.minimum(open_, close) - 0.5,
            "close": close, "volume": rng.uniform(1e3, 1e4, n)}))
    return pd.concat(parts, ignore_index=True)


def to_table(df: pd.DataFrame, ts=None, symbol=True, rename=None) -> pa.Table:
    """A source table: tz-aware ns timestamps unless ``ts`` (an Arrow array) is given."""
    cols = {"timestamp": ts if ts is not None else
            pa.array(df["timestamp"].to_numpy()).cast(pa.timestamp("ns", tz="UTC"))}
    if symbol:
        cols["symbol"] = pa.array(df["symbol"].to_numpy(dtype=object), pa.string())
    for c in df.columns:
        if c not in ("timestamp", "symbol"):
            cols[c] = pa.array(df[c].to_numpy())
    rename = rename or {}
    return pa.table({rename.get(k, k): v for k, v in cols.items()})


def write_csv(df: pd.DataFrame, path: Path, symbol=True) -> Path:
    """CSV with ISO-8601 UTC timestamps ('Z') and round-trip float text."""
    out = df.copy()
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True).dt.strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")
    if not symbol:
        out = out.drop(columns="symbol")
    out.to_csv(path, index=False)
    return path


def split(df: pd.DataFrame) -> dict:
    return {s: g.reset_index(drop=True) for s, g in df.groupby("symbol", sort=False)}


def assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert isinstance(got.index, pd.RangeIndex)
    assert got["timestamp"].dtype == np.int64
    for c in OHLCV:
        assert got[c].dtype == np.float64
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True), check_dtype=False,
                                  check_exact=True)


def snapshot(root: Path) -> dict:
    return {str(p): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def raises(match: str, *names):
    """pytest.raises(DataError) whose message contains ``match`` and every name."""
    return pytest.raises(DataError, match="(?s)" + "".join(f"(?=.*{re.escape(str(n))})"
                                                           for n in (match, *names)))


# ------------------------------------------------------------------------------------ layouts


def test_long_parquet_round_trip(tmp_path):
    df = canonical()
    pq.write_table(to_table(df), tmp_path / "bars.parquet")
    assert_same(read_bars(tmp_path / "bars.parquet"), df)
    assert list(read_bars(str(tmp_path / "bars.parquet")).columns) == ["timestamp", "symbol",
                                                                       *OHLCV]


def test_long_csv_and_gzip_round_trip(tmp_path):
    df = canonical(seed=1)
    assert_same(read_bars(write_csv(df, tmp_path / "bars.csv")), df)
    with gzip.open(tmp_path / "bars.csv.gz", "wb") as f:
        f.write((tmp_path / "bars.csv").read_bytes())
    assert_same(read_bars(tmp_path / "bars.csv.gz"), df)
    (tmp_path / "bars.txt").write_bytes((tmp_path / "bars.csv").read_bytes())
    assert_same(read_bars(tmp_path / "bars.txt", fmt="csv"), df)


def test_one_file_per_symbol_mixed_formats(tmp_path):
    df = canonical(("AAPL", "MSFT", "SPY"))
    parts = split(df)
    pq.write_table(to_table(parts["AAPL"], symbol=False), tmp_path / "AAPL.parquet")
    write_csv(parts["MSFT"], tmp_path / "MSFT.csv", symbol=False)
    pq.write_table(to_table(parts["SPY"], symbol=False), tmp_path / "SPY.pq")
    assert_same(read_bars(tmp_path), df)
    one = read_bars(tmp_path / "MSFT.csv", symbol="Microsoft")
    assert_same(one, parts["MSFT"].assign(symbol="Microsoft"))


def test_hive_partitioned_directory(tmp_path):
    df = canonical(("0700", "AAPL", "b c"))  # a numeric-looking symbol stays a string
    for s, g in split(df).items():
        d = tmp_path / "root" / f"symbol={s}"
        d.mkdir(parents=True)
        pq.write_table(to_table(g.iloc[:25], symbol=False), d / "part-0.parquet")
        pq.write_table(to_table(g.iloc[25:], symbol=False), d / "part-1.parquet")
    (tmp_path / "root" / "_SUCCESS").write_text("")
    assert_same(read_bars(tmp_path / "root"), df)
    assert_same(read_bars(tmp_path / "root", symbols=["b c"]), split(df)["b c"])
    # a partition reached directly or by a glob keeps its symbol
    assert_same(read_bars(tmp_path / "root" / "symbol=AAPL"), split(df)["AAPL"])
    assert_same(read_bars(str(tmp_path / "root" / "*" / "part-*.parquet")), df)


def test_hive_partition_wins_over_a_symbol_column_in_the_files(tmp_path):
    df = canonical(("AAA",), n=5)
    (tmp_path / "Symbol=AAA").mkdir()
    pq.write_table(to_table(df.assign(symbol="stale")), tmp_path / "Symbol=AAA" / "p.parquet")
    assert_same(read_bars(tmp_path), df)


def test_glob_and_list_concatenate_in_sorted_path_order(tmp_path):
    df = canonical(("A", "B", "C"))
    parts = split(df)
    for s in ("C", "A", "B"):
        pq.write_table(to_table(parts[s]), tmp_path / f"{s.lower()}.parquet")
    (tmp_path / "notes.txt").write_text("not data")
    assert_same(read_bars(str(tmp_path / "*.parquet")), df)
    listed = [tmp_path / "c.parquet", str(tmp_path / "[ab].parquet")]
    assert_same(read_bars(listed), df)
    assert_same(read_bars([tmp_path / "b.parquet", tmp_path / "b.parquet"]), parts["B"])


def test_source_row_order_and_duplicates_are_kept(tmp_path):
    df = canonical(n=10)
    messy = df.iloc[[3, 1, 2, 2, 0, 15, 11]].reset_index(drop=True)
    pq.write_table(to_table(messy), tmp_path / "messy.parquet")
    assert_same(read_bars(tmp_path / "messy.parquet"), messy)


# ------------------------------------------------------------------------------- column names


def test_case_insensitive_names_mapping_spread_and_extra(tmp_path):
    df = canonical(n=12)
    src = to_table(df.assign(spread=1.5, VWAP=df["close"], oi=np.arange(24)),
                   rename={"timestamp": "Date", "symbol": "TICKER", "open": "Open Price",
                           "high": "HIGH", "low": "Low", "close": "Close", "volume": "Vol"})
    pq.write_table(src, tmp_path / "odd.parquet")
    mapping = {"open": "open price", "symbol": "Ticker", "volume": "Vol"}
    got = read_bars(tmp_path / "odd.parquet", columns=mapping)  # Date found as a timestamp
    assert_same(got, df.assign(spread=1.5))
    got = read_bars(tmp_path / "odd.parquet", columns=mapping, timestamp="DATE",
                    extra=["vwap", "OI"])
    assert list(got.columns)[-3:] == ["spread", "vwap", "oi"]
    assert got["oi"].dtype == np.float64 and got["oi"].tolist() == list(range(24))


def test_spread_is_nan_for_files_without_one(tmp_path):
    parts = split(canonical(n=5))
    pq.write_table(to_table(parts["AAA"].assign(spread=2.0)), tmp_path / "a.parquet")
    pq.write_table(to_table(parts["BBB"]), tmp_path / "b.parquet")
    got = read_bars(tmp_path)
    assert got["spread"].iloc[:5].eq(2.0).all() and got["spread"].iloc[5:].isna().all()


# --------------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("given_unit", ["explicit", "auto"])
def test_integer_epochs(tmp_path, unit, given_unit):
    per = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
    df = canonical(n=30, step_ns=60 * 10**9)
    pq.write_table(to_table(df, ts=pa.array(df["timestamp"].to_numpy() // per)),
                   tmp_path / "epoch.parquet")
    write_csv(df, tmp_path / "epoch.csv")
    csv = pd.read_csv(tmp_path / "epoch.csv").assign(timestamp=df["timestamp"] // per)
    csv.to_csv(tmp_path / "epoch.csv", index=False)
    kw = {"timestamp_unit": unit if given_unit == "explicit" else "auto"}
    assert_same(read_bars(tmp_path / "epoch.parquet", **kw), df)
    assert_same(read_bars(tmp_path / "epoch.csv", **kw), df)


def test_float_epoch_seconds_and_auto_rule(tmp_path):
    df = canonical(n=4, step_ns=250_000_000)  # quarter seconds
    secs = df["timestamp"].to_numpy() / 1e9
    pq.write_table(to_table(df, ts=pa.array(secs)), tmp_path / "f.parquet")
    assert_same(read_bars(tmp_path / "f.parquet"), df)
    # 1e11 ms is 1973-03-03: below it "auto" reads seconds, so older ms epochs need a unit
    old = canonical(n=2, t0=pd.Timestamp("1972-01-01", tz="UTC"))
    ms = old["timestamp"].to_numpy() // 10**6
    pq.write_table(to_table(old, ts=pa.array(ms)), tmp_path / "old.parquet")
    assert_same(read_bars(tmp_path / "old.parquet", timestamp_unit="ms"), old)
    with raises("out of range", "old.parquet"):
        read_bars(tmp_path / "old.parquet")


@pytest.mark.parametrize("day, utc_hour", [("2024-01-16", 14), ("2024-07-16", 13)])
def test_naive_new_york_bars_become_utc(tmp_path, day, utc_hour):
    local = pd.date_range(f"{day} 09:30", periods=3, freq="min")
    want = pd.date_range(f"{day} {utc_hour}:30", periods=3, freq="min", tz="UTC")
    df = canonical(("SPY",), n=3)
    df["timestamp"] = want.as_unit("ns").asi8
    naive = pa.array(local.as_unit("s").to_numpy())
    pq.write_table(to_table(df, ts=naive), tmp_path / "ny.parquet")
    csv = df.assign(timestamp=local.strftime("%Y-%m-%d %H:%M:%S"))
    csv.to_csv(tmp_path / "ny.csv", index=False)
    for f in ("ny.parquet", "ny.csv"):
        assert_same(read_bars(tmp_path / f, timezone="America/New_York"), df)
    # naive local bounds select the same bars
    got = read_bars(tmp_path / "ny.parquet", timezone="America/New_York",
                    start=f"{day} 09:31", end=f"{day} 09:32")
    assert got["timestamp"].tolist() == [want[1].value]


def test_dates_and_zone_aware_input(tmp_path):
    days = pd.date_range("2024-03-01", periods=3, freq="D")
    df = canonical(("X",), n=3)
    df["timestamp"] = days.tz_localize("Asia/Tokyo").tz_convert("UTC").as_unit("ns").asi8
    pq.write_table(to_table(df, ts=pa.array(days.date, pa.date32())), tmp_path / "d.parquet")
    assert_same(read_bars(tmp_path / "d.parquet", timezone="Asia/Tokyo"), df)
    berlin = pa.array(df["timestamp"].to_numpy()).cast(pa.timestamp("ns", tz="Europe/Berlin"))
    berlin = berlin.cast(pa.timestamp("ms", tz="Europe/Berlin"))
    pq.write_table(to_table(df, ts=berlin), tmp_path / "tz.parquet")
    assert_same(read_bars(tmp_path / "tz.parquet", timezone="America/Chicago"), df)  # ignored
    offsets = pd.to_datetime(df["timestamp"], utc=True).dt.tz_convert("Asia/Kolkata")
    df.assign(timestamp=offsets.map(pd.Timestamp.isoformat)).to_csv(tmp_path / "o.csv",
                                                                     index=False)
    assert_same(read_bars(tmp_path / "o.csv", timezone="America/Chicago"), df)


# ------------------------------------------------------------------------------------ filters

FILTER_DF = canonical(("AAA", "BBB", "CCC", "DDD"), n=60, step_ns=37 * MIN_NS, seed=3)
SPAN = (int(FILTER_DF["timestamp"].min()) - 3 * MIN_NS, int(FILTER_DF["timestamp"].max())
        + 3 * MIN_NS)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """The same bars as long Parquet (small row groups), long CSV, per-symbol, hive, epoch."""
    root = tmp_path_factory.mktemp("layouts")
    pq.write_table(to_table(FILTER_DF), root / "long.parquet", row_group_size=16)
    write_csv(FILTER_DF, root / "long.csv")
    per_ms = pa.array(FILTER_DF["timestamp"].to_numpy() // 10**6)
    pq.write_table(to_table(FILTER_DF, ts=per_ms), root / "epoch_ms.parquet", row_group_size=16)
    for s, g in split(FILTER_DF).items():
        (root / "per").mkdir(exist_ok=True)
        pq.write_table(to_table(g, symbol=False), root / "per" / f"{s}.parquet")
        (root / "hive" / f"symbol={s}").mkdir(parents=True)
        pq.write_table(to_table(g, symbol=False), root / "hive" / f"symbol={s}" / "p.parquet")
    return {"long.parquet": root / "long.parquet", "long.csv": root / "long.csv",
            "epoch_ms": root / "epoch_ms.parquet", "per": root / "per", "hive": root / "hive"}


def expected(symbols, lo, hi) -> pd.DataFrame:
    keep = np.ones(len(FILTER_DF), bool)
    if symbols is not None:
        keep &= FILTER_DF["symbol"].isin(symbols).to_numpy()
    ts = FILTER_DF["timestamp"].to_numpy()
    if lo is not None:
        keep &= ts >= lo
    if hi is not None:
        keep &= ts < hi
    return FILTER_DF[keep]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=st.sampled_from(["long.parquet", "long.csv", "epoch_ms", "per", "hive"]),
       symbols=st.none() | st.lists(st.sampled_from(["AAA", "BBB", "CCC", "DDD"]), min_size=1,
                                    max_size=3, unique=True),
       lo=st.none() | st.integers(*SPAN), width=st.none() | st.integers(1, SPAN[1] - SPAN[0]))
def test_filters_return_exactly_the_requested_rows(layouts, layout, symbols, lo, width):
    hi = None if width is None else (SPAN[0] if lo is None else lo) + width
    want = expected(symbols, lo, hi)
    as_time = [None if x is None else pd.Timestamp(x, tz="UTC") for x in (lo, hi)]
    kwargs = {"symbols": symbols, "start": as_time[0], "end": as_time[1]}
    if want.empty:
        with pytest.raises(DataError, match="not found|no rows"):
            read_bars(layouts[layout], **kwargs)
    else:
        assert_same(read_bars(layouts[layout], **kwargs), want)


def test_iso_string_bounds_in_timezone(layouts):
    got = read_bars(layouts["long.parquet"], start="2024-01-02 10:07", end="2024-01-02 11:21",
                    timezone="America/New_York")  # 15:07 to 16:21 UTC
    lo, hi = (pd.Timestamp(f"2024-01-02 {t}", tz="UTC").value for t in ("15:07", "16:21"))
    assert_same(got, expected(None, lo, hi))


def test_unrequested_files_are_not_opened(tmp_path):
    parts = split(canonical(("AAPL", "MSFT")))
    per, good, bad = tmp_path / "per", tmp_path / "hive/symbol=AAPL", tmp_path / "hive/symbol=BAD"
    for d in (per, good, bad):
        d.mkdir(parents=True)
    pq.write_table(to_table(parts["AAPL"], symbol=False), per / "AAPL.parquet")
    (per / "MSFT.parquet").write_bytes(os.urandom(500))
    (per / "GOOG.csv").write_text('a,b\n"broken')
    pq.write_table(to_table(parts["AAPL"], symbol=False), good / "0.parquet")
    (bad / "0.parquet").write_bytes(b"PAR1" + os.urandom(99))
    for root in ("per", "hive"):
        assert_same(read_bars(tmp_path / root, symbols=["AAPL"]), parts["AAPL"])
        with raises("cannot", "GOOG.csv" if root == "per" else "symbol=BAD"):
            read_bars(tmp_path / root)


# ------------------------------------------------------------------------------------- errors


def test_missing_paths(tmp_path):
    with raises("no such file", "nope.parquet"):
        read_bars(tmp_path / "nope.parquet")
    with raises("glob matched nothing", "*.parquet"):
        read_bars(str(tmp_path / "*.parquet"))
    (tmp_path / "empty").mkdir()
    with raises("empty directory", "empty"):
        read_bars(tmp_path / "empty")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.md").write_text("hi")
    with raises("no .parquet", "docs", "fmt="):
        read_bars(tmp_path / "docs")
    (tmp_path / "bars.json").write_text("{}")
    with raises("unknown file type", "bars.json"):
        read_bars(tmp_path / "bars.json")


def test_corrupt_parquet(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(to_table(canonical()), good)
    data = good.read_bytes()
    (tmp_path / "half.parquet").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.parquet").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "zero.parquet").write_bytes(b"")
    for name, match in [("half", "corrupt"), ("noise", "corrupt"), ("zero", "empty")]:
        with raises(match, f"{name}.parquet"):
            read_bars(tmp_path / f"{name}.parquet")


def test_bad_csv(tmp_path):
    (tmp_path / "ragged.csv").write_text("timestamp,open,high,low,close,volume\n"
                                         "2024-01-02,1,2,0.5,1.5,10\n2024-01-03,1,2\n")
    with raises("cannot parse as CSV", "ragged.csv", "Expected 6 columns"):
        read_bars(tmp_path / "ragged.csv")
    (tmp_path / "header.csv").write_text("timestamp,open,high,low,close,volume\n")
    with raises("no rows", "header.csv"):
        read_bars(tmp_path / "header.csv")


def test_missing_column_suggests_the_closest_name(tmp_path):
    pq.write_table(to_table(canonical(), rename={"close": "Clsoe"}), tmp_path / "typo.parquet")
    with raises("missing column", "typo.parquet", "'close'", "did you mean 'Clsoe'", "columns=",
                "found"):
        read_bars(tmp_path / "typo.parquet")
    assert len(read_bars(tmp_path / "typo.parquet", columns={"close": "clsoe"})) == 80
    with raises("missing column", "typo.parquet", "Adj Close"):
        read_bars(tmp_path / "typo.parquet", columns={"close": "Adj Close"})
    with raises("missing column", "typo.parquet", "vwap"):
        read_bars(tmp_path / "typo.parquet", columns={"close": "clsoe"}, extra=["vwap"])
    pq.write_table(to_table(canonical(), rename={"timestamp": "when"}), tmp_path / "nots.parquet")
    with raises("missing column", "nots.parquet", "timestamp/datetime/date/time"):
        read_bars(tmp_path / "nots.parquet")


def test_non_numeric_column_names_rows(tmp_path):
    df = canonical(n=5).astype({"close": object})
    df.loc[[3, 7], "close"] = ["abc", "n/a?"]
    pq.write_table(to_table(df.astype({"close": str})), tmp_path / "text.parquet")
    with raises("not numeric", "text.parquet", "'close'", "rows [3, 7]", "'abc'"):
        read_bars(tmp_path / "text.parquet")
    write_csv(df, tmp_path / "text.csv")
    with raises("not numeric", "text.csv", "'close'", "rows [3, 7]"):
        read_bars(tmp_path / "text.csv")
    stamped = to_table(canonical(n=5)).set_column(2, "open", pa.array(np.zeros(10, "M8[ns]")))
    pq.write_table(stamped, tmp_path / "stamp.parquet")
    with raises("not numeric", "stamp.parquet", "'open'"):
        read_bars(tmp_path / "stamp.parquet")


def test_bad_timestamps(tmp_path):
    df = canonical(n=4)
    texts = ["2024-01-02 09:30", "yesterday", "2024-01-02 09:32", "2024-13-45", *["2024-01-03"] * 4]
    df.assign(timestamp=texts).to_csv(tmp_path / "words.csv", index=False)
    with raises("unparseable timestamps", "words.csv", "rows [1, 3]", "'yesterday'"):
        read_bars(tmp_path / "words.csv")
    nulls = pa.array([None if i == 2 else 10**18 + i for i in range(8)], pa.int64())
    pq.write_table(to_table(df, ts=nulls), tmp_path / "nulls.parquet")
    with raises("missing timestamps", "nulls.parquet", "rows [2]"):
        read_bars(tmp_path / "nulls.parquet")
    huge = pa.array(np.full(8, 10**17), pa.int64())
    pq.write_table(to_table(df, ts=huge), tmp_path / "huge.parquet")
    with raises("out of range", "huge.parquet"):
        read_bars(tmp_path / "huge.parquet", timestamp_unit="s")
    nan_secs = pa.array([1.7e9, np.nan, *[1.7e9] * 6])
    pq.write_table(to_table(df, ts=nan_secs), tmp_path / "nan.parquet")
    with raises("non-finite", "nan.parquet", "rows [1]"):
        read_bars(tmp_path / "nan.parquet")
    repeated = pa.array(pd.DatetimeIndex(["2024-11-03 01:30"] * 8).to_numpy())
    pq.write_table(to_table(df, ts=repeated), tmp_path / "dst.parquet")
    with raises("not valid wall-clock times in America/New_York", "dst.parquet"):
        read_bars(tmp_path / "dst.parquet", timezone="America/New_York")


def test_missing_symbols_in_a_long_file(tmp_path):
    src = to_table(canonical(n=3)).set_column(1, "symbol", pa.array(["A", None, "B"] * 2))
    pq.write_table(src, tmp_path / "nosym.parquet")
    with raises("missing symbols", "nosym.parquet", "rows [1, 4]"):
        read_bars(tmp_path / "nosym.parquet")


def test_empty_parquet_and_absent_symbols(tmp_path):
    pq.write_table(to_table(canonical()).slice(0, 0), tmp_path / "none.parquet")
    with raises("no rows", "none.parquet"):
        read_bars(tmp_path / "none.parquet")
    pq.write_table(to_table(canonical()), tmp_path / "bars.parquet")
    with raises("symbols ['ZZZ'] not found", "bars.parquet", "AAA"):
        read_bars(tmp_path / "bars.parquet", symbols=["AAA", "ZZZ"])
    with raises("no rows", "bars.parquet", "2030"):
        read_bars(tmp_path / "bars.parquet", start="2030-01-01")


def test_bad_arguments(tmp_path):
    pq.write_table(to_table(canonical()), tmp_path / "bars.parquet")
    f = tmp_path / "bars.parquet"
    cases = [({"fmt": "feather"}, "fmt"), ({"timestamp_unit": "minutes"}, "timestamp_unit"),
             ({"timezone": "Mars/Olympus"}, "timezone"), ({"start": "not a date"}, "start"),
             ({"start": "2024-02-01", "end": "2024-01-01"}, "not before"),
             ({"columns": {"opne": "x"}}, "unknown canonical name"),
             ({"symbols": []}, "symbols"), ({"symbol": "X"}, "symbol column")]
    for kwargs, match in cases:
        with raises(match):
            read_bars(f, **kwargs)
    with raises("single file", "2 files"):
        read_bars([f, write_csv(canonical(), tmp_path / "b.csv")], symbol="X")


def test_sources_are_never_modified(tmp_path, layouts):
    roots = [tmp_path, Path(layouts["per"]).parent]
    pq.write_table(to_table(canonical()), tmp_path / "bars.parquet")
    before = [snapshot(r) for r in roots]
    read_bars(tmp_path / "bars.parquet", symbols=["AAA"], start="2024-01-02 14:40")
    for key in layouts:
        read_bars(layouts[key], symbols=["BBB"])
    with pytest.raises(DataError):
        read_bars(tmp_path / "bars.parquet", symbols=["nope"])
    assert [snapshot(r) for r in roots] == before


# -------------------------------------------------------------------------------------- write


def test_write_canonical_round_trip(tmp_path):
    df = canonical(("ZZZ", "AAA"), n=20).assign(spread=0.5, vwap=1.0)
    shuffled = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
    dst = write_canonical(shuffled, tmp_path / "out" / "bars.parquet")
    schema = pq.read_schema(dst)
    assert schema.field("timestamp").type == pa.timestamp("ns", tz="UTC")
    assert pq.ParquetFile(dst).metadata.row_group(0).column(0).compression == "ZSTD"
    want = df.sort_values(["symbol", "timestamp"], kind="stable")
    assert_same(read_bars(dst, extra=["vwap"]), want)
    as_datetime = shuffled.assign(timestamp=pd.to_datetime(shuffled["timestamp"], utc=True))
    write_canonical(as_datetime, tmp_path / "dt.parquet")
    assert_same(read_bars(tmp_path / "dt.parquet", extra=["vwap"]), want)


def test_write_canonical_refuses_to_overwrite(tmp_path):
    dst = tmp_path / "bars.parquet"
    dst.write_bytes(b"precious")
    with raises("exists", "bars.parquet", "overwrite=True"):
        write_canonical(canonical(), dst)
    assert dst.read_bytes() == b"precious"
    write_canonical(canonical(), dst, overwrite=True)
    assert len(read_bars(dst)) == 80
    with raises("missing columns", "['close']"):
        write_canonical(canonical().drop(columns="close"), tmp_path / "x.parquet")
    with raises("'symbol' has missing values", "rows [2]"):
        write_canonical(canonical().astype({"symbol": object}).assign(
            symbol=lambda d: d["symbol"].where(d.index != 2)), tmp_path / "x.parquet")
    with raises("not numeric", "'note'"):
        write_canonical(canonical().assign(note="hi"), tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.parametrize("existing", [False, True])
def test_crash_mid_write_leaves_no_partial_file(tmp_path, monkeypatch, existing):
    dst = tmp_path / "bars.parquet"
    if existing:
        write_canonical(canonical(n=3), dst)
    before = snapshot(tmp_path)

    def crash(table, where, **kwargs):
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        write_canonical(canonical(), dst, overwrite=True)
    assert snapshot(tmp_path) == before  # no dst (or the old one intact), no temp file
