"""Canonical long frames: resample (against pandas), align (union/intersection) and the trading
calendar (sessions, DST, weekends, holidays, validation)."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optrader.data.align import align
from optrader.data.calendar import NS_PER_DAY, MissingCalendarPackage, TradingCalendar
from optrader.data.market import DataError
from optrader.data.resample import parse_rule, resample

NS = 10**9
H = 3600 * NS
MIN = 60 * NS


def ns(text: str) -> int:
    return pd.Timestamp(text).value


def utc(values) -> list[str]:
    return pd.to_datetime(np.asarray(values), utc=True).strftime("%Y-%m-%d %H:%M").tolist()


# ---------------------------------------------------------------------------------------------
# Random canonical long frames


def long_frame(seed: int, n_symbols: int, layout: str, span_s: int = 3 * 86_400,
               start_ns: int | None = None, jitter: bool = True) -> pd.DataFrame:
    """Random canonical long frame: per symbol a random sorted subset of whole seconds (plus a
    per-symbol ns jitter), OHLC arbitrary floats, integer volumes and dyadic spreads (sums are
    exact in any order, so means and sums compare exactly with pandas' Kahan sums), an extra
    column with NaNs; ``jitter=False`` puts every symbol on the same whole-second grid.
    ``layout``: "grouped" (symbol blocks), "time" (sorted by time) or "mixed" (random
    interleaving that keeps each symbol's order)."""
    rng = np.random.default_rng(seed)
    if start_ns is None:
        start_ns = int(rng.integers(-2 * NS_PER_DAY, 2 * NS_PER_DAY))  # some before 1970
    parts = []
    for a in range(n_symbols):
        n = int(rng.integers(1, 400))
        secs = np.sort(rng.choice(span_s, size=n, replace=False)).astype(np.int64)
        ts = start_ns + secs * NS + (int(rng.integers(0, NS)) if jitter else 0)
        mid = 100 + rng.standard_normal(n).cumsum()
        spread = rng.integers(0, 80, n) / 8.0
        spread[rng.random(n) < 0.2] = np.nan
        x = rng.standard_normal(n)
        x[rng.random(n) < 0.3] = np.nan
        parts.append(pd.DataFrame({
            "timestamp": ts, "symbol": f"S{(a * 7) % 10}{a}",
            "open": mid + rng.standard_normal(n), "high": mid + 5 + rng.random(n),
            "low": mid - 5 - rng.random(n), "close": mid + rng.standard_normal(n),
            "volume": rng.integers(0, 10_000, n).astype(np.float64), "spread": spread, "x": x}))
    df = pd.concat(parts, ignore_index=True)
    if layout == "time":
        df = df.sort_values(["timestamp"], kind="stable", ignore_index=True)
    elif layout == "mixed":
        # random interleaving that keeps each symbol's own order: random keys, sorted within
        # each symbol's block of rows (the frame is grouped here), then rows ordered by key
        key = rng.random(len(df))
        sym = pd.factorize(df["symbol"])[0]
        key = key[np.lexsort((key, sym))]
        df = df.iloc[np.argsort(key, kind="stable")].reset_index(drop=True)
    return df


AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum",
       "spread": "mean", "x": "last"}


def pandas_resample(df: pd.DataFrame, rule: str) -> pd.DataFrame:
    """Reference: per symbol (first-appearance order), pandas resample from the epoch, empty
    buckets dropped."""
    parts = []
    for sym in pd.unique(df["symbol"]):
        sub = df[df["symbol"] == sym]
        # naive UTC index: pandas ignores origin= for Day rules on a tz-aware index
        sub = sub.set_index(pd.DatetimeIndex(sub["timestamp"].to_numpy().view("M8[ns]")))
        r = sub[list(AGG)].resample(rule, origin="epoch").agg(AGG)
        count = sub["close"].resample(rule, origin="epoch").count().to_numpy()
        r = r[count > 0]
        r.insert(0, "symbol", pd.array([sym] * len(r), dtype="str"))
        r.insert(0, "timestamp", r.index.as_unit("ns").asi8)
        parts.append(r.reset_index(drop=True))
    return pd.concat(parts, ignore_index=True)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_symbols=st.integers(1, 4),
       rule=st.sampled_from(["1s", "90s", "1min", "5min", "7min", "1h", "4h", "1D", "2D"]),
       layout=st.sampled_from(["grouped", "time", "mixed"]))
