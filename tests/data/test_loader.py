"""File sources end to end: ``data=parquet|csv`` -> read -> quality gate -> clean -> resample ->
align -> calendar -> MarketData (on-disk cache) -> env; splits, the tradable mask in the fused
step, the ``python -m optrader.data`` CLI and errors raised before any work.

Every input file is built in ``tmp_path`` from small random-walk frames; every cache lives under
``tmp_path`` (``data.cache.dir`` and, as a safety net, ``OPTRADER_CACHE_DIR``). Expected values
come from pandas / numpy on the frames written, never from the loader.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import optrader
from kernels.enums import FillReason
from optrader import ConfigError
from optrader.data import DataError, MarketData, load_market
from optrader.data import loader as loader_mod
from optrader.data.__main__ import main as cli_main

OHLCV = ["open", "high", "low", "close", "volume"]
WINDOW, EPISODE = 4, 20
SMALL = [f"observation.window={WINDOW}", f"env.episode_length={EPISODE}"]
NS_PER_DAY = 86_400 * 10**9


# ---------------------------------------------------------------------------------------------
# Inputs


def walk(symbols=("AAA", "BBB"), n=300, freq="1min", start="2024-01-02 00:00", seed=0,
         index=None) -> pd.DataFrame:
    """Canonical-looking long frame (timestamp tz-aware UTC, symbol, OHLCV), grouped by symbol.

    Prices are rounded to 6 decimals so that CSV text round-trips them exactly."""
    rng = np.random.default_rng(seed)
    ts = index if index is not None else pd.date_range(start, periods=n, freq=freq, tz="UTC")
    n = len(ts)
    parts = []
    for k, sym in enumerate(symbols):
        close = 100.0 * (k + 1) * np.exp(np.cumsum(rng.normal(0.0, 0.002, n)))
        open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0.0, 0.0005, n))
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.001, n)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.001, n)))
        parts.append(pd.DataFrame({
            "timestamp": ts, "symbol": sym,
            "open": open_.round(6), "high": np.ceil(high * 1e6) / 1e6,
            "low": np.floor(low * 1e6) / 1e6, "close": close.round(6),
            "volume": rng.integers(1_000, 10_000, n).astype(np.float64)}))
    return pd.concat(parts, ignore_index=True)


def expected_arrays(df: pd.DataFrame, symbols, how="intersection"):
    """(bars (5, T, A), timestamps int64 (T,)) of a clean long frame, pivoted with pandas."""
    wide = {c: df.pivot(index="timestamp", columns="symbol", values=c)[list(symbols)]
            for c in OHLCV}
    if how == "intersection":
        wide = {c: w.dropna() for c, w in wide.items()}
    ts = wide["close"].index
    ns = pd.DatetimeIndex(ts).tz_convert("UTC").as_unit("ns").asi8
    return np.stack([wide[c].to_numpy() for c in OHLCV]), ns


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    df.to_parquet(path, index=False)
    return path


def write_symbol_csvs(df: pd.DataFrame, folder: Path) -> Path:
    """One CSV per symbol (no symbol column, symbol = file stem)."""
    folder.mkdir(parents=True, exist_ok=True)
    for sym, part in df.groupby("symbol"):
        out = part.drop(columns="symbol").copy()
        out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        out.to_csv(folder / f"{sym}.csv", index=False)
    return folder


def snapshot(*paths: Path) -> dict:
    """Bytes and mtime (ns) of every file under ``paths``."""
    files = []
    for p in paths:
        files += sorted(f for f in Path(p).rglob("*") if f.is_file()) if Path(p).is_dir() \
            else [Path(p)]
    return {str(f): (f.read_bytes(), f.stat().st_mtime_ns) for f in files}


def overrides(path, tmp_path, *extra, source="parquet"):
    return [f"data={source}", f"data.path={path}", f"data.cache.dir={tmp_path / 'cache'}",
            *SMALL, *extra]


def compose(path, tmp_path, *extra, source="parquet"):
    return optrader.compose("training", overrides(path, tmp_path, *extra, source=source))


def load(path, tmp_path, *extra, source="parquet") -> MarketData:
    return load_market(optrader.load_spec(compose(path, tmp_path, *extra, source=source)).data)


def make_env(path, tmp_path, *extra, num_envs=2, source="parquet"):
    return optrader.make_vec(compose(path, tmp_path, *extra, source=source),
                             num_envs=num_envs, parallel=False)


def cache_entries(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if root.is_dir() else []


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """No test may reach the user's ~/.cache, even when data.cache.dir is not set."""
    monkeypatch.setenv("OPTRADER_CACHE_DIR", str(tmp_path / "env-cache"))


