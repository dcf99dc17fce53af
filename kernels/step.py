"""The fused batched step: one call advances every env by one bar (``prange`` over envs).

Shapes (n envs, A assets, T bars, F features, D observation size):
  action float (n, A) raw actions in [-1, 1] (discrete actions are mapped to levels first);
  bars float64 (5, T, A) open/high/low/close/volume; series float64 (N_SERIES, T, A) causal
  load-time estimates (enums.SeriesField: average volume, volatility, ATR, spread); features float32 (T * A * F,), the C-order
  flattening of (T, A, F), so a window is one contiguous run;
  acct float64 (n, N_ACCOUNT), env-major so one env's book is one cache line (enums.Account);
  position, avg_px float64 (n, A) units and currency; clock int64 (n, N_CLOCK);
  rng uint64 (n,); cost_params float64 (n, N_COST_PARAM);
  reward_weights float64 (N_REWARDS,); target float64 (n, A) scratch for target weights;
  obs, final_obs float32 (n, D); reward float64 (n,); terminated, truncated bool (n,);
  final_acct, final_position, final_clock: the done envs' state before a same-step reset;
  reset_start int64 (n,): the bar an autoreset env starts at, -1 for a random one (data mode),
  FROZEN (-2) to keep a done env as it ended (backtests);
  tradable bool (T, A): False where an asset has no bar (union alignment): no order fills, no
  stop triggers and no forced close there; its position is carried at the (flat) last price.

Simulation mode (``sim_step_envs_nb``): every env first generates its next bar into its own
segment of bars/series/features (``kernels.sim_rows``), or a fresh path when it autoresets, then
the same per-env body runs; a same-step reset gets its fresh path right after the step.

Timing (no look-ahead): env i stands at bar t = clock[i, BAR], closed. The action becomes target
weights; the order fills at open t+1 (``FillPrice.NEXT_OPEN``) or close t (``FillPrice.CLOSE``)
for the quantity that holds the weight at that reference price; the book is marked at close t+1;
the reward compares equity at close t+1 with equity at close t; the observation is of bar t+1.

Autoreset: with ``same_step`` False (Gymnasium NEXT_STEP) a done env is flagged and reset on its
next step, which ignores the action and returns the reset observation with reward 0 and no
flags. With ``same_step`` True the final observation is copied to ``final_obs`` and the env is
reset in the same step.

The custom reward is the module global ``custom_reward_nb``; ``optrader`` rebinds it in a copy
of this function to fuse user rewards (see ``optrader.envs.kernel_cache``).
"""

import inspect
import types

import numpy as np
from numba import njit, prange

from kernels.costs import below_min_trade_nb, cap_participation_nb, round_lot_nb
from kernels.enums import (
    NO_ORDER,
    Account,
    BarField,
    Clock,
    CostParam,
    FillPrice,
    FillReason,
    Halt,
    OrderType,
    RecordInt,
    ReversalSizing,
    RewardId,
    RiskParam,
    SeriesField,
    SimClock,
    SizingRule,
    StepStatus,
    StopKind,
    WorkingOrder,
)
from kernels.execution import should_trade_nb
from kernels.features import write_observation_nb
from kernels.fills import equity_after_close_nb, execute_fill_nb, flatten_env_nb
from kernels.orders import order_expired_nb, order_fill_nb, order_price_nb
from kernels.portfolio import equity_at_nb, target_units_nb, target_weights_nb
from kernels.reward import (
    composite_reward_nb,
    differential_sharpe_nb,
    log_return_nb,
    pnl_nb,
    zero_reward_nb,
)
from kernels.risk import size_weight_nb, stop_exit_nb, stop_levels_nb, update_trail_ref_nb
from kernels.rng import randint_nb
from kernels.sim_rows import sim_advance_nb, sim_restart_nb

