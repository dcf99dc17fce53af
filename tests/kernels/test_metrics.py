"""Tests for kernels/metrics.py, kernels/trades.py and optrader/metrics.py.

* equity_metrics_nb against pandas/numpy on random NaN-padded curves of different lengths, and
  on textbook curves (known drawdown and duration, zero-std Sharpe, doubling CAGR, known VaR);
* the quantile selection against ``np.quantile`` on sorted, reversed, tied and random data;
* exposure_turnover_nb against numpy;
* round trips against a plain-Python FIFO (deques of lots) on random fill sequences with partial
  closes, flips, shorts, several assets and interleaved envs; P&L reconciliation with cash flows;
  hand cases;
* trade_metrics_nb against pandas; the Python layer's columns, params and input errors.
"""

import math
from collections import deque

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.metrics import (
    N_METRICS,
    ZERO_RTOL,
    Metric,
    equity_metrics_nb,
    exposure_turnover_nb,
    quantile_nb,
    trade_metrics_nb,
)
from kernels.trades import QTY_RTOL, round_trips_nb
from optrader.envs.vector import FILL_DTYPE
from optrader.metrics import TRADE_DTYPE, compute_metrics, round_trips, trades_table

SETTINGS = settings(max_examples=150, deadline=None)
NAN = math.nan
EQUITY_COLS = list(range(Metric.TOTAL_RETURN, Metric.CVAR_95 + 1))


# ---- references ----------------------------------------------------------------------------------
def ref_equity_metrics(row, ppy, rf_annual):
    """The equity-curve metrics of one NaN-padded row, with pandas, from the definitions."""
    out = np.full(N_METRICS, NAN)
    e = pd.Series(row).dropna().reset_index(drop=True)
    r = (e / e.shift(1) - 1.0).iloc[1:]
    n = len(r)
    peak = e.cummax()
    under = e < peak
    out[Metric.MAX_DRAWDOWN] = (1.0 - e / peak).max()
    out[Metric.MAX_DD_DURATION] = under.groupby((~under).cumsum()).sum().max()
    if n == 0:
        return out
    growth = e.iloc[-1] / e.iloc[0]
    out[Metric.TOTAL_RETURN] = growth - 1.0
    cagr = growth ** (ppy / n) - 1.0 if growth > 0 else -1.0
    out[Metric.CAGR] = cagr
    if out[Metric.MAX_DRAWDOWN] > 0:
        out[Metric.CALMAR] = cagr / out[Metric.MAX_DRAWDOWN]
    q = np.quantile(r.to_numpy(), 0.05)
    out[Metric.VAR_95] = -q
    out[Metric.CVAR_95] = -r[r <= q].mean()
    if n < 2:
        return out
    rf = (1.0 + rf_annual) ** (1.0 / ppy) - 1.0
    std = r.std(ddof=1)
    tiny = ZERO_RTOL * (r.abs().mean() + abs(rf))
    excess = (r - rf).mean()
    downside = math.sqrt(((r - rf).clip(upper=0.0) ** 2).mean())
    out[Metric.ANN_VOL] = 0.0 if std <= tiny else std * math.sqrt(ppy)
    if std > tiny:
        out[Metric.SHARPE] = excess / std * math.sqrt(ppy)
    if downside > tiny:
        out[Metric.SORTINO] = excess / downside * math.sqrt(ppy)
    return out


def ref_round_trips(fills):
    """FIFO matching with a deque of [fill index, open qty] per (env, asset), written from the
    brief; same dust rule as the kernel. Returns (trades, open lots) as lists of tuples
    (env, asset, side, qty, entry_bar, exit_bar, entry_price, exit_price, pnl, commission)."""
    books = {}
    trades = []
    for k, f in enumerate(fills):
        q = f["qty"]
        if q == 0:
            continue
        book = books.setdefault((f["env"], f["asset"]), deque())
        left = abs(q)
        while left > 0 and book and np.sign(fills[book[0][0]]["qty"]) != np.sign(q):
            lot = book[0]
            o = fills[lot[0]]
            closed = min(lot[1], left)
            if lot[1] - closed <= QTY_RTOL * abs(o["qty"]):
                closed = lot[1]
            side = int(np.sign(o["qty"]))
            fee = closed * o["commission"] / abs(o["qty"]) + closed * f["commission"] / abs(q)
            pnl = side * closed * (f["price"] - o["price"]) - fee
            trades.append((f["env"], f["asset"], side, closed, o["bar"], f["bar"], o["price"],
                           f["price"], pnl, fee))
            left = max(left - closed, 0.0)
            if left <= QTY_RTOL * abs(q):
                left = 0.0
            if closed == lot[1]:
                book.popleft()
            else:
                lot[1] -= closed
        if left > 0:
            book.append([k, left])
    lots = []
    for (env, asset), book in sorted(books.items()):
        for k, rem in book:
            o = fills[k]
            lots.append((env, asset, int(np.sign(o["qty"])), rem, o["bar"], o["price"],
                         rem * o["commission"] / abs(o["qty"])))
    return trades, lots