@pytest.fixture
def count_builds(monkeypatch):
    """Counts calls of loader.build_market (the uncached load)."""
    calls = []
    original = loader_mod.build_market

    def counting(cfg):
        calls.append(cfg)
        return original(cfg)

    monkeypatch.setattr(loader_mod, "build_market", counting)
    return calls


def forbid_build(monkeypatch):
    def boom(cfg):
        raise AssertionError("build_market called: the cache was not used")

    monkeypatch.setattr(loader_mod, "build_market", boom)


# ---------------------------------------------------------------------------------------------
# 1. End to end


def test_parquet_and_per_symbol_csv_load_identically(tmp_path):
    df = walk(("BBB", "AAA", "CCC"), n=300, seed=1)
    # the long file interleaves the symbols in time order; the CSVs are one file per symbol
    long_path = write_parquet(df.sort_values(["timestamp", "symbol"]), tmp_path / "long.parquet")
    csv_dir = write_symbol_csvs(df, tmp_path / "csv")
    before = snapshot(long_path, csv_dir)

    pq_market = load(long_path, tmp_path)
    csv_market = load(csv_dir, tmp_path, source="csv")

    bars, ts = expected_arrays(df, ("AAA", "BBB", "CCC"))
    for m in (pq_market, csv_market):
        assert isinstance(m, MarketData)
        assert m.symbols == ("AAA", "BBB", "CCC")
        assert m.bars.shape == (5, 300, 3)
        np.testing.assert_array_equal(m.timestamps, ts)
        np.testing.assert_array_equal(m.bars, bars)
        assert m.tradable is None or m.tradable.all()
        assert m.quality is not None and m.quality.score == 1.0
    np.testing.assert_array_equal(pq_market.bars, csv_market.bars)
    np.testing.assert_array_equal(pq_market.timestamps, csv_market.timestamps)
    assert snapshot(long_path, csv_dir) == before


def test_load_market_dispatches_file_sources_to_the_loader(tmp_path, monkeypatch):
    df = walk(n=120)
    path = write_parquet(df, tmp_path / "bars.parquet")
    write_symbol_csvs(df, tmp_path / "csv")
    seen = []
    real = loader_mod.load_files
    monkeypatch.setattr(loader_mod, "load_files", lambda cfg: seen.append(cfg) or real(cfg))

    spec_pq = optrader.load_spec(compose(path, tmp_path)).data
    spec_csv = optrader.load_spec(compose(tmp_path / "csv", tmp_path, source="csv")).data
    m_pq, m_csv = load_market(spec_pq), load_market(spec_csv)
    assert [c.source for c in seen] == ["parquet", "csv"]
    assert seen[0] is spec_pq and seen[1] is spec_csv
    np.testing.assert_array_equal(m_pq.bars, m_csv.bars)
    # a DataFrame passed in Python bypasses the file loader
    load_market(spec_pq, df.set_index("timestamp"))
    assert len(seen) == 2


def test_env_on_file_data_steps(tmp_path):
    df = walk(("AAA", "BBB"), n=200, seed=2)
    path = write_parquet(df, tmp_path / "bars.parquet")
    env = make_env(path, tmp_path, "data.split.use=all", num_envs=3)
    try:
        assert env.market.symbols == ("AAA", "BBB")
        assert env.market.n_bars == 200
        obs, info = env.reset(seed=3)
        assert obs.shape[0] == 3 and np.isfinite(obs).all()
        bar0 = info["bar"].copy()
        close = env.market.bars[3]
        for k in range(1, 6):
            obs, reward, term, trunc, info = env.step(np.full((3, 2), 0.3))
            np.testing.assert_array_equal(info["bar"], bar0 + k)
            assert np.isfinite(reward).all() and np.isfinite(obs).all()
            marked = info["cash"] + (info["position"] * close[info["bar"]]).sum(axis=1)
            np.testing.assert_allclose(info["equity"], marked, rtol=1e-12)
        assert (np.abs(info["position"]) > 0).all()  # the orders filled on file data
    finally:
        env.close()


# ---------------------------------------------------------------------------------------------
# 2. Quality gate


