"""The fast paths of kernels/metrics.py and optrader/metrics.py give the plain paths' results
bit for bit.

The references below are the plain implementations the fast ones replaced, kept here verbatim in
substance: the Hoare selection with its scalar scans, the one-row equity kernel (which sums the
tail and the dispersions in the order the selection leaves the returns in, so the selection's
exact swaps are part of the results), the one-chain exposure sums, the numpy equity checks, and
round trips through a stable argsort, a counting pass and one numpy copy per record field.
"""

import math
import re

import numpy as np
import pandas as pd
import pytest
from numba import njit

import optrader.metrics as om
from kernels.metrics import (
    N_METRICS,
    SELECT_BLOCK,
    VAR_LEVEL,
    ZERO_RTOL,
    EquityDefect,
    Metric,
    TradeField,
    TradeInt,
    _min_nb,
    count_round_trips_nb,
    equity_defects_nb,
    equity_defects_par_nb,
    equity_metrics_nb,
    equity_metrics_par_nb,
    exposure_turnover_sums_nb,
    exposure_turnover_sums_par_nb,
    quantile_nb,
    round_trips_nb,
    select_nb,
)
from optrader.envs.vector import FILL_DTYPE
from optrader.metrics import TRADE_DTYPE, compute_metrics, exposure_turnover, round_trips

NAN = math.nan


# ---- plain references --------------------------------------------------------------------------
@njit(error_model="numpy")
def ref_select_nb(a, n, k):
    lo, hi = 0, n - 1
    rounds = 0
    while lo < hi:
        rounds += 1
        if rounds > 64:
            a[lo:hi + 1].sort()
            break
        mid = (lo + hi) >> 1
        x, y, z = a[lo], a[mid], a[hi]
        pivot = max(min(x, y), min(max(x, y), z))
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while pivot < a[j]:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if j < k:
            lo = i
        if k < i:
            hi = j
    return a[k]


@njit(error_model="numpy")
def ref_quantile_nb(a, n, q):
    virtual = (n - 1) * q
    k = int(math.floor(virtual))
    if k >= n - 1:
        return ref_select_nb(a, n, n - 1)
    lo = ref_select_nb(a, n, k)
    hi = a[k + 1]
    for t in range(k + 2, n):
        hi = min(hi, a[t])
    gamma = virtual - k
    diff = hi - lo
    if gamma >= 0.5:
        return hi - diff * (1.0 - gamma)
    return lo + diff * gamma


@njit(error_model="numpy")
def ref_row_bars(equity, i):
    last = equity.shape[1] - 1
    while last > 0 and math.isnan(equity[i, last]):
        last -= 1
    return last


