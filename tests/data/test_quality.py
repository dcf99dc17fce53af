"""The data quality report finds each planted defect at exactly its rows, scores a clean frame
1.0 and never scores a frame higher for more defects; missing bars against an explicit grid, a
regular frequency and an inferred one; JSON, rich rendering and the check_or_raise gate."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from optrader.data import DataError
from optrader.data.quality import ISSUE_KINDS, QualityReport, check_or_raise, quality_report

MIN = 60 * 10**9
T0 = pd.Timestamp("2024-01-02 09:30", tz="UTC").value
N_BARS = 30
SYMBOLS = ("AAA", "BBB")


def row(sym: str, bar: int) -> int:
    """Position of ``bar`` of ``sym`` in the time-major frame of ``make_frame``."""
    return 2 * bar + SYMBOLS.index(sym)


def make_frame(n_bars: int = N_BARS, seed: int = 0) -> pd.DataFrame:
    """Clean 1-minute bars of two symbols, interleaved by time (AAA, BBB, AAA, BBB, ...)."""
    rng = np.random.default_rng(seed)
    parts = []
    for s in SYMBOLS:
        close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.005, n_bars)))
        open_ = np.r_[close[0], close[:-1]]
        parts.append(pd.DataFrame({
            "timestamp": T0 + np.arange(n_bars, dtype=np.int64) * MIN, "symbol": s,
            "open": open_, "high": np.maximum(open_, close) * 1.002,
            "low": np.minimum(open_, close) * 0.998, "close": close,
            "volume": rng.uniform(50.0, 150.0, n_bars), "spread": 1.5}))
    df = pd.concat(parts).sort_values(["timestamp", "symbol"], kind="stable")
    return df.reset_index(drop=True)


def found(report: QualityReport) -> dict:
    """(kind, symbol) -> (count, rows, severity) of every issue."""
    out = {}
    for i in report.issues:
        assert i.kind in ISSUE_KINDS
        assert (i.kind, i.symbol) not in out, f"two {i.kind} issues for {i.symbol}"
        out[i.kind, i.symbol] = (i.count, i.rows, i.severity)
    return out


# --- planted defects: (frame) -> (frame, {symbol: rows}) ------------------------------------

def plant_duplicate(df):
    a, b = row("AAA", 5), row("BBB", 12)
    order = list(range(len(df)))
    order.insert(b + 1, b)  # a copy right after the original
    order.insert(a + 1, a)
    return df.iloc[order].reset_index(drop=True), {"AAA": [a + 1], "BBB": [b + 2]}


def plant_unsorted(df):
    df = df.copy()
    want = {}
    for s, bar in (("AAA", 7), ("BBB", 20)):
        i, j = row(s, bar), row(s, bar + 1)
        df.loc[[i, j], "timestamp"] = df.loc[[j, i], "timestamp"].to_numpy()
        want[s] = [j]
    return df, want


def plant_non_positive_price(df):
    df = df.copy()
    df.loc[row("AAA", 4), "low"] = 0.0
    df.loc[row("BBB", 9), "low"] = -1.0
    return df, {"AAA": [row("AAA", 4)], "BBB": [row("BBB", 9)]}


def plant_high_below_low(df):
    df = df.copy()
    rows = [row("AAA", 8), row("AAA", 9), row("BBB", 21)]
    df.loc[rows, ["high", "low"]] = df.loc[rows, ["low", "high"]].to_numpy()
    return df, {"AAA": rows[:2], "BBB": rows[2:]}


def plant_outside_range(df):
    df = df.copy()
    a, b = row("AAA", 10), row("BBB", 23)
    df.loc[a, "open"] = df.loc[a, "high"] * 1.01
    df.loc[b, "open"] = df.loc[b, "low"] * 0.99
    return df, {"AAA": [a], "BBB": [b]}


def plant_negative_volume(df):
    df = df.copy()
    rows = [row("AAA", 12), row("BBB", 0), row("BBB", 25)]
    df.loc[rows, "volume"] = -1.0
    return df, {"AAA": rows[:1], "BBB": rows[1:]}


def plant_negative_spread(df):
    df = df.copy()
    df.loc[[row("AAA", 2), row("BBB", 27)], "spread"] = -0.5
    df.loc[row("BBB", 3), "spread"] = np.nan  # an unknown quote is not a defect
    return df, {"AAA": [row("AAA", 2)], "BBB": [row("BBB", 27)]}


def plant_price_jump(df):
    df = df.copy()
    px = ["open", "high", "low", "close"]
    for s, bar, factor in (("AAA", 15, np.e), ("BBB", 22, 1 / np.e)):  # level shifts
        later = (df["symbol"] == s) & (df["timestamp"] >= T0 + bar * MIN)
        df.loc[later, px] *= factor
        df.loc[row(s, bar), "open"] = df.loc[row(s, bar - 1), "close"] * 1.001
        df.loc[row(s, bar), "low"] = df.loc[row(s, bar), ["open", "close"]].min() * 0.998
        df.loc[row(s, bar), "high"] = df.loc[row(s, bar), ["open", "close"]].max() * 1.002
    return df, {"AAA": [row("AAA", 15)], "BBB": [row("BBB", 22)]}


PLANTS = {"duplicate": (plant_duplicate, "error"), "unsorted": (plant_unsorted, "warning"),
          "non_positive_price": (plant_non_positive_price, "error"),
          "high_below_low": (plant_high_below_low, "error"),
          "outside_range": (plant_outside_range, "error"),
          "negative_volume": (plant_negative_volume, "error"),
          "negative_spread": (plant_negative_spread, "error"),
          "price_jump": (plant_price_jump, "warning")}


def test_clean_frame_scores_one():
    df = make_frame()
    for kwargs in ({}, {"freq_ns": MIN}, {"expected": df["timestamp"].to_numpy()}):
        r = quality_report(df, **kwargs)
        assert r.issues == [] and r.score == 1.0 and r.rows == 2 * N_BARS
        assert r.symbols == list(SYMBOLS)
        assert (r.start, r.end) == (T0, T0 + (N_BARS - 1) * MIN)
        assert r.per_symbol["AAA"] == {"rows": N_BARS, "start": r.start, "end": r.end,
                                       "expected_bars": N_BARS, "missing_bars": 0,
                                       "error_rows": 0, "warning_rows": 0}
    assert check_or_raise(r, threshold=1.0) == []


@pytest.mark.parametrize("kind", PLANTS)
def test_each_planted_defect_is_reported_at_its_rows(kind):
    plant, severity = PLANTS[kind]
    before = make_frame()
    df, want = plant(before)
    copy = df.copy(deep=True)
    r = quality_report(df, freq_ns=MIN)
    pd.testing.assert_frame_equal(df, copy)  # the caller's frame is never touched
    assert found(r) == {(kind, s): (len(rows), rows, severity) for s, rows in want.items()}
    n_bad = sum(map(len, want.values()))
    per_row = 1.0 if severity == "error" else 0.5
    assert r.score == pytest.approx((len(df) - per_row * n_bad) / len(df))
    key = "error_rows" if severity == "error" else "warning_rows"
    assert {s: r.per_symbol[s][key] for s in SYMBOLS} == {s: len(v) for s, v in want.items()}


@pytest.mark.parametrize("column", ["open", "high", "low", "close", "volume", "spread"])
def test_nan_and_inf_are_reported_once_per_column(column):
    df = make_frame()
    a, b = row("AAA", 3), row("BBB", 9)
    df.loc[a, column] = -np.inf if column == "spread" else np.nan  # NaN spread = no quote
    df.loc[b, column] = np.inf
    df.loc[row("BBB", 12), "spread"] = np.nan
    r = quality_report(df)
    want = {("non_finite", "AAA"): (1, [a], "error"), ("non_finite", "BBB"): (1, [b], "error")}
    assert found(r) == want
    assert r.score == pytest.approx((len(df) - 2) / len(df))
    assert all(f"'{column}'" in i.detail for i in r.issues if i.kind == "non_finite")


def test_nan_in_an_extra_column_is_a_warning_and_text_prices_are_not_numeric():
    df = make_frame()
    df["vwap"] = df["close"]
    df.loc[[row("AAA", 1), row("BBB", 2)], "vwap"] = np.nan
    df["close"] = df["close"].astype(object)
    df.loc[row("BBB", 5), "close"] = "n/a"
    r = quality_report(df)
    got = {(i.kind, i.symbol, i.detail.split()[1]): (i.rows, i.severity) for i in r.issues}
    assert got == {("non_finite", "AAA", "'vwap'"): ([row("AAA", 1)], "warning"),
                   ("non_finite", "BBB", "'vwap'"): ([row("BBB", 2)], "warning"),
                   ("non_finite", "BBB", "'close'"): ([row("BBB", 5)], "error")}
    assert r.score == pytest.approx((len(df) - 1 - 2 * 0.5) / len(df))


def test_zero_volume_runs_report_each_start_and_length():
    df = make_frame()
    for s, bars in (("AAA", range(3, 15)), ("AAA", range(17, 27)), ("BBB", range(0, 9)),
                    ("BBB", range(20, 30))):  # BBB 0..8: 9 bars, below the threshold
        df.loc[[row(s, b) for b in bars], "volume"] = 0.0
    r = quality_report(df, zero_volume_run=10)
    issues = {i.symbol: i for i in r.issues}
    assert found(r).keys() == {("zero_volume_run", "AAA"), ("zero_volume_run", "BBB")}
    assert (issues["AAA"].rows, issues["AAA"].examples, issues["AAA"].count) == \
        ([row("AAA", 3), row("AAA", 17)], [12, 10], 22)
    assert (issues["BBB"].rows, issues["BBB"].examples, issues["BBB"].count) == \
        ([row("BBB", 20)], [10], 10)
    assert issues["AAA"].severity == "warning"
    assert r.score == pytest.approx((len(df) - 0.5 * 32) / len(df))
    assert quality_report(df, zero_volume_run=9).per_symbol["BBB"]["warning_rows"] == 19


def test_a_symbol_without_any_volume_is_a_feed_without_volume_not_a_defect():
    """Volume 0 on every row (FX quotes) is reported as no_volume and leaves the score alone;
    a zero run that stops short of the symbol's whole range still counts."""
    df = make_frame()
    df.loc[df.symbol == "AAA", "volume"] = 0.0
    df.loc[[row("BBB", b) for b in range(0, N_BARS - 1)], "volume"] = 0.0  # all but the last
    r = quality_report(df, zero_volume_run=10)
    kinds = found(r)
    assert set(kinds) == {("no_volume", "AAA"), ("zero_volume_run", "BBB")}
    assert kinds[("no_volume", "AAA")][:2] == (N_BARS, [row("AAA", 0)])
    assert r.per_symbol["AAA"]["warning_rows"] == 0
    assert r.score == pytest.approx((len(df) - 0.5 * (N_BARS - 1)) / len(df))
    only_aaa = df[df.symbol == "AAA"].reset_index(drop=True)
    assert quality_report(only_aaa).score == 1.0
    assert "max_participation=null" in next(i.line() for i in r.issues if i.kind == "no_volume")