def test_score_below_min_score_fails_with_the_report_summary(tmp_path, count_builds):
    df = walk(n=200, seed=4)
    bad = df.index[df["symbol"] == "AAA"][::5].tolist() + \
        df.index[df["symbol"] == "BBB"][1::5].tolist()
    assert len(bad) == 80
    df.loc[bad, "close"] = np.nan  # 80 of 400 rows unusable: score 320 / 400
    path = write_parquet(df, tmp_path / "bad.parquet")
    with pytest.raises(DataError) as exc:
        load(path, tmp_path)
    msg = str(exc.value)
    assert str(path) in msg
    assert "400 rows, 2 symbols" in msg
    score = float(re.search(r"quality score (\d\.\d+)", msg).group(1))
    assert score == pytest.approx(320 / 400, abs=1e-4)
    assert "[non_finite] AAA" in msg and "[non_finite] BBB" in msg
    assert "data.quality.min_score=0.95" in msg
    assert "python -m optrader.data validate" in msg
    assert "hint" not in msg  # no missing bars: no calendar hint
    assert not cache_entries(tmp_path / "cache")
    # a lower threshold lets the same file through, without the defective rows
    market = load(path, tmp_path, "data.quality.min_score=0.5")
    assert market.n_bars == 200 - len({df.loc[i, "timestamp"] for i in bad})


@pytest.mark.parametrize("calendar", [[], ["data.calendar.name=always_open"]])
def test_missing_bars_inside_a_day_fail_without_a_calendar_hint(tmp_path, calendar):
    df = walk(n=400, seed=5)
    minute = (df["timestamp"] - df["timestamp"].min()) // pd.Timedelta("1min")
    df = df[(minute < 150) | (minute >= 250)]  # 100 minutes missing in both symbols
    path = write_parquet(df, tmp_path / "gappy.parquet")
    with pytest.raises(DataError) as exc:
        load(path, tmp_path, *calendar)
    msg = str(exc.value)
    assert "[missing_bars]" in msg
    score = float(re.search(r"quality score (\d\.\d+)", msg).group(1))
    assert score == pytest.approx(600 / 800, abs=1e-4)  # 600 rows of 800 expected bars
    # one day cannot tell a break from a gap, so no calendar explains it: no hint is offered
    assert "hint" not in msg


def test_few_defects_load_with_warnings_and_are_dropped(tmp_path, caplog):
    df = walk(n=300, seed=6)
    a_rows = df.index[df["symbol"] == "AAA"]
    b_rows = df.index[df["symbol"] == "BBB"]
    nan_row, hl_row, neg_row, dup_of = a_rows[40], a_rows[90], b_rows[150], b_rows[200]
    df.loc[nan_row, "close"] = np.nan
    high, low = float(df.at[hl_row, "high"]), float(df.at[hl_row, "low"])
    df.loc[hl_row, "high"], df.loc[hl_row, "low"] = low, high  # high < low
    df.loc[neg_row, "volume"] = -5.0
    dropped_ts = df.loc[[nan_row, hl_row, neg_row], "timestamp"].tolist()
    # a later copy of BBB's bar 200 with other values: the last copy wins
    dup = df.loc[[dup_of]].copy()
    dup[["open", "high", "low", "close"]] = dup[["open", "high", "low", "close"]] * 1.01
    dup["volume"] = 4242.0
    # two swapped pairs of AAA rows: unsorted input
    order = list(df.index)
    for r in (a_rows[10], a_rows[20]):
        i = order.index(r)
        order[i], order[i + 1] = order[i + 1], order[i]
    raw = pd.concat([df.loc[order], dup], ignore_index=True)
    path = write_parquet(raw, tmp_path / "defects.parquet")

    with caplog.at_level(logging.WARNING, logger="optrader.data"):
        market = load(path, tmp_path)
    text = caplog.text
    for kind in ("non_finite", "high_below_low", "negative_volume", "duplicate", "unsorted"):
        assert f"[{kind}]" in text, kind
    assert "dropped 4 rows" in text  # 3 defective rows + 1 duplicate
    assert market.quality.score >= 0.95 and market.quality.score < 1.0

    # expected: the defective rows dropped, the duplicate's last copy kept, intersection kept
    clean = df.drop(index=[nan_row, hl_row, neg_row])
    clean.loc[dup_of, OHLCV] = dup.iloc[0][OHLCV].to_numpy(dtype=float)
    bars, ts = expected_arrays(clean, ("AAA", "BBB"))
    assert market.n_bars == 297
    np.testing.assert_array_equal(market.timestamps, ts)
    np.testing.assert_array_equal(market.bars, bars)
    assert not np.isin(market.timestamps,
                       pd.DatetimeIndex(dropped_ts).as_unit("ns").asi8).any()
    assert (np.diff(market.timestamps) > 0).all()
    b = market.symbols.index("BBB")
    t = np.searchsorted(market.timestamps, pd.Timestamp(dup.iloc[0]["timestamp"]).value)
    assert market.bars[4, t, b] == 4242.0


# ---------------------------------------------------------------------------------------------
# 3. Union alignment and the tradable mask through the env

GAP = range(100, 105)  # BBB has no bars here