@njit(error_model="numpy")
def ref_equity_metrics_nb(equity, periods_per_year, rf_annual, out):
    n, width = equity.shape
    rf = (1.0 + rf_annual) ** (1.0 / periods_per_year) - 1.0
    ann = math.sqrt(periods_per_year)
    ret = np.empty(max(width - 1, 1))
    for i in range(n):
        n_ret = ref_row_bars(equity, i)
        e0 = equity[i, 0]
        peak = e0
        max_dd = 0.0
        run = 0
        max_run = 0
        total = 0.0
        total_abs = 0.0
        prev = e0
        for t in range(1, n_ret + 1):
            e = equity[i, t]
            r = e / prev - 1.0
            ret[t - 1] = r
            total += r
            total_abs += abs(r)
            prev = e
            if e < peak:
                run += 1
                max_run = max(max_run, run)
                max_dd = max(max_dd, 1.0 - e / peak)
            else:
                peak = e
                run = 0
        out[i, Metric.MAX_DRAWDOWN] = max_dd
        out[i, Metric.MAX_DD_DURATION] = max_run
        for c in (Metric.TOTAL_RETURN, Metric.CAGR, Metric.ANN_VOL, Metric.SHARPE,
                  Metric.SORTINO, Metric.CALMAR, Metric.VAR_95, Metric.CVAR_95):
            out[i, c] = np.nan
        if n_ret == 0:
            continue
        growth = prev / e0
        out[i, Metric.TOTAL_RETURN] = growth - 1.0
        cagr = growth ** (periods_per_year / n_ret) - 1.0 if growth > 0.0 else -1.0
        out[i, Metric.CAGR] = cagr
        if max_dd > 0.0:
            out[i, Metric.CALMAR] = cagr / max_dd
        q = ref_quantile_nb(ret, n_ret, VAR_LEVEL)
        tail = 0.0
        n_tail = 0
        for t in range(n_ret):
            if ret[t] <= q:
                tail += ret[t]
                n_tail += 1
        out[i, Metric.VAR_95] = -q
        out[i, Metric.CVAR_95] = -tail / n_tail
        if n_ret < 2:
            continue
        mean = total / n_ret
        ss = 0.0
        down = 0.0
        for t in range(n_ret):
            d = ret[t] - mean
            ss += d * d
            x = ret[t] - rf
            if x < 0.0:
                down += x * x
        std = math.sqrt(ss / (n_ret - 1))
        dd_dev = math.sqrt(down / n_ret)
        tiny = ZERO_RTOL * (total_abs / n_ret + abs(rf))
        excess = mean - rf
        if std <= tiny:
            out[i, Metric.ANN_VOL] = 0.0
        else:
            out[i, Metric.ANN_VOL] = std * ann
            out[i, Metric.SHARPE] = excess / std * ann
        if dd_dev > tiny:
            out[i, Metric.SORTINO] = excess / dd_dev * ann


@njit(error_model="numpy")
def ref_exposure_turnover_sums_nb(held_bars, traded_sum, equity, periods_per_year, out):
    for i in range(equity.shape[0]):
        n_bars = ref_row_bars(equity, i)
        out[i, Metric.EXPOSURE] = np.nan
        out[i, Metric.TURNOVER] = np.nan
        if n_bars > 0:
            eq = 0.0
            for t in range(n_bars):
                eq += equity[i, t + 1]
            out[i, Metric.EXPOSURE] = held_bars[i] / n_bars
            if eq > 0.0:
                out[i, Metric.TURNOVER] = traded_sum[i] * periods_per_year / eq


def ref_equity_error(equity):
    """The message of the numpy checks of the equity values, or None if they pass."""
    eq = np.ascontiguousarray(np.atleast_2d(equity), dtype=np.float64)
    if np.isinf(eq).any():
        rows = np.nonzero(np.isinf(eq).any(axis=1))[0]
        return (f"equity: expected finite values (NaN only as end padding), got inf in envs "
                f"{rows[:10].tolist()}")
    bad = ~(eq[:, 0] > 0.0)
    if bad.any():
        rows = np.nonzero(bad)[0]
        return (f"equity: expected an initial equity (column 0) > 0, got {eq[rows[0], 0]!r} "
                f"for envs {rows[:10].tolist()}")
    nan = np.isnan(eq)
    gap = nan[:, :-1] & ~nan[:, 1:]
    if gap.any():
        rows = np.nonzero(gap.any(axis=1))[0]
        return (f"equity: expected NaN only as padding after an env's last bar, got NaN "
                f"followed by values in envs {rows[:10].tolist()}")
    before_last = ~nan[:, 1:] & (eq[:, :-1] <= 0.0)
    if before_last.any():
        rows = np.nonzero(before_last.any(axis=1))[0]
        return (f"equity: expected equity > 0 on every bar before an env's last (a return "
                f"after a wiped-out account is undefined), got <= 0 in envs "
                f"{rows[:10].tolist()}")
    return None


def ref_defects(eq):
    nan = np.isnan(eq)
    bits = np.where(np.isinf(eq).any(axis=1), EquityDefect.INF, 0)
    bits |= np.where(~(eq[:, 0] > 0.0), EquityDefect.INITIAL, 0)
    bits |= np.where((nan[:, :-1] & ~nan[:, 1:]).any(axis=1), EquityDefect.GAP, 0)
    bits |= np.where((~nan[:, 1:] & (eq[:, :-1] <= 0.0)).any(axis=1),
                     EquityDefect.NOT_POSITIVE, 0)
    return bits.astype(np.uint8)


