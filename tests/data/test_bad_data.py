"""Malformed bars are rejected at env construction with the column and rows at fault; good
DataFrames and files load, in any column case, without touching their source."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import optrader
from optrader.data import DataError, from_dataframe, from_path, load_market
from optrader.data.align import align

WINDOW, EPISODE = 4, 8


@pytest.fixture(scope="module")
def cfg():
    # every bar in the split: these tests count bars (the default keeps held-out splits)
    return optrader.compose(overrides=[f"observation.window={WINDOW}",
                                       f"env.episode_length={EPISODE}", "data.split.use=all"])


def build(cfg, data, num_envs=2):
    """Construct a small env on ``data`` and return its MarketData (closing the env)."""
    env = optrader.make_vec(cfg, num_envs=num_envs, data=data)
    try:
        return env.market
    finally:
        env.close()


def assert_rejected(cfg, df, match):
    """DataError from the env constructor, and the caller's frame is left as it was."""
    before = df.copy(deep=True)
    with pytest.raises(DataError, match=match):
        build(cfg, df)
    pd.testing.assert_frame_equal(df, before)


def corrupt(df, row, column, value):
    out = df.copy()
    out.iloc[row, out.columns.get_loc(column)] = value
    return out


# ---------------------------------------------------------------------------------------------
# Values


@pytest.mark.parametrize(("column", "row", "value"), [
    ("close", 17, np.nan), ("open", 0, np.nan), ("high", 299, np.inf), ("low", 42, -np.inf),
    ("volume", 5, np.nan), ("volume", 6, np.inf),
])
def test_non_finite(cfg, bars, column, row, value):
    assert_rejected(cfg, corrupt(bars, row, column, value),
                    rf"column '{column}' must be finite, got NaN or inf at row {row} "
                    rf"\(asset0\) = {re.escape(repr(value))}$")


@pytest.mark.parametrize(("column", "value"), [
    ("close", 0.0), ("open", -1.0), ("low", 0.0), ("high", -5.0)])
def test_non_positive_price(cfg, bars, column, value):
    df = corrupt(bars, 9, column, value)
    assert_rejected(cfg, df, rf"column '{column}' must be > 0.*at row 9 \(asset0\) = "
                             rf"{re.escape(repr(value))}$")


def test_high_below_low(cfg, bars):
    df = bars.copy()
    df.iloc[12, [1, 2]] = df.iloc[12, [2, 1]].to_numpy()  # swap high and low
    high, low = float(df["high"].iloc[12]), float(df["low"].iloc[12])
    assert_rejected(cfg, df, rf"high < low at row 12 \(asset0\): high {re.escape(repr(high))} < "
                             rf"low {re.escape(repr(low))}; expected low <= high$")


@pytest.mark.parametrize(("column", "side"), [
    ("open", "high"), ("open", "low"), ("close", "high"), ("close", "low")])
def test_open_close_outside_range(cfg, bars, column, side):
    df = bars.copy()
    factor = 1.01 if side == "high" else 0.99
    df.iloc[20, df.columns.get_loc(column)] = df[side].iloc[20] * factor
    got, low, high = (re.escape(repr(float(df[c].iloc[20]))) for c in (column, "low", "high"))
    assert_rejected(cfg, df, rf"column '{column}' outside \[low, high\] at row 20 \(asset0\): "
                             rf"{got} not in \[{low}, {high}\]$")


def test_negative_volume(cfg, bars):
    assert_rejected(cfg, corrupt(bars, 30, "volume", -1.0),
                    r"column 'volume' must be >= 0, got negative at row 30 \(asset0\) = -1\.0$")


def test_zero_volume_is_allowed(cfg, bars):
    market = build(cfg, corrupt(bars, 30, "volume", 0.0))
    assert market.field("volume")[30, 0] == 0.0