custom_reward_nb = zero_reward_nb
FROZEN = -2  # reset_start value: a done env is not reset but stays as it ended (backtests)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def reset_env_nb(i, start, bars, features, acct, position, avg_px, clock, rng, obs, events,
                 orders, first_bar, last_start, window, initial_cash, portfolio_obs, clip):
    """Start env i's episode at bar ``start``, or at a random bar in [first_bar, last_start]
    when start < 0, and write its obs."""
    t = start if start >= 0 else randint_nb(rng, i, first_bar, last_start)
    for c in range(acct.shape[1]):
        acct[i, c] = 0.0
    acct[i, Account.CASH] = initial_cash
    acct[i, Account.EQUITY] = initial_cash
    acct[i, Account.PEAK] = initial_cash
    acct[i, Account.DAY_EQUITY] = initial_cash
    for r in range(events.shape[1]):
        events[i, r] = 0
    for a in range(orders.shape[1]):
        orders[i, a, WorkingOrder.TYPE] = NO_ORDER
    for a in range(position.shape[1]):
        position[i, a] = 0.0
        avg_px[i, a] = 0.0
    clock[i, Clock.BAR] = t
    clock[i, Clock.START] = t
    clock[i, Clock.STEP] = 0
    clock[i, Clock.NEEDS_RESET] = 0
    clock[i, Clock.HALT] = Halt.NONE
    write_observation_nb(features, features.shape[0] // bars.shape[1], t, window, i, position,
                         avg_px, bars, acct, 1.0, portfolio_obs, clip, obs)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def allowed_units_nb(i, weight, equity, px, lot_size, allow_short, events):
    """Units that hold ``weight`` at ``px``; with shorting off a short target becomes flat and
    counts a SHORT_BLOCKED event (for market, limit and stop orders alike)."""
    units = target_units_nb(weight, equity, px, lot_size)
    if units < 0.0 and not allow_short:
        events[i, FillReason.SHORT_BLOCKED] += 1
        return 0.0
    return units


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def fill_order_nb(i, a, qty, ref_px, fill_t, decision_t, order_type, bars, series, cost_params,
                slippage_model, commission_model, acct, position, avg_px, trail_ref, events,
                record, rec_f, rec_i, rec_n, lot_size, cash, cost):
    """An agent order after the participation cap and minimum trade value; returns the new
    (cash, cost). A cap of inf is no cap (``execution.max_participation: null``); with a cap a
    bar that traded no volume fills nothing (a NO_VOLUME event)."""
    max_part = cost_params[i, CostParam.MAX_PARTICIPATION]
    if max_part <= 1.0:
        volume = bars[BarField.VOLUME, fill_t, a]
        if not volume > 0.0:  # zero or NaN: nobody traded, so neither can the agent
            events[i, FillReason.NO_VOLUME] += 1
            return cash, cost
        capped = round_lot_nb(cap_participation_nb(qty, volume, max_part), lot_size)
        if capped != qty:
            events[i, FillReason.PARTIAL] += 1
        qty = capped
        if qty == 0.0:
            return cash, cost
    if below_min_trade_nb(qty, ref_px, cost_params[i, CostParam.MIN_TRADE_VALUE]):
        events[i, FillReason.MIN_TRADE] += 1
        return cash, cost
    d_cash, d_cost = execute_fill_nb(i, a, qty, ref_px, fill_t, decision_t, order_type,
                                     FillReason.SIGNAL, bars, series, cost_params,
                                     slippage_model, commission_model, acct, position, avg_px,
                                     trail_ref, record, rec_f, rec_i, rec_n)
    return cash + d_cash, cost + d_cost


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _value_except(position, i, skip, bars, t):
    """Value at bar t's open of env i's positions other than asset ``skip``."""
    v = 0.0
    for a in range(position.shape[1]):
        if a != skip:
            v += position[i, a] * bars[BarField.OPEN, t, a]
    return v


def _reset_envs(mask, starts, bars, features, acct, position, avg_px, clock, rng, obs, events,
                orders, first_bar, last_start, window, initial_cash, portfolio_obs, clip):
    """Reset every env whose mask is True, at starts[i] (or a random bar where it is < 0)."""
    for i in prange(mask.shape[0]):
        if mask[i]:
            reset_env_nb(i, starts[i], bars, features, acct, position, avg_px, clock, rng, obs,
                         events, orders, first_bar, last_start, window, initial_cash, portfolio_obs, clip)


