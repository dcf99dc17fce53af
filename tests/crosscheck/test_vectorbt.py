"""optrader's SMA-crossover backtests against vectorbt, trade by trade (docs/crosscheck.md).

One synthetic daily GBM series, one env per (fast, slow) pair, each compared with its own
vectorbt column. vectorbt's inputs are built from pandas rolling means of the close, never from
our fills. How the conventions are mapped (why: docs/crosscheck.md):

* fills at the decision bar's close: ``execution.fill_price=close``; vectorbt's default order
  price is the close of the signal's bar;
* decisions on bars START..T-2 only: our batch decides first at its longest slow window and only
  marks the last bar, so vectorbt's signals are masked outside that range;
* state signals: entries where SMA_fast > SMA_slow and exits elsewhere (vectorbt ignores an
  entry while in a position), which is our state rule, first bar included;
* all-cash entry: vectorbt buys cash / (close (1 + s) (1 + f)) units, our weight
  w = 1 / ((1 + s) (1 + f)) (``env.max_leverage``) buys the same;
* holding: vectorbt keeps its units, and so does ``rebalance="on_change"``; with
  ``"every_bar"`` the target weight re-sizes to w x equity every bar, an order of
  (1 - w) x equity that ``execution.min_trade_value`` skips;
* long/short: ``from_signals`` sizes a short differently, so with costs only the trades' bars,
  sides and prices line up (sizes too at zero cost); re-targeting a weight is checked against
  ``Portfolio.from_orders`` with target-percent sizing, order by order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import optrader
from optrader.backtest import run_strategy
from optrader.metrics import round_trips

vbt = pytest.importorskip("vectorbt")

N_BARS = 2500
PAIRS = np.array([[5, 20], [10, 30], [3, 60], [20, 50], [15, 40], [30, 60], [8, 21]])
N = len(PAIRS)
START = int(PAIRS[:, 1].max())  # the batch's first decision: its longest slow window of history
CASH = 100_000.0
RTOL = 1e-9
COSTS = [pytest.param(0.0, 0.0, id="zero_cost"),
         pytest.param(10.0, 5.0, id="fees_10bps_slippage_5bps"),
         pytest.param(2.0, 25.0, id="fees_2bps_slippage_25bps")]
CLOSED, OPEN = 1, 0  # vectorbt TradeStatus
LONG = 0  # vectorbt TradeDirection (1: short)
BUY = 0  # vectorbt OrderSide (1: sell)


def gbm_bars(n_bars: int, seed: int) -> pd.DataFrame:
    """Business-day OHLCV bars: a GBM close (5 %/yr drift, 25 %/yr volatility) with an open,
    high and low consistent with it (low <= open, close <= high)."""
    rng = np.random.default_rng(seed)
    dt, mu, sigma = 1.0 / 252.0, 0.05, 0.25
    log_ret = (mu - 0.5 * sigma**2) * dt + sigma * np.sqrt(dt) * rng.standard_normal(n_bars)
    close = 100.0 * np.exp(np.cumsum(log_ret))
    open_ = np.r_[100.0, close[:-1]] * np.exp(0.002 * rng.standard_normal(n_bars))
    high = np.maximum(open_, close) * np.exp(np.abs(0.004 * rng.standard_normal(n_bars)))
    low = np.minimum(open_, close) * np.exp(-np.abs(0.004 * rng.standard_normal(n_bars)))
    index = pd.date_range("2010-01-04", periods=n_bars, freq="B", tz="UTC")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                         "volume": rng.lognormal(13.0, 0.3, n_bars)}, index=index)


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return gbm_bars(N_BARS, seed=3)


@pytest.fixture(scope="module")
def up(bars) -> np.ndarray:
    """bool (T, N): SMA_fast > SMA_slow of the close for each pair (pandas rolling means)."""
    close = bars["close"]
    fast = np.column_stack([close.rolling(int(w)).mean() for w in PAIRS[:, 0]])
    slow = np.column_stack([close.rolling(int(w)).mean() for w in PAIRS[:, 1]])
    # our running sums and pandas' rolling means differ by rounding; the engines agree on the
    # signal only if no decision bar is a near-tie
    gap = np.abs(fast - slow)[START:-1] / close.to_numpy()[START:-1, None]
    assert gap.min() > 1e-9, f"an SMA near-tie ({gap.min():.1e} of the close): change the seed"
    up = fast > slow
    # the first decision bar must put some pairs in (state rule) and leave others out
    assert 0 < up[START].sum() < N
    return up


def on_decision_bars(x: np.ndarray, fill) -> np.ndarray:
    """x with the rows outside the decision bars START..T-2 set to ``fill``."""
    out = np.array(x, dtype=np.result_type(x, fill))
    out[:START] = fill
    out[-1] = fill  # the last bar is only marked to market
    return out


def backtest(bars: pd.DataFrame, overrides: list[str], long_only: bool,
             rebalance: str = "on_change"):
    """Our SMA_CROSS over every pair, orders filled at the decision bar's close."""
    cfg = optrader.compose("backtest", [
        "observation.window=2", "data.split.use=all", "execution.record_fills=true",
        "execution.fill_price=close", "execution.slippage_model=fixed",
        "execution.half_spread_bps=0", f"env.initial_cash={CASH}",
        "execution.max_participation=null", *overrides])  # vectorbt has no volume cap
    env = optrader.make_vec(cfg, num_envs=N, data=bars, parallel=False)
    params = np.column_stack([PAIRS, np.full(N, float(long_only)), np.zeros(N)]).astype(float)
    res = run_strategy(env, "sma_cross", params, rebalance=rebalance)
    assert res.start_bar == START
    assert (res.steps == N_BARS - 1 - START).all(), "an env stopped early"
    return res