def ref_trade_metrics(env, pnl, bars, n_envs):
    out = np.full((n_envs, N_METRICS), NAN)
    df = pd.DataFrame({"env": env, "pnl": pnl, "bars": bars})
    for e in range(n_envs):
        t = df[df.env == e]
        wins, losses = t.pnl[t.pnl > 0], t.pnl[t.pnl < 0]
        n = len(t)
        streak = best = 0
        for p in t.pnl:
            streak = streak + 1 if p < 0 else 0
            best = max(best, streak)
        out[e, Metric.N_TRADES] = n
        out[e, Metric.MAX_CONSEC_LOSSES] = best
        if n:
            out[e, Metric.WIN_RATE] = len(wins) / n
            out[e, Metric.EXPECTANCY] = t.pnl.mean()
            out[e, Metric.AVG_TRADE_BARS] = t.bars.mean()
        if len(wins):
            out[e, Metric.AVG_WIN] = wins.mean()
        if len(losses):
            out[e, Metric.AVG_LOSS] = -losses.mean()
            out[e, Metric.PROFIT_FACTOR] = wins.sum() / -losses.sum()
        if len(wins) and len(losses):
            w = len(wins) / n
            out[e, Metric.KELLY] = w - (1 - w) / (wins.mean() / -losses.mean())
    return out


def padded(rows):
    width = max(len(r) for r in rows)
    eq = np.full((len(rows), width), NAN)
    for i, r in enumerate(rows):
        eq[i, :len(r)] = r
    return eq


def kernel_equity(eq, ppy=252.0, rf=0.0):
    out = np.full((eq.shape[0], N_METRICS), -999.0)
    equity_metrics_nb(eq, ppy, rf, out)
    return out


def make_fills(rows):
    f = np.zeros(len(rows), dtype=FILL_DTYPE)
    for j, name in enumerate(("env", "asset", "bar", "qty", "price", "commission")):
        f[name] = [r[j] for r in rows]
    return f


# ---- equity curves -----------------------------------------------------------------------------
returns_st = st.lists(st.one_of(st.just(0.0), st.sampled_from([-0.02, 0.01, 0.03]),
                                st.floats(-0.4, 0.4)), min_size=0, max_size=40)


@SETTINGS
@given(rows=st.lists(st.tuples(st.floats(1.0, 1e4), returns_st), min_size=1, max_size=4),
       ppy=st.sampled_from([1.0, 12.0, 252.0]), rf=st.sampled_from([0.0, 0.03, -0.01]))
def test_equity_metrics_match_pandas(rows, ppy, rf):
    curves = [e0 * np.cumprod(np.r_[1.0, 1.0 + np.array(r)]) for e0, r in rows]
    eq = padded(curves)
    got = kernel_equity(eq, ppy, rf)
    for i in range(eq.shape[0]):
        want = ref_equity_metrics(eq[i], ppy, rf)
        np.testing.assert_allclose(got[i, EQUITY_COLS], want[EQUITY_COLS], rtol=1e-7,
                                   atol=1e-12, equal_nan=True, err_msg=f"env {i}")
    assert (got[:, Metric.WIN_RATE:] == -999.0).all()  # other columns untouched


def test_drawdown_and_duration_textbook():
    eq = np.array([[100.0, 120.0, 90.0, 100.0, 110.0, 130.0, 125.0]])
    m = kernel_equity(eq)[0]
    assert m[Metric.MAX_DRAWDOWN] == pytest.approx(0.25)  # 120 -> 90
    assert m[Metric.MAX_DD_DURATION] == 3  # 90, 100, 110 below 120; 125 below 130 is 1 bar
    assert m[Metric.TOTAL_RETURN] == pytest.approx(0.25)
    assert m[Metric.CALMAR] == pytest.approx(m[Metric.CAGR] / 0.25)
    # a run still under water at the end counts
    m = kernel_equity(np.array([[100.0, 110.0, 100.0, 99.0, 98.0, 97.0]]))[0]
    assert m[Metric.MAX_DD_DURATION] == 4
    assert m[Metric.MAX_DRAWDOWN] == pytest.approx(1 - 97 / 110)