@pytest.fixture
def gap_file(tmp_path):
    df = walk(n=200, seed=7)
    idx = pd.Series(np.arange(len(df)) % 200, index=df.index)
    df = df[~((df["symbol"] == "BBB") & idx.isin(GAP))]
    return df, write_parquet(df, tmp_path / "gap.parquet")


def test_union_marks_the_gap_not_tradable_and_intersection_drops_it(tmp_path, gap_file):
    df, path = gap_file
    union = load(path, tmp_path, "data.align=union")
    assert union.n_bars == 200 and union.symbols == ("AAA", "BBB")
    expected = np.ones((200, 2), dtype=bool)
    expected[list(GAP), 1] = False
    np.testing.assert_array_equal(union.tradable, expected)
    # the gap is a flat bar at BBB's last close, without volume
    last_close = union.bars[3, GAP[0] - 1, 1]
    for k in range(4):
        np.testing.assert_array_equal(union.bars[k, list(GAP), 1], last_close)
    np.testing.assert_array_equal(union.bars[4, list(GAP), 1], 0.0)

    inter = load(path, tmp_path, "data.align=intersection")
    bars, ts = expected_arrays(df, ("AAA", "BBB"))
    assert inter.n_bars == 195
    np.testing.assert_array_equal(inter.timestamps, ts)
    np.testing.assert_array_equal(inter.bars, bars)
    assert not np.isin(union.timestamps[list(GAP)], inter.timestamps).any()
    assert inter.tradable is None or inter.tradable.all()


def test_env_never_fills_an_asset_on_its_gap(tmp_path, gap_file):
    _, path = gap_file
    env = make_env(path, tmp_path, "data.align=union", "data.split.use=all",
                   "execution.record_fills=true", num_envs=2)
    try:
        close = env.market.bars[3]
        # env 0 crosses BBB's gap, env 1 trades far after it
        obs, info = env.reset(seed=0, options={"start_bars": np.array([GAP[0] - 6, 150])})
        fills = []
        held = {}
        for _ in range(EPISODE - 1):
            obs, reward, term, trunc, info = env.step(np.full((2, 2), 0.4))
            fills.append(env.drain_fills())
            bar = info["bar"]
            marked = info["cash"] + (info["position"] * close[bar]).sum(axis=1)
            np.testing.assert_allclose(info["equity"], marked, rtol=1e-12)
            held[int(bar[0])] = info["position"][0, 1]
        fills = np.concatenate(fills)
        bbb0 = fills[(fills["env"] == 0) & (fills["asset"] == 1)]
        assert not np.isin(bbb0["bar"], list(GAP)).any()
        assert GAP[-1] + 1 in bbb0["bar"] and GAP[0] - 1 in bbb0["bar"]  # trades around it
        aaa0 = fills[(fills["env"] == 0) & (fills["asset"] == 0)]
        assert set(GAP) <= set(aaa0["bar"].tolist())  # the other asset keeps trading
        for t in GAP:  # BBB's position is carried unchanged through the gap
            assert held[t] == held[GAP[0] - 1]
        assert held[GAP[-1] + 1] != held[GAP[0] - 1]
        events = info["risk_events"][:, FillReason.NOT_TRADABLE]
        assert events.tolist() == [len(GAP), 0]
    finally:
        env.close()


# ---------------------------------------------------------------------------------------------
# 4. Resampling through the config


def test_resample_5min_equals_pandas_ohlcv_resample(tmp_path):
    df = walk(n=300, start="2024-01-02 00:03", seed=8)  # a partial first bucket
    path = write_parquet(df, tmp_path / "minutes.parquet")
    market = load(path, tmp_path, "data.resample=5min")

    agg = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    frames = []
    for sym, part in df.groupby("symbol"):
        r = part.set_index("timestamp")[OHLCV].resample("5min").agg(agg).dropna()
        frames.append(r.assign(symbol=sym).reset_index())
    bars, ts = expected_arrays(pd.concat(frames), ("AAA", "BBB"))
    assert market.n_bars == 61
    np.testing.assert_array_equal(market.timestamps, ts)
    np.testing.assert_allclose(market.bars, bars, rtol=1e-12)
    assert (np.diff(market.timestamps) == 5 * 60 * 10**9).all()


# ---------------------------------------------------------------------------------------------
# 5. Calendar

SESSIONS = ("2024-01-05", "2024-01-08", "2024-01-09")  # Friday, (weekend), Monday, Tuesday


def ny_session_minutes() -> pd.DatetimeIndex:
    parts = [pd.date_range(f"{d} 09:30", f"{d} 15:59", freq="1min", tz="America/New_York")
             for d in SESSIONS]
    return parts[0].append(parts[1:]).tz_convert("UTC")


