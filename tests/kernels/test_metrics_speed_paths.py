"""The fast paths of kernels/metrics.py, kernels/trades.py and optrader/metrics.py give the plain
paths' results bit for bit.

The references below are the plain implementations the fast ones replaced, kept here verbatim in
substance: the Hoare selection with its scalar scans, the one-row equity kernel (which sums the
tail and the dispersions in the order the selection leaves the returns in, so the selection's
exact swaps are part of the results), the one-chain exposure sums, the numpy equity checks, and
round trips from contiguous column copies checked with numpy, matched by the FIFO kernel with one
lot per fill into (m, 8) int64 / (m, 6) float64 buffers after a counting pass, then one numpy
copy per record field (the matcher now reads the records' fields in place and writes records).
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
    _min_nb,
    equity_defects_nb,
    equity_defects_par_nb,
    equity_metrics_nb,
    equity_metrics_par_nb,
    exposure_turnover_sums_nb,
    exposure_turnover_sums_par_nb,
    quantile_nb,
    select_nb,
    trade_metrics_nb,
)
from kernels.trades import QTY_RTOL, FillDefect, fill_defects_nb, round_trips_nb
from optrader.envs.vector import FILL_DTYPE
from optrader.metrics import (
    METRIC_NAMES,
    TRADE_DTYPE,
    compute_metrics,
    exposure_turnover,
    round_trips,
)

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


# columns of the plain matcher's buffers: int64 (m, 8) and float64 (m, 6)
ENV, ASSET, SIDE, ENTRY_BAR, EXIT_BAR, BARS, ENTRY_FILL, EXIT_FILL = range(8)
QTY, ENTRY_PRICE, EXIT_PRICE, PNL, RETURN, COMMISSION = range(6)


@njit(error_model="numpy")
def ref_fifo_nb(env, bar, asset, qty, price, cost, n_envs, n_assets, write, trade_i, trade_f,
                open_i, open_f):
    n_fills = qty.shape[0]
    lot_rem = np.zeros(n_fills)
    lot_next = np.full(n_fills, -1, dtype=np.int64)
    head = np.full(n_envs * n_assets, -1, dtype=np.int64)
    tail = np.full(n_envs * n_assets, -1, dtype=np.int64)
    m = 0
    for k in range(n_fills):
        q = qty[k]
        if q == 0.0:
            continue
        key = env[k] * n_assets + asset[k]
        left = abs(q)
        dust = QTY_RTOL * left
        h = head[key]
        while left > 0.0 and h >= 0 and (qty[h] > 0.0) != (q > 0.0):
            rem = lot_rem[h]
            closed = min(rem, left)
            if rem - closed <= QTY_RTOL * abs(qty[h]):
                closed = rem
            if write:
                side = 1 if qty[h] > 0.0 else -1
                fee = closed * (cost[h] / abs(qty[h]) + cost[k] / abs(q))
                pnl = side * closed * (price[k] - price[h]) - fee
                trade_i[m, ENV] = env[k]
                trade_i[m, ASSET] = asset[k]
                trade_i[m, SIDE] = side
                trade_i[m, ENTRY_BAR] = bar[h]
                trade_i[m, EXIT_BAR] = bar[k]
                trade_i[m, BARS] = bar[k] - bar[h]
                trade_i[m, ENTRY_FILL] = h
                trade_i[m, EXIT_FILL] = k
                trade_f[m, QTY] = closed
                trade_f[m, ENTRY_PRICE] = price[h]
                trade_f[m, EXIT_PRICE] = price[k]
                trade_f[m, PNL] = pnl
                trade_f[m, RETURN] = pnl / (closed * price[h])
                trade_f[m, COMMISSION] = fee
            m += 1
            left = max(left - closed, 0.0)
            if left <= dust:
                left = 0.0
            if closed == rem:
                lot_rem[h] = 0.0
                h = lot_next[h]
                head[key] = h
                if h < 0:
                    tail[key] = -1
            else:
                lot_rem[h] = rem - closed
        if left > 0.0:
            lot_rem[k] = left
            if tail[key] >= 0:
                lot_next[tail[key]] = k
            else:
                head[key] = k
            tail[key] = k
    n_open = 0
    for key in range(n_envs * n_assets):
        h = head[key]
        while h >= 0:
            if write:
                rem = lot_rem[h]
                open_i[n_open, ENV] = env[h]
                open_i[n_open, ASSET] = asset[h]
                open_i[n_open, SIDE] = 1 if qty[h] > 0.0 else -1
                open_i[n_open, ENTRY_BAR] = bar[h]
                open_i[n_open, EXIT_BAR] = -1
                open_i[n_open, BARS] = -1
                open_i[n_open, ENTRY_FILL] = h
                open_i[n_open, EXIT_FILL] = -1
                open_f[n_open, QTY] = rem
                open_f[n_open, ENTRY_PRICE] = price[h]
                open_f[n_open, EXIT_PRICE] = np.nan
                open_f[n_open, PNL] = np.nan
                open_f[n_open, RETURN] = np.nan
                open_f[n_open, COMMISSION] = rem * cost[h] / abs(qty[h])
            n_open += 1
            h = lot_next[h]
    return m, n_open


def ref_fill_columns(fills):
    f = np.asarray(fills)
    env, bar, asset = (np.ascontiguousarray(f[x], dtype=np.int64) for x in ("env", "bar", "asset"))
    qty, price, cost = (np.ascontiguousarray(f[x], dtype=np.float64)
                        for x in ("qty", "price", "commission"))
    if "fee" in f.dtype.names:
        cost = cost + f["fee"]
    return env, bar, asset, qty, price, cost


def ref_fill_error(fills, n_envs, n_assets):
    """The message of the numpy checks of the fill values, or None if they pass."""
    env, bar, asset, qty, price, cost = ref_fill_columns(fills)
    for x, a, limit, hi in (("env", env, "n_envs", n_envs),
                            ("asset", asset, "n_assets", n_assets)):
        if a.size and (a.min() < 0 or a.max() >= hi):
            return (f"fills[{x!r}]: expected ids in [0, {hi - 1}] ({limit}={hi}), got values in "
                    f"[{a.min()}, {a.max()}]")
    if bar.size and bar.min() < 0:
        return f"fills['bar']: expected bars >= 0, got {bar.min()}"
    for x, a in (("qty", qty), ("commission", cost)):
        if not np.isfinite(a).all():
            return (f"fills[{x!r}]: expected finite values, got NaN or inf at rows "
                    f"{np.nonzero(~np.isfinite(a))[0][:10].tolist()}")
    bad = ~(np.isfinite(price) & (price > 0.0))
    if bad.any():
        return (f"fills['price']: expected finite prices > 0, got {price[bad][0]!r} at rows "
                f"{np.nonzero(bad)[0][:10].tolist()}")
    if (env[1:] >= env[:-1]).all():
        env_sorted, bar_sorted = env, bar
    else:
        order = np.argsort(env, kind="stable")
        env_sorted, bar_sorted = env[order], bar[order]
    back = (np.diff(bar_sorted) < 0) & (np.diff(env_sorted) == 0)
    if back.any():
        e = env_sorted[1:][back][0]
        return (f"fills: expected each env's fills in execution order (bars non-decreasing), "
                f"got env {e} going back in time")
    return None


def ref_fill_defects(fills, n_envs, n_assets):
    """FillDefect bits of the fills, kind by kind with numpy."""
    env, bar, asset, qty, price, cost = ref_fill_columns(fills)
    bits = 0
    bits |= FillDefect.ENV * bool(((env < 0) | (env >= n_envs)).any())
    bits |= FillDefect.ASSET * bool(((asset < 0) | (asset >= n_assets)).any())
    bits |= FillDefect.BAR * bool((bar < 0).any())
    bits |= FillDefect.QTY * bool((~np.isfinite(qty)).any())
    bits |= FillDefect.COST * bool((~np.isfinite(cost)).any())
    bits |= FillDefect.PRICE * bool((~(np.isfinite(price) & (price > 0.0))).any())
    ok = (env >= 0) & (env < n_envs)
    order = np.argsort(env[ok], kind="stable")
    e, b = env[ok][order], bar[ok][order]
    bits |= FillDefect.ORDER * bool(((np.diff(b) < 0) & (np.diff(e) == 0)).any())
    return bits


def ref_round_trips(fills, n_envs, n_assets):
    """round_trips as it was: column copies, the numpy checks, a counting pass of the plain
    matcher, the matching into buffers, then one numpy copy per record field. Returns (trades,
    open lots)."""
    assert ref_fill_error(fills, n_envs, n_assets) is None
    cols = ref_fill_columns(fills)
    empty_i, empty_f = np.empty((0, 8), np.int64), np.empty((0, 6))
    m, n_open = ref_fifo_nb(*cols, n_envs, n_assets, False, empty_i, empty_f, empty_i, empty_f)
    ti, tf = np.empty((m, 8), np.int64), np.empty((m, 6))
    oi, of = np.empty((n_open, 8), np.int64), np.empty((n_open, 6))
    ref_fifo_nb(*cols, n_envs, n_assets, True, ti, tf, oi, of)
    int_cols = dict(env=ENV, asset=ASSET, side=SIDE, entry_bar=ENTRY_BAR, exit_bar=EXIT_BAR,
                    bars=BARS, entry_fill=ENTRY_FILL, exit_fill=EXIT_FILL)
    float_cols = dict(qty=QTY, entry_price=ENTRY_PRICE, exit_price=EXIT_PRICE, pnl=PNL,
                      commission=COMMISSION)
    float_cols["return"] = RETURN

    def records(ti, tf):
        out = np.empty(ti.shape[0], dtype=TRADE_DTYPE)
        for name in TRADE_DTYPE.names:
            out[name] = ti[:, int_cols[name]] if name in int_cols else tf[:, float_cols[name]]
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
FEE_DTYPE = np.dtype({"names": [*FILL_DTYPE.names, "fee"],
                      "formats": [FILL_DTYPE[x] for x in FILL_DTYPE.names] + ["f4"],
                      "aligned": True})
"""FILL_DTYPE plus a fee field: the column path (cost = commission + fee)."""


def random_fills(rng, n_envs, n_assets, m, *, env_major, dtype=FILL_DTYPE):
    """Whole, half and tenth units of either sign (zero-qty fills, fills through zero)."""
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


def dusty_fills(rng, n_envs, n_assets, m, *, env_major, dtype=FILL_DTYPE):
    """Sizes that are sums of tenths and thirds: float dust left in lots and fills, besides
    zero-qty fills and fills through zero."""
    f = random_fills(rng, n_envs, n_assets, m, env_major=env_major, dtype=dtype)
    units = np.array([0.1, 0.2, 0.3, 0.1 + 0.2, 0.7, 1 / 3, 2 / 3, 0.0])
    f["qty"] = rng.choice(units, m) * rng.choice([-3.0, -1.0, 1.0, 3.0], m)
    return f


def kernel_round_trips(columns, n_envs, n_assets):
    m = columns[0].shape[0]
    trades, lots = np.empty(m, TRADE_DTYPE), np.empty(m, TRADE_DTYPE)
    n_trades, n_open = round_trips_nb(*columns, n_envs, n_assets, trades, lots)
    return trades[:n_trades], lots[:n_open]


@pytest.mark.parametrize("make", [random_fills, dusty_fills])
@pytest.mark.parametrize("env_major", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_round_trips_identical_to_the_plain_path(make, env_major, seed):
    """The records' fields read in place, the same fields as contiguous columns, and the plain
    path: the same trades and open lots, bit for bit."""
    rng = np.random.default_rng(seed)
    for n_envs, n_assets, m in ((1, 1, 0), (1, 1, 1), (3, 2, 40), (7, 3, 3000), (2, 4, 3000)):
        f = make(rng, n_envs, n_assets, m, env_major=env_major)
        want_t, want_o = ref_round_trips(f, n_envs, n_assets)
        direct = om._fill_columns(f)
        assert all(np.shares_memory(c, f) for c in direct) or m == 0  # no copies
        got_t, got_o = round_trips(f, n_envs, n_assets, return_open=True)
        assert same_records(got_t, want_t) and same_records(got_o, want_o)
        assert same_records(round_trips(f, n_envs, n_assets), want_t)
        col_t, col_o = kernel_round_trips(ref_fill_columns(f), n_envs, n_assets)
        assert same_records(col_t, want_t) and same_records(col_o, want_o)
        assert got_t.base is None and got_o.base is None  # trimmed in place, not views


def test_round_trips_of_other_record_layouts():
    """A fee field, other integer and float widths, an unaligned layout and a big-endian field
    (converted to contiguous columns): the same trades."""
    rng = np.random.default_rng(9)
    layouts = [
        FEE_DTYPE,
        np.dtype([("env", "i4"), ("bar", "i8"), ("asset", "u2"), ("qty", "f8"),
                  ("price", "f4"), ("commission", "f8"), ("fee", "f8")]),
        np.dtype([("bar", "i8"), ("env", "i8"), ("asset", "i8"), ("qty", "f8"),
                  ("price", "f8"), ("commission", "f8"), ("tag", "i1")], align=False),
        np.dtype([("tag", "i1"), ("env", "i8"), ("bar", "i8"), ("asset", "i8"), ("qty", "f8"),
                  ("price", "f8"), ("commission", "f8")], align=False),
        np.dtype([("env", ">i8"), ("bar", "i8"), ("asset", "i8"), ("qty", "f8"),
                  ("price", "f8"), ("commission", "f8")]),
        np.dtype([("env", "i8"), ("bar", "i8"), ("asset", "i8"), ("qty", "f8"),
                  ("price", "f8"), ("commission", "f8"), ("note", "U4")]),
    ]
    for make in (random_fills, dusty_fills):
        base = make(rng, 4, 2, 500, env_major=False)
        for dtype in layouts:
            f = np.zeros(base.shape[0], dtype=dtype)
            for name in dtype.names:
                if name in base.dtype.names:
                    f[name] = base[name]
            if "fee" in dtype.names:
                f["fee"] = rng.choice([0.0, 0.25, 0.1], f.shape[0])
            want_t, want_o = ref_round_trips(f, 4, 2)
            got_t, got_o = round_trips(f, 4, 2, return_open=True)
            assert same_records(got_t, want_t) and same_records(got_o, want_o), dtype
    # a strided view of records: read in place too
    f = random_fills(rng, 3, 2, 1000, env_major=True)[::2]
    want_t, want_o = ref_round_trips(f, 3, 2)
    got_t, got_o = round_trips(f, 3, 2, return_open=True)
    assert same_records(got_t, want_t) and same_records(got_o, want_o)


def test_open_lots_reuse_slots_in_fifo_order():
    """Many lots open at once on interleaved (env, asset) queues, closed in pieces and reopened:
    a freed slot is reused without disturbing any queue's order."""
    rng = np.random.default_rng(4)
    m = 4000
    f = random_fills(rng, 3, 3, m, env_major=False)
    # long runs of one side per queue: deep queues, then closes that free many slots
    f["qty"] = np.abs(f["qty"]) * np.where((np.arange(m) // 300) % 2 == 0, 1.0, -1.3)
    want_t, want_o = ref_round_trips(f, 3, 3)
    got_t, got_o = round_trips(f, 3, 3, return_open=True)
    assert len(want_o) > 50 and len(want_t) > 1000
    assert same_records(got_t, want_t) and same_records(got_o, want_o)


def inject(f, rng, kind):
    """Put one defect of kind (a FillDefect field name) into a copy of the fills f."""
    f = f.copy()
    j = int(rng.integers(0, len(f)))
    if kind == "ENV":
        f["env"][j] = rng.choice([-1, 50])
    elif kind == "ASSET":
        f["asset"][j] = rng.choice([-2, 9])
    elif kind == "BAR":
        f["bar"][j] = -3
    elif kind == "QTY":
        f["qty"][j] = rng.choice([np.nan, np.inf, -np.inf])
    elif kind == "COST":
        f["fee" if "fee" in f.dtype.names else "commission"][j] = rng.choice([np.nan, np.inf])
    elif kind == "PRICE":
        f["price"][j] = rng.choice([0.0, -1.0, np.nan, np.inf])
    elif kind == "ORDER":  # past the env's next fill (none: no defect)
        later = np.nonzero((f["env"] == f["env"][j]) & (np.arange(len(f)) > j))[0]
        if later.size:
            f["bar"][j] = f["bar"][later[0]] + 1
    return f


@pytest.mark.parametrize("env_major", [True, False])
def test_fill_defect_bits_match_numpy(env_major):
    rng = np.random.default_rng(5)
    for trial in range(60):
        dtype = FEE_DTYPE if trial % 3 == 0 else FILL_DTYPE
        f = random_fills(rng, 4, 3, 300, env_major=env_major, dtype=dtype)
        for kind in rng.choice(FillDefect._fields, int(rng.integers(0, 4)), replace=False):
            f = inject(f, rng, kind)
        got = fill_defects_nb(*om._fill_columns(f), 4, 3)
        assert got == ref_fill_defects(f, 4, 3), trial
        assert (got == 0) == (ref_fill_error(f, 4, 3) is None)


@pytest.mark.parametrize("dtype", [FILL_DTYPE, FEE_DTYPE, np.dtype(
    [("env", ">i8"), ("bar", "i4"), ("asset", "i8"), ("qty", "f8"), ("price", "f4"),
     ("commission", "f8")])], ids=["direct", "fee", "converted"])
@pytest.mark.parametrize("env_major", [True, False])
def test_each_fill_error_fires_with_the_plain_message(dtype, env_major):
    """Each kind of defect alone and several at once: the message of the numpy checks."""
    rng = np.random.default_rng(6)
    for trial in range(50):
        f = random_fills(rng, 4, 3, 200, env_major=env_major, dtype=dtype)
        kinds = ([FillDefect._fields[trial % len(FillDefect._fields)]] if trial < 28 else
                 rng.choice(FillDefect._fields, int(rng.integers(2, 5)), replace=False))
        for kind in kinds:
            f = inject(f, rng, kind)
        want = ref_fill_error(f, 4, 3)
        if want is None:  # an ORDER injection with no later fill of the env
            assert same_records(round_trips(f, 4, 3), ref_round_trips(f, 4, 3)[0])
            continue
        with pytest.raises(ValueError) as err:
            round_trips(f, 4, 3)
        assert str(err.value) == want, (trial, kinds)


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
    # interleaved envs, both going back: the lower env id is named
    f = random_fills(np.random.default_rng(1), 3, 1, 30, env_major=False)
    f["env"][:] = np.arange(30) % 3
    f["bar"][:] = np.arange(30) // 3
    f["bar"][14] = 0  # env 2 goes back first (row 14, bar 4 -> 0)
    f["bar"][22] = 0  # env 1 later (row 22, bar 6 -> 0)
    with pytest.raises(ValueError, match="got env 1 going back in time"):
        round_trips(f, 3, 1)


# ---- trade metrics -------------------------------------------------------------------------------
def test_trade_metrics_from_records_identical():
    """compute_metrics' trade columns read in place from the records and from contiguous copies
    (bars as float64, the plain path), in several layouts."""
    rng = np.random.default_rng(2)
    f = random_fills(rng, 5, 2, 2000, env_major=True)
    trades = round_trips(f, 5, 2)
    eq = random_curves(rng, 5, 30, pad=False)
    got = compute_metrics(eq, periods_per_year=252, trades=trades)
    env, pnl, bars = (np.ascontiguousarray(trades[x], dtype=t)
                      for x, t in (("env", np.int64), ("pnl", np.float64), ("bars", np.float64)))
    out = np.full((5, N_METRICS), NAN)
    assert trade_metrics_nb(env, pnl, bars, 5, out) == 0
    cols = [METRIC_NAMES[c] for c in range(Metric.WIN_RATE, Metric.MAX_CONSEC_LOSSES + 1)]
    plain = out[:, Metric.WIN_RATE:Metric.MAX_CONSEC_LOSSES + 1]
    for j, c in enumerate(cols):
        want = plain[:, j].astype(got[c].dtype)
        assert got[c].to_numpy().tobytes() == want.tobytes(), c
    for layout in ([("env", "i8"), ("pnl", "f8"), ("bars", "i8"), ("note", "U2")],
                   [("env", "i4"), ("pnl", "f4"), ("bars", "f8")],
                   [("bars", "u2"), ("env", ">i8"), ("pnl", "f8")]):
        other = np.zeros(trades.shape[0], dtype=layout)
        for name in ("env", "pnl", "bars"):
            other[name] = trades[name]
        if other.dtype["pnl"] == np.float32:
            other["pnl"] = np.round(trades["pnl"])  # exact in float32 and float64
            trades_f = trades.copy()
            trades_f["pnl"] = other["pnl"]
            want = compute_metrics(eq, periods_per_year=252, trades=trades_f)
        else:
            want = got
        have = compute_metrics(eq, periods_per_year=252, trades=other)
        for c in want.columns:
            assert have[c].to_numpy().tobytes() == want[c].to_numpy().tobytes(), (layout, c)


@pytest.mark.parametrize("layout", [TRADE_DTYPE, np.dtype([("env", "i4"), ("pnl", "f8"),
                                                           ("bars", "f8")])])
def test_trade_errors_with_the_plain_messages(layout):
    rng = np.random.default_rng(3)
    trades = round_trips(random_fills(rng, 3, 1, 200, env_major=False), 3, 1)
    t = np.zeros(trades.shape[0], dtype=layout)
    for name in ("env", "pnl", "bars"):
        t[name] = trades[name]
    eq = random_curves(rng, 3, 20, pad=False)
    bad_env = t.copy()
    bad_env["env"][[4, 9]] = [-1, 3]
    with pytest.raises(ValueError) as err:
        compute_metrics(eq, periods_per_year=252, trades=bad_env)
    assert str(err.value) == ("trades['env']: expected env ids in [0, 2] (one row of equity per "
                              "env), got values in [-1, 3]")
    bad_pnl = t.copy()
    bad_pnl["pnl"][7] = np.nan
    with pytest.raises(ValueError, match=r"^trades\['pnl'\]: expected finite values \(closed "):
        compute_metrics(eq, periods_per_year=252, trades=bad_pnl)
    bad_pnl["env"][0] = 5  # both: the env error first, as before
    with pytest.raises(ValueError, match=r"^trades\['env'\]"):
        compute_metrics(eq, periods_per_year=252, trades=bad_pnl)