def _step_range(lo, hi, action, bars, features, series, acct, position, avg_px, clock, rng,
                cost_params, reward_weights, target, obs, reward, terminated, truncated,
                final_obs, final_acct, final_position, final_clock, first_bar, last_start,
                last_bar, episode_length, window, max_leverage, initial_cash, bankrupt_fraction,
                lot_size, fill_mode, dsr_eta, reward_scale, portfolio_obs, clip, same_step,
                slippage_model, commission_model, allow_short, risk_params, day, trail_ref,
                events, rec_f, rec_i, rec_n, sizing_rule, sl_kind, tp_kind, trail_kind,
                drawdown_halts, periods_per_year, record, order_sel, default_order_type, latency,
                ring_w, ring_type, orders, order_offset_bps, time_in_force, reset_start,
                tradable):
    """Advance envs lo..hi-1 one bar (actions already validated); return how many are done."""
    n_assets = action.shape[1]
    row_size = features.shape[0] // bars.shape[1]  # A * F floats per bar in the flat features
    n_done = 0
    # agent orders are all market orders unless configured or chosen otherwise (hoisted test)
    all_market = default_order_type == OrderType.MARKET and order_sel[lo, 0] < 0
    for i in range(lo, hi):
        if record:
            rec_n[i] = 0  # records describe this step only
        if clock[i, Clock.NEEDS_RESET] != 0:
            if reset_start[i] == FROZEN:
                continue  # a finished backtest env keeps its final state (kernels.backtest)
            reset_env_nb(i, reset_start[i], bars, features, acct, position, avg_px, clock, rng,
                         obs, events, orders, first_bar, last_start, window, initial_cash,
                         portfolio_obs, clip)
            reward[i] = 0.0
            terminated[i] = False
            truncated[i] = False
            acct[i, Account.COST] = 0.0
            continue

        t = clock[i, Clock.BAR]
        f = t + 1  # the bar on which the order fills (at its open) and the book is marked
        ref_t = f if fill_mode == FillPrice.NEXT_OPEN else t
        ref_field = BarField.OPEN if fill_mode == FillPrice.NEXT_OPEN else BarField.CLOSE
        equity_prev = acct[i, Account.EQUITY]
        drawdown_prev = acct[i, Account.DRAWDOWN]

        halt = clock[i, Clock.HALT]
        if risk_params[i, RiskParam.MAX_DAILY_LOSS] > 0.0 and day[f] != day[t]:
            acct[i, Account.DAY_EQUITY] = equity_prev  # bar f opens a new trading day
            if halt == Halt.DAY:
                halt = Halt.NONE

        gross = target_weights_nb(action, i, max_leverage, target)
        if halt != Halt.NONE:
            for a in range(n_assets):
                target[i, a] = 0.0
            gross = 0.0
        elif sizing_rule != SizingRule.DIRECT or risk_params[i, RiskParam.MAX_WEIGHT] < max_leverage:
            gross = 0.0
            for a in range(n_assets):
                w = target[i, a]
                sized = size_weight_nb(sizing_rule, w, series[SeriesField.SIGMA, t, a],
                                       series[SeriesField.RET_MEAN, t, a],
                                       risk_params[i, RiskParam.FRACTION],
                                       risk_params[i, RiskParam.TARGET_VOL],
                                       risk_params[i, RiskParam.KELLY_FRACTION], periods_per_year,
                                       risk_params[i, RiskParam.MAX_WEIGHT])
                if sizing_rule == SizingRule.DIRECT and sized != w:
                    events[i, FillReason.MAX_WEIGHT] += 1
                target[i, a] = sized
                gross += abs(sized)
            if gross > max_leverage:
                for a in range(n_assets):
                    target[i, a] *= max_leverage / gross
                gross = max_leverage

        # latency: the decision enters env i's ring; the one made `latency` steps ago leaves it
        submitted = True
        sub = 0
        if ring_w.shape[1] > 1:
            n_slots = ring_w.shape[1]
            k = clock[i, Clock.STEP]
            slot = k % n_slots
            for a in range(n_assets):
                ring_w[i, slot, a] = target[i, a]
                ring_type[i, slot, a] = order_sel[i, a] if order_sel[i, a] >= 0 \
                    else default_order_type
            if k >= latency[i]:
                sub = (k - latency[i]) % n_slots
            else:
                submitted = False
        equity_ref = equity_at_nb(acct[i, Account.CASH], position, i, bars, ref_field, ref_t)
        reversal_cash = cost_params[i, CostParam.REVERSAL] == ReversalSizing.CASH
        cash = acct[i, Account.CASH]
        cost = 0.0
        for a in range(n_assets):
            if not submitted:
                break
            if ring_w.shape[1] > 1:
                w = ring_w[i, sub, a]
                otype = ring_type[i, sub, a]
            else:
                w = target[i, a]
                otype = OrderType.MARKET
                if not all_market:
                    otype = order_sel[i, a] if order_sel[i, a] >= 0 else default_order_type
            if halt != Halt.NONE:
                w = 0.0
            ref_px = bars[ref_field, ref_t, a]
            if otype != OrderType.MARKET:
                # a new limit/stop order replaces whatever was working, priced off the close
                # of the bar it was decided on
                units = allowed_units_nb(i, w, equity_prev, bars[BarField.CLOSE, t, a], lot_size,
                                       allow_short, events)
                side = units - position[i, a]
                if not should_trade_nb(side, units):
                    orders[i, a, WorkingOrder.TYPE] = NO_ORDER
                    continue
                side = 1.0 if side > 0.0 else -1.0
                if (orders[i, a, WorkingOrder.TYPE] == otype
                        and orders[i, a, WorkingOrder.SIDE] == side
                        and orders[i, a, WorkingOrder.WEIGHT] == w):
                    continue  # the same order again: keep it working (its age and price)
                orders[i, a, WorkingOrder.TYPE] = otype
                orders[i, a, WorkingOrder.SIDE] = side
                orders[i, a, WorkingOrder.PRICE] = order_price_nb(
                    otype, side, bars[BarField.CLOSE, t - (latency[i] if ring_w.shape[1] > 1
                                                          else 0), a], order_offset_bps)
                orders[i, a, WorkingOrder.WEIGHT] = w
                orders[i, a, WorkingOrder.AGE] = 0.0
                continue
            orders[i, a, WorkingOrder.TYPE] = NO_ORDER  # a market order cancels a working one
            units = allowed_units_nb(i, w, equity_ref, ref_px, lot_size, allow_short, events)
            if reversal_cash and units * position[i, a] < 0.0:
                # close the old side first: the new one is sized from what that leaves
                units = target_units_nb(w, equity_after_close_nb(
                    i, a, equity_ref, ref_px, ref_t, t, OrderType.MARKET, bars, series,
                    cost_params, slippage_model, commission_model, position), ref_px, lot_size)
            qty = units - position[i, a]
            if not should_trade_nb(qty, units):
                continue
            if not tradable[ref_t, a]:
                events[i, FillReason.NOT_TRADABLE] += 1  # no bar to fill on: the order lapses
                continue
            cash, cost = fill_order_nb(i, a, qty, ref_px, ref_t, t, OrderType.MARKET, bars,
                                     series, cost_params, slippage_model, commission_model,
                                     acct, position, avg_px, trail_ref, events, record, rec_f,
                                     rec_i, rec_n, lot_size, cash, cost)

        # working limit/stop orders against bar f's range (gaps fill at the open)
        if not all_market:
            for a in range(n_assets):
                otype = orders[i, a, WorkingOrder.TYPE]
                if otype == NO_ORDER:
                    continue
                if order_expired_nb(orders[i, a, WorkingOrder.AGE], time_in_force):
                    orders[i, a, WorkingOrder.TYPE] = NO_ORDER
                    events[i, FillReason.EXPIRED] += 1
                    continue
                if not tradable[f, a]:
                    orders[i, a, WorkingOrder.AGE] += 1.0  # no bar: the order keeps waiting
                    continue
                side = orders[i, a, WorkingOrder.SIDE]
                px = order_fill_nb(otype, side, orders[i, a, WorkingOrder.PRICE],
                                   bars[BarField.OPEN, f, a], bars[BarField.HIGH, f, a],
                                   bars[BarField.LOW, f, a])
                if px != px:  # NaN: not reached in this bar
                    orders[i, a, WorkingOrder.AGE] += 1.0
                    continue
                orders[i, a, WorkingOrder.TYPE] = NO_ORDER  # filled (a remainder is cancelled)
                w = orders[i, a, WorkingOrder.WEIGHT]
                equity_px = cash + _value_except(position, i, a, bars, f) + position[i, a] * px
                units = target_units_nb(w, equity_px, px, lot_size)
                if reversal_cash and units * position[i, a] < 0.0:
                    units = target_units_nb(w, equity_after_close_nb(
                        i, a, equity_px, px, f, t, otype, bars, series, cost_params,
                        slippage_model, commission_model, position), px, lot_size)
                qty = units - position[i, a]
                if qty * side <= 0.0 or not should_trade_nb(qty, units):
                    continue
                cash, cost = fill_order_nb(i, a, qty, px, f, t, otype, bars, series, cost_params,
                                         slippage_model, commission_model, acct, position,
                                         avg_px, trail_ref, events, record, rec_f, rec_i, rec_n,
                                         lot_size, cash, cost)

        # stops inside bar f, on the position held after the fills (gaps exit at the open)
        if sl_kind != StopKind.NONE or tp_kind != StopKind.NONE or trail_kind != StopKind.NONE:
            for a in range(n_assets):
                pos = position[i, a]
                if pos == 0.0 or not tradable[f, a]:
                    continue
                side = 1.0 if pos > 0.0 else -1.0
                stop_px, take_px, trail_px = stop_levels_nb(
                    side, avg_px[i, a], trail_ref[i, a], series[SeriesField.ATR, t, a], sl_kind,
                    risk_params[i, RiskParam.SL_VALUE], tp_kind,
                    risk_params[i, RiskParam.TP_VALUE], trail_kind,
                    risk_params[i, RiskParam.TRAIL_VALUE])
                exit_px, reason = stop_exit_nb(side, stop_px, take_px, trail_px,
                                               bars[BarField.OPEN, f, a],
                                               bars[BarField.HIGH, f, a],
                                               bars[BarField.LOW, f, a])
                if reason != FillReason.NONE:
                    d_cash, d_cost = execute_fill_nb(i, a, -pos, exit_px, f, t, OrderType.STOP,
                                                     reason, bars, series, cost_params,
                                                     slippage_model, commission_model, acct,
                                                     position, avg_px, trail_ref, record, rec_f,
                                                     rec_i, rec_n)
                    position[i, a] = 0.0
                    cash += d_cash
                    cost += d_cost
                    events[i, reason] += 1
                else:
                    trail_ref[i, a] = update_trail_ref_nb(side, trail_ref[i, a],
                                                          bars[BarField.HIGH, f, a],
                                                          bars[BarField.LOW, f, a])

        # carry over bar f: borrow fee on short notional, interest on cash
        borrow = cost_params[i, CostParam.BORROW_PER_BAR]
        if borrow > 0.0:
            for a in range(n_assets):
                if position[i, a] < 0.0:
                    fee = -position[i, a] * bars[BarField.CLOSE, f, a] * borrow
                    cash -= fee
                    cost += fee
        cash += cash * cost_params[i, CostParam.CASH_RATE_PER_BAR]

        # portfolio limits at close f: margin, drawdown breaker, daily loss
        breaker_terminates = False
        max_dd = risk_params[i, RiskParam.MAX_DRAWDOWN]
        max_dl = risk_params[i, RiskParam.MAX_DAILY_LOSS]
        maint = risk_params[i, RiskParam.MAINT_MARGIN]
        if maint > 0.0 or max_dd > 0.0 or max_dl > 0.0:
            equity = equity_at_nb(cash, position, i, bars, BarField.CLOSE, f)
            gross_notional = 0.0
            for a in range(n_assets):
                gross_notional += abs(position[i, a]) * bars[BarField.CLOSE, f, a]
            peak = max(acct[i, Account.PEAK], equity)
            reason = FillReason.NONE
            if maint > 0.0 and gross_notional > 0.0 and equity < maint * gross_notional:
                reason = FillReason.LIQUIDATION
            elif max_dd > 0.0 and peak > 0.0 and 1.0 - equity / peak > max_dd:
                reason = FillReason.DRAWDOWN
                if drawdown_halts:
                    halt = Halt.EPISODE
                else:
                    breaker_terminates = True
            elif max_dl > 0.0 and equity < acct[i, Account.DAY_EQUITY] * (1.0 - max_dl):
                reason = FillReason.DAILY_LOSS
                halt = Halt.DAY
            if reason != FillReason.NONE:
                d_cash, d_cost = flatten_env_nb(i, f, reason, OrderType.MARKET, bars, series,
                                                cost_params, slippage_model, commission_model,
                                                acct, position, avg_px, trail_ref, events,
                                                record, rec_f, rec_i, rec_n, tradable)
                cash += d_cash
                cost += d_cost
        if halt != clock[i, Clock.HALT]:
            clock[i, Clock.HALT] = halt

        # mark to market at close f
        equity = equity_at_nb(cash, position, i, bars, BarField.CLOSE, f)
        peak = max(acct[i, Account.PEAK], equity)
        drawdown = 1.0 - equity / peak if peak > 0.0 else 1.0
        acct[i, Account.CASH] = cash
        acct[i, Account.EQUITY] = equity
        acct[i, Account.PEAK] = peak
        acct[i, Account.DRAWDOWN] = drawdown
        acct[i, Account.COST] = cost
        step = clock[i, Clock.STEP] + 1
        clock[i, Clock.BAR] = f
        clock[i, Clock.STEP] = step

        dsr = 0.0
        if reward_weights[RewardId.DIFFERENTIAL_SHARPE] != 0.0:
            ret = equity / equity_prev - 1.0 if equity_prev > 0.0 else 0.0
            dsr, dsr_a, dsr_b = differential_sharpe_nb(ret, acct[i, Account.DSR_A],
                                                       acct[i, Account.DSR_B], dsr_eta)
            acct[i, Account.DSR_A] = dsr_a
            acct[i, Account.DSR_B] = dsr_b
        custom = custom_reward_nb(equity_prev, equity, cost, drawdown, gross, step)
        reward[i] = reward_scale * composite_reward_nb(
            reward_weights, log_return_nb(equity_prev, equity),
            pnl_nb(equity_prev, equity, initial_cash), dsr, drawdown_prev, drawdown, cost,
            equity_prev, custom)

        term = (equity <= bankrupt_fraction * initial_cash or equity <= 0.0
                or breaker_terminates)
        trunc = (not term) and (step >= episode_length or f >= last_bar)
        terminated[i] = term
        truncated[i] = trunc
        time_left = 1.0 - step / episode_length
        write_observation_nb(features, row_size, f, window, i, position, avg_px, bars, acct,
                             time_left, portfolio_obs, clip, obs)
        if term or trunc:
            n_done += 1
            if same_step:
                # keep the episode's last obs and account before the reset overwrites them
                for k in range(obs.shape[1]):
                    final_obs[i, k] = obs[i, k]
                for k in range(acct.shape[1]):
                    final_acct[i, k] = acct[i, k]
                for a in range(n_assets):
                    final_position[i, a] = position[i, a]
                for k in range(clock.shape[1]):
                    final_clock[i, k] = clock[i, k]
                reset_env_nb(i, reset_start[i], bars, features, acct, position, avg_px, clock, rng, obs,
                             events, orders, first_bar, last_start, window, initial_cash,
                             portfolio_obs, clip)
            else:
                clock[i, Clock.NEEDS_RESET] = 1
    return n_done