def ref_round_trips(fills, n_envs, n_assets):
    """round_trips as it was: per-field copies, a stable argsort for the order check, a counting
    pass, then one numpy copy per record field. Returns (trades, open lots)."""
    f = np.asarray(fills)
    env, bar, asset = (np.ascontiguousarray(f[x], dtype=np.int64) for x in ("env", "bar", "asset"))
    qty, price, cost = (np.ascontiguousarray(f[x], dtype=np.float64)
                        for x in ("qty", "price", "commission"))
    if "fee" in f.dtype.names:
        cost = cost + f["fee"]
    order = np.argsort(env, kind="stable")
    assert not ((np.diff(bar[order]) < 0) & (np.diff(env[order]) == 0)).any()
    m, n_open = count_round_trips_nb(env, asset, qty, n_envs, n_assets)
    ti, tf = np.empty((m, 8), np.int64), np.empty((m, 6))
    oi, of = np.empty((n_open, 8), np.int64), np.empty((n_open, 6))
    round_trips_nb(env, bar, asset, qty, price, cost, n_envs, n_assets, ti, tf, oi, of)

    def records(ti, tf):
        out = np.empty(ti.shape[0], dtype=TRADE_DTYPE)
        for name in TRADE_DTYPE.names:
            if name.upper() in TradeInt._fields:
                out[name] = ti[:, getattr(TradeInt, name.upper())]
            else:
                out[name] = tf[:, getattr(TradeField, name.upper())]
        return out

    return records(ti, tf), records(oi, of)


def same_records(a, b):
    """Field by field, bit for bit (padding bytes of the records are not data)."""
    return a.dtype == b.dtype and a.shape == b.shape and all(
        a[x].tobytes() == b[x].tobytes() for x in a.dtype.names)


# ---- data ----------------------------------------------------------------------------------------
def random_curves(rng, n, width, *, pad=True):
    """NaN-padded equity curves (n, width) with flat stretches (0 returns), ties and dips."""
    steps = rng.choice([0.0, 0.0, 0.01, -0.01, 0.02], (n, width)) * rng.random((n, width)) * 3
    steps[rng.random((n, width)) < 0.1] = -0.015  # exact ties among the returns
    eq = 100.0 * np.cumprod(1.0 + steps, axis=1)
    eq[:, 0] = 100.0
    if pad:
        for i in range(n):
            eq[i, int(rng.integers(1, width + 1)):] = NAN
    return eq