def test_defects_in_shuffled_rows_keep_source_positions():
    df, want = plant_high_below_low(make_frame())
    perm = np.random.default_rng(1).permutation(len(df))
    shuffled = df.iloc[perm].reset_index(drop=True)
    where = {old: new for new, old in enumerate(perm)}
    r = quality_report(shuffled, freq_ns=MIN)
    hl = {i.symbol: i.rows for i in r.issues if i.kind == "high_below_low"}
    assert hl == {s: sorted(where[x] for x in rows) for s, rows in want.items()}
    assert {i.kind for i in r.issues} == {"high_below_low", "unsorted"}
    assert sum(d["missing_bars"] for d in r.per_symbol.values()) == 0


# --- missing bars ---------------------------------------------------------------------------

def drop_bars(df, bars: dict) -> pd.DataFrame:
    gone = [row(s, b) for s, bs in bars.items() for b in bs]
    return df.drop(index=gone).reset_index(drop=True)


def test_missing_bars_against_an_explicit_grid():
    df = drop_bars(make_frame(), {"AAA": [5, 6, 7], "BBB": [20]})
    grid = T0 + np.arange(-10, N_BARS + 10) * MIN  # beyond each symbol's range: not counted
    r = quality_report(df, expected=grid)
    assert r.missing_mode == "expected"
    assert found(r) == {("missing_bars", "AAA"): (3, [], "error"),
                        ("missing_bars", "BBB"): (1, [], "error")}
    aaa = next(i for i in r.issues if i.symbol == "AAA")
    assert aaa.examples == [T0 + b * MIN for b in (5, 6, 7)]
    assert "longest gap 2024-01-02 09:34 -> 09:38" in aaa.detail
    assert r.per_symbol["AAA"]["expected_bars"] == N_BARS
    assert r.per_symbol["BBB"]["missing_bars"] == 1
    assert r.score == pytest.approx(len(df) / (len(df) + 4))
    # a DatetimeIndex grid works too
    same = quality_report(df, expected=pd.DatetimeIndex(pd.to_datetime(grid, utc=True)))
    assert same.to_dict() == r.to_dict()