# Not inlined: Numba cannot inline a callee with this many arguments, and resets are rare.
@njit(cache=True, nogil=True, error_model="numpy")
def _sim_new_episode(i, bars, features, acct, position, avg_px, clock, rng, obs, events, orders,
                     first_bar, last_start, window, initial_cash, portfolio_obs, clip, series, day,
                     reset_start, sim_asset, sim_env, chol, regime_table, stress, sim_state,
                     sim_clock, row_state, seg_rows, keep, bars_per_day, feature_ids, f_alpha,
                     av_alpha, r_alpha, atr_period, warmup, episode_length):
    """Env i starts an episode on a fresh path: generate it, then reset the book and write the
    first observation."""
    start = sim_restart_nb(i, clock, rng, bars, series, features, day, sim_asset, sim_env, chol,
                           regime_table, stress, sim_state, sim_clock, row_state, seg_rows, keep,
                           bars_per_day, feature_ids, clip, f_alpha, av_alpha, r_alpha,
                           atr_period, warmup, episode_length)
    reset_start[i] = start
    reset_env_nb(i, start, bars, features, acct, position, avg_px, clock, rng, obs, events,
                 orders, first_bar, last_start, window, initial_cash, portfolio_obs, clip)


def _sim_before(lo, hi, clock, rng, bars, series, features, day, reset_start, sim_asset,
                sim_env, chol, regime_table, stress, sim_state, sim_clock, row_state, seg_rows,
                keep, bars_per_day, feature_ids, clip, f_alpha, av_alpha, r_alpha, atr_period,
                warmup, episode_length):
    """Simulation mode, before the step: envs lo..hi-1 generate the bar they will trade on,
    or a fresh path when they autoreset this step."""
    # two loops: the restarts call out of line, which would stop Numba from pruning the
    # reference counting out of the hot loop below
    for i in range(lo, hi):
        if clock[i, Clock.NEEDS_RESET] != 0:
            reset_start[i] = sim_restart_nb(
                i, clock, rng, bars, series, features, day, sim_asset, sim_env, chol,
                regime_table, stress, sim_state, sim_clock, row_state, seg_rows, keep,
                bars_per_day, feature_ids, clip, f_alpha, av_alpha, r_alpha, atr_period,
                warmup, episode_length)
    for i in range(lo, hi):
        if clock[i, Clock.NEEDS_RESET] == 0:
            sim_advance_nb(i, clock, rng, bars, series, features, day, sim_asset, sim_env, chol,
                           regime_table, stress, sim_state, sim_clock, row_state, seg_rows,
                           keep, bars_per_day, feature_ids, clip, f_alpha, av_alpha, r_alpha,
                           atr_period)


