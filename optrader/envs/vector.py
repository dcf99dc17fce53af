"""TradingVectorEnv: a native ``gymnasium.vector.VectorEnv`` over the fused Numba step.

All state is struct-of-arrays with env on axis 0 and lives in buffers allocated once here; a
``step`` checks the action in full (shape, dtype, range, finiteness) before writing anything, calls
one kernel for the whole batch and returns the buffers (copied unless ``copy=False``). Every
public call checks its inputs before it changes anything: a rejected call leaves the env as it
was. See ``kernels/step.py`` for the timing convention.

Info keys (``env.info: full``): ``equity``, ``cash``, ``drawdown``, ``cost`` float64 (n,),
``position`` float64 (n, A) units, ``bar`` int64 (n,), each with a Gymnasium ``_key`` mask;
``minimal`` keeps ``equity``; ``none`` returns ``{}``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any, NamedTuple

import numba
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from kernels.enums import (
    FILL_DTYPE,
    N_ACCOUNT,
    N_CLOCK,
    N_COST_PARAM,
    N_FILL_REASONS,
    N_ORDER,
    N_RECORD_F,
    N_RECORD_I,
    N_REWARDS,
    N_RISK_PARAM,
    NO_ORDER,
    Account,
    BarField,
    Clock,
    CostParam,
    FillPrice,
    FillReason,
    OrderType,
    RecordField,
    RecordInt,
    RewardId,
    RiskParam,
    SeriesField,
    SimClock,
    SizingRule,
    StopKind,
)
from kernels.features import compute_features_nb
from kernels.step import _RANGE_ARGS
from optrader.config import ConfigError, compose, load_spec, with_value
from optrader.data import MarketData, load_market
from optrader.data.loader import file_config
from optrader.data.splits import split_bounds
from optrader.envs import kernel_cache
from optrader.envs import simulation as sim_buffers
from optrader.envs.layout import FEATURE_IDS, observation_names, observation_size, single_spaces
from optrader.envs.params import per_env_array
from optrader.envs.series import market_series
from optrader.registry import registry

RANGE_ARG_NAMES = tuple(_RANGE_ARGS.split(", "))
# info["risk_events"] column k counts kernels.enums.FillReason value k; derived, so a reason added
# there is named here too
RISK_EVENT_NAMES = tuple(sorted(FillReason._fields, key=FillReason._asdict().__getitem__))
if [getattr(FillReason, f) for f in RISK_EVENT_NAMES] != list(range(len(RISK_EVENT_NAMES))):
    raise ImportError("kernels.enums.FillReason: expected the values 0..n-1 (they index the "
                      "risk_events columns)")
OBS_POOL_SIZE = 4  # observation buffers kept for reuse when copy=True (see _unshared_obs)
# Parameters that may differ per env (make_vec(per_env={...})): key -> (array attribute, column)
PER_ENV_KEYS = {
    "execution.commission_bps": ("_cost_params", CostParam.COMMISSION_BPS),
    "execution.min_commission": ("_cost_params", CostParam.MIN_COMMISSION),
    "execution.slippage_bps": ("_cost_params", CostParam.SLIPPAGE_BPS),
    "execution.half_spread_bps": ("_cost_params", CostParam.HALF_SPREAD_BPS),
    "execution.maker_bps": ("_cost_params", CostParam.MAKER_BPS),
    "execution.taker_bps": ("_cost_params", CostParam.TAKER_BPS),
    "execution.commission_per_share": ("_cost_params", CostParam.PER_SHARE),
    "execution.impact_coef": ("_cost_params", CostParam.IMPACT_COEF),
    # per env, np.inf stands for null (no cap)
    "execution.max_participation": ("_cost_params", CostParam.MAX_PARTICIPATION),
    "execution.min_trade_value": ("_cost_params", CostParam.MIN_TRADE_VALUE),
    "execution.borrow_bps_annual": ("_cost_params", CostParam.BORROW_PER_BAR),
    "execution.cash_rate_annual": ("_cost_params", CostParam.CASH_RATE_PER_BAR),
    "execution.latency": ("_latency", None),  # each env <= the configured execution.latency
    "risk.fraction": ("_risk_params", RiskParam.FRACTION),
    "risk.target_vol": ("_risk_params", RiskParam.TARGET_VOL),
    "risk.kelly_fraction": ("_risk_params", RiskParam.KELLY_FRACTION),
    "risk.max_weight": ("_risk_params", RiskParam.MAX_WEIGHT),
    "risk.stop_loss.value": ("_risk_params", RiskParam.SL_VALUE),
    "risk.take_profit.value": ("_risk_params", RiskParam.TP_VALUE),
    "risk.trailing_stop.value": ("_risk_params", RiskParam.TRAIL_VALUE),
    "risk.max_daily_loss": ("_risk_params", RiskParam.MAX_DAILY_LOSS),
    "risk.max_drawdown": ("_risk_params", RiskParam.MAX_DRAWDOWN),
    "risk.maintenance_margin": ("_risk_params", RiskParam.MAINT_MARGIN),
}

# per_env keys where inf is a value (max_participation: no cap, like null in the config)
PER_ENV_INF_KEYS = frozenset({"execution.max_participation"})


def fill_records(rec_f: np.ndarray, rec_i: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The first counts[i] records of each env of the kernels' record buffers rec_f float64
    (n, slots, N_RECORD_F) and rec_i int64 (n, slots, N_RECORD_I), as FILL_DTYPE, env-major."""
    env_idx = np.repeat(np.arange(counts.shape[0]), counts)
    slot = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    f, k = rec_f[env_idx, slot], rec_i[env_idx, slot]
    out = np.empty(env_idx.size, dtype=FILL_DTYPE)
    out["env"] = env_idx
    out["bar"] = k[:, RecordInt.BAR]
    out["asset"] = k[:, RecordInt.ASSET]
    out["qty"] = f[:, RecordField.QTY]
    out["side"] = np.sign(out["qty"]).astype(np.int8)
    out["price"] = f[:, RecordField.PRICE]
    out["commission"] = f[:, RecordField.COMMISSION]
    out["slippage"] = f[:, RecordField.SLIPPAGE]
    out["order_type"] = k[:, RecordInt.ORDER_TYPE]
    out["reason"] = k[:, RecordInt.REASON]
    return out