def test_resample_matches_pandas(seed, n_symbols, rule, layout):
    df = long_frame(seed, n_symbols, layout)
    before = df.copy(deep=True)
    got = resample(df, rule)
    pd.testing.assert_frame_equal(got, pandas_resample(df, rule), check_exact=True)
    pd.testing.assert_frame_equal(df, before)  # the input is not modified


def test_resample_float_volume_close_to_pandas():
    """Arbitrary float volumes: we sum in time order, pandas with Kahan compensation, so the two
    may differ in the last bits."""
    df = long_frame(7, 3, "mixed")
    df["volume"] = np.random.default_rng(1).random(len(df)) * 1e3
    got, ref = resample(df, "1h"), pandas_resample(df, "1h")
    np.testing.assert_allclose(got["volume"], ref["volume"], rtol=1e-12)
    pd.testing.assert_frame_equal(got.drop(columns="volume"), ref.drop(columns="volume"),
                                  check_exact=True)


def test_resample_hand_example():
    m = MIN
    df = pd.DataFrame({
        "timestamp": [0, 0, m, 2 * m, 5 * m, 6 * m],
        "symbol": ["A", "B", "A", "A", "A", "B"],
        "open": [1.0, 10, 2, 3, 4, 11], "high": [1.5, 10.5, 2.5, 3.5, 4.5, 11.5],
        "low": [0.5, 9.5, 1.5, 2.5, 3.5, 10.5], "close": [1.2, 10.2, 2.2, 3.2, 4.2, 11.2],
        "volume": [1.0, 2, 3, 4, 5, 6]})
    got = resample(df, "5min")
    assert got["timestamp"].tolist() == [0, 5 * m, 0, 5 * m]
    assert got["symbol"].tolist() == ["A", "A", "B", "B"]
    assert got["open"].tolist() == [1.0, 4, 10, 11]
    assert got["high"].tolist() == [3.5, 4.5, 10.5, 11.5]
    assert got["low"].tolist() == [0.5, 3.5, 9.5, 10.5]
    assert got["close"].tolist() == [3.2, 4.2, 10.2, 11.2]
    assert got["volume"].tolist() == [8.0, 5, 2, 6]
    assert list(got.columns) == list(df.columns)


def test_resample_session_days_new_york_dst():
    """24/7 hourly bars bucketed by New York local days (the 23-hour 2024-03-10 included),
    labelled by the first bar of the day over all symbols."""
    cal = TradingCalendar(timezone="America/New_York")
    ts = np.arange(ns("2024-03-08 05:00Z"), ns("2024-03-12 04:00Z"), H)
    columns = list(long_frame(3, 1, "grouped").columns)
    rng = np.random.default_rng(0)
    rows = []
    for sym, t in (("A", ts), ("B", ts[3:])):  # B starts three hours later
        mid = 100 + rng.standard_normal(t.size).cumsum()
        rows.append(pd.DataFrame({"timestamp": t, "symbol": sym, "open": mid, "high": mid + 1,
                                  "low": mid - 1, "close": mid + 0.5,
                                  "volume": rng.integers(0, 100, t.size).astype(float),
                                  "spread": 0.25, "x": rng.standard_normal(t.size)}))
    df = pd.concat(rows, ignore_index=True)[columns]
    got = resample(df, "1D", calendar=cal)
    parts = []
    for sym in ("A", "B"):
        sub = df[df["symbol"] == sym]
        sub = sub.set_index(pd.to_datetime(sub["timestamp"], unit="ns", utc=True)
                            .dt.tz_convert("America/New_York"))
        r = sub[list(AGG)].resample("1D").agg(AGG).reset_index(drop=True)
        r.insert(0, "symbol", pd.array([sym] * len(r), dtype="str"))
        parts.append(r)
    ref = pd.concat(parts, ignore_index=True)
    pd.testing.assert_frame_equal(got.drop(columns="timestamp"), ref, check_exact=True)
    # labels: first bar of each local day over both symbols = local midnight (A has it)
    days = ["2024-03-08 05:00Z", "2024-03-09 05:00Z", "2024-03-10 05:00Z",
            "2024-03-11 04:00Z"]  # EST midnights, then EDT midnight after the switch
    assert got["timestamp"].tolist() == [ns(d) for d in days] * 2
    # same result from a time-sorted (interleaved) frame
    pd.testing.assert_frame_equal(
        resample(df.sort_values("timestamp", kind="stable", ignore_index=True), "1D",
                 calendar=cal), got)
    # the 2024-03-10 local day has 23 hourly bars
    assert got["volume"].iloc[2] == df["volume"].iloc[(ts >= ns(days[2])).argmax():][:23].sum()