def _sim_after(lo, hi, same_step, terminated, truncated, final_clock, rec_i, rec_n, clock, rng,
               bars, series, features, day, acct, position, avg_px, obs, events, orders,
               first_bar, last_start, window, initial_cash, portfolio_obs, reset_start,
               sim_asset, sim_env, chol, regime_table, stress, sim_state, sim_clock, row_state,
               seg_rows, keep, bars_per_day, feature_ids, clip, f_alpha, av_alpha, r_alpha,
               atr_period, warmup, episode_length):
    """Simulation mode, after the step: fill records and final clocks get path bars instead
    of rows, and envs done in SAME_STEP mode restart on a fresh path."""
    for i in range(lo, hi):
        restart = same_step and (terminated[i] or truncated[i])
        row = final_clock[i, Clock.BAR] if restart else clock[i, Clock.BAR]
        offset = sim_clock[i, SimClock.BAR_INDEX] - 1 - row
        for k in range(rec_n[i]):
            rec_i[i, k, RecordInt.BAR] += offset
        if restart:
            final_clock[i, Clock.BAR] += offset
            final_clock[i, Clock.START] += offset
            _sim_new_episode(i, bars, features, acct, position, avg_px, clock, rng, obs, events,
                             orders, first_bar, last_start, window, initial_cash, portfolio_obs,
                             clip, series, day, reset_start, sim_asset, sim_env, chol,
                             regime_table, stress, sim_state, sim_clock, row_state, seg_rows,
                             keep, bars_per_day, feature_ids, f_alpha, av_alpha, r_alpha,
                             atr_period, warmup, episode_length)