def test_us_equities_day_ids_change_at_session_dates(tmp_path):
    ts = ny_session_minutes()
    df = walk(index=ts, seed=9)
    path = write_parquet(df, tmp_path / "ny.parquet")
    market = load(path, tmp_path, "data.calendar.name=us_equities")
    assert market.quality.score == 1.0
    assert market.n_bars == 3 * 390
    local_dates = ts.tz_convert("America/New_York").tz_localize(None).normalize()
    expected = (local_dates - pd.Timestamp("1970-01-01")) // pd.Timedelta("1D")
    np.testing.assert_array_equal(market.day, np.asarray(expected, dtype=np.int64))
    np.testing.assert_array_equal(np.flatnonzero(np.diff(market.day)) + 1, [390, 780])
    assert (np.diff(market.day)[[389, 779]] == [3, 1]).all()  # over the weekend, then a day
    np.testing.assert_array_equal(market.trading_days(), market.day)


def test_overnight_gaps_fail_under_always_open_pass_by_default_and_under_us_equities(tmp_path):
    df = walk(index=ny_session_minutes(), seed=10)
    path = write_parquet(df, tmp_path / "ny.parquet")
    with pytest.raises(DataError, match=r"(?s)missing_bars.*hint: .*data\.calendar\.name=auto"):
        # always_open expects every minute of the night and the weekend
        load(path, tmp_path, "data.calendar.name=always_open")
    for calendar in ([], ["data.calendar.name=auto"], ["data.calendar.name=us_equities"]):
        market = load(path, tmp_path, *calendar, "data.cache.enabled=false")
        assert market.quality.score == 1.0


# ---------------------------------------------------------------------------------------------
# 6. Splits

N_SPLIT = 203


@pytest.fixture
def daily_file(tmp_path):
    df = walk(("AAA",), n=N_SPLIT, freq="1D", start="2024-01-01", seed=11)
    return df, write_parquet(df, tmp_path / "daily.parquet")


@pytest.mark.parametrize("use, lo, hi", [
    ("train", 0, 121),  # floor(0.6 x 203) = 121
    ("validation", 121, 162),  # floor(0.8 x 203) = 162
    ("test", 162, N_SPLIT),
    ("all", 0, N_SPLIT),
])
def test_fraction_splits_bound_the_episodes(tmp_path, daily_file, use, lo, hi):
    _, path = daily_file
    env = make_env(path, tmp_path, "data.split.train=0.6", "data.split.validation=0.2",
                   f"data.split.use={use}", num_envs=8)
    try:
        assert env.split_range == (lo, hi)
        first, last = env.start_range
        assert first == lo + WINDOW - 1  # the first window starts at lo
        assert last == hi - 1 - EPISODE  # the last episode ends at hi - 1
        starts = []
        for seed in range(40):
            _, info = env.reset(seed=seed)
            starts.append(info["bar"])
        starts = np.concatenate(starts)
        assert starts.min() >= first and starts.max() <= last
        assert np.unique(starts).size > 1
        # autoreset episodes stay inside the split too
        for _ in range(2 * EPISODE + 2):
            _, _, _, _, info = env.step(np.full((8, 1), 0.5))
            assert info["bar"].min() >= first and info["bar"].max() <= hi - 1
    finally:
        env.close()


def test_date_splits(tmp_path, daily_file):
    df, path = daily_file
    dates = ["data.split.train='2024-03-01'", "data.split.validation='2024-04-01'"]
    ts = df["timestamp"]
    n_train = int((ts < pd.Timestamp("2024-03-01", tz="UTC")).sum())
    n_val = int((ts < pd.Timestamp("2024-04-01", tz="UTC")).sum())
    assert (n_train, n_val) == (60, 91)
    for use, bounds in (("train", (0, n_train)), ("validation", (n_train, n_val)),
                        ("test", (n_val, N_SPLIT))):
        env = make_env(path, tmp_path, *dates, f"data.split.use={use}")
        try:
            assert env.split_range == bounds
            for seed in range(10):
                _, info = env.reset(seed=seed)
                assert (info["bar"] >= bounds[0] + WINDOW - 1).all()
                assert (info["bar"] + EPISODE <= bounds[1] - 1).all()
        finally:
            env.close()


def test_empty_and_too_short_splits_are_clear_errors(tmp_path, daily_file):
    _, path = daily_file
    with pytest.raises(ConfigError, match=r"data\.split\.use=test: the split is empty"):
        make_env(path, tmp_path, "data.split.train=0.8", "data.split.validation=0.2",
                 "data.split.use=test")
    # 10 validation bars cannot hold a window of 4 plus an episode of 20
    with pytest.raises(ValueError, match=r"(?s)too few.*validation split.*data\.split"):
        make_env(path, tmp_path, "data.split.train=0.9", "data.split.validation=0.05",
                 "data.split.use=validation")