def test_missing_bars_against_a_per_symbol_grid():
    df = drop_bars(make_frame(), {"AAA": [3], "BBB": [20, 21]})
    r = quality_report(df, expected={"BBB": T0 + np.arange(0, N_BARS, 2) * MIN})
    # BBB bar 20 is on its 2-minute grid, bar 21 is not; AAA has no grid and is not checked
    assert found(r) == {("missing_bars", "BBB"): (1, [], "error")}
    assert r.issues[0].examples == [T0 + 20 * MIN]
    assert r.per_symbol["AAA"]["expected_bars"] is None
    assert r.per_symbol["BBB"]["expected_bars"] == N_BARS // 2


def test_missing_bars_on_a_regular_24_7_grid():
    df = make_frame()
    df["timestamp"] = pd.Timestamp("2024-03-30 22:00", tz="UTC").value + (
        df["timestamp"] - T0) * 60  # hourly across a weekend
    df = drop_bars(df, {"AAA": [1, 2, 10], "BBB": [28]})
    r = quality_report(df, freq_ns=60 * MIN)
    assert r.missing_mode == "freq" and r.freq_ns == 60 * MIN
    assert found(r) == {("missing_bars", "AAA"): (3, [], "error"),
                        ("missing_bars", "BBB"): (1, [], "error")}
    aaa = next(i for i in r.issues if i.symbol == "AAA")
    h = 3_600 * 10**9
    start = pd.Timestamp("2024-03-30 22:00", tz="UTC").value
    assert aaa.examples == [start + h, start + 2 * h, start + 10 * h]
    assert "longest gap 2024-03-30 22:00 -> 2024-03-31 01:00" in aaa.detail
    assert "1h grid" in aaa.detail
    # a coarser grid than the data: off-grid bars are not missing, on-grid gaps are
    r2 = quality_report(df, freq_ns=2 * 60 * MIN)
    assert {i.symbol: i.count for i in r2.issues} == {"AAA": 2, "BBB": 1}