def assert_close(what: str, ours, theirs, scale=None) -> None:
    """|ours - theirs| <= RTOL x scale everywhere (scale: |theirs|)."""
    ours = np.asarray(ours, dtype=float)
    theirs = np.asarray(theirs, dtype=float)
    assert ours.shape == theirs.shape, f"{what}: ours {ours.shape}, vectorbt {theirs.shape}"
    scale = np.abs(theirs) if scale is None else np.asarray(scale, dtype=float)
    err = np.abs(ours - theirs) / scale
    worst = int(np.argmax(err)) if err.size else 0
    assert err.size == 0 or err.max() <= RTOL, (
        f"{what}: relative error {err.flat[worst]:.2e} > {RTOL:.0e} at {worst} "
        f"(ours {ours.flat[worst]!r}, vectorbt {theirs.flat[worst]!r})")


def counts(env_ids) -> list[int]:
    return np.bincount(env_ids, minlength=N).tolist()


def assert_equity_matches(res, pf) -> None:
    """Our equity at every close START.. against vectorbt's value. Ours is marked before the
    order decided at that close and vectorbt's after it, so the costs of our fills there
    (commission and slippage, from our records) come off ours first."""
    costs = np.zeros_like(res.equity)
    f = res.fills
    np.add.at(costs, (f["env"], f["bar"] - START), f["commission"] + f["slippage"])
    assert_close("equity", res.equity - costs, pf.value().to_numpy()[START:].T)
    assert_close("final equity", res.equity[:, -1], pf.final_value().to_numpy())


def assert_trades_match(res, pf, sizes: bool = True) -> None:
    """Our FIFO round trips against vectorbt's exit trades, per env in entry order: closed and
    open counts, sides, bars and prices; with ``sizes`` also size, fees, pnl and return."""
    closed, open_lots = round_trips(res.fills, N, 1, return_open=True)
    closed = closed[np.lexsort((closed["entry_bar"], closed["env"]))]
    open_lots = open_lots[np.lexsort((open_lots["entry_bar"], open_lots["env"]))]
    records = pf.trades.records_arr
    records = records[np.lexsort((records["entry_idx"], records["col"]))]
    theirs = records[records["status"] == CLOSED]
    theirs_open = records[records["status"] == OPEN]
    assert counts(closed["env"]) == counts(theirs["col"])
    assert counts(open_lots["env"]) == counts(theirs_open["col"])
    assert min(counts(closed["env"])) >= 10, "too few trades to compare"
    assert open_lots.size > 0, "no position open at the end: nothing to compare there"
    for ours, their in ((closed, theirs), (open_lots, theirs_open)):
        np.testing.assert_array_equal(ours["side"], np.where(their["direction"] == LONG, 1, -1))
        np.testing.assert_array_equal(ours["entry_bar"], their["entry_idx"])
        assert_close("entry price", ours["entry_price"], their["entry_price"])
    np.testing.assert_array_equal(closed["exit_bar"], theirs["exit_idx"])
    assert_close("exit price", closed["exit_price"], theirs["exit_price"])
    if not sizes:
        return
    notional = theirs["size"] * theirs["entry_price"]
    assert_close("trade size", closed["qty"], theirs["size"])
    assert_close("trade fees", closed["commission"], theirs["entry_fees"] + theirs["exit_fees"],
                 scale=notional)
    assert_close("trade pnl", closed["pnl"], theirs["pnl"], scale=notional)
    assert_close("trade return", closed["return"], theirs["return"], scale=1.0)
    assert_close("open size", open_lots["qty"], theirs_open["size"])
    assert_close("open entry fees", open_lots["commission"], theirs_open["entry_fees"],
                 scale=theirs_open["size"] * theirs_open["entry_price"])