def test_every_bad_row_is_named_up_to_five(cfg, bars):
    df = bars.copy()
    df.iloc[[3, 4, 200], df.columns.get_loc("close")] = np.nan
    assert_rejected(cfg, df, r"'close' must be finite, got NaN or inf at row 3 \(asset0\) = nan, "
                             r"row 4 \(asset0\) = nan, row 200 \(asset0\) = nan$")
    df = bars.copy()
    df.iloc[10:18, df.columns.get_loc("low")] = np.nan
    assert_rejected(cfg, df, r"row 14 \(asset0\) = nan and 3 more$")


def test_non_numeric_values(cfg, bars):
    df = bars.astype({"close": object})
    df.iloc[3, df.columns.get_loc("close")] = "n/a"
    assert_rejected(cfg, df, r"column 'close' is not numeric.*rows \[3\]")


# ---------------------------------------------------------------------------------------------
# Timestamps


def test_duplicate_timestamps(cfg, bars):
    df = bars.copy()
    idx = df.index.to_numpy().copy()
    idx[10] = idx[9]
    df.index = pd.DatetimeIndex(idx, name="timestamp")
    assert_rejected(cfg, df, r"duplicate timestamps at rows \[10\]; expected strictly increasing, "
                             r"got 2020-01-10T00:00:00\+00:00 at row 10 after "
                             r"2020-01-10T00:00:00\+00:00$")


def test_unsorted_timestamps(cfg, bars):
    df = bars.iloc[[*range(10), 11, 10, *range(12, len(bars))]]
    assert_rejected(cfg, df, r"timestamps not sorted ascending at rows \[11\]; expected strictly "
                             r"increasing, got 2020-01-11T00:00:00\+00:00 at row 11 after "
                             r"2020-01-12T00:00:00\+00:00$")


def test_missing_timestamp(cfg, bars):
    df = bars.copy()
    df.index = df.index.where(np.arange(len(df)) != 7, pd.NaT)
    assert_rejected(cfg, df, r"missing \(NaT\) timestamps at rows \[7\]")


def test_integer_index_is_not_a_timestamp(cfg, bars):
    # a RangeIndex would otherwise become 1970-01-01 plus a few nanoseconds
    assert_rejected(cfg, bars.reset_index(drop=True),
                    r"expected a DatetimeIndex or a 'timestamp' column, got an index of int64")


def test_timestamp_column_and_timezones(cfg, bars):
    ref = build(cfg, bars)
    assert build(cfg, bars.reset_index()).timestamps.tolist() == ref.timestamps.tolist()
    dated = bars.reset_index().rename(columns={"timestamp": "Date"})
    assert build(cfg, dated).timestamps.tolist() == ref.timestamps.tolist()
    # an aware index is converted to UTC: 2020-01-01 00:00 in New York is 05:00 UTC
    ny = bars.tz_localize("America/New_York")
    shift = build(cfg, ny).timestamps - ref.timestamps
    assert shift[0] == 5 * 3600 * 10**9
    assert build(cfg, bars.tz_localize("UTC")).timestamps.tolist() == ref.timestamps.tolist()


# ---------------------------------------------------------------------------------------------
# Columns and size


def test_missing_column(cfg, bars):
    assert_rejected(cfg, bars.drop(columns="volume"),
                    r"missing columns \['volume'\]; expected \['open', 'high', 'low', 'close', "
                    r"'volume'\]")


def test_wrong_column_name(cfg, bars):
    assert_rejected(cfg, bars.rename(columns={"close": "closing"}),
                    r"missing columns \['close'\].*got .*'closing'")


def test_same_column_twice_in_different_case(cfg, bars):
    assert_rejected(cfg, bars.assign(Close=bars["close"]),
                    r"columns \['close'\] appear more than once")


def test_empty_frame(cfg, bars):
    assert_rejected(cfg, bars.iloc[:0], r"no rows")


def test_case_insensitive_columns(cfg, bars):
    upper = bars.rename(columns={"open": "Open", "high": "HIGH", "low": "Low", "close": "CLOSE",
                                 "volume": "Volume"})
    np.testing.assert_array_equal(build(cfg, upper).bars, build(cfg, bars).bars)


def test_extra_columns_are_ignored(cfg, bars):
    np.testing.assert_array_equal(build(cfg, bars.assign(vwap=1.0, note="x")).bars,
                                  build(cfg, bars).bars)