def test_missing_bars_with_an_inferred_frequency_are_warnings():
    df = drop_bars(make_frame(), {"AAA": [5, 6, 7], "BBB": [20]})
    r = quality_report(df)
    assert (r.missing_mode, r.freq_ns) == ("inferred", MIN)
    assert found(r) == {("missing_bars", "AAA"): (3, [], "warning"),
                        ("missing_bars", "BBB"): (1, [], "warning")}
    assert all("1min inferred" in i.detail for i in r.issues)
    assert r.score == pytest.approx(len(df) / (len(df) + 0.5 * 4))
    assert r.per_symbol["AAA"]["expected_bars"] == N_BARS
    # an irregular gap of 2.5 steps holds 2 grid points
    one = make_frame().query("symbol == 'AAA'").reset_index(drop=True)
    one.loc[10:, "timestamp"] += 3 * MIN // 2
    assert quality_report(one).issues[0].count == 2


# --- score ----------------------------------------------------------------------------------

def _plant(df, kind, sym, bar):
    at = (df["symbol"] == sym) & (df["timestamp"] == T0 + bar * MIN)
    if kind == "drop":
        return df[~at]
    df = df.copy()
    if kind == "nan_close":
        df.loc[at, "close"] = np.nan
    elif kind == "zero_low":
        df.loc[at, "low"] = 0.0
    elif kind == "high_below_low":
        df.loc[at, "high"] = df.loc[at, "low"] * 0.9
    elif kind == "open_above_high":
        df.loc[at, "open"] = df.loc[at, "high"] * 1.01
    else:
        df.loc[at, "volume"] = -1.0
    return df


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["drop", "nan_close", "zero_low", "high_below_low",
                                           "open_above_high", "neg_volume"]),
                          st.sampled_from(SYMBOLS), st.integers(1, 18)),
                min_size=1, max_size=10))
def test_more_defects_never_raise_the_score(plants):
    df = make_frame(20)
    last = quality_report(df, freq_ns=MIN).score
    assert last == 1.0
    for kind, sym, bar in plants:
        df = _plant(df, kind, sym, bar)
        score = quality_report(df, freq_ns=MIN).score
        assert 0.0 <= score <= last + 1e-12
        last = score


def test_warnings_cost_half_an_error():
    df = make_frame()
    warn, _ = plant_unsorted(df)
    err, _ = plant_negative_volume(df)
    s_warn, s_err = quality_report(warn).score, quality_report(err).score
    assert 1.0 - s_warn == pytest.approx((1.0 - s_err) / 3)  # 2 warnings vs 3 errors


# --- output ---------------------------------------------------------------------------------