@pytest.mark.parametrize("rebalance", ["on_change", "every_bar"])
@pytest.mark.parametrize(("fee_bps", "slip_bps"), COSTS)
def test_long_only_trades_and_equity_match_vectorbt_from_signals(bars, up, fee_bps, slip_bps,
                                                                 rebalance):
    fees, slippage = fee_bps * 1e-4, slip_bps * 1e-4
    weight = 1.0 / ((1.0 + slippage) * (1.0 + fees))
    # every_bar re-sizes a held weight below 1 to weight x equity each bar, an order of
    # (1 - weight) x equity that vectorbt never sends: min_trade_value skips it
    min_trade = 0.05 * CASH if weight < 1.0 and rebalance == "every_bar" else 0.0
    res = backtest(bars, [f"execution.commission_bps={fee_bps}",
                          f"execution.slippage_bps={slip_bps}", f"env.max_leverage={weight!r}",
                          f"execution.min_trade_value={min_trade}",
                          "execution.allow_short=false"], long_only=True, rebalance=rebalance)
    pf = vbt.Portfolio.from_signals(bars["close"], entries=on_decision_bars(up, False),
                                    exits=on_decision_bars(~up, False), fees=fees,
                                    slippage=slippage, init_cash=CASH, freq="1D",
                                    raise_reject=True)
    if min_trade:
        # at every equity level seen, the skipped re-sizing is below the threshold and every
        # entry or exit (~ the whole equity) far above it
        value = pf.value().to_numpy()
        assert 2.0 * (1.0 - weight) * value.max() < min_trade < 0.5 * value.min()
    assert_equity_matches(res, pf)
    assert_trades_match(res, pf)
    assert (pf.trades.records_arr["direction"] == LONG).all()