def test_too_few_bars(cfg, bars):
    need = WINDOW + EPISODE
    assert build(cfg, bars.iloc[:need]).n_bars == need  # exactly enough is fine
    with pytest.raises(ValueError, match=rf"{need - 1} bars are too few for "
                                         rf"observation\.window={WINDOW} plus "
                                         rf"env\.episode_length={EPISODE}; need at least {need}"):
        build(cfg, bars.iloc[:need - 1])


def test_loaded_bars_match_the_frame(cfg, bars):
    market = build(cfg, bars)
    assert market.bars.shape == (5, len(bars), 1) and market.bars.dtype == np.float64
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(market.field(name)[:, 0], bars[name].to_numpy())
    assert market.timestamps.dtype == np.int64
    assert market.timestamps.tolist() == bars.index.as_unit("ns").asi8.tolist()
    assert not market.bars.flags.writeable  # shared read-only by every env


# ---------------------------------------------------------------------------------------------
# Long (multi-symbol) frames


def test_long_frame_aligned(cfg, make_bars):
    df = make_bars(300, 2, seed=1)
    market = build(cfg, df)
    assert market.n_assets == 2 and market.symbols == ("SYM0", "SYM1")
    assert market.n_bars == 300
    for a, sym in enumerate(market.symbols):
        np.testing.assert_array_equal(market.field("close")[:, a],
                                      df.loc[df["symbol"] == sym, "close"].to_numpy())


def test_long_frame_interleaved_rows(cfg, make_bars):
    df = make_bars(300, 2, seed=1)
    interleaved = df.sort_index(kind="stable")  # SYM0 t0, SYM1 t0, SYM0 t1, ...
    np.testing.assert_array_equal(build(cfg, interleaved).bars, build(cfg, df).bars)


def test_long_frame_misaligned_uses_the_intersection(cfg, make_bars):
    df = make_bars(300, 2, seed=2)
    sym = df["symbol"].to_numpy()
    pos = np.arange(len(df)) % 300
    drop = ((sym == "SYM1") & (pos >= 5) & (pos < 10)) | ((sym == "SYM0") & (pos == 100))
    market = build(cfg, df[~drop])
    keep = np.ones(300, dtype=bool)
    keep[5:10] = keep[100] = False
    assert market.n_bars == 294
    ts = df.index[:300].as_unit("ns").asi8
    assert market.timestamps.tolist() == ts[keep].tolist()
    for a, s in enumerate(("SYM0", "SYM1")):
        np.testing.assert_array_equal(market.field("open")[:, a],
                                      df.loc[df["symbol"] == s, "open"].to_numpy()[keep])


def test_long_frame_without_shared_timestamps(cfg, make_bars):
    a = make_bars(50, 1, seed=3, long=True)
    b = make_bars(50, 1, seed=4, long=True, start="2021-01-01").assign(symbol="SYM1")
    assert_rejected(cfg, pd.concat([a, b]),
                    r"symbols share no timestamps \(empty intersection\); ranges: 'SYM0' "
                    r"2020-01-01T00:00:00\+00:00 \.\. 2020-02-19T00:00:00\+00:00, 'SYM1' "
                    r"2021-01-01T00:00:00\+00:00 \.\. 2021-02-19T00:00:00\+00:00; 'SYM0' and 'SYM1' "
                    r"have no timestamp in common; timestamps per symbol: 'SYM0' 50, 'SYM1' 50\. "
                    r"Drop the symbols at fault, or keep every timestamp with data\.align=union")


def three_symbols(make_bars, late="SYM2", n_late=30):
    """SYM0 and SYM1 on one calendar (50 bars), ``late`` on a disjoint one."""
    a = make_bars(50, 1, seed=3, long=True)
    b = make_bars(50, 1, seed=4, long=True).assign(symbol="SYM1")
    c = make_bars(n_late, 1, seed=5, long=True, start="2021-01-01").assign(symbol=late)
    return pd.concat([a, c, b])