def _sim_reset_envs(mask, bars, features, acct, position, avg_px, clock, rng, obs, events,
                    orders, first_bar, last_start, window, initial_cash, portfolio_obs, clip,
                    series, day, reset_start, sim_asset, sim_env, chol, regime_table, stress,
                    sim_state, sim_clock, row_state, seg_rows, keep, bars_per_day, feature_ids,
                    f_alpha, av_alpha, r_alpha, atr_period, warmup, episode_length):
    """Simulation mode's reset: every env whose mask is True starts on a fresh path."""
    for i in prange(mask.shape[0]):
        if mask[i]:
            _sim_new_episode(i, bars, features, acct, position, avg_px, clock, rng, obs, events,
                             orders, first_bar, last_start, window, initial_cash, portfolio_obs,
                             clip, series, day, reset_start, sim_asset, sim_env, chol,
                             regime_table, stress, sim_state, sim_clock, row_state, seg_rows,
                             keep, bars_per_day, feature_ids, f_alpha, av_alpha, r_alpha,
                             atr_period, warmup, episode_length)


_RANGE_ARGS = ", ".join(inspect.signature(_step_range).parameters)[len("lo, hi, "):]

# The batch step validates every action first (a bad one changes nothing), then runs
# _step_range on n_chunks chunks of envs (the caller passes a few per thread; Numba's
# get_num_threads() inside the kernel would make it uncacheable). Threads split chunks rather
# than single envs: the per-env body is compiled once as a serial function, which keeps the
# threaded build's compile time small and its reference counting per chunk instead of per env.
# The source is generated so the long argument list is written once; _CHUNKED_HEAD is the part
# both batch steps share.
_CHUNKED_HEAD = """
    n = action.shape[0]
    for i in range(n):
        for a in range(action.shape[1]):
            if not np.isfinite(action[i, a]):
                return -StepStatus.BAD_ACTION
    n_chunks = max(1, min(n, n_chunks))
    chunk = (n + n_chunks - 1) // n_chunks
    n_done = 0
    for c in prange(n_chunks):
        lo = c * chunk
        hi = min(n, lo + chunk)
        if lo < hi:"""