def test_constant_return_has_nan_sharpe_and_doubling_cagr():
    eq = 100.0 * 1.001 ** np.arange(253.0)[None, :]
    m = kernel_equity(eq)[0]
    assert math.isnan(m[Metric.SHARPE])  # zero std (up to rounding)
    assert m[Metric.ANN_VOL] == 0.0
    assert math.isnan(m[Metric.SORTINO])  # no bar below rf = 0
    assert m[Metric.MAX_DRAWDOWN] == 0.0 and math.isnan(m[Metric.CALMAR])
    flat = kernel_equity(np.full((1, 10), 50.0))[0]
    assert math.isnan(flat[Metric.SHARPE]) and flat[Metric.ANN_VOL] == 0.0
    double = 100.0 * 2.0 ** (np.arange(253.0) / 252.0)
    m = kernel_equity(double[None, :], ppy=252.0)[0]
    assert m[Metric.CAGR] == pytest.approx(1.0, rel=1e-12)
    assert m[Metric.TOTAL_RETURN] == pytest.approx(1.0, rel=1e-12)
    # doubling in half a year of bars: CAGR 3 (x4 a year)
    m = kernel_equity(100.0 * 2.0 ** (np.arange(127.0) / 126.0)[None, :], ppy=252.0)[0]
    assert m[Metric.CAGR] == pytest.approx(2.0 ** (252 / 126) - 1.0, rel=1e-12)


def test_var_cvar_known_returns():
    r = np.round(np.arange(-0.10, 0.105, 0.01), 2)  # 21 returns: the 5 % point is the 2nd lowest
    rng = np.random.default_rng(0)
    eq = 100.0 * np.cumprod(np.r_[1.0, 1.0 + rng.permutation(r)])
    m = kernel_equity(eq[None, :])[0]
    assert m[Metric.VAR_95] == pytest.approx(0.09, rel=1e-9)
    assert m[Metric.CVAR_95] == pytest.approx(0.095, rel=1e-9)
    # 10 returns: virtual index 0.45, between the two lowest
    r = np.array([-0.08, -0.03, 0.0, 0.01, 0.02, 0.02, 0.03, 0.04, 0.05, 0.06])
    eq = 100.0 * np.cumprod(np.r_[1.0, 1.0 + r[::-1]])
    m = kernel_equity(eq[None, :])[0]
    assert m[Metric.VAR_95] == pytest.approx(0.08 - 0.45 * 0.05, rel=1e-9)
    assert m[Metric.CVAR_95] == pytest.approx(0.08, rel=1e-9)


def test_short_rows_and_padding():
    eq = padded([[100.0], [100.0, 90.0], [100.0, 110.0, 121.0]])
    m = kernel_equity(eq)
    assert np.isnan(m[0, [Metric.TOTAL_RETURN, Metric.CAGR, Metric.VAR_95, Metric.SHARPE]]).all()
    assert m[0, Metric.MAX_DRAWDOWN] == 0.0 and m[0, Metric.MAX_DD_DURATION] == 0
    assert m[1, Metric.VAR_95] == pytest.approx(0.1) and m[1, Metric.CVAR_95] == pytest.approx(0.1)
    assert np.isnan(m[1, [Metric.ANN_VOL, Metric.SHARPE, Metric.SORTINO]]).all()
    assert m[2, Metric.TOTAL_RETURN] == pytest.approx(0.21)
    wiped = kernel_equity(np.array([[100.0, 50.0, 0.0]]))[0]
    assert wiped[Metric.CAGR] == -1.0 and wiped[Metric.MAX_DRAWDOWN] == 1.0


@pytest.mark.parametrize("kind", ["random", "sorted", "reversed", "equal", "ties", "two"])
def test_quantile_selection_matches_numpy(kind):
    rng = np.random.default_rng(1)
    n = 10_001
    x = {"random": rng.normal(size=n), "sorted": np.sort(rng.normal(size=n)),
         "reversed": np.sort(rng.normal(size=n))[::-1].copy(), "equal": np.full(n, 0.01),
         "ties": rng.integers(-3, 4, n) * 0.01, "two": np.array([0.2, -0.1])}[kind]
    for q in (0.0, 0.05, 0.5, 0.999, 1.0):
        buf = x.copy()
        assert quantile_nb(buf, buf.size, q) == np.quantile(x, q)
        assert np.array_equal(np.sort(buf), np.sort(x))  # reordered, not changed