def test_the_symbol_that_breaks_the_intersection_is_named(cfg, make_bars):
    df = three_symbols(make_bars)
    assert_rejected(cfg, df, r"; without 'SYM2' the others share 50 timestamps; timestamps per "
                             r"symbol: 'SYM0' 50, 'SYM2' 30, 'SYM1' 50\. Drop the symbols at fault, "
                             r"or keep every timestamp with data\.align=union")
    # the loader's aligner (data=parquet|csv) says the same, and union is the way out it names
    long = df.reset_index().rename(columns={"index": "timestamp"})
    long["timestamp"] = long["timestamp"].astype("int64")
    with pytest.raises(DataError, match=r"without 'SYM2' the others share 50 timestamps; "
                                        r"timestamps per symbol: 'SYM0' 50, 'SYM2' 30, 'SYM1' 50"):
        align(long)
    assert align(long, how="union").timestamps.size == 80


def test_no_single_symbol_to_blame(make_bars):
    parts = [make_bars(20, 1, seed=k, long=True, start=f"202{k}-01-01").assign(symbol=f"S{k}")
             for k in range(3)]
    with pytest.raises(DataError, match=r"at most 1 of the 3 symbols share any one timestamp, so "
                                        r"no single symbol is to blame; timestamps per symbol: "
                                        r"'S0' 20, 'S1' 20, 'S2' 20"):
        from_dataframe(pd.concat(parts))


def test_rows_without_a_symbol_are_named_as_a_symbol_with_no_rows(make_bars):
    df = make_bars(30, 2, seed=1)
    sym = df["symbol"].to_numpy(dtype=object).copy()
    sym[3] = None
    with pytest.raises(DataError, match=r"ranges: 'SYM0' .*, nan no rows, 'SYM1' .*; without nan "
                                        r"the others share 29 timestamps; timestamps per symbol: "
                                        r"'SYM0' 29, nan 0, 'SYM1' 30"):
        from_dataframe(df.assign(symbol=sym))

def test_long_frame_duplicate_within_a_symbol(cfg, make_bars):
    df = make_bars(300, 2, seed=5)
    # repeat SYM1's bar 40 right after itself; its frame position is 300 + 41
    df = pd.concat([df.iloc[:341], df.iloc[340:341], df.iloc[341:]])
    assert_rejected(cfg, df, r"duplicate timestamps for symbol 'SYM1' at rows \[341\]$")


def test_long_frame_unsorted_within_a_symbol(cfg, make_bars):
    df = make_bars(300, 2, seed=6)
    order = np.arange(len(df))
    order[[50, 51]] = order[[51, 50]]
    assert_rejected(cfg, df.iloc[order], r"timestamps not sorted for symbol 'SYM0' at rows \[51\]$")


def test_long_frame_bad_value_names_the_symbol(cfg, make_bars):
    df = make_bars(300, 2, seed=7)
    df.iloc[300 + 8, df.columns.get_loc("high")] = np.nan
    assert_rejected(cfg, df, r"column 'high' must be finite, got NaN or inf at row 8 \(SYM1\) = nan$")


def test_long_frame_case_insensitive(cfg, make_bars):
    df = make_bars(300, 2, seed=8)
    shouting = df.reset_index().rename(columns=str.upper)
    assert list(shouting.columns[:2]) == ["TIMESTAMP", "SYMBOL"]
    np.testing.assert_array_equal(build(cfg, shouting).bars, build(cfg, df).bars)


# ---------------------------------------------------------------------------------------------
# Files


def fingerprint(path):
    st = path.stat()
    return path.read_bytes(), st.st_mtime_ns, st.st_size


def test_missing_file(cfg, tmp_path):
    path = tmp_path / "nowhere" / "bars.parquet"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        build(cfg, str(path))
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        build(cfg, path)


@pytest.mark.parametrize("content", [b"", b"PAR1 not really parquet", "truncated"])
def test_corrupt_parquet(cfg, bars, tmp_path, content):
    path = tmp_path / "bars.parquet"
    if content == "truncated":
        bars.to_parquet(path)
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    before = fingerprint(path)
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: (cannot read|file is empty)"):
        build(cfg, path)
    assert fingerprint(path) == before