@pytest.mark.parametrize("split, match", [
    (["data.split.train=0.7", "data.split.validation=0.4"], r"data\.split: train \+ validation"),
    (["data.split.train='2024-03-01'", "data.split.validation=0.2"],
     r"data\.split: expected train and validation both"),
    (["data.split.train='not a date'", "data.split.validation='2024-04-01'"],
     r"data\.split\.train: expected an ISO date"),
    (["data.split.train='2024-05-01'", "data.split.validation='2024-04-01'"],
     r"data\.split\.validation"),
    (["data.split.use=holdout"], r"data\.split\.use"),
])
def test_bad_split_configs_raise_config_error_before_loading(tmp_path, daily_file, monkeypatch,
                                                            split, match):
    _, path = daily_file
    forbid_build(monkeypatch)
    with pytest.raises(ConfigError, match=match):
        make_env(path, tmp_path, *split)
    assert not cache_entries(tmp_path / "cache")


# ---------------------------------------------------------------------------------------------
# 7. Cache


def test_cache_hit_is_memory_mapped_and_skips_the_build(tmp_path, monkeypatch, caplog):
    df = walk(n=200, seed=12)
    df.loc[5, "close"] = np.nan  # one warning to replay from the cache
    path = write_parquet(df, tmp_path / "bars.parquet")
    before = snapshot(path)
    with caplog.at_level(logging.WARNING, logger="optrader.data"):
        first = load(path, tmp_path)
    first_warnings = [r.getMessage() for r in caplog.records if "[non_finite]" in r.getMessage()]
    assert first_warnings
    [entry] = cache_entries(tmp_path / "cache")
    assert {"bars.npy", "timestamps.npy", "tradable.npy", "day.npy", "meta.json"} <= \
        {p.name for p in entry.iterdir()}
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["symbols"] == ["AAA", "BBB"]

    forbid_build(monkeypatch)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="optrader.data"):
        second = load(path, tmp_path)
    assert [r.getMessage() for r in caplog.records if "[non_finite]" in r.getMessage()] == \
        first_warnings
    for name in ("bars", "timestamps", "tradable", "day"):
        a, b = getattr(first, name), getattr(second, name)
        assert isinstance(b, np.memmap), name
        assert not b.flags.writeable
        np.testing.assert_array_equal(a, b)
    assert second.symbols == first.symbols
    assert second.periods_per_year == first.periods_per_year
    # the split is not part of the loading config: same entry
    load(path, tmp_path, "data.split.use=test")
    assert len(cache_entries(tmp_path / "cache")) == 1
    # an env builds from the cached arrays
    env = make_env(path, tmp_path)
    try:
        assert isinstance(env.market.bars, np.memmap)
        env.reset(seed=0)
        env.step(np.zeros((2, 2)))
    finally:
        env.close()
    assert snapshot(path) == before


def test_modified_source_invalidates_the_entry(tmp_path, count_builds):
    df = walk(n=200, seed=13)
    path = write_parquet(df, tmp_path / "bars.parquet")
    first = load(path, tmp_path)
    assert len(count_builds) == 1
    # same size, new content, mtime moved on
    st = path.stat()
    edited = df.copy()
    edited["volume"] = edited["volume"] + 1.0
    write_parquet(edited, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    before = snapshot(path)
    second = load(path, tmp_path)
    assert len(count_builds) == 2
    np.testing.assert_array_equal(second.bars[4], first.bars[4] + 1.0)
    third = load(path, tmp_path)
    assert len(count_builds) == 2
    np.testing.assert_array_equal(third.bars, second.bars)
    # only touching the file (same bytes, new mtime) is also a new identity
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10 * 10**9))
    load(path, tmp_path)
    assert len(count_builds) == 3
    assert snapshot(path)[str(path)][0] == before[str(path)][0]


def test_changed_loading_config_uses_another_entry(tmp_path, count_builds):
    df = walk(n=200, seed=14)
    path = write_parquet(df, tmp_path / "bars.parquet")
    load(path, tmp_path, "data.align=intersection")
    load(path, tmp_path, "data.align=union")
    assert len(count_builds) == 2
    assert len(cache_entries(tmp_path / "cache")) == 2
    load(path, tmp_path, "data.align=intersection")
    load(path, tmp_path, "data.align=union")
    assert len(count_builds) == 2