@SETTINGS
@given(data=st.data(), n_envs=st.integers(1, 4), width=st.integers(1, 30))
def test_exposure_turnover_match_numpy(data, n_envs, width):
    lengths = data.draw(st.lists(st.integers(1, width), min_size=n_envs, max_size=n_envs))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    eq = padded([100.0 * np.cumprod(1 + rng.normal(0, 0.01, n)) for n in lengths])
    gross = np.where(rng.random((n_envs, width - 1)) < 0.5, 0.0, rng.random((n_envs, width - 1)))
    traded = rng.random((n_envs, width - 1)) * 10
    for i, n in enumerate(lengths):  # padding beyond a row's bars must be ignored
        gross[i, n - 1:] = NAN
        traded[i, n - 1:] = NAN
    out = np.full((n_envs, N_METRICS), -999.0)
    exposure_turnover_nb(gross, traded, eq, 252.0, out)
    for i, n in enumerate(lengths):
        t = n - 1
        if t == 0:
            assert np.isnan(out[i, [Metric.EXPOSURE, Metric.TURNOVER]]).all()
            continue
        assert out[i, Metric.EXPOSURE] == pytest.approx(np.mean(gross[i, :t] > 0))
        want = traded[i, :t].sum() / t * 252.0 / eq[i, 1:n].mean()
        assert out[i, Metric.TURNOVER] == pytest.approx(want, rel=1e-12)
    assert (out[:, :Metric.EXPOSURE] == -999.0).all()


# ---- round trips ---------------------------------------------------------------------------------
fill_st = st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2),
                    st.integers(-8, 8).map(lambda q: q * 0.5), st.integers(1, 200),
                    st.sampled_from([0.0, 0.5, 1.25, 3.0]))


def kernel_round_trips(f, n_envs, n_assets):
    """(trades, open lots) of round_trips_nb reading the fields of the records f in place."""
    trades, lots = np.empty(len(f), TRADE_DTYPE), np.empty(len(f), TRADE_DTYPE)
    n_trades, n_open = round_trips_nb(f["env"], f["bar"], f["asset"], f["qty"], f["price"],
                                      f["commission"], n_envs, n_assets, trades, lots)
    return trades[:n_trades], lots[:n_open]


@SETTINGS
@given(rows=st.lists(fill_st, min_size=0, max_size=60))
def test_round_trips_match_python_fifo(rows):
    """Fills of 3 envs x 3 assets interleaved in any order; bars non-decreasing per env."""
    clock = [0, 0, 0]
    seq = []
    for env, asset, step, qty, px, fee in rows:
        clock[env] += step
        seq.append((env, asset, clock[env], qty, float(px), fee))
    f = make_fills(seq) if seq else np.zeros(0, FILL_DTYPE)
    t, o = kernel_round_trips(f, 3, 3)
    want, lots = ref_round_trips(f)
    assert len(t) == len(want) and len(o) == len(lots)
    assert len(t) + len(o) <= len(f)  # each (lot, closing fill) pair exhausts one of them
    for j, (env, asset, side, qty, b0, b1, p0, p1, pnl, fee) in enumerate(want):
        assert tuple(t[["env", "asset", "side", "entry_bar", "exit_bar", "bars"]][j]) == (
            env, asset, side, b0, b1, b1 - b0)
        np.testing.assert_allclose(
            [t[x][j] for x in ("qty", "entry_price", "exit_price", "pnl", "commission", "return")],
            [qty, p0, p1, pnl, fee, pnl / (qty * p0)], rtol=1e-12, atol=1e-9)
    for j, (env, asset, side, qty, b0, p0, fee) in enumerate(lots):
        assert tuple(o[["env", "asset", "side", "entry_bar", "exit_bar", "bars", "exit_fill"]][j]
                     ) == (env, asset, side, b0, -1, -1, -1)
        np.testing.assert_allclose([o[x][j] for x in ("qty", "entry_price", "commission")],
                                   [qty, p0, fee], rtol=1e-12)
        assert np.isnan(o["pnl"][j]) and np.isnan(o["exit_price"][j]) and np.isnan(o["return"][j])
    # reconciliation: closed P&L + open lots marked at 100 = cash flows marked at 100 - costs
    for env in range(3):
        for asset in range(3):
            # fills of qty 0 are skipped: their cost belongs to no trade
            sel = (f["env"] == env) & (f["asset"] == asset) & (f["qty"] != 0.0)
            cash = -(f["qty"][sel] * f["price"][sel]).sum() + f["qty"][sel].sum() * 100.0 \
                - f["commission"][sel].sum()
            t_ea = t[(t["env"] == env) & (t["asset"] == asset)]
            o_ea = o[(o["env"] == env) & (o["asset"] == asset)]
            marked = (o_ea["side"] * o_ea["qty"] * (100.0 - o_ea["entry_price"])
                      - o_ea["commission"])
            booked = t_ea["pnl"].sum() + marked.sum()
            assert booked == pytest.approx(cash, abs=1e-7)