# Below this many envs the serial kernel wins: starting the thread pool costs ~10 microseconds.
PARALLEL_MIN_ENVS = 256


class PortfolioState(NamedTuple):
    """Per-env book. acct float64 (n, N_ACCOUNT), columns ``kernels.enums.Account`` (cash, equity,
    peak, drawdown, cost, realised P&L, differential Sharpe state).

    Env-major on purpose: the kernel touches every field of one env at a time, and one cache line
    per env beats one stream per field (field-major rows ran the step ~5x slower at 16+ fields).
    """

    acct: np.ndarray
    position: np.ndarray  # float64 (n, A) units
    avg_px_open: np.ndarray  # float64 (n, A) currency


class EpisodeState(NamedTuple):
    clock: np.ndarray  # int64 (n, N_CLOCK) columns ``kernels.enums.Clock``
    rng: np.ndarray  # uint64 (n,) splitmix64 state per env


class TradingVectorEnv(VectorEnv):
    """A batch of ``num_envs`` trading envs sharing one MarketData.

    Args:
        num_envs: batch size, >= 1.
        cfg: a composed DictConfig (``optrader.compose``); None composes ``env`` + ``overrides``.
        data: a DataFrame, a Parquet/CSV path, MarketData, or None for the configured source.
        env: mode name (a file in conf/env), used when ``cfg`` is None.
        overrides: Hydra override strings, used when ``cfg`` is None.
        render_mode: None, "ansi" or "human".
        max_episode_steps: overrides ``env.episode_length``.
        autoreset_mode: ``AutoresetMode.NEXT_STEP`` (default) or ``AutoresetMode.SAME_STEP``.
        copy: return copies of the observation/reward/flag buffers (default, safe to keep);
            False returns the buffers themselves, overwritten by the next step (fastest).
        parallel: force the threaded (True) or serial (False) kernel; None picks by num_envs.
        per_env: ``{"execution.commission_bps": array (num_envs,), ...}``: parameters that differ
            per env (a parameter sweep as one batch); keys in ``PER_ENV_KEYS``.
    """

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 4,
                "autoreset_mode": AutoresetMode.NEXT_STEP}
    #: the names of ``info["risk_events"]``'s columns (``kernels.enums.FillReason``, in order)
    risk_event_names = RISK_EVENT_NAMES

    def __init__(self, num_envs: int = 1, cfg=None, data=None, env: str = "training",
                 overrides=(), render_mode: str | None = None,
                 max_episode_steps: int | None = None,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
                 copy: bool = True, parallel: bool | None = None,
                 per_env: dict | None = None):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) \
                or num_envs < 1:
            raise ValueError(f"num_envs: expected an integer >= 1, got {num_envs!r}")
        if render_mode not in (None, "ansi", "human"):
            raise ValueError(f"render_mode: expected None, 'ansi' or 'human', got {render_mode!r}")
        try:
            autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ValueError(f"autoreset_mode: expected one of {[m.value for m in AutoresetMode]}, "
                             f"got {autoreset_mode!r}") from None
        if autoreset_mode == AutoresetMode.DISABLED:
            raise ValueError("autoreset_mode: DISABLED is not supported; use NEXT_STEP or "
                             "SAME_STEP")
        if cfg is None:
            cfg = compose(env=env, overrides=overrides)
        elif overrides:
            raise ConfigError("overrides: pass them to optrader.compose(...) when giving cfg")
        self.cfg = cfg
        self.config = spec = load_spec(cfg)
        if max_episode_steps is not None:
            if isinstance(max_episode_steps, bool) or not isinstance(
                    max_episode_steps, (int, np.integer)) or max_episode_steps < 1:
                raise ValueError(f"max_episode_steps: expected an integer >= 1, got "
                                 f"{max_episode_steps!r}")
            spec = _replace(spec, "env", episode_length=int(max_episode_steps))
            self.config = spec
        n = self.num_envs = int(num_envs)
        window = spec.observation.window
        episode_length = spec.env.episode_length
        feats = spec.observation.features
        feature_ids = np.array([FEATURE_IDS[f] for f in feats], dtype=np.int64)
        # simulation mode: each env generates its own bars into its own rows (no shared market)
        self._simulation = spec.env.mode == "simulation"
        self._sim = None
        if self._simulation:
            if data is not None:
                raise ValueError("data: env.mode=simulation generates its own market; pass "
                                 "data=None (the process is the synthetic data config)")
            self.market = None
            self._sim = sim_buffers.build(spec, n, feature_ids, spec.execution.latency)
            n_assets = spec.data.n_assets
            symbols = [f"SYN{a}" for a in range(n_assets)]
            self._periods_per_year = spec.data.periods_per_year
            self._bars, self._feature_cache = self._sim.bars, self._sim.features
            self._flat_features = None
            self._feature_args = None
            self._first_bar = self._last_start = 0  # unused: every episode starts a fresh path
            self._last_bar = np.iinfo(np.int64).max // 2  # episodes end by length only
        else:
            # a path passed as data loads (and splits) as data=csv|parquet data.path=PATH
            spec = self.config = dataclasses.replace(spec, data=file_config(spec.data, data))
            self.market: MarketData = load_market(spec.data, data)
            n_assets = self.market.n_assets
            symbols = self.market.symbols
            self._periods_per_year = self.market.periods_per_year
            self._bars = self.market.bars
            n_bars = self.market.n_bars
            # episodes live inside the configured split (data.split.use), window included
            self.split_range = split_bounds(self.market.timestamps, spec.data.split)
            lo, hi = self.split_range
            self._first_bar = lo + window - 1
            self._last_bar = hi - 1
            if spec.env.mode == "backtest":
                # every episode spans the whole range: from its first decision bar to its end
                episode_length = max(1, self._last_bar - self._first_bar)
                spec = self.config = _replace(spec, "env", episode_length=episode_length)
            self._last_start = hi - 1 - episode_length
            if self._last_start < self._first_bar:
                where = (f" (the {spec.data.split.use} split: bars {lo}..{hi - 1} of {n_bars}; "
                         f"see data.split)" if (lo, hi) != (0, n_bars) else "")
                raise ValueError(
                    f"data: {hi - lo} bars are too few for observation.window={window} plus "
                    f"env.episode_length={episode_length}; need at least "
                    f"{window + episode_length}{where}")
            extras = spec.observation.extra_features
            missing = [x for x in extras if x not in self.market.extra]
            if missing:
                raise ValueError(f"observation.extra_features: {missing} not in the data's extra "
                                 f"columns {sorted(self.market.extra)} (load them with "
                                 f"data.extra_columns)")
            # features (see _features) are computed on first use: a backtest never reads them
            self._feature_args = (feature_ids, spec.observation.ewma_halflife,
                                  spec.observation.clip, tuple(extras))
            self._feature_cache = self._flat_features = None
            feats = (*feats, *extras)

        self.render_mode = render_mode
        self.autoreset_mode = autoreset_mode
        self.metadata = dict(self.metadata, autoreset_mode=autoreset_mode)
        self._copy = bool(copy)

        self._portfolio_obs = bool(spec.observation.portfolio)
        obs_size = observation_size(window, n_assets, len(feats), self._portfolio_obs)
        self.observation_names = observation_names(window, symbols, feats,
                                                   self._portfolio_obs)

        self._discrete = spec.action.type == "discrete"
        self._levels = np.asarray(spec.action.levels, dtype=np.float64)
        self.single_observation_space, self.single_action_space = single_spaces(
            obs_size, n_assets, spec.action.type, len(self._levels), spec.observation.clip,
            len(spec.action.order_types))
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)
        self._action_shape = self.action_space.shape
        # for error messages, made now: a Box caches its bounds' text on first use, and a
        # rejected step must not change even that
        self._action_text = str(self.action_space)
        self._n_assets = n_assets
        self._order_type_codes = np.array(
            [getattr(OrderType, t.upper()) for t in spec.action.order_types], dtype=np.int64)

        # state and output buffers, allocated once
        self.portfolio = PortfolioState(np.zeros((n, N_ACCOUNT)), np.zeros((n, n_assets)),
                                        np.zeros((n, n_assets)))
        self.episode = EpisodeState(np.zeros((n, N_CLOCK), dtype=np.int64),
                                    np.zeros(n, dtype=np.uint64))
        self._rng_seeded = False
        ex, rk = spec.execution, spec.risk
        ppy = self._periods_per_year
        self._cost_params = np.zeros((n, N_COST_PARAM))
        for column, value in ((CostParam.COMMISSION_BPS, ex.commission_bps),
                              (CostParam.MIN_COMMISSION, ex.min_commission),
                              (CostParam.SLIPPAGE_BPS, ex.slippage_bps),
                              (CostParam.HALF_SPREAD_BPS, ex.half_spread_bps),
                              (CostParam.MAKER_BPS, ex.maker_bps),
                              (CostParam.TAKER_BPS, ex.taker_bps),
                              (CostParam.PER_SHARE, ex.commission_per_share),
                              (CostParam.IMPACT_COEF, ex.impact_coef),
                              (CostParam.MAX_PARTICIPATION, ex.participation_cap),
                              (CostParam.REVERSAL, ex.reversal_code),
                              (CostParam.MIN_TRADE_VALUE, ex.min_trade_value),
                              (CostParam.BORROW_PER_BAR, ex.borrow_bps_annual * 1e-4 / ppy),
                              (CostParam.CASH_RATE_PER_BAR, (1.0 + ex.cash_rate_annual)
                               ** (1.0 / ppy) - 1.0)):
            self._cost_params[:, column] = value
        if self._simulation:
            self._series = self._sim.series
        else:
            self._series = market_series(self.market, ex.impact_halflife, rk.vol_halflife,
                                         rk.atr_period)
        if not self._simulation and (ex.slippage_model == "spread_column"
                and np.isnan(self._series[SeriesField.SPREAD_BPS]).all()):
            raise ValueError("execution.slippage_model=spread_column: the data has no 'spread' "
                             "column (bps); add one or choose another slippage model")
        self._fill_mode = FillPrice.NEXT_OPEN if ex.fill_price == "next_open" else FillPrice.CLOSE
        self._models = (registry.get("slippage", ex.slippage_model).value,
                        registry.get("commission", ex.commission_model).value,
                        bool(ex.allow_short))
        self._reward_weights, custom = _reward_weights(spec.reward.components)
        self._targets = np.zeros((n, n_assets))
        self._action_f64 = np.zeros((n, n_assets))
        self._obs = np.zeros((n, obs_size), dtype=np.float32)
        self._obs_pool = [self._obs]
        self._final_obs = np.zeros((n, obs_size), dtype=np.float32)
        self._final_acct = np.zeros((n, N_ACCOUNT))
        self._final_position = np.zeros((n, n_assets))
        self._final_clock = np.zeros((n, N_CLOCK), dtype=np.int64)
        self._rewards = np.zeros(n)
        self._terminations = np.zeros(n, dtype=np.bool_)
        self._truncations = np.zeros(n, dtype=np.bool_)
        self._all_true = np.ones(n, dtype=np.bool_)
        self._all_true.setflags(write=False)
        self._kernel_mask = np.ones(n, dtype=np.bool_)
        # start bar of an autoreset env: -1 draws one (data mode); simulation mode keeps the row
        # each env's fresh path starts at
        self._random_starts = np.full(n, -1, dtype=np.int64)
        self._reset_starts = self._sim.reset_start if self._simulation else self._random_starts
        self._info_level = spec.env.info
        self._reset_done = False

        use_parallel = n >= PARALLEL_MIN_ENVS if parallel is None else bool(parallel)
        self._step_kernel, self._reset_kernel = kernel_cache.kernels(custom, use_parallel,
                                                                     self._simulation)
        # a few chunks per thread balance the load; the serial kernel takes one chunk
        self._n_chunks = 4 * numba.get_num_threads() if use_parallel else 1
        self._scalars = (self._first_bar, self._last_start, self._last_bar, episode_length,
                         window, spec.env.max_leverage, spec.env.initial_cash,
                         spec.env.bankrupt_fraction, ex.lot_size, self._fill_mode,
                         spec.reward.dsr_eta, spec.reward.scale, self._portfolio_obs,
                         spec.observation.clip, autoreset_mode == AutoresetMode.SAME_STEP,
                         *self._models)
        # the reset kernel's scalars, in its argument order
        self._reset_scalars = (self._first_bar, self._last_start, window, spec.env.initial_cash,
                               self._portfolio_obs, spec.observation.clip)
        # where orders may fill: the data's mask (union alignment), else everywhere
        if self._simulation or self.market.tradable is None:
            self._tradable = np.ones(self._bars.shape[1:], dtype=np.bool_)
        else:
            self._tradable = self.market.tradable
        # simulation mode's extra kernel arguments (kernels.step._SIM_ARGS)
        self._sim_args = self._sim.kernel_args if self._simulation else ()
        self._build_risk(spec, n, n_assets)
        self.set_per_env(per_env or {})

    def _build_risk(self, spec, n: int, n_assets: int) -> None:
        """Per-env risk parameters, risk state, event counters and fill-record buffers."""
        rk, ex = spec.risk, spec.execution
        self._risk_params = np.zeros((n, N_RISK_PARAM))
        for column, value in ((RiskParam.FRACTION, rk.fraction),
                              (RiskParam.TARGET_VOL, rk.target_vol),
                              (RiskParam.KELLY_FRACTION, rk.kelly_fraction),
                              (RiskParam.MAX_WEIGHT, rk.max_weight),
                              (RiskParam.SL_VALUE, rk.stop_loss.value),
                              (RiskParam.TP_VALUE, rk.take_profit.value),
                              (RiskParam.TRAIL_VALUE, rk.trailing_stop.value),
                              (RiskParam.MAX_DAILY_LOSS, rk.max_daily_loss),
                              (RiskParam.MAX_DRAWDOWN, rk.max_drawdown),
                              (RiskParam.MAINT_MARGIN, rk.maintenance_margin)):
            self._risk_params[:, column] = value
        # trading days: the data's calendar sessions, else UTC calendar days;
        # simulation mode writes path bar // bars_per_day for each generated row
        if self._simulation:
            self._day = self._sim.day
        else:
            self._day = np.ascontiguousarray(self.market.trading_days())
        self._trail_ref = np.zeros((n, n_assets))
        self.risk_events = np.zeros((n, N_FILL_REASONS), dtype=np.int64)
        # counters only move when a rule that counts is configured; otherwise info skips the
        # (n, N_FILL_REASONS) copy (~0.5 MB at 4,096 envs)
        self._events_possible = bool(
            rk.sizing != "direct" or rk.max_weight < spec.env.max_leverage
            or any(getattr(rk, k).kind != "none" for k in ("stop_loss", "take_profit",
                                                            "trailing_stop"))
            or rk.max_daily_loss or rk.max_drawdown or rk.maintenance_margin
            or not ex.allow_short or ex.max_participation is not None or ex.min_trade_value
            or ex.order_type != "market" or spec.action.order_types
            or not self._tradable.all())
        slots = 3 * n_assets if ex.record_fills else 1  # agent fill, stop exit, forced close
        self._rec_f = np.zeros((n, slots, N_RECORD_F))
        self._rec_i = np.zeros((n, slots, N_RECORD_I), dtype=np.int64)
        self._rec_n = np.zeros(n, dtype=np.int64)
        kinds = {name: getattr(StopKind, getattr(rk, name).kind.upper())
                 for name in ("stop_loss", "take_profit", "trailing_stop")}
        # orders: per-asset order-type choice (-1: execution.order_type), latency ring and
        # working limit/stop orders
        self._order_sel = np.full((n, n_assets), -1, dtype=np.int64)
        self._latency = np.full(n, ex.latency, dtype=np.int64)
        slots = int(self._latency.max()) + 1
        self._ring_w = np.zeros((n, slots, n_assets))
        self._ring_type = np.zeros((n, slots, n_assets), dtype=np.int64)
        self._orders = np.full((n, n_assets, N_ORDER), NO_ORDER)
        self._risk_args = (self._risk_params, self._day, self._trail_ref, self.risk_events,
                           self._rec_f, self._rec_i, self._rec_n,
                           getattr(SizingRule, rk.sizing.upper()), kinds["stop_loss"],
                           kinds["take_profit"], kinds["trailing_stop"],
                           rk.drawdown_action == "halt", float(self._periods_per_year),
                           bool(ex.record_fills), self._order_sel,
                           getattr(OrderType, ex.order_type.upper()), self._latency,
                           self._ring_w, self._ring_type, self._orders,
                           float(ex.order_offset_bps), int(ex.time_in_force),
                           self._reset_starts, self._tradable)

    def set_per_env(self, per_env: dict) -> None:
        """Set parameters that differ per env: ``{key: number or array (num_envs,)}`` with keys
        in ``PER_ENV_KEYS`` (simulation mode also ``simulation.SIM_PER_ENV_KEYS``, some (n, A)),
        validated like the config. Every key is checked before any is written, so a rejected
        call changes nothing. Takes effect from the next step; change ``execution.latency``
        between episodes (orders already in flight keep the ring slot they were given).
        """
        self._require_open("set_per_env")
        if not isinstance(per_env, dict):
            raise TypeError(f"per_env: expected a dict of key -> number or array, got "
                            f"{type(per_env).__name__}")
        n, spec = self.num_envs, self.config
        sim_keys = sim_buffers.SIM_PER_ENV_KEYS if self._simulation else {}
        unknown = [k for k in per_env if k not in PER_ENV_KEYS and k not in sim_keys]
        if unknown:
            extra = (f"; simulation mode also takes {sorted(sim_keys)}" if sim_keys else "")
            raise ValueError(f"per_env: unknown key {unknown[0]!r}; per-env keys: "
                             f"{sorted(PER_ENV_KEYS)}{extra}")
        writes = []
        if sim_keys:
            writes += sim_buffers.checked_per_env(
                self._sim, spec, {k: v for k, v in per_env.items() if k in sim_keys}, n,
                self._n_assets)
        ppy = self._periods_per_year
        events = False
        for key, values in per_env.items():
            if key in sim_keys:
                continue
            arr = per_env_array(key, values, [(n,)], allow_inf=key in PER_ENV_INF_KEYS)
            group, name = key.split(".", 1)
            for v in (arr.min(), arr.max()):  # the config's own checks, at both extremes
                with_value(spec, group, name, v).check(group)
            target, column = PER_ENV_KEYS[key]
            if key == "execution.latency":
                if not np.all(arr == np.round(arr)) or arr.max() >= self._ring_w.shape[1]:
                    raise ValueError(f"per_env[{key!r}]: expected whole bars up to "
                                     f"execution.latency={self._ring_w.shape[1] - 1} (the ring "
                                     f"size), got {arr.min()}..{arr.max()}")
                writes.append((self._latency, (slice(None),), arr.astype(np.int64)))
                continue
            if key == "execution.borrow_bps_annual":
                arr = arr * 1e-4 / ppy
            elif key == "execution.cash_rate_annual":
                arr = (1.0 + arr) ** (1.0 / ppy) - 1.0
            writes.append((getattr(self, target), (slice(None), column), arr))
            events = True
        if not self._simulation:
            cap = next((arr for target, index, arr in writes if target is self._cost_params
                        and index[1] == CostParam.MAX_PARTICIPATION),
                       self._cost_params[:, CostParam.MAX_PARTICIPATION])
            self._check_volume_for_cap(cap)
        # everything is checked: now write
        for target, index, values in writes:
            target[index] = values
        self._events_possible |= events

    def _check_volume_for_cap(self, cap: np.ndarray) -> None:
        """Refuse a participation cap on an asset that traded no volume in the split: every
        order would be cut to nothing, and an agent would silently never trade (FX and index
        feeds often carry no volume)."""
        if not np.isfinite(cap).any():
            return
        lo, hi = self.split_range
        volume = self._bars[BarField.VOLUME, lo:hi]
        dead = np.flatnonzero(~(volume > 0.0).any(axis=0))
        if dead.size:
            names = [self.market.symbols[a] for a in dead[:5]]
            raise ValueError(
                f"data: {names} traded zero volume on every bar of bars {lo}..{hi - 1}, so "
                f"execution.max_participation={float(cap[np.isfinite(cap)][0])!r} (a cap on the "
                f"bar's volume) would never let an order fill; set "
                f"execution.max_participation=null to ignore volume (feeds without volume, such "
                f"as most FX quotes), or load a volume column")

    def drain_fills(self) -> np.ndarray:
        """Fills of the last step as a structured array (needs ``execution.record_fills``).

        Fields: env, bar, asset, side (+1 buy / -1 sell), qty (signed units), price,
        commission, slippage (currency), order_type (kernels.enums.OrderType), reason
        (kernels.enums.FillReason)."""
        self._require_open("drain_fills")
        if not self.config.execution.record_fills:
            raise RuntimeError("drain_fills: fill records are off; set execution.record_fills=true "
                               "(an override, e.g. make_vec(cfg=optrader.compose('training', "
                               "['execution.record_fills=true']))) to keep them")
        out = fill_records(self._rec_f, self._rec_i, self._rec_n)
        self._rec_n[:] = 0
        return out

    # ------------------------------------------------------------------------------------------
    @property
    def start_range(self) -> tuple[int, int]:
        """(first, last) bar an episode may start at, inclusive (data mode only)."""
        if self._simulation:
            raise AttributeError("start_range: simulation mode has no shared bars to start "
                                 "at; use reset(options={'env_seeds': ...}) to share paths")
        return self._first_bar, self._last_start

    @property
    def simulation(self) -> bool:
        """True in simulation mode (env.mode=simulation): each env generates its own market."""
        return self._simulation

    def sim_bars(self) -> np.ndarray:
        """Simulation mode: each env's current bar (the one its observation ends with) as
        float64 (5, n, A) open/high/low/close/volume."""
        self._require_open("sim_bars")
        if not self._simulation:
            raise RuntimeError("sim_bars: only in simulation mode (env.mode=simulation)")
        return self._bars[:, self.episode.clock[:, Clock.BAR], :]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset all envs, or those in ``options["reset_mask"]`` (bool (n,)); returns (obs, info).

        ``options["start_bars"]`` (int (n,)) starts each reset env at that bar instead of a random
        one (e.g. antithetic pairs or deterministic evaluation); see ``start_range``.
        ``options["env_seeds"]`` (int (n,), >= 0) seeds each reset env's own random stream: its
        start bar, or in simulation mode its whole path (equal seeds, equal paths).
        """
        self._require_open("reset")
        if seed is not None:
            if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
                raise TypeError(f"seed: expected None or an integer >= 0, got "
                                f"{type(seed).__name__} {seed!r}")
            if seed < 0:
                raise ValueError(f"seed: expected None or an integer >= 0, got {seed}")
            seed = int(seed)
        mask = self._all_true
        options = {} if options is None else options
        if not isinstance(options, dict):
            raise TypeError(f"options: expected None or a dict, got {type(options).__name__}")
        unknown = set(options) - {"reset_mask", "start_bars", "env_seeds"}
        if unknown:
            raise ValueError(f"reset options: unknown keys {sorted(unknown)}; expected "
                             f"'reset_mask', 'start_bars' and/or 'env_seeds'")
        starts = self._random_starts
        env_seeds = None
        if "env_seeds" in options:
            env_seeds = np.asarray(options["env_seeds"])
            if env_seeds.dtype.kind not in "iu" or env_seeds.shape != (self.num_envs,) \
                    or (env_seeds.dtype.kind == "i" and env_seeds.min() < 0):
                raise ValueError(f"env_seeds: expected non-negative integers of shape "
                                 f"({self.num_envs},), got {env_seeds.dtype} {env_seeds.shape}")
        if "start_bars" in options and self._simulation:
            raise ValueError("start_bars: simulation mode starts every episode on a fresh path; "
                             "use env_seeds to give envs the same path")
        if "start_bars" in options:
            starts = np.asarray(options["start_bars"])
            if starts.dtype.kind not in "iu" or starts.shape != (self.num_envs,):
                raise ValueError(f"start_bars: expected an integer array of shape "
                                 f"({self.num_envs},), got {starts.dtype} {starts.shape}")
            lo, hi = self.start_range
            if starts.min() < lo or starts.max() > hi:
                raise ValueError(f"start_bars: expected bars in [{lo}, {hi}] (room for the window"
                                 f" before and the episode after), got values in "
                                 f"[{starts.min()}, {starts.max()}]")
            starts = starts.astype(np.int64)
        if "reset_mask" in options:
            mask = np.asarray(options["reset_mask"])
            if mask.dtype != np.bool_ or mask.shape != (self.num_envs,):
                raise ValueError(f"reset_mask: expected a bool array of shape ({self.num_envs},),"
                                 f" got {mask.dtype} {mask.shape}")
            if not self._reset_done and not mask.all():
                raise ValueError("reset_mask: the first reset must reset every env")
        # options are checked first so a rejected reset changes nothing, not even the seeds
        super().reset(seed=seed)
        if seed is not None or not self._rng_seeded:
            self.episode.rng[:] = self.np_random.integers(
                0, np.iinfo(np.uint64).max, size=self.num_envs, dtype=np.uint64, endpoint=True)
            self._rng_seeded = True
        if env_seeds is not None:
            self.episode.rng[mask] = _seed_words(env_seeds.astype(np.uint64))[mask]
        if self._copy:
            previous = self._obs
            self._obs = self._unshared_obs()
            if self._obs is not previous:
                np.copyto(self._obs, previous)  # rows outside reset_mask keep their observation
            del previous
        p, e = self.portfolio, self.episode
        # the kernel gets a private writable copy so one compiled signature serves every call
        kmask = self._kernel_mask
        np.copyto(kmask, mask)
        if self._simulation:
            self._reset_kernel(kmask, self._bars, self._features_flat, p.acct, p.position,
                               p.avg_px_open, e.clock, e.rng, self._obs, self.risk_events,
                               self._orders, *self._reset_scalars, self._series, self._day,
                               self._reset_starts, *self._sim.kernel_args,
                               self.config.env.episode_length)
        else:
            self._reset_kernel(kmask, starts, self._bars, self._features_flat, p.acct,
                               p.position, p.avg_px_open, e.clock, e.rng, self._obs,
                               self.risk_events, self._orders, *self._reset_scalars)
        self._rewards[mask] = 0.0
        self._terminations[mask] = False
        self._truncations[mask] = False
        self._reset_done = True
        return self._obs, self._info(mask)

    def step(self, actions):
        """Advance every env one bar; returns (obs, rewards, terminations, truncations, info)."""
        if not self._reset_done:  # also after close(): one check on the hot path
            raise RuntimeError(self._not_ready("step"))
        n_done = self._run_step_kernel(actions)
        info = self._info(self._all_true)
        if n_done and self.autoreset_mode == AutoresetMode.SAME_STEP:
            self._add_final(info)
        if not self._copy:
            return self._obs, self._rewards, self._terminations, self._truncations, info
        # obs was written into a buffer nobody else holds (see _unshared_obs): no copy needed
        return (self._obs, self._rewards.copy(), self._terminations.copy(),
                self._truncations.copy(), info)

    def _run_step_kernel(self, actions: np.ndarray) -> int:
        """Validate actions, step every env in place; returns the number of done envs.

        Every check runs before anything is written (the action buffers, the observation
        buffer swap), so a rejected step leaves the env exactly as it was."""
        actions = self._checked_actions(actions)
        previous = self._obs
        if self._copy:
            self._obs = self._unshared_obs()
        n_done = self._step_kernel(self._n_chunks, *self._range_args(actions), *self._sim_args)
        if n_done < 0:  # the kernel's own guard; _checked_actions has already rejected these
            self._obs = previous
            raise ValueError(f"actions: the step kernel refused them (status {-n_done}); no env "
                             f"was stepped")
        return n_done

    def _not_ready(self, name: str) -> str:
        """Why ``name`` cannot run: the env is closed, or has not been reset."""
        if self.closed:
            return (f"{name}: the env is closed (close() was called) and its buffers are "
                    f"released; make a new env")
        return f"{name}() called before reset()"

    def _require_open(self, name: str) -> None:
        if self.closed:
            raise RuntimeError(self._not_ready(name))

    def _range_args(self, actions: np.ndarray, **overrides) -> tuple:
        """The per-env step body's arguments (``kernels.step._RANGE_ARGS``), with ``overrides``
        replacing some by name (e.g. a backtest's episode_length or reset_start)."""
        p, e = self.portfolio, self.episode
        # overriding the features skips computing them (a lean backtest reads none)
        features = overrides["features"] if "features" in overrides else self._features_flat
        args = (actions, self._bars, features, self._series, p.acct, p.position,
                p.avg_px_open, e.clock, e.rng, self._cost_params, self._reward_weights,
                self._targets, self._obs, self._rewards, self._terminations, self._truncations,
                self._final_obs, self._final_acct, self._final_position, self._final_clock,
                *self._scalars, *self._risk_args)
        if not overrides:
            return args
        names = RANGE_ARG_NAMES
        unknown = set(overrides) - set(names)
        if unknown:
            raise KeyError(f"_range_args: unknown arguments {sorted(unknown)}")
        return tuple(overrides.get(name, a) for name, a in zip(names, args, strict=True))

    def _unshared_obs(self) -> np.ndarray:
        """An observation buffer that no caller holds, for the kernel to write every row of.

        Copying 600 KB of observations per step cost as much as a third of the kernel, and a
        freshly allocated buffer pays page faults instead; so buffers come from a small pool and
        one is reused only when its reference count shows nobody outside this env kept it (or a
        view of it). Observations a caller keeps are never overwritten.
        """
        for buf in self._obs_pool:
            # references: the pool list, the loop variable, getrefcount's own argument, and
            # self._obs when it is the current buffer
            if sys.getrefcount(buf) <= (4 if buf is self._obs else 3):
                return buf
        buf = np.empty_like(self._obs)
        if len(self._obs_pool) < OBS_POOL_SIZE:
            self._obs_pool.append(buf)
        return buf

    def _checked_actions(self, actions) -> np.ndarray:
        """The actions as the kernel's float64 (n, A) buffer, checked in full (shape, dtype,
        range, finiteness) before any buffer is written."""
        try:
            a = np.asarray(actions)
        except ValueError:  # a ragged list
            raise ValueError(f"actions: expected shape {self._action_shape} "
                             f"({self._action_text}), got a ragged "
                             f"{type(actions).__name__}") from None
        if a.shape != self._action_shape:
            raise ValueError(f"actions: expected shape {self._action_shape} "
                             f"({self._action_text}), got {a.shape}")
        n_types = self._order_type_codes.shape[0]
        if self._discrete:
            if a.dtype.kind not in "iu":
                raise TypeError(f"actions: expected integer indices into action.levels, got "
                                f"dtype {a.dtype}")
            if n_types:
                nvec = self.single_action_space.nvec
                if a.min() < 0 or not np.all(a < nvec):
                    raise ValueError(f"actions: expected indices below {nvec.tolist()} "
                                     f"({self._action_text}), got values in "
                                     f"[{a.min()}, {a.max()}]")
            elif a.min() < 0 or a.max() >= self._levels.shape[0]:
                raise ValueError(f"actions: expected indices in [0, {self._levels.shape[0] - 1}],"
                                 f" got values in [{a.min()}, {a.max()}]")
            if n_types:
                np.take(self._order_type_codes, a[:, self._n_assets:], out=self._order_sel)
                a = a[:, :self._n_assets]
            np.take(self._levels, a.reshape(self._action_f64.shape), out=self._action_f64)
            return self._action_f64
        if a.dtype.kind != "f":
            raise TypeError(f"actions: expected a float array (target weights in [-1, 1]), got "
                            f"dtype {a.dtype}")
        # finiteness before anything is written, in one BLAS dot and no temporary array: NaN or
        # inf anywhere makes the sum of squares non-finite (one that overflowed is rechecked
        # exactly); the cheapest exact test found (about 1 us, half of a.sum())
        if not math.isfinite(np.vdot(a, a)) and not np.isfinite(a).all():
            bad = np.nonzero(~np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1))[0]
            raise ValueError(f"actions: expected finite values, got NaN or inf for envs "
                             f"{bad[:10].tolist()}; no env was stepped")
        if n_types:
            sel = a[:, self._n_assets:]
            idx = np.clip(((np.clip(sel, -1, 1) + 1) / 2 * n_types).astype(np.int64), 0,
                          n_types - 1)
            np.take(self._order_type_codes, idx, out=self._order_sel)
            a = a[:, :self._n_assets]
        # one float64 buffer: a second dtype would compile the whole step kernel again
        np.copyto(self._action_f64, a, casting="same_kind")
        return self._action_f64

    def _info(self, mask: np.ndarray) -> dict[str, Any]:
        level = self._info_level
        if level == "none":
            return {}
        m = mask if mask is self._all_true else mask.copy()
        if level == "minimal":
            return {"equity": self.portfolio.acct[:, Account.EQUITY].copy(), "_equity": m}
        # one contiguous copy of the book, handed out as column views: cheaper than a strided
        # copy per key
        acct = self.portfolio.acct.copy()
        info = {
            "equity": acct[:, Account.EQUITY], "_equity": m,
            "cash": acct[:, Account.CASH], "_cash": m,
            "position": self.portfolio.position.copy(), "_position": m,
            "drawdown": acct[:, Account.DRAWDOWN], "_drawdown": m,
            "bar": self._bar_index(), "_bar": m,
            "cost": acct[:, Account.COST], "_cost": m,
        }
        if self._events_possible:
            info.update(risk_events=self.risk_events.copy(), _risk_events=m)
        return info

    def bar_of(self, i: int) -> int:
        """Env i's current bar (see ``_bar_index``)."""
        if self._simulation:
            return int(self._sim.kernel_args[6][i, SimClock.BAR_INDEX]) - 1
        return int(self.episode.clock[i, Clock.BAR])

    def _bar_index(self) -> np.ndarray:
        """Each env's current bar: an index into the data, or in simulation mode into its path
        (bar 0 is the first bar generated after the reset that started its path)."""
        if self._simulation:
            return self._sim.kernel_args[6][:, SimClock.BAR_INDEX] - 1
        return self.episode.clock[:, Clock.BAR].copy()

    def _add_final(self, info: dict[str, Any]) -> None:
        """Gymnasium SAME_STEP layout: ``final_obs`` object array, ``final_info`` batched dict."""
        done = self._terminations | self._truncations
        final_obs = np.full(self.num_envs, None, dtype=object)
        for i in np.nonzero(done)[0]:
            final_obs[i] = self._final_obs[i].copy()
        fa = self._final_acct
        final_info = {"equity": fa[:, Account.EQUITY].copy(), "_equity": done}
        if self._info_level == "full":
            final_info.update(
                cash=fa[:, Account.CASH].copy(), _cash=done,
                position=self._final_position.copy(), _position=done,
                drawdown=fa[:, Account.DRAWDOWN].copy(), _drawdown=done,
                bar=self._final_clock[:, Clock.BAR].copy(), _bar=done,
                cost=fa[:, Account.COST].copy(), _cost=done,
            )
        info.update(final_obs=final_obs, _final_obs=done, final_info=final_info,
                    _final_info=done)

    # ------------------------------------------------------------------------------------------
    def render(self):
        """A text table of the first envs (ansi returns it, human prints it)."""
        if self.render_mode is None:
            return None
        acct, pos, clock = self.portfolio.acct, self.portfolio.position, self.episode.clock
        lines = [f"{'env':>4} {'bar':>7} {'equity':>14} {'drawdown':>9}  position"]
        for i in range(min(self.num_envs, 8)):
            lines.append(f"{i:>4} {clock[i, Clock.BAR]:>7} {acct[i, Account.EQUITY]:>14.2f} "
                         f"{acct[i, Account.DRAWDOWN]:>9.4f}  {np.array2string(pos[i], 4)}")
        if self.num_envs > 8:
            lines.append(f"... {self.num_envs - 8} more envs")
        text = "\n".join(lines)
        if self.render_mode == "human":
            print(text)
            return None
        return text

    def close_extras(self, **kwargs):
        """Drop references to the shared market arrays; the buffers go with the env. Every later
        call but close() raises RuntimeError saying the env is closed."""
        self._feature_cache = self._flat_features = None
        self._feature_args = None
        self._reset_done = False  # step's before-reset check then reports the closed env

    @property
    def _features(self) -> np.ndarray:
        """float32 (T, A, F) observation features of the market (data mode: computed on first
        use, causal, kernels/features.py; then the data's extra columns the config asks for,
        clipped, NaN -> 0)."""
        if self._feature_cache is None and self._feature_args is not None:
            feature_ids, halflife, clip, extras = self._feature_args
            bars = self.market.bars
            out = np.empty((bars.shape[1], bars.shape[2], len(feature_ids)), dtype=np.float32)
            compute_features_nb(bars, feature_ids, halflife, clip, out)
            if extras:
                cols = [np.clip(np.nan_to_num(self.market.extra[x], nan=0.0, posinf=clip,
                                              neginf=-clip), -clip, clip) for x in extras]
                out = np.ascontiguousarray(np.concatenate(
                    [out, np.stack(cols, axis=-1).astype(np.float32)], axis=-1))
            self._feature_cache = out
        return self._feature_cache

    @property
    def _features_flat(self) -> np.ndarray:
        """The features as one flat (T * A * F,) view: the kernels read windows as runs (made
        once: every step passes it)."""
        if self._flat_features is None:
            self._flat_features = self._features.reshape(-1)
        return self._flat_features


def _seed_words(seeds: np.ndarray) -> np.ndarray:
    """Well-mixed uint64 stream words from user seeds (the splitmix64 finaliser), so nearby
    seeds give unrelated streams."""
    with np.errstate(over="ignore"):
        z = seeds + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _reward_weights(components: dict) -> tuple[np.ndarray, tuple]:
    """Weight vector of the built-in components and the (fn, weight) pairs of custom ones."""
    weights = np.zeros(N_REWARDS)
    custom = []
    for name, w in components.items():
        entry = registry.get("reward", name)
        if entry.builtin:
            weights[entry.value] = w
        elif w != 0.0:
            custom.append((entry.value, float(w)))
    if custom:
        weights[RewardId.CUSTOM] = 1.0  # the fused custom term already carries its weights
    return weights, tuple(custom)


def _replace(spec, group: str, **changes):
    import dataclasses

    return dataclasses.replace(spec, **{group: dataclasses.replace(getattr(spec, group),
                                                                   **changes)})