_STEP_ENVS_SRC = f"""
def _step_envs(n_chunks, {_RANGE_ARGS}):{_CHUNKED_HEAD}
            n_done += step_range_nb(lo, hi, {_RANGE_ARGS})
    return n_done
"""
# Simulation mode: the same chunks, each generating its envs' bars before the step and restarting
# same-step resets after it, in the same thread while the rows are in cache.
_SIM_ARGS = ("sim_asset, sim_env, chol, regime_table, stress, sim_state, sim_clock, row_state, "
             "seg_rows, keep, bars_per_day, feature_ids, f_alpha, av_alpha, r_alpha, atr_period, "
             "warmup")
_SIM_STEP_ENVS_SRC = f"""
def _sim_step_envs(n_chunks, {_RANGE_ARGS}, {_SIM_ARGS}):{_CHUNKED_HEAD}
            sim_before_nb(lo, hi, clock, rng, bars, series, features, day, reset_start,
                          sim_asset, sim_env, chol, regime_table, stress, sim_state, sim_clock,
                          row_state, seg_rows, keep, bars_per_day, feature_ids, clip, f_alpha,
                          av_alpha, r_alpha, atr_period, warmup, episode_length)
            n_done += step_range_nb(lo, hi, {_RANGE_ARGS})
            sim_after_nb(lo, hi, same_step, terminated, truncated, final_clock, rec_i, rec_n,
                         clock, rng, bars, series, features, day, acct, position, avg_px, obs,
                         events, orders, first_bar, last_start, window, initial_cash,
                         portfolio_obs, reset_start, sim_asset, sim_env, chol, regime_table,
                         stress, sim_state, sim_clock, row_state, seg_rows, keep, bars_per_day,
                         feature_ids, clip, f_alpha, av_alpha, r_alpha, atr_period, warmup,
                         episode_length)
    return n_done
"""
# compiled under this real file name: Numba caches by it
exec(compile(_STEP_ENVS_SRC + _SIM_STEP_ENVS_SRC, __file__, "exec"), globals())
_step_envs = globals()["_step_envs"]
_sim_step_envs = globals()["_sim_step_envs"]
_USED_BY_GENERATED = (np, prange, StepStatus)  # names the generated source reads