def test_round_trips_hand_cases():
    # buy 10 @100 (fee 1), buy 10 @110 (fee 2), sell 15 @120 (fee 3): two trades, FIFO
    f = make_fills([(0, 0, 0, 10.0, 100.0, 1.0), (0, 0, 1, 10.0, 110.0, 2.0),
                    (0, 0, 2, -15.0, 120.0, 3.0)])
    trades, lots = round_trips(f, 1, 1, return_open=True)
    assert trades.dtype == TRADE_DTYPE and len(trades) == 2
    a, b = trades
    assert (a["side"], a["qty"], a["entry_price"], a["exit_price"]) == (1, 10.0, 100.0, 120.0)
    assert a["commission"] == pytest.approx(1.0 + 3.0 * 10 / 15)
    assert a["pnl"] == pytest.approx(10 * 20 - 3.0) and a["return"] == pytest.approx(197 / 1000)
    assert (a["entry_bar"], a["exit_bar"], a["bars"]) == (0, 2, 2)
    assert (b["qty"], b["entry_price"], b["entry_bar"], b["bars"]) == (5.0, 110.0, 1, 1)
    assert b["commission"] == pytest.approx(2.0 * 5 / 10 + 3.0 * 5 / 15)
    assert b["pnl"] == pytest.approx(5 * 10 - 2.0)
    assert len(lots) == 1 and lots[0]["qty"] == 5.0 and lots[0]["commission"] == 1.0
    assert np.isnan(lots[0]["pnl"]) and lots[0]["exit_bar"] == -1
    # a flip through zero, then a short covered at a profit; another asset and env in between
    f = make_fills([(0, 0, 0, 10.0, 100.0, 0.0), (1, 0, 0, -5.0, 50.0, 0.0),
                    (0, 1, 1, 3.0, 10.0, 0.0), (0, 0, 1, -15.0, 90.0, 1.5),
                    (1, 0, 4, 5.0, 40.0, 0.0), (0, 0, 3, 5.0, 80.0, 0.0)])
    t = round_trips(f, 2, 2)
    assert t[["env", "side"]].tolist() == [(0, 1), (1, -1), (0, -1)]
    assert t["qty"].tolist() == [10.0, 5.0, 5.0]
    assert t["pnl"] == pytest.approx([-100.0 - 1.0, 50.0, 50.0 - 0.5])  # 1.5 split 10:5
    # float dust: 0.1 + 0.2 closed by 0.3 leaves no ghost lot
    f = make_fills([(0, 0, 0, 0.1, 10.0, 0.0), (0, 0, 0, 0.2, 10.0, 0.0),
                    (0, 0, 1, -0.3, 11.0, 0.0), (0, 0, 2, 0.1 + 0.2, 10.0, 0.0),
                    (0, 0, 3, -0.1, 10.0, 0.0), (0, 0, 3, -0.2, 10.0, 0.0)])
    t, lots = round_trips(f, 1, 1, return_open=True)
    assert len(t) == 4 and len(lots) == 0
    assert t["qty"][:2].sum() == pytest.approx(0.3)


@SETTINGS
@given(rows=st.lists(st.tuples(st.integers(0, 3), st.sampled_from([-2.0, 0.0, 1.5])
                               | st.floats(-100, 100).map(lambda x: round(x, 6)),
                               st.integers(0, 50)), max_size=40))