def test_cache_disabled_writes_nothing(tmp_path, count_builds):
    path = write_parquet(walk(n=150, seed=15), tmp_path / "bars.parquet")
    a = load(path, tmp_path, "data.cache.enabled=false")
    b = load(path, tmp_path, "data.cache.enabled=false")
    assert len(count_builds) == 2
    assert not (tmp_path / "cache").exists()
    assert not (tmp_path / "env-cache").exists()
    assert not isinstance(b.bars, np.memmap)
    np.testing.assert_array_equal(a.bars, b.bars)


def test_cache_dir_from_the_environment_variable(tmp_path, monkeypatch, count_builds):
    path = write_parquet(walk(n=150, seed=16), tmp_path / "bars.parquet")
    root = tmp_path / "from-env"
    monkeypatch.setenv("OPTRADER_CACHE_DIR", str(root))
    cfg = optrader.compose("training", ["data=parquet", f"data.path={path}", *SMALL])
    spec = optrader.load_spec(cfg).data
    assert spec.cache.dir is None
    load_market(spec)
    assert len(cache_entries(root)) == 1
    assert isinstance(load_market(spec).bars, np.memmap)
    assert len(count_builds) == 1


def test_unwritable_cache_dir_still_loads(tmp_path, count_builds):
    df = walk(n=150, seed=17)
    path = write_parquet(df, tmp_path / "bars.parquet")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    bad_root = blocker / "cache"
    m1 = load(path, tmp_path, f"data.cache.dir={bad_root}")
    m2 = load(path, tmp_path, f"data.cache.dir={bad_root}")
    assert len(count_builds) == 2
    bars, _ = expected_arrays(df, ("AAA", "BBB"))
    np.testing.assert_array_equal(m1.bars, bars)
    np.testing.assert_array_equal(m2.bars, bars)
    assert blocker.read_text() == "a file where the cache directory should be"


