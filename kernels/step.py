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
  final_acct, final_position, final_clock: the done envs' state before a same-step reset.

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

import types

import numpy as np
from numba import njit, prange

from kernels.costs import (
    below_min_trade_nb,
    cap_participation_nb,
    commission_cost_nb,
    fill_price_with_slippage_nb,
    maker_taker_bps_nb,
    round_lot_nb,
    slippage_bps_nb,
)
from kernels.enums import (
    Account,
    BarField,
    Clock,
    CostParam,
    FillPrice,
    OrderType,
    RewardId,
    SeriesField,
    StepStatus,
)
from kernels.execution import should_trade_nb
from kernels.features import write_observation_nb
from kernels.portfolio import apply_fill_nb, equity_at_nb, target_units_nb, target_weights_nb
from kernels.reward import (
    composite_reward_nb,
    differential_sharpe_nb,
    log_return_nb,
    pnl_nb,
    zero_reward_nb,
)
from kernels.rng import randint_nb

custom_reward_nb = zero_reward_nb


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def reset_env_nb(i, start, bars, features, acct, position, avg_px, clock, rng, obs,
                 first_bar, last_start, window, initial_cash, portfolio_obs, clip):
    """Start env i's episode at bar ``start``, or at a random bar in [first_bar, last_start]
    when start < 0, and write its obs."""
    t = start if start >= 0 else randint_nb(rng, i, first_bar, last_start)
    for c in range(acct.shape[1]):
        acct[i, c] = 0.0
    acct[i, Account.CASH] = initial_cash
    acct[i, Account.EQUITY] = initial_cash
    acct[i, Account.PEAK] = initial_cash
    for a in range(position.shape[1]):
        position[i, a] = 0.0
        avg_px[i, a] = 0.0
    clock[i, Clock.BAR] = t
    clock[i, Clock.START] = t
    clock[i, Clock.STEP] = 0
    clock[i, Clock.NEEDS_RESET] = 0
    write_observation_nb(features, features.shape[0] // bars.shape[1], t, window, i, position,
                         avg_px, bars, acct, 1.0, portfolio_obs, clip, obs)


def _reset_envs(mask, starts, bars, features, acct, position, avg_px, clock, rng, obs,
                first_bar, last_start, window, initial_cash, portfolio_obs, clip):
    """Reset every env whose mask is True, at starts[i] (or a random bar where it is < 0)."""
    for i in prange(mask.shape[0]):
        if mask[i]:
            reset_env_nb(i, starts[i], bars, features, acct, position, avg_px, clock, rng, obs,
                         first_bar, last_start, window, initial_cash, portfolio_obs, clip)