@pytest.mark.parametrize("suffix", [".json", ".xlsx", ".txt", ""])
def test_unsupported_suffix(cfg, bars, tmp_path, suffix):
    path = tmp_path / f"bars{suffix}"
    bars.to_csv(path)  # a perfectly good CSV under the wrong name
    before = fingerprint(path)
    with pytest.raises(DataError, match=rf"unsupported file type '{re.escape(suffix)}'; "
                                        r"expected \.parquet or \.csv"):
        build(cfg, path)
    assert fingerprint(path) == before


@pytest.mark.parametrize("suffix", [".csv", ".CSV", ".parquet", ".pq"])
def test_file_round_trip(cfg, bars, tmp_path, suffix):
    path = tmp_path / f"bars{suffix}"
    if suffix.lower() == ".csv":
        bars.to_csv(path)
    else:
        bars.to_parquet(path)
    before = fingerprint(path)
    market = build(cfg, str(path))
    assert fingerprint(path) == before
    ref = from_dataframe(bars)
    np.testing.assert_allclose(market.bars, ref.bars, rtol=1e-15, atol=0)
    assert market.timestamps.tolist() == ref.timestamps.tolist()


def test_long_csv_round_trip(cfg, make_bars, tmp_path):
    df = make_bars(300, 2, seed=9)
    path = tmp_path / "long.csv"
    df.to_csv(path)
    market = build(cfg, path)
    assert market.symbols == ("SYM0", "SYM1")
    np.testing.assert_allclose(market.bars, from_dataframe(df).bars, rtol=1e-15, atol=0)


def test_to_frame_round_trip(cfg, make_bars, tmp_path):
    market = from_dataframe(make_bars(300, 2, seed=10))
    path = tmp_path / "export.parquet"
    market.to_frame().to_parquet(path)
    again = build(cfg, path)
    np.testing.assert_array_equal(again.bars, market.bars)
    assert again.symbols == market.symbols


def test_csv_without_timestamp_header_is_rejected(cfg, bars, tmp_path):
    path = tmp_path / "noname.csv"
    bars.rename_axis(None).to_csv(path)  # the index column gets an empty header
    with pytest.raises(DataError, match=r"noname\.csv: missing column\(s\) "
                                        r"\['timestamp/datetime/date/time'\]"):
        build(cfg, path)


def test_bad_bars_in_a_file_name_the_file(cfg, bars, tmp_path, caplog):
    # a file goes through the file loader's quality gate (one loading path): a defective row
    # among many is dropped with a warning naming the file, column and row; too many fail
    path = tmp_path / "bad.parquet"
    corrupt(bars, 33, "low", -1.0).to_parquet(path)
    with caplog.at_level("WARNING"):
        assert build(cfg, path).n_bars == len(bars) - 1
    assert re.search(rf"{re.escape(str(path))}: .*non_positive_price.*'low'.*rows \[33\]",
                     caplog.text)
    path = tmp_path / "worse.parquet"
    bars.assign(low=-1.0).to_parquet(path)
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: data quality score 0\.0000"):
        build(cfg, path)


def test_path_from_the_config(bars, tmp_path):
    path = tmp_path / "bars.parquet"
    bars.to_parquet(path)
    cfg = optrader.compose(overrides=["data=dataframe", f"data.path='{path}'",
                                      f"observation.window={WINDOW}",
                                      f"env.episode_length={EPISODE}"])
    np.testing.assert_array_equal(build(cfg, None).bars, from_dataframe(bars).bars)
    missing = optrader.compose(overrides=["data=dataframe", f"data.path='{tmp_path / 'no.csv'}'"])
    with pytest.raises(FileNotFoundError, match=r"no\.csv"):
        build(missing, None)


def test_dataframe_source_without_data(cfg):
    spec = optrader.load_spec(optrader.compose(overrides=["data=dataframe"]))
    with pytest.raises(DataError, match=r"data\.source=dataframe needs data=<DataFrame> or "
                                        r"data\.path"):
        load_market(spec.data, None)