def test_zero_cost_equity_is_cash_compounded_by_the_held_bars_in_both_engines(bars, up):
    """Without costs, an all-in long position earns close[t+1] / close[t] over every bar t it
    holds: equity = CASH x the product of those ratios, from the signals alone."""
    res = backtest(bars, ["execution.commission_bps=0", "execution.slippage_bps=0",
                          "execution.allow_short=false"], long_only=True)
    pf = vbt.Portfolio.from_signals(bars["close"], entries=on_decision_bars(up, False),
                                    exits=on_decision_bars(~up, False), init_cash=CASH,
                                    freq="1D", raise_reject=True)
    close = bars["close"].to_numpy()
    growth = np.where(up[START:-1], (close[START + 1:] / close[START:-1])[:, None], 1.0)
    expected = CASH * np.vstack([np.ones((1, N)), np.cumprod(growth, axis=0)])  # (T - START, N)
    np.testing.assert_allclose(res.equity, expected.T, rtol=1e-12, atol=0)
    np.testing.assert_allclose(pf.value().to_numpy()[START:], expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize(("fee_bps", "slip_bps"), COSTS)
def test_long_short_reversals_match_vectorbt_from_signals(bars, up, fee_bps, slip_bps):
    """Long/short on signal changes against vectorbt's long and short entries (a reversal in one
    order). Every trade's side, bars and prices agree; sizes, pnl and equity only without
    costs: vectorbt sizes a short (and a reversal) from its net cash, not from a weight of
    equity (docs/crosscheck.md)."""
    fees, slippage = fee_bps * 1e-4, slip_bps * 1e-4
    weight = 1.0 / ((1.0 + slippage) * (1.0 + fees))  # the long side's all-cash weight
    res = backtest(bars, [f"execution.commission_bps={fee_bps}",
                          f"execution.slippage_bps={slip_bps}", f"env.max_leverage={weight!r}",
                          "execution.allow_short=true"], long_only=False)
    pf = vbt.Portfolio.from_signals(bars["close"], entries=on_decision_bars(up, False),
                                    short_entries=on_decision_bars(~up, False), fees=fees,
                                    slippage=slippage, init_cash=CASH, freq="1D",
                                    raise_reject=True)
    sides = pf.trades.records_arr["direction"]
    assert (sides == LONG).any() and (sides != LONG).any()
    zero_cost = fees == slippage == 0.0
    assert_trades_match(res, pf, sizes=zero_cost)
    if zero_cost:
        assert_equity_matches(res, pf)


@pytest.mark.parametrize("fee_bps", [0.0, 10.0, 30.0])
def test_reversal_cash_matches_vectorbt_from_signals_with_fees(bars, up, fee_bps):
    """``execution.reversal=cash`` closes the old side first and sizes the new one from what is
    left, as vectorbt's reversal does: without slippage one weight, 1 / (1 + f), is vectorbt's
    all-cash size for longs and shorts alike, so sizes, fees, pnl and equity all agree."""
    fees = fee_bps * 1e-4
    weight = 1.0 / (1.0 + fees)
    res = backtest(bars, [f"execution.commission_bps={fee_bps}", "execution.slippage_bps=0",
                          f"env.max_leverage={weight!r}", "execution.allow_short=true",
                          "execution.reversal=cash"], long_only=False)
    pf = vbt.Portfolio.from_signals(bars["close"], entries=on_decision_bars(up, False),
                                    short_entries=on_decision_bars(~up, False), fees=fees,
                                    init_cash=CASH, freq="1D", raise_reject=True)
    sides = pf.trades.records_arr["direction"]
    assert (sides == LONG).any() and (sides != LONG).any()
    assert_trades_match(res, pf, sizes=True)
    assert_equity_matches(res, pf)


@pytest.mark.parametrize("rebalance", ["on_change", "every_bar"])
def test_long_short_orders_and_equity_match_vectorbt_target_percent_orders(bars, up, rebalance):
    """Long/short with costs: both engines target +-weight of the equity at the decision close,
    on signal changes (on_change) or every bar, re-sizing a held position too; each order must
    agree."""
    fees, slippage, weight = 10e-4, 5e-4, 0.5
    res = backtest(bars, ["execution.commission_bps=10", "execution.slippage_bps=5",
                          f"env.max_leverage={weight}", "execution.allow_short=true"],
                   long_only=False, rebalance=rebalance)
    target = on_decision_bars(np.where(up, weight, -weight), np.nan)  # NaN: no order
    if rebalance == "on_change":
        target[START + 1:] = np.where(target[START + 1:] == target[START:-1], np.nan,
                                      target[START + 1:])
    pf = vbt.Portfolio.from_orders(bars["close"], size=target, size_type="targetpercent",
                                   fees=fees, slippage=slippage, init_cash=CASH, freq="1D",
                                   raise_reject=True)
    theirs = pf.orders.records_arr
    theirs = theirs[np.lexsort((theirs["idx"], theirs["col"]))]
    ours = res.fills[np.lexsort((res.fills["bar"], res.fills["env"]))]
    assert counts(ours["env"]) == counts(theirs["col"])
    np.testing.assert_array_equal(ours["bar"], theirs["idx"])
    signed = np.where(theirs["side"] == BUY, theirs["size"], -theirs["size"])
    position = np.zeros_like(signed)  # vectorbt's position after each order
    for i in range(N):
        position[theirs["col"] == i] = np.cumsum(signed[theirs["col"] == i])
        side = np.sign(position[theirs["col"] == i])
        assert (side[1:] != side[:-1]).sum() >= 10, f"env {i}: too few reversals to compare"
    # a re-sizing order can be tiny next to the position it adjusts: errors are relative to the
    # larger of the two
    scale = np.maximum(np.abs(signed), np.abs(position))
    assert_close("order size", ours["qty"], signed, scale=scale)
    assert_close("fill price", ours["price"], theirs["price"])
    assert_close("order fees", ours["commission"], theirs["fees"],
                 scale=fees * scale * theirs["price"])
    assert_equity_matches(res, pf)
