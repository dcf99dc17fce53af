"""A whole backtest in one kernel call: every env runs a rule-based strategy (kernels.strategies)
through the fused per-env step, bar after bar, with no Python between bars.

``run_strategy_nb(n_steps, n_chunks, kind, sparams, sstate, equity_out, fills_f, fills_i,
fill_count, <the step's arguments>)``: chunks of envs run in parallel (``prange``), each chunk
through all ``n_steps`` bars on its own thread (envs are independent, so there is no barrier per
bar). Per env and bar: the strategy's weights at close t go into ``action[i]``, then the same
``step_range_nb`` as ``TradingVectorEnv.step`` executes them, so a backtest and an env stepped
from Python with the same weights agree bit for bit.

Outputs: ``equity_out`` float64 (n, n_steps + 1), the equity at the start and after every bar;
``fills_f`` float64 (n, cap, N_RECORD_F) and ``fills_i`` int64 (n, cap, N_RECORD_I), every fill
record of the run in order, and ``fill_count`` int64 (n,) the number of fills each env made
(> cap means the buffer overflowed and the records past cap were not kept); ``exposed`` int64
(n,) and ``traded`` float64 (n,) accumulate as described for the lean path below. With
``reset_start`` = FROZEN a done env (bankrupt, breaker) stays as it ended: its equity curve
continues flat and ``clock[:, STEP]`` tells how many bars it traded.

``run_strategy_lean_nb``: the same backtest for configs without risk rules, working orders or
latency (``optrader.backtest.runner.lean_blockers``), without the parts of the step a backtest
does not read (observations, rewards, episode bookkeeping). Each env runs all its bars in one
pass (env-major, so its bars stay in cache): the strategy's weights for a block of
``LEAN_BLOCK`` bars (``strategy_block_nb``, ``target_weights_rows_nb``), then per bar the step's
own market-order code (``target_units_nb``, ``fill_order_nb``) and marks in the step's order of
operations, so equity and fills equal ``run_strategy_nb``'s bit for bit (tested). Extra outputs
per env: ``exposed`` int64 (n,) bars whose close gross notional was > 0, ``traded`` float64 (n,)
the sum of |qty x price| of its fills, ``steps_out`` int64 (n,) bars traded. ``equity_out``
(n, n_steps + 1) keeps the curve; (n, 2) keeps only the initial and final equity. With
``on_change`` an asset is traded only when its target weight differs from the last one traded (a
signal change), so a held signal keeps its units and the position drifts with the price, like an
order-based backtester; without it every bar rebalances to the target weight, as the env's step
does.

Bars (lean kernel): ``columns`` float64 (C, 5, T, W) and ``tradable`` bool (C, T, W); env i
reads columns[env_column[i]] and its cost series at series[:, :, series_col[i] + a]. With
every env on all assets that is bars[None] (C = 1, W = A); with single-asset envs it is
contiguous one-column copies (``copy_columns_nb``, W = 1), so each env streams its own bars.

Fill records (lean kernel): one ``FILL_DTYPE`` pool (P,) shared by all envs, split into one
region per chunk of ``chunk`` consecutive envs (chunk c owns rows region_start[c] to
region_start[c + 1] - 1, and runs on one thread). The envs of a chunk write their records one
after another: ``fill_start`` int64 (n,) is each env's first row, ``fill_count`` int64 (n,) the
fills it made, all of them; an env's records were all kept iff fill_start + fill_count <= the
end of its region (the caller runs the others again with room). The record's env field is left
to the caller (it knows the env ids of the rows).
"""


import numpy as np
from numba import njit, prange

from kernels.costs import below_min_trade_nb, cap_participation_nb, round_lot_nb
from kernels.enums import (
    Account,
    BarField,
    Clock,
    CostParam,
    FillPrice,
    FillReason,
    OrderType,
    RecordField,
    ReversalSizing,
    SeriesField,
)
from kernels.execution import should_trade_nb
from kernels.fills import fill_costs_nb
from kernels.portfolio import apply_fill_nb, target_units_nb, target_weights_rows_nb
from kernels.step import _RANGE_ARGS, _compile, step_range_nb
from kernels.strategies import strategy_block_nb, strategy_init_nb, strategy_weights_nb