def test_resample_ignores_calendar_below_one_day():
    df = long_frame(11, 2, "time")
    cal = TradingCalendar(timezone="America/New_York")
    pd.testing.assert_frame_equal(resample(df, "4h", calendar=cal), resample(df, "4h"))


def test_resample_empty_frame():
    df = long_frame(0, 1, "grouped").iloc[:0]
    out = resample(df, "1h")
    assert out.empty and list(out.columns) == list(df.columns)


@pytest.mark.parametrize(("rule", "ns_"), [("5min", 300 * NS), ("1h", H), ("4h", 4 * H),
                                           ("1D", NS_PER_DAY), ("2D", 2 * NS_PER_DAY),
                                           ("100ms", NS // 10), (pd.Timedelta("15min"), 15 * MIN),
                                           (7, 7)])
def test_parse_rule(rule, ns_):
    assert parse_rule(rule) == ns_


@pytest.mark.parametrize(("rule", "match"), [
    ("1M", r"rule: expected a fixed duration .* got '1M'"),
    ("W", r"calendar-dependent rule 'W'"),
    ("ME", r"calendar-dependent rule 'ME'"),
    ("B", r"calendar-dependent rule 'B'"),
    ("banana", r"rule: expected a fixed duration .* got 'banana'"),
    ("0min", r"positive duration"),
    (0, r"positive duration"),
    (1.5, r"rule: expected a pandas duration string, a Timedelta or int ns, got float"),
])
def test_resample_rejects_bad_rules(rule, match):
    with pytest.raises(DataError, match=match):
        resample(long_frame(0, 1, "grouped"), rule)


def test_resample_rejects_unsorted_and_duplicate_rows():
    df = long_frame(5, 2, "grouped")
    second = df.index[df["symbol"] == df["symbol"].iloc[-1]]
    swapped = df.copy()
    i, j = second[3], second[4]
    swapped.loc[[i, j], "timestamp"] = df.loc[[j, i], "timestamp"].to_numpy()
    with pytest.raises(DataError, match=rf"unsorted timestamps for symbol .* at rows \[{j}\]"):
        resample(swapped, "1h")
    dup = df.copy()
    dup.loc[j, "timestamp"] = dup.loc[i, "timestamp"]
    with pytest.raises(DataError, match=rf"duplicate timestamps for symbol .* at rows \[{j}\]"):
        resample(dup, "1h")
    with pytest.raises(DataError, match=r"missing columns \['volume'\]"):
        resample(df.drop(columns="volume"), "1h")
    with pytest.raises(DataError, match=r"column 'x' must be numeric"):
        resample(df.assign(x="a"), "1h")


# ---------------------------------------------------------------------------------------------
# align


def hand_frame(order: str = "grouped") -> pd.DataFrame:
    """B at t = 1, 2, 3, 4 and A at t = 2, 4, 5 (B appears first)."""
    rows = [("B", 1, 10.0), ("B", 2, 11.0), ("B", 3, 12.0), ("B", 4, 13.0),
            ("A", 2, 100.0), ("A", 4, 101.0), ("A", 5, 102.0)]
    if order == "time":
        rows = sorted(rows, key=lambda r: r[1])  # B still first (t = 1)
    df = pd.DataFrame(rows, columns=["symbol", "timestamp", "close"])
    df["timestamp"] = df["timestamp"].astype(np.int64) * H
    c = df["close"]
    df = df.assign(open=c - 0.5, high=c + 1.0, low=c - 1.0, volume=c * 10,
                   spread=c / 100, funding=c / 1000)
    return df[["timestamp", "symbol", "open", "high", "low", "close", "volume", "spread",
               "funding"]]


@pytest.mark.parametrize("order", ["grouped", "time"])
def test_align_union(order):
    al = align(hand_frame(order), how="union")
    assert al.symbols == ("B", "A")
    assert al.timestamps.tolist() == [H, 2 * H, 3 * H, 4 * H, 5 * H]
    assert al.tradable.tolist() == [[True, False], [True, True], [True, False], [True, True],
                                    [False, True]]
    o, h, lo, c, v = al.bars
    nan = np.nan
    # B: real bars, then flat at its last close (13) at t=5
    assert c[:, 0].tolist() == [10.0, 11.0, 12.0, 13.0, 13.0]
    assert [o[4, 0], h[4, 0], lo[4, 0], v[4, 0]] == [13.0, 13.0, 13.0, 0.0]
    # A: flat at its first open (99.5) before its first bar, flat at the last close at t=3
    assert o[:, 1].tolist() == [99.5, 99.5, 100.0, 100.5, 101.5]
    assert h[:, 1].tolist() == [99.5, 101.0, 100.0, 102.0, 103.0]
    assert lo[:, 1].tolist() == [99.5, 99.0, 100.0, 100.0, 101.0]
    assert c[:, 1].tolist() == [99.5, 100.0, 100.0, 101.0, 102.0]
    assert v[:, 1].tolist() == [0.0, 1000.0, 0.0, 1010.0, 1020.0]
    np.testing.assert_array_equal(al.spread, [[0.10, nan], [0.11, 1.00], [0.12, nan],
                                              [0.13, 1.01], [nan, 1.02]])
    # extra columns carried forward; before the first bar, the first bar's value
    np.testing.assert_array_equal(al.extra["funding"], [[0.010, 0.100], [0.011, 0.100],
                                                        [0.012, 0.100], [0.013, 0.101],
                                                        [0.013, 0.102]])
    assert al.bars.dtype == np.float64 and al.bars.shape == (5, 5, 2)
    assert al.tradable.dtype == np.bool_ and al.timestamps.dtype == np.int64


@pytest.mark.parametrize("order", ["grouped", "time"])
def test_align_intersection(order):
    al = align(hand_frame(order))
    assert al.symbols == ("B", "A")
    assert al.timestamps.tolist() == [2 * H, 4 * H]
    assert al.tradable.all() and al.tradable.shape == (2, 2)
    np.testing.assert_array_equal(al.bars[3], [[11.0, 100.0], [13.0, 101.0]])
    np.testing.assert_array_equal(al.bars[0], [[10.5, 99.5], [12.5, 100.5]])
    np.testing.assert_array_equal(al.spread, [[0.11, 1.00], [0.13, 1.01]])
    np.testing.assert_array_equal(al.extra["funding"], [[0.011, 0.100], [0.013, 0.101]])


@pytest.mark.parametrize("how", ["union", "intersection"])
def test_align_random_layouts_agree(how):
    """The same bars in any row layout give the same arrays; every tradable cell holds its row;
    the intersection is the union's fully tradable rows."""
    kw = dict(seed=21, n_symbols=4, span_s=500, jitter=False)
    frames = [long_frame(layout=layout, **kw) for layout in ("grouped", "time", "mixed")]
    ref = align(frames[0], "union")
    for df in frames:
        al = align(df, how)
        perm = [al.symbols.index(s) for s in ref.symbols]
        if how == "union":
            np.testing.assert_array_equal(al.timestamps, ref.timestamps)
            np.testing.assert_array_equal(al.bars[:, :, perm], ref.bars)
            np.testing.assert_array_equal(al.tradable[:, perm], ref.tradable)
            np.testing.assert_array_equal(al.spread[:, perm], ref.spread)
            np.testing.assert_array_equal(al.extra["x"][:, perm], ref.extra["x"])
        else:
            full = ref.tradable.all(axis=1)
            assert 0 < full.sum() < full.size
            np.testing.assert_array_equal(al.timestamps, ref.timestamps[full])
            np.testing.assert_array_equal(al.bars[:, :, perm], ref.bars[:, full])
            assert al.tradable.all()
        t_idx = np.searchsorted(al.timestamps, df["timestamp"].to_numpy())
        a_idx = np.array([al.symbols.index(s) for s in df["symbol"]])
        kept = al.timestamps[np.minimum(t_idx, al.timestamps.size - 1)] == df["timestamp"]
        for k, name in enumerate(("open", "high", "low", "close", "volume")):
            np.testing.assert_array_equal(al.bars[k][t_idx[kept], a_idx[kept]],
                                          df[name].to_numpy()[kept])
    # union holes: flat at the previous close (or first open), volume 0, not tradable
    o, h, lo, c, v = ref.bars
    hole = ~ref.tradable
    assert hole.any()
    np.testing.assert_array_equal(v[hole], 0.0)
    np.testing.assert_array_equal(o[hole], c[hole])
    np.testing.assert_array_equal(h[hole], c[hole])
    np.testing.assert_array_equal(lo[hole], c[hole])
    assert np.isnan(ref.spread[hole]).all()
    t, a = np.nonzero(hole[1:])
    t += 1
    np.testing.assert_array_equal(c[t, a], c[t - 1, a])  # marked at the last close


def test_align_accepts_datetime_timestamps():
    df = hand_frame()
    as_dt = df.assign(timestamp=pd.to_datetime(df["timestamp"], unit="ns", utc=True)
                      .dt.tz_convert("Asia/Tokyo"))
    got, ref = align(as_dt, how="union"), align(df, how="union")
    np.testing.assert_array_equal(got.timestamps, ref.timestamps)
    np.testing.assert_array_equal(got.bars, ref.bars)


def test_align_no_spread_no_extra():
    df = hand_frame().drop(columns=["spread", "funding"])
    al = align(df, how="union")
    assert al.spread is None and al.extra == {}


def test_align_errors():
    df = hand_frame()
    disjoint = df[df["symbol"] == "B"].iloc[:2]
    disjoint = pd.concat([disjoint, df[df["symbol"] == "A"].iloc[1:]], ignore_index=True)
    msg = (r"symbols share no timestamps \(empty intersection\); ranges: "
           r"'B' 1970-01-01T01:00:00\+00:00 \.\. 1970-01-01T02:00:00\+00:00, "
           r"'A' 1970-01-01T04:00:00\+00:00 \.\. 1970-01-01T05:00:00\+00:00")
    with pytest.raises(DataError, match=msg):
        align(disjoint)
    assert align(disjoint, how="union").timestamps.size == 4
    with pytest.raises(DataError, match="no rows"):
        align(df.iloc[:0])
    dup = pd.concat([df, df.iloc[[5]]], ignore_index=True)
    with pytest.raises(DataError, match=r"duplicate timestamps for symbol 'A' at rows \[5, 7\]"):
        align(dup, how="union")
    with pytest.raises(ValueError, match=r"how: expected 'intersection' or 'union', got 'outer'"):
        align(df, how="outer")
    with pytest.raises(DataError, match=r"column 'timestamp' must be int64 UTC nanoseconds"):
        align(df.assign(timestamp=df["timestamp"].astype(float)))


def test_resample_then_align():
    df = long_frame(4, 3, "time", span_s=2 * 86_400, start_ns=0)
    al = align(resample(df, "4h"), how="union")
    assert al.bars.shape[1] == al.timestamps.size <= 12
    assert (al.timestamps % (4 * H) == 0).all()


# ---------------------------------------------------------------------------------------------
# TradingCalendar


def test_always_open():
    cal = TradingCalendar.preset("always_open")
    assert cal == TradingCalendar()
    ts = np.array([ns("2024-03-09 23:59Z"), ns("2024-03-10 00:00Z"), -1], dtype=np.int64)
    assert cal.is_open(ts).all()
    assert cal.day_ids(ts).tolist() == [19791, 19792, -1]
    grid = cal.expected_timestamps(ns("2024-03-09 22:00Z"), ns("2024-03-10 02:00Z"), H)
    assert utc(grid) == ["2024-03-09 22:00", "2024-03-09 23:00", "2024-03-10 00:00",
                         "2024-03-10 01:00", "2024-03-10 02:00"]  # both ends inclusive


@pytest.mark.parametrize(("stamp", "open_"), [
    # Friday 2024-03-08, EST (UTC-5): 09:30-16:00 local = 14:30-21:00 UTC
    ("2024-03-08 14:29Z", False), ("2024-03-08 14:30Z", True), ("2024-03-08 20:59Z", True),
    ("2024-03-08 21:00Z", False),
    # weekend
    ("2024-03-09 15:00Z", False), ("2024-03-10 15:00Z", False),
    # Monday 2024-03-11, EDT (UTC-4): 13:30-20:00 UTC
    ("2024-03-11 13:29Z", False), ("2024-03-11 13:30Z", True), ("2024-03-11 19:59Z", True),
    ("2024-03-11 20:00Z", False), ("2024-03-11 20:30Z", False),
    # Friday 2024-11-01 EDT, Monday 2024-11-04 EST
    ("2024-11-01 13:30Z", True), ("2024-11-01 20:00Z", False), ("2024-11-04 13:30Z", False),
    ("2024-11-04 14:30Z", True), ("2024-11-04 20:59Z", True), ("2024-11-04 21:00Z", False),
])
def test_us_equities_is_open_across_dst(stamp, open_):
    cal = TradingCalendar.preset("us_equities")
    assert cal.is_open(np.array([ns(stamp)])).tolist() == [open_]


def test_us_equities_day_ids():
    cal = TradingCalendar.preset("us_equities")
    stamps = ["2024-03-09 03:00Z",  # 22:00 EST Friday 03-08
              "2024-03-11 03:59Z",  # 23:59 EDT Sunday 03-10
              "2024-03-11 04:00Z",  # 00:00 EDT Monday 03-11
              "2024-11-04 04:59Z",  # 23:59 EST Sunday 11-03
              "2024-11-04 05:00Z"]  # 00:00 EST Monday 11-04
    days = cal.day_ids(np.array([ns(s) for s in stamps]))
    expect = ["2024-03-08", "2024-03-10", "2024-03-11", "2024-11-03", "2024-11-04"]
    assert days.tolist() == [ns(d) // NS_PER_DAY for d in expect]


@pytest.mark.parametrize(("friday", "monday", "fri_first", "fri_last", "mon_first", "mon_last"), [
    ("2024-03-08", "2024-03-11", "14:30", "20:55", "13:30", "19:55"),  # EST -> EDT
    ("2024-11-01", "2024-11-04", "13:30", "19:55", "14:30", "20:55"),  # EDT -> EST
])
def test_us_equities_expected_timestamps_across_dst(friday, monday, fri_first, fri_last,
                                                    mon_first, mon_last):
    cal = TradingCalendar.preset("us_equities")
    grid = cal.expected_timestamps(ns(friday + " 00:00Z"), ns(monday + " 23:59Z"), 5 * MIN)
    assert grid.size == 2 * 78  # 6.5 h of 5-minute bars per day, nothing on the weekend
    assert (np.diff(grid) > 0).all()
    fri, mon = grid[:78], grid[78:]
    assert utc(fri[[0, -1]]) == [f"{friday} {fri_first}", f"{friday} {fri_last}"]
    assert utc(mon[[0, -1]]) == [f"{monday} {mon_first}", f"{monday} {mon_last}"]
    assert (np.diff(fri) == 5 * MIN).all() and (np.diff(mon) == 5 * MIN).all()
    assert cal.is_open(grid).all()
    hourly = cal.expected_timestamps(ns(friday + " 00:00Z"), ns(friday + " 23:59Z"), H)
    first_hour = int(fri_first[:2])
    assert [s[-5:] for s in utc(hourly)] == [f"{first_hour + k:02d}:30" for k in range(7)]


def test_expected_timestamps_window_is_inclusive_and_clipped():
    cal = TradingCalendar.preset("us_equities")
    grid = cal.expected_timestamps(ns("2024-03-08 15:00Z"), ns("2024-03-08 16:00Z"), 30 * MIN)
    assert utc(grid) == ["2024-03-08 15:00", "2024-03-08 15:30", "2024-03-08 16:00"]
    assert cal.expected_timestamps(ns("2024-03-09 00:00Z"), ns("2024-03-10 23:59Z"), H).size == 0


@pytest.mark.parametrize(("day", "n_hours"), [("2024-03-10", 23), ("2024-11-03", 25),
                                              ("2024-03-12", 24)])
def test_24_7_in_new_york_follows_dst(day, n_hours):
    cal = TradingCalendar(timezone="America/New_York")
    start = pd.Timestamp(day, tz="America/New_York")
    # the next local midnight
    end = (pd.Timestamp(day) + pd.Timedelta(days=1)).tz_localize("America/New_York")
    grid = cal.expected_timestamps(start.value, end.value - 1, H)
    assert grid.size == n_hours
    assert (np.diff(grid) == H).all() and grid[0] == start.value
    assert (cal.day_ids(grid) == ns(day) // NS_PER_DAY).all()
    assert cal.day_ids(np.array([end.value])).tolist() == [ns(day) // NS_PER_DAY + 1]


def test_holidays():
    cal = TradingCalendar(timezone="America/New_York", sessions=(("09:30", "16:00"),),
                          weekdays=(0, 1, 2, 3, 4), holidays=("2024-07-04",))
    assert cal.is_open(np.array([ns("2024-07-03 15:00Z"), ns("2024-07-04 15:00Z"),
                                 ns("2024-07-05 15:00Z")])).tolist() == [True, False, True]
    grid = cal.expected_timestamps(ns("2024-07-03 00:00Z"), ns("2024-07-05 23:00Z"), H)
    assert sorted(set(pd.to_datetime(grid, utc=True).strftime("%m-%d"))) == ["07-03", "07-05"]
    assert grid.size == 14


def test_multi_session_day():
    """Tokyo-style lunch break: 09:00-11:30 and 12:30-15:00 JST (UTC+9)."""
    cal = TradingCalendar(timezone="Asia/Tokyo", sessions=(("09:00", "11:30"), ("12:30", "15:00")),
                          weekdays=(0, 1, 2, 3, 4))
    grid = cal.expected_timestamps(ns("2024-01-08 20:00Z"), ns("2024-01-09 12:00Z"), 30 * MIN)
    assert utc(grid) == ["2024-01-09 00:00", "2024-01-09 00:30", "2024-01-09 01:00",
                         "2024-01-09 01:30", "2024-01-09 02:00",
                         "2024-01-09 03:30", "2024-01-09 04:00", "2024-01-09 04:30",
                         "2024-01-09 05:00", "2024-01-09 05:30"]
    probe = np.array([ns(s) for s in ("2024-01-09 02:29Z", "2024-01-09 02:30Z",
                                      "2024-01-09 03:00Z", "2024-01-09 03:30Z",
                                      "2024-01-09 06:00Z", "2024-01-08 23:59Z")])
    assert cal.is_open(probe).tolist() == [True, False, False, True, False, False]
    # 23:00 UTC on the 8th is 08:00 JST on the 9th
    assert cal.day_ids(np.array([ns("2024-01-08 23:00Z")])).tolist() == [
        ns("2024-01-09") // NS_PER_DAY]


def test_is_open_accepts_datetime64_and_keeps_shape():
    cal = TradingCalendar.preset("us_equities")
    ts = np.array([["2024-03-08T14:30", "2024-03-08T21:00"]], dtype="M8[ns]")
    assert cal.is_open(ts).tolist() == [[True, False]]


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(timezone="Mars/Olympus_Mons"), r"timezone: unknown IANA time-zone name "
                                         r"'Mars/Olympus_Mons'"),
    (dict(timezone=""), r"timezone: expected an IANA time-zone name"),
    (dict(sessions=(("09:00", "25:00"),)), r"sessions\[0\] close: expected a time between "
                                           r"'00:00' and '24:00', got '25:00'"),
    (dict(sessions=(("9:30", "16:00"),)), r"sessions\[0\] open: expected a local time 'HH:MM', "
                                          r"got '9:30'"),
    (dict(sessions=(("09:00", "12:60"),)), r"sessions\[0\] close: .* got '12:60'"),
    (dict(sessions=(("16:00", "09:30"),)), r"sessions\[0\]: expected open < close .* got open "
                                           r"'16:00' >= close '09:30'"),
    (dict(sessions=(("09:00", "09:00"),)), r"sessions\[0\]: expected open < close"),
    (dict(sessions=(("09:00", "12:00"), ("11:00", "15:00"))), r"sessions\[1\]: expected "
                                                              r"sessions in ascending"),
    (dict(sessions=()), r"sessions: expected at least one"),
    (dict(sessions=(("09:00",),)), r"sessions\[0\]: expected an \('HH:MM', 'HH:MM'\) "
                                   r"open/close pair, got \('09:00',\)"),
    (dict(sessions=("09:00-16:00",)), r"sessions\[0\]: expected .* got '09:00-16:00'"),
    (dict(weekdays=(0, 7)), r"weekdays: expected integers 0..6 \(Monday = 0\), got 7"),
    (dict(weekdays=(True,)), r"weekdays: expected integers 0..6"),
    (dict(weekdays=()), r"weekdays: expected at least one"),
    (dict(holidays=("2024-13-01",)), r"holidays\[0\]: expected a local date 'YYYY-MM-DD', got "
                                     r"'2024-13-01'"),
    (dict(holidays=("2024-07-04", "July 4")), r"holidays\[1\]: .* got 'July 4'"),
])
def test_calendar_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TradingCalendar(**kwargs)


def test_calendar_bad_preset_and_arguments():
    with pytest.raises(ValueError, match=r"calendar preset: expected one of \['always_open', "
                                         r"'us_equities'\], got 'nyse'"):
        TradingCalendar.preset("nyse")
    cal = TradingCalendar()
    with pytest.raises(ValueError, match=r"freq_ns: expected > 0 nanoseconds, got 0"):
        cal.expected_timestamps(0, 10, 0)
    with pytest.raises(ValueError, match=r"end_ns: expected >= start_ns \(10\), got 5"):
        cal.expected_timestamps(10, 5, 1)
    with pytest.raises(ValueError, match=r"start_ns: expected an integer"):
        cal.expected_timestamps(0.5, 5, 1)
    with pytest.raises(ValueError, match=r"ts: expected int64 UTC nanoseconds, got dtype float64"):
        cal.is_open(np.array([1.5]))


@pytest.mark.parametrize("name", ["XNYS", "XLON", "CMES"])
def test_from_exchange_without_package(monkeypatch, name):
    monkeypatch.setitem(sys.modules, "exchange_calendars", None)  # import raises ImportError
    for make in (TradingCalendar.from_exchange, TradingCalendar.named):
        with pytest.raises(MissingCalendarPackage,
                           match=rf"calendar '{name}'.*pip install optrader\[calendars\]"):
            make(name)
    # a bad setting like any other: the CLIs' ValueError handlers catch it
    assert issubclass(MissingCalendarPackage, ValueError)
    assert issubclass(MissingCalendarPackage, ImportError)