def _step_envs(action, bars, features, series, acct, position, avg_px, clock, rng, cost_params,
               reward_weights, target, obs, reward, terminated, truncated, final_obs,
               final_acct, final_position, final_clock, first_bar, last_start, last_bar,
               episode_length, window, max_leverage,
               initial_cash, bankrupt_fraction, lot_size, fill_mode, dsr_eta, reward_scale,
               portfolio_obs, clip, same_step, slippage_model, commission_model, allow_short):
    """Advance every env one bar; return the number of done envs, or -1 (BAD_ACTION) on NaN/inf."""
    n = action.shape[0]
    n_assets = action.shape[1]
    row_size = features.shape[0] // bars.shape[1]  # A * F floats per bar in the flat features
    # validate before touching any state, so a bad action leaves the batch exactly as it was
    for i in range(n):
        for a in range(n_assets):
            if not np.isfinite(action[i, a]):
                return -StepStatus.BAD_ACTION
    n_done = 0
    for i in prange(n):
        if clock[i, Clock.NEEDS_RESET] != 0:
            reset_env_nb(i, -1, bars, features, acct, position, avg_px, clock, rng, obs,
                         first_bar, last_start, window, initial_cash, portfolio_obs, clip)
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

        gross = target_weights_nb(action, i, max_leverage, target)
        equity_ref = equity_at_nb(acct[i, Account.CASH], position, i, bars, ref_field, ref_t)
        cash = acct[i, Account.CASH]
        cost = 0.0
        for a in range(n_assets):
            ref_px = bars[ref_field, ref_t, a]
            units = target_units_nb(target[i, a], equity_ref, ref_px, lot_size)
            if units < 0.0 and not allow_short:
                units = 0.0
            qty = units - position[i, a]
            if not should_trade_nb(qty, units):
                continue
            # volume and spread of the bar the order trades in; volume-based estimates of the
            # decision bar t (known when deciding)
            bar_volume = bars[BarField.VOLUME, ref_t, a]
            max_part = cost_params[i, CostParam.MAX_PARTICIPATION]
            if max_part < 1.0:
                qty = round_lot_nb(cap_participation_nb(qty, bar_volume, max_part), lot_size)
                if qty == 0.0:
                    continue
            if below_min_trade_nb(qty, ref_px, cost_params[i, CostParam.MIN_TRADE_VALUE]):
                continue
            slip = slippage_bps_nb(slippage_model, qty, cost_params[i, CostParam.SLIPPAGE_BPS],
                                   cost_params[i, CostParam.HALF_SPREAD_BPS],
                                   series[SeriesField.SPREAD_BPS, ref_t, a], bar_volume,
                                   series[SeriesField.AVG_VOLUME, t, a],
                                   series[SeriesField.SIGMA, t, a],
                                   cost_params[i, CostParam.IMPACT_COEF])
            px = fill_price_with_slippage_nb(qty, ref_px, slip)
            fee_bps = maker_taker_bps_nb(OrderType.MARKET, cost_params[i, CostParam.COMMISSION_BPS],
                                         cost_params[i, CostParam.MAKER_BPS],
                                         cost_params[i, CostParam.TAKER_BPS])
            fee = commission_cost_nb(commission_model, qty, px, fee_bps,
                                     cost_params[i, CostParam.PER_SHARE],
                                     cost_params[i, CostParam.MIN_COMMISSION])
            cash -= qty * px + fee
            cost += fee + abs(qty) * abs(px - ref_px)
            new_pos, new_avg, realized = apply_fill_nb(position[i, a], avg_px[i, a], qty, px)
            position[i, a] = new_pos
            avg_px[i, a] = new_avg
            acct[i, Account.REALIZED] += realized

        # carry over bar f: borrow fee on short notional, interest on cash
        borrow = cost_params[i, CostParam.BORROW_PER_BAR]
        if borrow > 0.0:
            for a in range(n_assets):
                if position[i, a] < 0.0:
                    fee = -position[i, a] * bars[BarField.CLOSE, f, a] * borrow
                    cash -= fee
                    cost += fee
        cash += cash * cost_params[i, CostParam.CASH_RATE_PER_BAR]

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

        term = equity <= bankrupt_fraction * initial_cash or equity <= 0.0
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
                reset_env_nb(i, -1, bars, features, acct, position, avg_px, clock, rng, obs,
                             first_bar, last_start, window, initial_cash, portfolio_obs, clip)
            else:
                clock[i, Clock.NEEDS_RESET] = 1
    return n_done


def _compile(py_func, name, parallel, cache=True, globals_=None):
    """A jitted copy of py_func under its own qualname, so the serial and parallel builds each
    get their own cache entry; ``globals_`` rebinds module globals (the custom reward)."""
    f = types.FunctionType(py_func.__code__, globals_ or py_func.__globals__, name,
                           py_func.__defaults__, py_func.__closure__)
    f.__qualname__ = name
    f.__doc__ = py_func.__doc__
    return njit(cache=cache, nogil=True, parallel=parallel, error_model="numpy")(f)


step_envs_nb = _compile(_step_envs, "step_envs_nb", parallel=False)
step_envs_par_nb = _compile(_step_envs, "step_envs_par_nb", parallel=True)
reset_envs_nb = _compile(_reset_envs, "reset_envs_nb", parallel=False)
reset_envs_par_nb = _compile(_reset_envs, "reset_envs_par_nb", parallel=True)


def step_kernel_with_reward(custom_fn, parallel):
    """The fused step with ``custom_fn`` in the custom-reward slot.

    Compiled on first call and not cached on disk: Numba cannot cache a kernel whose callee is
    chosen at run time, so a custom reward costs one compile per process.
    """
    globals_ = dict(_step_envs.__globals__, custom_reward_nb=custom_fn)
    name = "step_envs_par_custom_nb" if parallel else "step_envs_custom_nb"
    return _compile(_step_envs, name, parallel=parallel, cache=False, globals_=globals_)