_RUN_SRC = f"""
def _run_strategy(n_steps, n_chunks, kind, sparams, sstate, equity_out, fills_f, fills_i,
                  fill_count, exposed, traded, {_RANGE_ARGS}):
    n = action.shape[0]
    cap = fills_f.shape[1]
    n_chunks = max(1, min(n, n_chunks))
    chunk = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        lo = c * chunk
        hi = min(n, lo + chunk)
        for i in range(lo, hi):
            strategy_init_nb(kind, i, clock[i, BAR], bars, sparams, sstate)
            equity_out[i, 0] = acct[i, EQUITY]
        for k in range(n_steps):
            for i in range(lo, hi):
                strategy_weights_nb(kind, i, clock[i, BAR], bars, sparams, sstate, action)
            step_range_nb(lo, hi, {_RANGE_ARGS})
            for i in range(lo, hi):
                equity_out[i, k + 1] = acct[i, EQUITY]
                if clock[i, STEP] == k + 1:  # it traded this bar (a finished env is frozen)
                    gross = 0.0
                    for a in range(position.shape[1]):
                        gross += abs(position[i, a]) * bars[CLOSE, clock[i, BAR], a]
                    if gross > 0.0:
                        exposed[i] += 1
                for r in range(rec_n[i]):
                    traded[i] += abs(rec_f[i, r, QTY] * rec_f[i, r, PRICE])
                    m = fill_count[i]
                    if m < cap:
                        for q in range(fills_f.shape[2]):
                            fills_f[i, m, q] = rec_f[i, r, q]
                        for q in range(fills_i.shape[2]):
                            fills_i[i, m, q] = rec_i[i, r, q]
                    fill_count[i] = m + 1
                rec_n[i] = 0
    return 0
"""
BAR = Clock.BAR
STEP = Clock.STEP
EQUITY = Account.EQUITY
CLOSE = BarField.CLOSE
QTY = RecordField.QTY
PRICE = RecordField.PRICE
exec(compile(_RUN_SRC, __file__, "exec"), globals())  # a real file name: Numba caches by it
_run_strategy = globals()["_run_strategy"]
_USED_BY_GENERATED = (np, prange, step_range_nb, strategy_init_nb, strategy_weights_nb)

run_strategy_nb = _compile(_run_strategy, "run_strategy_nb", parallel=False)
run_strategy_par_nb = _compile(_run_strategy, "run_strategy_par_nb", parallel=True)


# ---- lean path ----------------------------------------------------------------------------------


LEAN_BLOCK = 256  # bars of target weights computed per strategy call (a (256, A) scratch)


@njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def run_strategy_lean_nb(chunk, kind, sparams, sstate, start, n_steps, columns, env_column, series,
                         series_col, tradable, cost_params, slippage_model, commission_model,
                         fill_mode, max_leverage, lot_size, allow_short, initial_cash,
                         bankrupt_fraction, on_change, last_w, position, avg_px, events,
                         equity_out, pool, region_start, fill_start, fill_count, exposed, traded,
                         steps_out):
    """Every env from bar ``start`` for ``n_steps`` bars; see the module docstring."""
    n = position.shape[0]
    for c in prange(region_start.shape[0] - 1):
        weights = np.empty((LEAN_BLOCK, position.shape[1]))  # one scratch per chunk
        cursor = region_start[c]
        end = region_start[c + 1]
        for i in range(c * chunk, min(n, c * chunk + chunk)):
            fill_start[i] = cursor
            _lean_env_nb(i, kind, sparams, sstate, start, n_steps, columns[env_column[i]],
                         series, series_col[i], tradable[env_column[i]], cost_params,
                         slippage_model, commission_model, fill_mode, max_leverage, lot_size,
                         allow_short, initial_cash, bankrupt_fraction, on_change, weights,
                         last_w, position, avg_px, events, equity_out, pool, end,
                         fill_start, fill_count, exposed, traded, steps_out)
            cursor = min(end, cursor + fill_count[i])
    return 0


@njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def copy_columns_nb(bars, tradable, assets, out_bars, out_tradable):
    """Single-asset contiguous copies of the columns ``assets`` int64 (k,) of bars float64
    (F, T, A) and tradable bool (T, A): out_bars[j] (F, T, 1) and out_tradable[j] (T, 1) are
    asset assets[j] (out arrays of >= k rows)."""
    n_fields, n_bars = bars.shape[0], bars.shape[1]
    k = assets.shape[0]
    block = 4096  # bars per task: each row bars[f, t, :] is read once for all k assets
    for b in prange((n_bars + block - 1) // block):
        for t in range(b * block, min(n_bars, b * block + block)):
            for j in range(k):
                out_tradable[j, t, 0] = tradable[t, assets[j]]
            for f in range(n_fields):
                for j in range(k):
                    out_bars[j, f, t, 0] = bars[f, t, assets[j]]


@njit(cache=True, nogil=True, error_model="numpy")
def compact_records_nb(pool, src_start, count, dst_start):
    """Move count[e] records from pool[src_start[e]:] to pool[dst_start[e]:] for each e in
    order; safe in place when dst_start[e] <= src_start[e] and the destinations are ascending
    (each move goes down, front to back)."""
    for e in range(count.shape[0]):
        s = src_start[e]
        d = dst_start[e]
        if s != d:
            for m in range(count[e]):
                pool[d + m] = pool[s + m]


# Per-bar cost is the point of this kernel, so its bar loop calls no inlined function that takes
# arrays: Numba keeps an atomic reference-count increment and decrement of each array argument
# around every such call when the function has loops or branches (4-8 of them per bar tripled the
# cost of a bar, ~20 per fill made fills 5x dearer). The strategy runs a block of bars per call;
# fills and marks are written out here around the scalar kernels the step uses (fill_costs_nb,
# apply_fill_nb, target_units_nb, the participation cap and minimum trade value).
@njit(cache=True, nogil=True, error_model="numpy")
def _lean_env_nb(i, kind, sparams, sstate, start, n_steps, bars, series, series_col, tradable,
                 cost_params,
                 slippage_model, commission_model, fill_mode, max_leverage, lot_size, allow_short,
                 initial_cash, bankrupt_fraction, on_change, weights, last_w, position, avg_px,
                 events, equity_out, pool, pool_end, fill_start, fill_count, exposed,
                 traded, steps_out):
    n_assets = position.shape[1]
    ref_field = BarField.OPEN if fill_mode == FillPrice.NEXT_OPEN else BarField.CLOSE
    next_open = fill_mode == FillPrice.NEXT_OPEN
    keep_curve = equity_out.shape[1] == n_steps + 1
    borrow = cost_params[i, CostParam.BORROW_PER_BAR]
    cash_rate = cost_params[i, CostParam.CASH_RATE_PER_BAR]
    max_part = cost_params[i, CostParam.MAX_PARTICIPATION]
    reversal_cash = cost_params[i, CostParam.REVERSAL] == ReversalSizing.CASH
    min_value = cost_params[i, CostParam.MIN_TRADE_VALUE]
    slip_bps = cost_params[i, CostParam.SLIPPAGE_BPS]
    half_spread = cost_params[i, CostParam.HALF_SPREAD_BPS]
    impact = cost_params[i, CostParam.IMPACT_COEF]
    fee_bps = cost_params[i, CostParam.COMMISSION_BPS]
    maker_bps = cost_params[i, CostParam.MAKER_BPS]
    taker_bps = cost_params[i, CostParam.TAKER_BPS]
    per_share = cost_params[i, CostParam.PER_SHARE]
    min_fee = cost_params[i, CostParam.MIN_COMMISSION]
    strategy_init_nb(kind, i, start, bars, sparams, sstate)
    for a in range(n_assets):
        position[i, a] = 0.0
        avg_px[i, a] = 0.0
        last_w[i, a] = np.nan  # the first decision always trades
    cash = initial_cash
    equity = initial_cash
    equity_out[i, 0] = equity
    held = 0
    notional = 0.0
    steps = n_steps
    fill_count[i] = 0
    for b0 in range(0, n_steps, LEAN_BLOCK):
        nb = min(LEAN_BLOCK, n_steps - b0)
        strategy_block_nb(kind, i, start + b0, nb, bars, sparams, sstate, weights, 0)
        target_weights_rows_nb(weights, nb, max_leverage)
        for kk in range(nb):
            k = b0 + kk
            t = start + k
            f = t + 1
            ref_t = f if next_open else t
            equity_ref = cash  # equity_at_nb at the reference price
            for a in range(n_assets):
                equity_ref += position[i, a] * bars[ref_field, ref_t, a]
            for a in range(n_assets):
                w = weights[kk, a]
                if on_change and w == last_w[i, a]:
                    continue  # the signal holds: keep the position (it drifts with the price)
                ref_px = bars[ref_field, ref_t, a]
                units = target_units_nb(w, equity_ref, ref_px, lot_size)
                if units < 0.0 and not allow_short:  # allowed_units_nb
                    events[i, FillReason.SHORT_BLOCKED] += 1
                    units = 0.0
                if reversal_cash and units * position[i, a] < 0.0:
                    # equity_after_close_nb: the old side's closing costs come off first
                    _, c_fee, c_slip = fill_costs_nb(
                        -position[i, a], ref_px, OrderType.MARKET, slippage_model,
                        commission_model, slip_bps, half_spread,
                        series[SeriesField.SPREAD_BPS, ref_t, series_col + a],
                        bars[BarField.VOLUME, ref_t, a],
                        series[SeriesField.AVG_VOLUME, t, series_col + a],
                        series[SeriesField.SIGMA, t, series_col + a], impact, fee_bps,
                        maker_bps, taker_bps, per_share, min_fee)
                    units = target_units_nb(w, equity_ref - c_fee - c_slip, ref_px, lot_size)
                qty = units - position[i, a]
                if not should_trade_nb(qty, units):
                    last_w[i, a] = w
                    continue
                if not tradable[ref_t, a]:
                    events[i, FillReason.NOT_TRADABLE] += 1
                    continue  # no bar to fill on: the order lapses and is retried next bar
                volume = bars[BarField.VOLUME, ref_t, a]
                if max_part <= 1.0 and not volume > 0.0:
                    events[i, FillReason.NO_VOLUME] += 1
                    continue  # capped and nobody traded: like no bar, retried next bar
                last_w[i, a] = w
                # fill_order_nb: the participation cap, the minimum trade value, then
                # execute_fill_nb's prices, costs and booking (a market order, no stops to arm)
                if max_part <= 1.0:  # inf: no cap
                    capped = round_lot_nb(cap_participation_nb(qty, volume, max_part), lot_size)
                    if capped != qty:
                        events[i, FillReason.PARTIAL] += 1
                    qty = capped
                    if qty == 0.0:
                        continue
                if below_min_trade_nb(qty, ref_px, min_value):
                    events[i, FillReason.MIN_TRADE] += 1
                    continue
                px, fee, slip_cost = fill_costs_nb(
                    qty, ref_px, OrderType.MARKET, slippage_model, commission_model, slip_bps,
                    half_spread, series[SeriesField.SPREAD_BPS, ref_t, series_col + a],
                    bars[BarField.VOLUME, ref_t, a],
                    series[SeriesField.AVG_VOLUME, t, series_col + a],
                    series[SeriesField.SIGMA, t, series_col + a], impact, fee_bps, maker_bps,
                    taker_bps,
                    per_share, min_fee)
                new_pos, new_avg, realized = apply_fill_nb(position[i, a], avg_px[i, a], qty, px)
                position[i, a] = new_pos
                avg_px[i, a] = new_avg
                cash += -(qty * px + fee)
                notional += abs(qty * px)
                m = fill_start[i] + fill_count[i]
                if m < pool_end:
                    r = pool[m]
                    r.bar = ref_t
                    r.asset = a
                    r.side = 1 if qty > 0.0 else (-1 if qty < 0.0 else 0)
                    r.qty = qty
                    r.price = px
                    r.commission = fee
                    r.slippage = slip_cost
                    r.order_type = OrderType.MARKET
                    r.reason = FillReason.SIGNAL
                fill_count[i] += 1
            # carry over bar f, exactly as the step does
            gross = 0.0
            for a in range(n_assets):
                if borrow > 0.0 and position[i, a] < 0.0:
                    cash -= -position[i, a] * bars[BarField.CLOSE, f, a] * borrow
                gross += abs(position[i, a]) * bars[BarField.CLOSE, f, a]
            cash += cash * cash_rate
            equity = cash  # equity_at_nb at the close of bar f
            for a in range(n_assets):
                equity += position[i, a] * bars[BarField.CLOSE, f, a]
            if gross > 0.0:
                held += 1
            if keep_curve:
                equity_out[i, k + 1] = equity
            if equity <= bankrupt_fraction * initial_cash or equity <= 0.0:
                steps = k + 1
                break
        if steps < n_steps:
            break
    if not keep_curve:
        equity_out[i, equity_out.shape[1] - 1] = equity
    exposed[i] = held
    traded[i] = notional
    steps_out[i] = steps