def test_trade_metrics_match_pandas(rows):
    env = np.array([r[0] for r in rows], dtype=np.int64)
    pnl = np.array([r[1] for r in rows], dtype=np.float64)
    bars = np.array([r[2] for r in rows], dtype=np.float64)
    out = np.full((4, N_METRICS), -999.0)
    trade_metrics_nb(env, pnl, bars, 4, out)
    cols = list(range(Metric.WIN_RATE, Metric.MAX_CONSEC_LOSSES + 1))
    np.testing.assert_allclose(out[:, cols], ref_trade_metrics(env, pnl, bars, 4)[:, cols],
                               rtol=1e-9, atol=1e-9, equal_nan=True)
    assert (out[:, :Metric.WIN_RATE] == -999.0).all()


# ---- Python layer --------------------------------------------------------------------------------
def test_compute_metrics_frame_and_params():
    eq = padded([[100.0, 110.0, 99.0, 120.0], [100.0, 90.0]])
    f = make_fills([(0, 0, 0, 1.0, 100.0, 0.0), (0, 0, 2, -1.0, 90.0, 0.0),
                    (1, 0, 0, 1.0, 100.0, 0.0), (1, 0, 1, -1.0, 101.0, 0.0)])
    trades = round_trips(f, 2, 1)
    df = compute_metrics(eq, periods_per_year=252, trades=trades,
                         gross_notional=np.ones((2, 3)), traded_notional=np.ones((2, 3)),
                         params={"commission_bps": [1.0, 5.0], "seed": 7})
    assert list(df.columns[:2]) == ["commission_bps", "seed"]
    assert list(df.columns[2:]) == [m.lower() for m in Metric._fields]
    assert df.index.name == "env" and len(df) == 2
    assert df["n_trades"].tolist() == [1, 1] and df["n_trades"].dtype == np.int64
    assert df.loc[0, "max_consec_losses"] == 1 and df.loc[1, "win_rate"] == 1.0
    assert df.loc[1, "total_return"] == pytest.approx(-0.1)
    assert df["seed"].tolist() == [7, 7]
    only = compute_metrics(eq[0], periods_per_year=252)
    assert "n_trades" not in only.columns and "exposure" not in only.columns
    np.testing.assert_allclose(only.to_numpy(dtype=float)[0],
                               kernel_equity(eq[:1])[0, EQUITY_COLS], equal_nan=True)
    table = trades_table(trades)
    assert table.num_rows == 2 and table.column_names == list(TRADE_DTYPE.names)


@pytest.mark.parametrize("kwargs, match", [
    (dict(equity=[[100.0, NAN, 101.0]]), "padding"),
    (dict(equity=[[0.0, 100.0]]), "initial equity"),
    (dict(equity=[[100.0, -5.0, 10.0]]), "before an env's last"),
    (dict(equity=[[100.0, math.inf]]), "finite"),
    (dict(equity=[["a", "b"]]), "float array"),
    (dict(periods_per_year=0), "periods_per_year"),
    (dict(rf_annual=-1.5), "rf_annual"),
    (dict(gross_notional=np.ones((1, 2))), "both or neither"),
    (dict(gross_notional=np.ones((1, 3)), traded_notional=np.ones((1, 3))), r"shape \(1, 2\)"),
    (dict(gross_notional=-np.ones((1, 2)), traded_notional=np.ones((1, 2))), ">= 0"),
    (dict(params={"a": [1, 2]}), "1 values"),
    (dict(params={"sharpe": 1}), "metric names"),
])
def test_compute_metrics_errors(kwargs, match):
    args = dict(equity=[[100.0, 101.0, 102.0]], periods_per_year=252)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        compute_metrics(args.pop("equity"), **args)


def test_round_trips_errors():
    f = make_fills([(0, 0, 5, 1.0, 100.0, 0.0), (0, 0, 4, -1.0, 100.0, 0.0)])
    with pytest.raises(ValueError, match="execution order"):
        round_trips(f, 1, 1)
    with pytest.raises(ValueError, match="n_assets=1"):
        round_trips(make_fills([(0, 1, 0, 1.0, 100.0, 0.0)]), 1, 1)
    with pytest.raises(ValueError, match="prices > 0"):
        round_trips(make_fills([(0, 0, 0, 1.0, 0.0, 0.0)]), 1, 1)
    with pytest.raises(TypeError, match="missing"):
        round_trips(np.zeros(2, dtype=[("env", "i8")]), 1, 1)
    _, lots = round_trips(make_fills([(0, 0, 0, 1.0, 100.0, 0.0)]), 1, 1, return_open=True)
    with pytest.raises(ValueError, match="open lots"):
        compute_metrics([[100.0, 101.0]], periods_per_year=252, trades=lots)