@pytest.mark.parametrize("data", [42, [1.0, 2.0], np.zeros((5, 10))])
def test_unsupported_data_argument(cfg, data):
    with pytest.raises(TypeError, match=r"data: expected a pandas DataFrame"):
        build(cfg, data)


def test_from_path_directly(bars, tmp_path):
    path = tmp_path / "bars.csv"
    bars.to_csv(path)
    assert from_path(path, periods_per_year=52.0).periods_per_year == 52.0


# ---------------------------------------------------------------------------------------------
# Time zones: aware and naive stamps never mix silently


MIXED = r"timestamps mix zone-aware and naive values: first naive '{}' at row {}, first aware '{}' at row {}; expected all naive"


def test_index_mixing_aware_and_naive_datetimes(cfg, bars):
    idx = list(bars.index[:40])
    idx = [t.tz_localize("UTC") if i == 7 else t for i, t in enumerate(idx)]
    df = bars.iloc[:40].set_axis(pd.Index(idx, dtype=object))
    assert_rejected(cfg, df, MIXED.format("2020-01-01 00:00:00", 0,
                                          re.escape("2020-01-08 00:00:00+00:00"), 7))
    # the first aware one first
    idx[0] = idx[0].tz_localize("Asia/Tokyo")
    assert_rejected(cfg, bars.iloc[:40].set_axis(pd.Index(idx, dtype=object)),
                    MIXED.format("2020-01-02 00:00:00", 1,
                                 re.escape("2020-01-01 00:00:00+09:00"), 0))


def test_timestamp_column_of_mixed_strings(cfg, bars):
    text = bars.index.strftime("%Y-%m-%d %H:%M").to_numpy(dtype=object)
    text[12] = text[12] + "+01:00"
    df = bars.reset_index(drop=True).assign(timestamp=text)
    assert_rejected(cfg, df, MIXED.format("2020-01-01 00:00", 0,
                                          re.escape("2020-01-13 00:00+01:00"), 12))


def test_csv_file_of_mixed_strings_names_the_file(cfg, bars, tmp_path):
    text = bars.index.strftime("%Y-%m-%dT%H:%M:%S").to_numpy(dtype=object)
    text[5] = text[5] + "Z"
    path = tmp_path / "mixed.csv"
    bars.set_axis(pd.Index(text, name="timestamp")).to_csv(path)
    with pytest.raises(DataError, match=re.escape(str(path)) + ".*" + MIXED.format(
            "2020-01-01T00:00:00", 0, "2020-01-06T00:00:00Z", 5)):
        build(cfg, path)


def test_long_frame_object_column_mixing_zones_in_align():
    ts = [pd.Timestamp("2024-01-01 00:00"), pd.Timestamp("2024-01-01 00:01", tz="UTC")]
    df = pd.DataFrame({"timestamp": pd.Series(ts, dtype=object), "symbol": "A", "open": 1.0,
                       "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0})
    with pytest.raises(DataError, match=r"column 'timestamp': " + MIXED.format(
            "2024-01-01 00:00:00", 0, re.escape("2024-01-01 00:01:00+00:00"), 1)):
        align(df)


def test_aware_stamps_with_different_offsets_are_converted_to_utc(cfg, bars):
    # local times across a DST change (2020-03-29 in Paris): every stamp has a zone, the
    # offsets differ; that is a documented conversion to UTC, not an error
    part = bars.iloc[70:110]
    local = part.index.tz_localize("UTC").tz_convert("Europe/Paris")
    text = pd.Index([t.isoformat() for t in local], dtype=object)
    assert {t[-6:] for t in text} == {"+01:00", "+02:00"}
    objects = pd.Index([t.tz_convert("Asia/Tokyo") if i % 2 else t for i, t in enumerate(local)],
                       dtype=object)
    want = part.index.as_unit("ns").asi8.tolist()
    assert build(cfg, part.set_axis(text)).timestamps.tolist() == want
    assert build(cfg, part.set_axis(objects)).timestamps.tolist() == want
