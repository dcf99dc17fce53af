"""Spaces and observation layout of the trading envs, derived from the validated config.

Observation (float32, flat): the window of W bars oldest first, each bar holding A assets x F
features, then (if ``observation.portfolio``) A asset weights, cash weight, unrealised P&L over
equity, drawdown and fraction of the episode left.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from kernels.enums import FeatureId
from kernels.features import N_PORTFOLIO_EXTRA

FEATURE_IDS = {"log_return": FeatureId.LOG_RETURN, "range": FeatureId.RANGE,
               "volume": FeatureId.VOLUME}


def observation_size(window: int, n_assets: int, n_features: int, portfolio: bool) -> int:
    extra = n_assets + N_PORTFOLIO_EXTRA if portfolio else 0
    return window * n_assets * n_features + extra


def observation_names(window: int, symbols, features, portfolio: bool) -> list[str]:
    """One name per observation element, e.g. ``log_return[SYN0][t-31]`` ... ``time_left``."""
    names = [f"{feat}[{sym}][t-{window - 1 - k}]"
             for k in range(window) for sym in symbols for feat in features]
    if portfolio:
        names += [f"weight[{sym}]" for sym in symbols]
        names += ["cash_weight", "unrealized_pnl", "drawdown", "time_left"]
    return names


def single_spaces(obs_size: int, n_assets: int, action_type: str, n_levels: int, clip: float,
                  n_order_types: int = 0):
    """(single_observation_space, single_action_space); every feature is clipped to +-clip.

    With ``n_order_types`` K > 0 (``action.order_types``) the action also picks an order type
    per asset: continuous actions get A more elements in [-1, 1] (element A + a selects type
    floor((x + 1) / 2 * K) for asset a), discrete actions become MultiDiscrete
    [levels] * A + [K] * A."""
    obs_space = spaces.Box(-clip, clip, shape=(obs_size,), dtype=np.float32)
    extra = n_assets if n_order_types else 0
    if action_type == "continuous":
        act_space = spaces.Box(-1.0, 1.0, shape=(n_assets + extra,), dtype=np.float32)
    elif n_assets == 1 and not extra:
        act_space = spaces.Discrete(n_levels)
    else:
        nvec = [n_levels] * n_assets + [n_order_types] * extra
        act_space = spaces.MultiDiscrete(np.array(nvec, dtype=np.int64))
    return obs_space, act_space
