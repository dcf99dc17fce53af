"""from_dataframe's vectorised long-frame paths (one factorize, grouped rows, shared-calendar
shortcut, searchsorted intersection, fast value checks) against a plain per-symbol loop.

The reference below is deliberately naive: one boolean mask per symbol, ``np.intersect1d`` for
the shared timestamps and the value checks one after another, exactly as the loader did before
it was vectorised. Every random frame must give bit-identical MarketData or the same DataError
message, word for word.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from optrader.data import DataError, from_arrays, from_dataframe
from optrader.data.checks import no_shared_timestamps, validate_bars

OHLCV = ("open", "high", "low", "close", "volume")
SOURCE = "DataFrame"


# ---------------------------------------------------------------------------------------------
# The reference


def reference_values(bars, timestamps, symbols):
    """The value and timestamp checks, one full-array pass each, in their documented order."""

    def rows_of(mask, *fields, fmt=" = {}"):
        t_idx, a_idx = np.nonzero(mask)
        shown = ", ".join(
            f"row {t} ({symbols[a]})" + fmt.format(*(repr(float(f[t, a])) for f in fields))
            for t, a in zip(t_idx[:5], a_idx[:5], strict=True))
        return shown + (f" and {len(t_idx) - 5} more" if len(t_idx) > 5 else "")

    if bars.shape[1] == 0:
        raise DataError(f"{SOURCE}: no rows")
    for k, name in enumerate(OHLCV):
        if (~np.isfinite(bars[k])).any():
            raise DataError(f"{SOURCE}: column {name!r} must be finite, got NaN or inf at "
                            f"{rows_of(~np.isfinite(bars[k]), bars[k])}")
    for k, name in enumerate(OHLCV[:4]):
        if (bars[k] <= 0).any():
            raise DataError(f"{SOURCE}: column {name!r} must be > 0, got non-positive prices at "
                            f"{rows_of(bars[k] <= 0, bars[k])}")
    o, h, lo, c, v = bars
    if (h < lo).any():
        raise DataError(f"{SOURCE}: high < low at "
                        f"{rows_of(h < lo, h, lo, fmt=': high {} < low {}')}; "
                        f"expected low <= high")
    for name, x in (("open", o), ("close", c)):
        if ((x > h) | (x < lo)).any():
            raise DataError(f"{SOURCE}: column {name!r} outside [low, high] at "
                            f"{rows_of((x > h) | (x < lo), x, lo, h, fmt=': {} not in [{}, {}]')}")
    if (v < 0).any():
        raise DataError(f"{SOURCE}: column 'volume' must be >= 0, got negative at "
                        f"{rows_of(v < 0, v)}")
    d = np.diff(timestamps)
    for kind, bad in (("duplicate timestamps", d == 0), ("timestamps not sorted ascending", d < 0)):
        if bad.any():
            r = int(np.flatnonzero(bad)[0]) + 1
            iso = [pd.Timestamp(int(timestamps[i]), tz="UTC").isoformat() for i in (r, r - 1)]
            raise DataError(f"{SOURCE}: {kind} at rows {(np.flatnonzero(bad)[:5] + 1).tolist()}; "
                            f"expected strictly increasing, got {iso[0]} at row {r} after {iso[1]}")


def reference_numeric(df, name):
    try:
        return df[name].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        bad = pd.to_numeric(df[name], errors="coerce").isna() & df[name].notna()
        raise DataError(f"{SOURCE}: column {name!r} is not numeric (dtype {df[name].dtype}); bad "
                        f"values at rows {np.flatnonzero(bad.to_numpy())[:5].tolist()}") from None


def reference_load(df):
    """(bars (5, T, A), timestamps (T,), symbols, spread (T, A) or None) of a long frame with a
    DatetimeIndex, one symbol at a time; raises DataError like from_dataframe."""
    ts_all = df.index.tz_convert("UTC").as_unit("ns").asi8
    sym = df["symbol"].astype(str)
    symbols = tuple(pd.unique(sym))
    per_symbol = []
    for s in symbols:
        rows = np.flatnonzero((sym == s).to_numpy(dtype=bool, na_value=False))
        d = np.diff(ts_all[rows])
        if (d == 0).any():
            raise DataError(f"{SOURCE}: duplicate timestamps for symbol {s!r} at rows "
                            f"{rows[np.flatnonzero(d == 0)[:5] + 1].tolist()}")
        if (d < 0).any():
            raise DataError(f"{SOURCE}: timestamps not sorted for symbol {s!r} at rows "
                            f"{rows[np.flatnonzero(d < 0)[:5] + 1].tolist()}")
        per_symbol.append((ts_all[rows], rows))
    common = functools.reduce(np.intersect1d, [ts for ts, _ in per_symbol])
    if common.size == 0:
        raise DataError(no_shared_timestamps(SOURCE, symbols, [ts for ts, _ in per_symbol]))
    names = (*OHLCV, "spread") if "spread" in df.columns else OHLCV
    columns = {c: reference_numeric(df, c) for c in names}
    out = {c: np.column_stack([columns[c][rows[np.isin(ts, common)]] for ts, rows in per_symbol])
           for c in names}
    bars = np.stack([out[c] for c in OHLCV])
    reference_values(bars, common, symbols)
    spread = out.get("spread")
    if spread is not None and (np.isinf(spread) | (spread < 0)).any():
        t, a = np.argwhere(np.isinf(spread) | (spread < 0))[0]
        raise DataError(f"{SOURCE}: column 'spread' must be >= 0 bps (NaN for unknown), got "
                        f"{spread[t, a]!r} at row {t} ({symbols[a]})")
    return bars, common, symbols, spread


def assert_same_load(df):
    """from_dataframe(df) equals the reference: same arrays bit for bit, or the same error."""
    try:
        want = reference_load(df)
    except DataError as exc:
        with pytest.raises(DataError) as got:
            from_dataframe(df)
        assert str(got.value) == str(exc)
        return None
    market = from_dataframe(df)
    bars, timestamps, symbols, spread = want
    assert market.bars.dtype == np.float64 and market.bars.flags.c_contiguous
    assert market.bars.tobytes() == bars.tobytes() and market.bars.shape == bars.shape
    assert market.timestamps.dtype == np.int64
    np.testing.assert_array_equal(market.timestamps, timestamps)
    assert market.symbols == symbols and all(type(s) is str for s in market.symbols)
    if spread is None:
        assert market.spread is None
    else:
        assert market.spread.tobytes() == spread.tobytes()
    assert not market.bars.flags.writeable and not market.timestamps.flags.writeable
    assert not np.shares_memory(market.timestamps, df.index.asi8)
    return market


# ---------------------------------------------------------------------------------------------
# Random long frames


def random_frame(rng, n_symbols=4, n_bars=60, *, ragged=False, spread=False,
                 layout="blocks", tz="UTC"):
    """A valid long frame: per-symbol random walks on a 1-minute grid.

    ragged: each symbol drops a random 20 % of the grid (the load keeps the intersection).
    layout: "blocks" (symbol after symbol, in a shuffled symbol order), "interleaved" (time
        major, as ``sort_index``), "chunks" (each symbol in up to three runs of rows, the runs
        of all symbols shuffled) or "random" (rows of all symbols merged in a random order);
        each symbol's own rows stay ascending.
    """
    grid = pd.date_range("2024-03-01 09:30", periods=n_bars, freq="min", tz=tz)
    names = [f"S{k}" for k in rng.choice(1000, n_symbols, replace=False)]
    parts = []
    for name in names:
        keep = rng.random(n_bars) > 0.2 if ragged else np.ones(n_bars, dtype=bool)
        n = int(keep.sum())
        close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
        open_ = close * np.exp(rng.normal(0.0, 0.002, n))
        part = pd.DataFrame({
            "symbol": name, "open": open_,
            "high": np.maximum(open_, close) * (1 + rng.random(n) * 1e-3),
            "low": np.minimum(open_, close) * (1 - rng.random(n) * 1e-3),
            "close": close, "volume": rng.integers(0, 1000, n).astype(float)},
            index=grid[keep])
        if spread:
            part["spread"] = np.where(rng.random(n) < 0.1, np.nan, rng.random(n) * 5)
        parts.append(part)
    df = pd.concat(parts)
    if layout == "interleaved":
        df = df.sort_index(kind="stable")
    elif layout == "random":
        codes = pd.factorize(df["symbol"])[0]
        slots = rng.permutation(codes)  # which symbol each output row takes its next bar from
        order = np.empty(len(df), dtype=np.int64)
        for a in range(n_symbols):
            order[slots == a] = np.flatnonzero(codes == a)
        df = df.iloc[order]
    elif layout == "chunks":
        codes = pd.factorize(df["symbol"])[0]
        chunks = [np.array_split(np.flatnonzero(codes == a), rng.integers(1, 4))
                  for a in range(n_symbols)]
        slots = rng.permutation(np.repeat(np.arange(n_symbols), [len(c) for c in chunks]))
        df = df.iloc[np.concatenate([chunks[a].pop(0) for a in slots])]
    return df


LAYOUTS = ("blocks", "interleaved", "chunks", "random")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_random_frames_match_the_reference(layout, ragged, seed):
    rng = np.random.default_rng(seed)
    df = random_frame(rng, n_symbols=int(rng.integers(1, 7)), n_bars=int(rng.integers(5, 120)),
                      ragged=ragged, spread=bool(seed % 2), layout=layout)
    assert_same_load(df)


def test_symbol_order_is_first_appearance_not_sorted():
    df = random_frame(np.random.default_rng(1), n_symbols=5, layout="random")
    market = assert_same_load(df)
    assert market.symbols == tuple(pd.unique(df["symbol"]))


@pytest.mark.parametrize("dtype", ["str", "object", "category", "string"])
def test_symbol_column_dtypes(dtype):
    df = random_frame(np.random.default_rng(2), n_symbols=3, layout="interleaved")
    assert_same_load(df.astype({"symbol": dtype}))


def test_symbols_compare_as_strings():
    # 7 and "7" are one symbol once written as text; 7.5 stays apart
    df = random_frame(np.random.default_rng(3), n_symbols=2, n_bars=40)
    sym = df["symbol"].to_numpy(dtype=object).copy()
    sym[sym == sym[0]] = 7
    sym[:10] = "7"
    sym[sym == sym[-1]] = 7.5
    market = assert_same_load(df.assign(symbol=sym))
    assert market.symbols == ("7", "7.5")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_missing_symbol_shares_no_timestamps(layout):
    df = random_frame(np.random.default_rng(4), n_symbols=3, layout=layout)
    for dtype in ("str", "object"):
        sym = df["symbol"].to_numpy(dtype=object).copy()
        sym[1] = None  # listed where it first appears, with no rows of its own
        bad = df.assign(symbol=sym).astype({"symbol": dtype})
        with pytest.raises(DataError, match=r"share no timestamps .*ranges: 'S\d+' .*, nan no rows, "
                                            r".*without nan the others share 59 timestamps"):
            from_dataframe(bad)
        assert_same_load(bad)
        assert_same_load(insert_copy(bad, int(rows_of_symbol(bad, 2)[4])))  # duplicates first
    assert_same_load(df.assign(symbol=None))


@pytest.mark.parametrize("n_symbols", [1, 2])
def test_missing_symbol_on_a_copy_of_a_bar(n_symbols):
    # the NaN row's timestamp is shared, yet a missing symbol still owns no rows
    df = random_frame(np.random.default_rng(12), n_symbols=n_symbols, n_bars=20)
    assert_same_load(pd.concat([df, df.iloc[[5]].assign(symbol=None)]))
    assert_same_load(pd.concat([df.iloc[[5]].assign(symbol=None), df]))


def test_regular_panel_in_chunks_with_a_late_symbol():
    # same timestamps for all but the last symbol, which lacks one bar: not the regular path
    df = random_frame(np.random.default_rng(5), n_symbols=4, n_bars=30)
    assert_same_load(df.iloc[:-1])
    assert_same_load(df.iloc[1:])


def test_symbols_without_a_shared_timestamp():
    rng = np.random.default_rng(6)
    a = random_frame(rng, n_symbols=1, n_bars=20)
    b = random_frame(rng, n_symbols=1, n_bars=20).set_axis(a.index + pd.Timedelta("1h"))
    assert_same_load(pd.concat([a, b]))
    assert_same_load(pd.concat([a, b]).sort_index(kind="stable"))


def test_other_time_zone():
    df = random_frame(np.random.default_rng(7), n_symbols=3, ragged=True, tz="America/New_York")
    assert_same_load(df)


# ---------------------------------------------------------------------------------------------
# Errors: the same rows named as by the per-symbol loop


def insert_copy(df, row):
    """df with frame row ``row`` repeated right after itself."""
    return pd.concat([df.iloc[:row + 1], df.iloc[row:row + 1], df.iloc[row + 1:]])


def swap(df, i, j):
    order = np.arange(len(df))
    order[[i, j]] = order[[j, i]]
    return df.iloc[order]


def rows_of_symbol(df, k):
    return np.flatnonzero(df["symbol"].to_numpy() == pd.unique(df["symbol"])[k])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("seed", range(4))
def test_duplicate_timestamp_names_the_same_rows(layout, seed):
    rng = np.random.default_rng(100 + seed)
    df = random_frame(rng, n_symbols=3, n_bars=50, layout=layout, ragged=bool(seed % 2))
    rows = rows_of_symbol(df, int(rng.integers(3)))
    bad = insert_copy(df, int(rng.choice(rows)))
    assert_same_load(bad)
    with pytest.raises(DataError, match=r"duplicate timestamps for symbol 'S\d+' at rows \[\d+\]$"):
        from_dataframe(bad)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("seed", range(4))
def test_unsorted_timestamp_names_the_same_rows(layout, seed):
    rng = np.random.default_rng(200 + seed)
    df = random_frame(rng, n_symbols=3, n_bars=50, layout=layout, ragged=bool(seed % 2))
    rows = rows_of_symbol(df, int(rng.integers(3)))
    i = int(rng.integers(len(rows) - 1))
    bad = swap(df, rows[i], rows[i + 1])
    assert_same_load(bad)
    with pytest.raises(DataError, match=r"timestamps not sorted for symbol 'S\d+' at rows"):
        from_dataframe(bad)


def test_first_symbol_at_fault_and_duplicates_before_disorder():
    df = random_frame(np.random.default_rng(8), n_symbols=3, n_bars=40)
    first, second = rows_of_symbol(df, 0), rows_of_symbol(df, 1)
    # symbol 1 is out of order and symbol 2 repeats a bar: symbol 1 is reported
    bad = insert_copy(swap(df, second[5], second[6]), rows_of_symbol(df, 2)[3])
    assert_same_load(bad)
    # symbol 0 has both defects, the unsorted pair first in frame order: the duplicate wins
    bad = insert_copy(swap(df, first[2], first[3]), first[20])
    assert_same_load(bad)
    with pytest.raises(DataError, match=r"duplicate timestamps for symbol"):
        from_dataframe(bad)


def test_more_than_five_duplicates_name_the_first_five():
    df = random_frame(np.random.default_rng(9), n_symbols=2, n_bars=40, layout="interleaved")
    bad = pd.concat([df, df.iloc[::4]]).sort_index(kind="stable")
    assert_same_load(bad)


@pytest.mark.parametrize("layout", ["blocks", "interleaved"])
def test_regular_panel_with_the_same_defect_in_every_symbol(layout):
    # every symbol has identical (bad) timestamps: the shared-calendar path checks symbol 0
    df = random_frame(np.random.default_rng(10), n_symbols=3, n_bars=30)
    ts = df.index.to_numpy().copy()
    ts[np.arange(len(df)) % 30 == 12] = ts[11]
    dup = df.set_axis(pd.DatetimeIndex(ts))
    swapped = df.set_axis(pd.DatetimeIndex(np.where(np.arange(len(df)) % 30 == 12, ts[13],
                                                    np.where(np.arange(len(df)) % 30 == 13,
                                                             ts[11], df.index.to_numpy()))))
    for bad in (dup, swapped):
        bad = bad.sort_index(kind="stable") if layout == "interleaved" and bad is dup else bad
        assert_same_load(bad)


def test_non_numeric_column_is_reported_after_the_timestamps():
    df = random_frame(np.random.default_rng(11), n_symbols=2, n_bars=30, spread=True)
    text = df.astype({"close": object})
    text.iloc[33, text.columns.get_loc("close")] = "n/a"
    assert_same_load(text)  # the numeric error
    assert_same_load(insert_copy(text, 4))  # the duplicate comes first
    bad_spread = df.astype({"spread": object})
    bad_spread.iloc[3, bad_spread.columns.get_loc("spread")] = "wide"
    assert_same_load(bad_spread)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("seed", range(8))
def test_bad_values_name_the_same_rows(layout, seed):
    rng = np.random.default_rng(300 + seed)
    df = random_frame(rng, n_symbols=3, n_bars=40, layout=layout, ragged=bool(seed % 2),
                      spread=True)
    for _ in range(int(rng.integers(1, 4))):
        column = str(rng.choice([*OHLCV, "spread"]))
        value = rng.choice([np.nan, np.inf, -np.inf, 0.0, -1.0, 1e6, 1e-6])
        df.iloc[int(rng.integers(len(df))), df.columns.get_loc(column)] = value
    assert_same_load(df)


# ---------------------------------------------------------------------------------------------
# validate_bars and from_arrays on their own


def assert_same_check(bars, timestamps, symbols):
    """validate_bars raises what reference_values raises, or nothing when it does not."""
    try:
        reference_values(bars, timestamps, symbols)
    except DataError as exc:
        with pytest.raises(DataError) as got:
            validate_bars(bars, timestamps, symbols, SOURCE)
        assert str(got.value) == str(exc)
    else:
        validate_bars(bars, timestamps, symbols, SOURCE)


@pytest.mark.parametrize("seed", range(40))
def test_validate_bars_matches_the_reference(seed):
    rng = np.random.default_rng(400 + seed)
    n_bars, n_assets = int(rng.integers(1, 30)), int(rng.integers(1, 4))
    close = 10.0 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_bars, n_assets)), axis=0))
    bars = np.stack([close, close * 1.01, close * 0.99, close, rng.random((n_bars, n_assets))])
    ts = np.arange(n_bars, dtype=np.int64) * 60 * 10**9
    for _ in range(int(rng.integers(0, 3))):
        k, t, a = rng.integers(5), rng.integers(n_bars), rng.integers(n_assets)
        bars[k, t, a] = rng.choice([np.nan, np.inf, -np.inf, 0.0, -1.0, 1e6, 1e-6, 10.0])
    if seed % 5 == 0 and n_bars > 2:
        ts[n_bars // 2] = ts[n_bars // 2 - int(rng.integers(1, 3))]
    assert_same_check(bars, ts, tuple(f"X{a}" for a in range(n_assets)))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 0.0, -1.0, 1e6, 1e-6])
@pytest.mark.parametrize("k", range(5))
def test_validate_bars_one_bad_value_per_field(k, value):
    close = np.linspace(10.0, 11.0, 8).reshape(4, 2)
    bars = np.stack([close, close * 1.01, close * 0.99, close, np.ones_like(close)])
    bars[k, 2, 1] = value
    assert_same_check(bars, np.arange(4), ("a", "b"))


def test_validate_bars_edge_shapes():
    with pytest.raises(DataError, match=r"^DataFrame: no rows$"):
        validate_bars(np.empty((5, 0, 2)), np.empty(0, np.int64), ("a", "b"), SOURCE)
    validate_bars(np.empty((5, 3, 0)), np.arange(3), (), SOURCE)  # no assets: nothing to check


def test_from_arrays_copies_once_and_freezes():
    close = np.linspace(1.0, 2.0, 12).reshape(6, 2)
    market = from_arrays(close, close, close, close, np.ones_like(close))
    assert market.bars.flags.c_contiguous and not market.bars.flags.writeable
    assert not np.shares_memory(market.bars, close) and close.flags.writeable
    np.testing.assert_array_equal(market.field("high"), close)
    one = from_arrays(close[:, 0], close[:, 0], close[:, 0], close[:, 0], close[:, 0])
    assert one.bars.shape == (5, 6, 1) and one.symbols == ("asset0",)
