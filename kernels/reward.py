"""Reward component kernels, all for one env and one step, returning float64 scalars.

Inputs: equity before/after the step (currency), initial cash, the step's cost (currency),
drawdown before/after (fraction), differential Sharpe state (A, B: EWMAs of the simple return
and its square). Penalties are returned with a negative sign so every weight is positive.
A user reward registered with ``optrader.register_reward`` has the signature
``fn(equity_prev, equity, cost, drawdown, gross_exposure, step) -> float`` and is jitted.
"""

import math

from numba import njit

from kernels.enums import RewardId


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def log_return_nb(equity_prev, equity):
    """log(E_t / E_{t-1}); a wipe-out is floored at log(1e-12) instead of -inf."""
    if equity_prev <= 0.0:
        return 0.0
    return math.log(max(equity / equity_prev, 1e-12))


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def pnl_nb(equity_prev, equity, initial_cash):
    """Step P&L as a fraction of initial cash."""
    return (equity - equity_prev) / initial_cash


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def differential_sharpe_nb(ret, dsr_a, dsr_b, eta):
    """(D_t, A_t, B_t) of Moody & Saffell's differential Sharpe ratio for simple return ``ret``.

    D_t = (B_{t-1} dA - A_{t-1} dB / 2) / (B_{t-1} - A_{t-1}^2)^(3/2), dA = R - A_{t-1},
    dB = R^2 - B_{t-1}; A and B are EWMAs with rate eta. D is 0 until the variance is positive.
    """
    d_a = ret - dsr_a
    d_b = ret * ret - dsr_b
    var = dsr_b - dsr_a * dsr_a
    d = 0.0
    if var > 1e-12:
        d = (dsr_b * d_a - 0.5 * dsr_a * d_b) / (var * math.sqrt(var))
    return d, dsr_a + eta * d_a, dsr_b + eta * d_b


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def zero_reward_nb(equity_prev, equity, cost, drawdown, gross_exposure, step):
    """The custom-reward slot when no custom reward is selected."""
    return 0.0


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def composite_reward_nb(weights, log_ret, pnl, dsr, drawdown_prev, drawdown, cost, equity_prev, custom):
    """Weighted sum of the built-in components plus the (already weighted) custom term."""
    r = 0.0
    if weights[RewardId.LOG_RETURN] != 0.0:
        r += weights[RewardId.LOG_RETURN] * log_ret
    if weights[RewardId.PNL] != 0.0:
        r += weights[RewardId.PNL] * pnl
    if weights[RewardId.DIFFERENTIAL_SHARPE] != 0.0:
        r += weights[RewardId.DIFFERENTIAL_SHARPE] * dsr
    if weights[RewardId.DRAWDOWN_PENALTY] != 0.0:
        r -= weights[RewardId.DRAWDOWN_PENALTY] * max(0.0, drawdown - drawdown_prev)
    if weights[RewardId.COST_PENALTY] != 0.0 and equity_prev > 0.0:
        r -= weights[RewardId.COST_PENALTY] * cost / equity_prev
    if weights[RewardId.CUSTOM] != 0.0:
        r += weights[RewardId.CUSTOM] * custom
    return r