@pytest.mark.parametrize("damage", ["truncate_bars", "drop_day", "bad_meta"])
def test_corrupted_entry_is_a_miss_not_an_error(tmp_path, count_builds, damage):
    df = walk(n=150, seed=18)
    path = write_parquet(df, tmp_path / "bars.parquet")
    first = load(path, tmp_path)
    [entry] = cache_entries(tmp_path / "cache")
    if damage == "truncate_bars":
        data = (entry / "bars.npy").read_bytes()
        (entry / "bars.npy").write_bytes(data[: len(data) // 2])
    elif damage == "drop_day":
        (entry / "day.npy").unlink()
    else:
        (entry / "meta.json").write_text("{not json")
    again = load(path, tmp_path)
    assert len(count_builds) == 2
    np.testing.assert_array_equal(again.bars, first.bars)
    np.testing.assert_array_equal(again.timestamps, first.timestamps)


def test_corrupted_entry_is_repaired_by_the_rebuild(tmp_path, count_builds):
    path = write_parquet(walk(n=150, seed=19), tmp_path / "bars.parquet")
    load(path, tmp_path)
    [entry] = cache_entries(tmp_path / "cache")
    data = (entry / "bars.npy").read_bytes()
    (entry / "bars.npy").write_bytes(data[: len(data) // 2])
    load(path, tmp_path)  # a miss: rebuilt
    assert len(count_builds) == 2
    third = load(path, tmp_path)  # should now be a hit on the rebuilt entry
    assert len(count_builds) == 2
    assert isinstance(third.bars, np.memmap)


# ---------------------------------------------------------------------------------------------
# 8. CLI


@pytest.fixture
def wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # rich does not wrap long paths


def test_cli_validate_clean_and_bad_files(tmp_path, capsys, wide_console):
    clean = write_parquet(walk(n=200, seed=20), tmp_path / "clean.parquet")
    before = snapshot(clean)
    assert cli_main(["validate", str(clean)]) == 0
    out = capsys.readouterr().out
    assert "score 1.0000 >= min score 0.95: OK" in out

    df = walk(n=200, seed=21)
    df.loc[df.index[::4], "volume"] = -1.0  # a quarter of the rows unusable
    bad = write_parquet(df, tmp_path / "bad.parquet")
    assert cli_main(["validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "score 0.7500 < min score 0.95: FAILED" in out
    assert "negative_volume" in out
    # the threshold is an option
    assert cli_main(["validate", str(bad), "--min-score", "0.7"]) == 0
    capsys.readouterr()

    report = tmp_path / "report.json"
    assert cli_main(["validate", str(bad), "--json", str(report)]) == 1
    data = json.loads(report.read_text())
    assert data["score"] == pytest.approx(0.75)
    assert data["rows"] == 400 and sorted(data["symbols"]) == ["AAA", "BBB"]
    assert any(i["kind"] == "negative_volume" for i in data["issues"])
    assert str(report) in "".join(capsys.readouterr().out.split())
    assert snapshot(clean) == before


def test_cli_validate_missing_file(tmp_path, capsys, wide_console):
    missing = tmp_path / "nowhere" / "bars.parquet"
    assert cli_main(["validate", str(missing)]) == 2
    err = "".join(capsys.readouterr().err.split())  # one line on stderr, like every command
    assert err.startswith("optrader.data:") and str(missing) in err


def test_cli_convert_writes_the_canonical_layout(tmp_path, capsys, wide_console):
    df = walk(("AAA", "BBB"), n=150, seed=22)
    src = tmp_path / "src.csv"
    text = df.assign(timestamp=df["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    text.sort_values(["timestamp", "symbol"]).to_csv(src, index=False)  # interleaved rows
    before = snapshot(src)
    dst = tmp_path / "out" / "dst.parquet"
    assert cli_main(["convert", str(src), str(dst)]) == 0
    assert "300 rows, 2 symbols" in capsys.readouterr().out
    schema = pq.read_schema(dst)
    assert schema.field("timestamp").type == pa.timestamp("ns", tz="UTC")
    assert pa.types.is_string(schema.field("symbol").type) or \
        pa.types.is_large_string(schema.field("symbol").type)
    for c in OHLCV:
        assert schema.field(c).type == pa.float64()
    table = pq.read_table(dst).to_pandas()
    assert table["symbol"].tolist() == ["AAA"] * 150 + ["BBB"] * 150  # sorted by symbol
    assert table["timestamp"].is_monotonic_increasing is False  # then by time per symbol
    assert table.groupby("symbol")["timestamp"].apply(lambda s: s.is_monotonic_increasing).all()

    from_csv = load(src, tmp_path, source="csv")
    from_parquet = load(dst, tmp_path)
    assert from_csv.symbols == from_parquet.symbols == ("AAA", "BBB")
    np.testing.assert_array_equal(from_csv.timestamps, from_parquet.timestamps)
    np.testing.assert_array_equal(from_csv.bars, from_parquet.bars)
    bars, ts = expected_arrays(df, ("AAA", "BBB"))
    np.testing.assert_array_equal(from_parquet.bars, bars)
    np.testing.assert_array_equal(from_parquet.timestamps, ts)

    # an existing destination is refused, then replaced with --force
    existing = tmp_path / "existing.parquet"
    existing.write_bytes(b"precious")
    assert cli_main(["convert", str(src), str(existing)]) == 2
    err = "".join(capsys.readouterr().err.split())
    assert "exists" in err and str(existing) in err
    assert existing.read_bytes() == b"precious"
    assert cli_main(["convert", str(src), str(existing), "--force"]) == 0
    np.testing.assert_array_equal(load(existing, tmp_path).bars, bars)
    assert snapshot(src) == before


def test_cli_convert_keeps_the_asset_order(tmp_path, capsys):
    df = walk(("BBB", "AAA"), n=60, seed=24)
    src = tmp_path / "src.csv"
    df.assign(timestamp=df["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(src,
                                                                                   index=False)
    dst = tmp_path / "dst.parquet"
    assert cli_main(["convert", str(src), str(dst)]) == 0
    from_csv = load(src, tmp_path, source="csv")
    from_parquet = load(dst, tmp_path)
    assert from_csv.symbols == from_parquet.symbols
    np.testing.assert_array_equal(from_csv.bars, from_parquet.bars)


# ---------------------------------------------------------------------------------------------
# 9. Errors before any work


def test_null_path_is_a_clear_error(tmp_path):
    cfg = optrader.compose("training", ["data=parquet", f"data.cache.dir={tmp_path / 'c'}",
                                        *SMALL])
    with pytest.raises(DataError, match=r"data\.path: .*got null"):
        optrader.make_vec(cfg, num_envs=1)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("kind", ["file", "glob", "empty_dir"])
def test_a_path_that_matches_nothing(tmp_path, kind):
    if kind == "file":
        path = tmp_path / "absent.parquet"
    elif kind == "glob":
        path = tmp_path / "nothing-*.parquet"
    else:
        path = tmp_path / "empty"
        path.mkdir()
    with pytest.raises(DataError, match=re.escape(str(path))):
        make_env(path, tmp_path)
    assert not (tmp_path / "cache").exists()


def test_corrupt_parquet_names_the_file(tmp_path):
    good = write_parquet(walk(n=100, seed=23), tmp_path / "good.parquet")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(good.read_bytes()[:200])  # truncated
    with pytest.raises(DataError, match=re.escape(str(broken))):
        load(broken, tmp_path)
    junk = tmp_path / "junk.parquet"
    junk.write_text("this is not parquet\n")
    with pytest.raises(DataError, match=re.escape(str(junk))):
        load(junk, tmp_path)
    assert not cache_entries(tmp_path / "cache")