# ---- selection -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["random", "sorted", "reversed", "ties", "zeros", "equal"])
def test_select_makes_the_plain_loops_swaps(kind):
    """Same k-th value and the same order of a[:n] afterwards, on both sides of the block
    threshold (2 x SELECT_BLOCK) and at every kind of k."""
    rng = np.random.default_rng(len(kind))
    for n in (1, 2, 3, 7, 2 * SELECT_BLOCK - 1, 2 * SELECT_BLOCK, 2 * SELECT_BLOCK + 1, 1000,
              5003):
        x = {"random": rng.normal(size=n), "sorted": np.sort(rng.normal(size=n)),
             "reversed": np.sort(rng.normal(size=n))[::-1].copy(),
             "ties": rng.integers(-3, 4, n) * 0.5,
             "zeros": np.where(rng.random(n) < 0.5, rng.choice([0.0, -0.0], n),
                               rng.normal(size=n)),
             "equal": np.full(n, 0.25)}[kind]
        for k in sorted({0, n // 20, n // 2, n - 1, int(rng.integers(0, n))}):
            a, b = x.copy(), x.copy()
            assert select_nb(a, n, k) == ref_select_nb(b, n, k)
            assert a.tobytes() == b.tobytes(), (n, k)
        for q in (0.0, VAR_LEVEL, 0.5, 1.0):
            a, b = x.copy(), x.copy()
            assert np.float64(quantile_nb(a, n, q)).tobytes() == \
                np.float64(ref_quantile_nb(b, n, q)).tobytes()
            assert a.tobytes() == b.tobytes()


def test_min_keeps_the_plain_loops_zero_and_nan():
    rng = np.random.default_rng(3)
    cases = [rng.normal(size=n) for n in (2, 3, 5, 9, 100)]
    cases += [np.array([0.0, 1.0, -0.0, 2.0, 3.0]), np.array([-0.0, 1.0, 0.0, 0.0, 5.0, 6.0]),
              np.array([1.0, NAN, -2.0, 3.0, 4.0, 5.0]), np.array([NAN, -1.0, 2.0, 3.0, 4.0])]
    for a in cases:
        want = a[0]  # Numba's min(m, x): x if x < m else m
        for t in range(1, a.size):
            if a[t] < want:
                want = a[t]
        got = _min_nb(a, 0, a.size)
        assert np.float64(got).tobytes() == np.float64(want).tobytes(), a


# ---- equity curves -------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_equity_metrics_bit_identical_to_the_one_row_kernel(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12))
    width = int(rng.choice([1, 2, 3, 40, 600, 3000]))
    eq = random_curves(rng, n, width)
    ppy, rf = float(rng.choice([1.0, 252.0, 98_280.0])), float(rng.choice([0.0, 0.03, -0.01]))
    want = np.full((n, N_METRICS), -999.0)
    ref_equity_metrics_nb(eq, ppy, rf, want)
    for n_chunks in (None, 1, 2, 3, 64):
        got = np.full((n, N_METRICS), -999.0)
        if n_chunks is None:
            equity_metrics_nb(eq, ppy, rf, got)
        else:
            equity_metrics_par_nb(n_chunks, eq, ppy, rf, got)
        assert got.tobytes() == want.tobytes(), n_chunks  # the other columns untouched too


def test_equity_metrics_bit_identical_on_long_backtest_like_rows():
    """Rows of a flat-then-trading strategy (half the returns exactly 0, long rows, drawdowns
    that close and one open at the end), an even and an odd number of rows."""
    rng = np.random.default_rng(11)
    for n in (6, 7):
        eq = random_curves(rng, n, 20_001, pad=False)
        eq[1, 5:] = eq[1, 4]  # flat after 4 bars: std 0 up to rounding
        eq[2, -50:] = np.linspace(eq[2, -51], eq[2, -51] * 0.5, 50)  # an open drawdown
        eq[3, 10_000:] = NAN
        want = np.full((n, N_METRICS), -999.0)
        ref_equity_metrics_nb(eq, 98_280.0, 0.02, want)
        got = np.full((n, N_METRICS), -999.0)
        equity_metrics_par_nb(4, eq, 98_280.0, 0.02, got)
        assert got.tobytes() == want.tobytes()
        got[:] = -999.0
        equity_metrics_nb(eq, 98_280.0, 0.02, got)
        assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("seed", range(4))
def test_exposure_sums_bit_identical(seed):
    rng = np.random.default_rng(seed)
    n, width = int(rng.integers(1, 10)), int(rng.choice([1, 2, 50, 4000]))
    eq = random_curves(rng, n, width)
    held = rng.integers(0, width, n)
    traded = rng.random(n) * 1e5
    want = np.full((n, N_METRICS), -999.0)
    ref_exposure_turnover_sums_nb(held, traded, eq, 252.0, want)
    for n_chunks in (None, 1, 2, 5):
        got = np.full((n, N_METRICS), -999.0)
        if n_chunks is None:
            exposure_turnover_sums_nb(held, traded, eq, 252.0, got)
        else:
            exposure_turnover_sums_par_nb(n_chunks, held, traded, eq, 252.0, got)
        assert got.tobytes() == want.tobytes()


# ---- equity checks -------------------------------------------------------------------------------
def test_defect_bits_match_numpy():
    rng = np.random.default_rng(4)
    for _ in range(200):
        n, width = int(rng.integers(1, 6)), int(rng.integers(1, 40))
        eq = random_curves(rng, n, width)
        for _ in range(int(rng.integers(0, 4))):  # inject defects anywhere
            i, t = int(rng.integers(0, n)), int(rng.integers(0, width))
            eq[i, t] = rng.choice([np.inf, -np.inf, NAN, 0.0, -3.0, -0.0])
        got = np.empty(n, np.uint8)
        equity_defects_nb(eq, got)
        np.testing.assert_array_equal(got, ref_defects(eq))
        par = np.empty(n, np.uint8)
        equity_defects_par_nb(3, eq, par)
        np.testing.assert_array_equal(par, got)


BAD_ROWS = {
    "inf": (3, 7, np.inf),
    "initial": (2, 0, 0.0),
    "initial NaN": (5, 0, NAN),
    "gap": (1, 9, NAN),
    "not positive": (4, 8, -1.0),
}


@pytest.mark.parametrize("size", ["small", "large"])  # the serial and the threaded check
def test_each_equity_error_fires_with_the_plain_message(size):
    width = 12 if size == "small" else 20_000
    good = random_curves(np.random.default_rng(0), 6, width, pad=False)
    assert compute_metrics(good, periods_per_year=252).shape[0] == 6
    for name, (row, col, value) in BAD_ROWS.items():
        eq = good.copy()
        eq[row, col] = value
        if name == "gap":
            eq[row, col - 3:col] = NAN
        want = ref_equity_error(eq)
        assert want is not None, name
        with pytest.raises(ValueError, match=re.escape(want)):
            compute_metrics(eq, periods_per_year=252)
        with pytest.raises(ValueError, match=re.escape(want)):
            exposure_turnover(np.zeros(6, np.int64), np.zeros(6), eq, periods_per_year=252)
    # several kinds at once: inf first, then the initial equity, then gaps, then equity <= 0;
    # each error lists every env with its kind of defect
    eq = good.copy()
    eq[5, 3] = -2.0
    eq[4, 2:4] = NAN
    eq[1, 0] = -1.0
    eq[3, 0] = 0.0
    eq[0, 5] = np.inf
    eq[2, 7] = -np.inf
    for fix in ((0, 5), (2, 7), (1, 0), (3, 0), (4, 2), (5, 3)):
        want = ref_equity_error(eq)
        with pytest.raises(ValueError, match=re.escape(want)):
            compute_metrics(eq, periods_per_year=252)
        eq[fix[0]] = good[fix[0]]
    assert ref_equity_error(eq) is None
    compute_metrics(eq, periods_per_year=252)


def test_checked_equity_is_scanned_once(monkeypatch):
    """check_equity scans once; compute_metrics and exposure_turnover take its result without
    scanning, and scan anything else every time."""
    calls = []
    for name in ("equity_defects_nb", "equity_defects_par_nb"):
        kernel = getattr(om, name)
        monkeypatch.setattr(om, name, lambda *a, _k=kernel: calls.append(1) or _k(*a))
    eq = random_curves(np.random.default_rng(1), 3, 50, pad=False)
    held, traded = np.zeros(3, np.int64), np.ones(3)
    checked = om.check_equity(eq)
    plain = compute_metrics(eq, periods_per_year=252)
    assert len(calls) == 2
    pd.testing.assert_frame_equal(compute_metrics(checked, periods_per_year=252), plain)
    exposure_turnover(held, traded, checked, periods_per_year=252)
    assert len(calls) == 2
    eq[1, 10] = np.inf
    with pytest.raises(ValueError, match=r"got inf in envs \[1\]"):
        exposure_turnover(held, traded, eq, periods_per_year=252)
    with pytest.raises(ValueError, match=r"got inf in envs \[1\]"):
        om.check_equity(eq)


# ---- round trips ---------------------------------------------------------------------------------
def random_fills(rng, n_envs, n_assets, m, *, env_major, dtype=FILL_DTYPE):
    f = np.zeros(m, dtype=dtype)
    env = np.sort(rng.integers(0, n_envs, m)) if env_major else rng.integers(0, n_envs, m)
    f["env"] = env
    f["asset"] = rng.integers(0, n_assets, m)
    bar = np.zeros(m, np.int64)
    for e in range(n_envs):  # bars non-decreasing per env, in any interleaving of envs
        sel = env == e
        bar[sel] = np.cumsum(rng.integers(0, 3, sel.sum()))
    f["bar"] = bar
    f["qty"] = rng.integers(-6, 7, m) * rng.choice([0.5, 1.0, 0.1], m)
    f["price"] = rng.uniform(10, 200, m)
    f["commission"] = rng.choice([0.0, 0.5, 1.25], m)
    return f


@pytest.mark.parametrize("env_major", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_round_trips_identical_to_the_plain_path(env_major, seed):
    rng = np.random.default_rng(seed)
    for n_envs, n_assets, m in ((1, 1, 0), (1, 1, 1), (3, 2, 40), (7, 3, 3000)):
        f = random_fills(rng, n_envs, n_assets, m, env_major=env_major)
        want_t, want_o = ref_round_trips(f, n_envs, n_assets)
        got_t, got_o = round_trips(f, n_envs, n_assets, return_open=True)
        assert same_records(got_t, want_t) and same_records(got_o, want_o)
        assert same_records(round_trips(f, n_envs, n_assets), want_t)


def test_round_trips_of_other_record_layouts():
    """A fee field, other integer and float widths, an unaligned layout and a big-endian field
    (read by numpy instead of the one-pass kernel): the same trades."""
    rng = np.random.default_rng(9)
    base = random_fills(rng, 4, 2, 500, env_major=False)
    layouts = [
        np.dtype([("env", "i4"), ("bar", "i8"), ("asset", "u2"), ("qty", "f8"),
                  ("price", "f4"), ("commission", "f8"), ("fee", "f8")]),
        np.dtype([("bar", "i8"), ("env", "i8"), ("asset", "i8"), ("qty", "f8"),
                  ("price", "f8"), ("commission", "f8"), ("tag", "i1")], align=False),
        np.dtype([("env", ">i8"), ("bar", "i8"), ("asset", "i8"), ("qty", "f8"),
                  ("price", "f8"), ("commission", "f8")]),
        np.dtype([("env", "i8"), ("bar", "i8"), ("asset", "i8"), ("qty", "f8"),
                  ("price", "f8"), ("commission", "f8"), ("note", "U4")]),
    ]
    for dtype in layouts:
        f = np.zeros(base.shape[0], dtype=dtype)
        for name in dtype.names:
            if name in base.dtype.names:
                f[name] = base[name]
        if "fee" in dtype.names:
            f["fee"] = rng.choice([0.0, 0.25], f.shape[0])
        want_t, want_o = ref_round_trips(f, 4, 2)
        got_t, got_o = round_trips(f, 4, 2, return_open=True)
        assert same_records(got_t, want_t) and same_records(got_o, want_o), dtype


def test_trade_metrics_from_records_identical():
    """compute_metrics' trade columns through the one-pass record reader and through numpy."""
    rng = np.random.default_rng(2)
    f = random_fills(rng, 5, 2, 2000, env_major=True)
    trades = round_trips(f, 5, 2)
    eq = random_curves(rng, 5, 30, pad=False)
    got = compute_metrics(eq, periods_per_year=252, trades=trades)
    plain = np.zeros(trades.shape[0], dtype=[("env", "i8"), ("pnl", "f8"), ("bars", "i8"),
                                             ("note", "U2")])  # not plain numbers: numpy path
    for name in ("env", "pnl", "bars"):
        plain[name] = trades[name]
    want = compute_metrics(eq, periods_per_year=252, trades=plain)
    for c in want.columns:
        assert got[c].to_numpy().tobytes() == want[c].to_numpy().tobytes(), c


def test_round_trip_errors_on_the_fast_path():
    f = random_fills(np.random.default_rng(0), 2, 1, 20, env_major=True)
    f["env"][:] = 0
    f["bar"][:] = np.arange(20)
    f["bar"][7] = 2
    with pytest.raises(ValueError, match="env 0 going back in time"):
        round_trips(f, 2, 1)
    f["bar"][:] = np.arange(20)
    f["env"][3] = 2
    with pytest.raises(ValueError, match=r"n_envs=2"):
        round_trips(f, 2, 1)