def _compile(py_func, name, parallel, cache=True, globals_=None):
    """A jitted copy of py_func under its own qualname, so the serial and parallel builds each
    get their own cache entry; ``globals_`` rebinds module globals (the custom reward)."""
    f = types.FunctionType(py_func.__code__, globals_ or py_func.__globals__, name,
                           py_func.__defaults__, py_func.__closure__)
    f.__qualname__ = name
    f.__doc__ = py_func.__doc__
    return njit(cache=cache, nogil=True, parallel=parallel, error_model="numpy")(f)


step_range_nb = _compile(_step_range, "step_range_nb", parallel=False)
step_envs_nb = _compile(_step_envs, "step_envs_nb", parallel=False)
step_envs_par_nb = _compile(_step_envs, "step_envs_par_nb", parallel=True)
reset_envs_nb = _compile(_reset_envs, "reset_envs_nb", parallel=False)
reset_envs_par_nb = _compile(_reset_envs, "reset_envs_par_nb", parallel=True)
sim_before_nb = _compile(_sim_before, "sim_before_nb", parallel=False)
sim_after_nb = _compile(_sim_after, "sim_after_nb", parallel=False)
sim_step_envs_nb = _compile(_sim_step_envs, "sim_step_envs_nb", parallel=False)
sim_step_envs_par_nb = _compile(_sim_step_envs, "sim_step_envs_par_nb", parallel=True)
sim_reset_envs_nb = _compile(_sim_reset_envs, "sim_reset_envs_nb", parallel=False)
sim_reset_envs_par_nb = _compile(_sim_reset_envs, "sim_reset_envs_par_nb", parallel=True)


def step_kernel_with_reward(custom_fn, parallel, simulation=False, cache_key=None):
    """The fused step (simulation mode's if ``simulation``) with ``custom_fn`` in the
    custom-reward slot.

    Numba keys its disk cache by a function's qualified name, not by the callees it links in,
    so a build is cached only under a name unique to its reward: ``cache_key`` (a hex digest of
    the reward's code and constants, made by ``optrader.envs.kernel_cache``). Without one the
    build is compiled on first call in every process.
    """
    suffix = f"_{cache_key}" if cache_key else ""
    cache = bool(cache_key)
    range_globals = dict(_step_range.__globals__, custom_reward_nb=custom_fn)
    range_nb = _compile(_step_range, "step_range_custom_nb" + suffix, parallel=False,
                        cache=cache, globals_=range_globals)
    step_globals = dict(_step_range.__globals__, step_range_nb=range_nb)
    name = ("sim_" if simulation else "") + (
        "step_envs_par_custom_nb" if parallel else "step_envs_custom_nb")
    return _compile(_sim_step_envs if simulation else _step_envs, name + suffix,
                    parallel=parallel, cache=cache, globals_=step_globals)