def defective_report(**kwargs) -> QualityReport:
    df, _ = plant_high_below_low(make_frame())
    df, _ = plant_price_jump(df)
    return quality_report(drop_bars(df, {"AAA": [4]}), source="bars.parquet", **kwargs)


def test_to_dict_is_json_and_round_trips_the_numbers(tmp_path):
    r = defective_report()
    d = r.to_dict()
    back = json.loads(json.dumps(d))
    assert back == d
    assert (back["rows"], back["score"], back["symbols"]) == (r.rows, r.score, r.symbols)
    assert pd.Timestamp(back["start"]).value == r.start
    assert pd.Timestamp(back["end"]).value == r.end
    assert [(i["kind"], i["count"], i["rows"]) for i in back["issues"]] == \
        [(i.kind, i.count, i.rows) for i in r.issues]
    miss = next(i for i in back["issues"] if i["kind"] == "missing_bars")
    assert [pd.Timestamp(x).value for x in miss["examples"]] == [T0 + 4 * MIN]
    assert pd.Timestamp(back["per_symbol"]["BBB"]["start"]).value == r.per_symbol["BBB"]["start"]
    path = tmp_path / "quality.json"
    r.to_json(path)
    quality_report(make_frame()).to_json(path)  # replacing a report is fine
    assert json.loads(path.read_text())["score"] == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["quality.json"]  # no temp file left


def test_render_and_summary_name_symbols_and_score():
    r = defective_report()
    console = Console(record=True, width=160)
    r.render(console)
    text = console.export_text()
    for needle in ("AAA", "BBB", f"{r.score:.4f}", "high_below_low", "price_jump", "bars.parquet"):
        assert needle in text
    s = r.summary()
    assert "bars.parquet" in s and f"{r.score:.4f}" in s and "high_below_low" in s
    clean = Console(record=True, width=160)
    quality_report(make_frame()).render(clean)
    assert "no issues" in clean.export_text()


def test_check_or_raise_thresholds():
    r = defective_report()
    assert 0.9 < r.score < 0.99
    lines = check_or_raise(r, threshold=0.9)
    assert len(lines) == len(r.issues) and any("price_jump" in x for x in lines)
    with pytest.raises(DataError, match="below the threshold 0.99") as err:
        check_or_raise(r, threshold=0.99)
    assert r.summary() in str(err.value)
    assert r.ok(0.9) and not r.ok(0.99)
    with pytest.raises(ValueError, match="threshold"):
        check_or_raise(r, threshold=95)


def test_empty_frame_scores_zero_and_is_rejected():
    r = quality_report(make_frame().iloc[:0], source="empty.csv")
    assert (r.rows, r.score, r.issues, r.start) == (0, 0.0, [], None)
    assert not r.ok(0.0)
    json.dumps(r.to_dict())
    with pytest.raises(DataError, match="empty.csv: no rows"):
        check_or_raise(r, threshold=0.0)


# --- input forms ----------------------------------------------------------------------------

def test_datetime_timestamps_and_nat():
    df = make_frame()
    as_dt = df.assign(timestamp=pd.to_datetime(df["timestamp"], utc=True))
    assert quality_report(as_dt).to_dict() == quality_report(df).to_dict()
    as_dt.loc[row("BBB", 4), "timestamp"] = pd.NaT
    r = quality_report(as_dt, freq_ns=MIN)
    assert found(r) == {("non_finite", "BBB"): (1, [row("BBB", 4)], "error"),
                        ("missing_bars", "BBB"): (1, [], "error")}
    df.loc[row("AAA", 6), "symbol"] = None
    r = quality_report(df)
    assert [(i.kind, i.symbol, i.rows) for i in r.issues] == \
        [("non_finite", "nan", [row("AAA", 6)]), ("missing_bars", "AAA", [])]  # AAA lost bar 6
    assert r.issues[0].detail == "column 'symbol' is missing"


def test_bad_frames_and_arguments_are_rejected():
    df = make_frame()
    with pytest.raises(DataError, match=r"missing columns \['volume'\]"):
        quality_report(df.drop(columns="volume"))
    with pytest.raises(DataError, match="'timestamp' must be int64"):
        quality_report(df.assign(timestamp=df["timestamp"].astype(float)))
    with pytest.raises(TypeError, match="DataFrame"):
        quality_report(df.to_numpy())
    for kwargs, match in (({"freq_ns": 0}, "freq_ns"), ({"jump_sigma": -1.0}, "jump_sigma"),
                          ({"zero_volume_run": 0}, "zero_volume_run")):
        with pytest.raises(ValueError, match=match):
            quality_report(df, **kwargs)
