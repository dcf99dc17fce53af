"""The fused step and reset kernels against the plain-Python ReferenceEnv on random inputs."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.enums import (
    N_ACCOUNT,
    N_CLOCK,
    N_COST_PARAM,
    N_FILL_REASONS,
    N_ORDER,
    N_RECORD_F,
    N_RECORD_I,
    N_REWARDS,
    N_RISK_PARAM,
    N_SERIES,
    NO_ORDER,
    Account,
    Clock,
    CommissionModel,
    CostParam,
    FillPrice,
    ReversalSizing,
    RewardId,
    RiskParam,
    SeriesField,
    SlippageModel,
)
from kernels.features import compute_features_nb
from kernels.step import reset_envs_nb, step_envs_nb, step_envs_par_nb
from optrader.envs.layout import FEATURE_IDS, observation_size
from tests.reference import FEATURES, ReferenceEnv, reference_features


def random_bars(rng, n_bars, n_assets):
    """Consistent OHLCV: a random walk with gaps and wicks, (5, T, A) float64."""
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_bars, n_assets)), axis=0))
    open_ = np.vstack([close[:1], close[:-1]]) * np.exp(rng.normal(0, 0.005, (n_bars, n_assets)))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, (n_bars, n_assets))))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, (n_bars, n_assets))))
    volume = rng.lognormal(13, 0.5, (n_bars, n_assets))
    return np.ascontiguousarray(np.stack([open_, high, low, close, volume]))


def as_lists(bars):
    return [bars[k].tolist() for k in range(5)]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), n_assets=st.integers(1, 3),
       halflife=st.floats(1.0, 50.0),
       feats=st.lists(st.sampled_from(FEATURES), min_size=1, max_size=3, unique=True))
def test_features_match_reference(seed, n_assets, halflife, feats):
    bars = random_bars(np.random.default_rng(seed), 40, n_assets)
    out = np.empty((40, n_assets, len(feats)), dtype=np.float32)
    compute_features_nb(bars, np.array([FEATURE_IDS[f] for f in feats]), halflife, 5.0, out)
    ref = np.array(reference_features(as_lists(bars), feats, halflife, 5.0), dtype=np.float32)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def run_kernel_and_reference(seed, n_envs, n_assets, n_steps, fill_mode, lot_size, costs,
                             weights, max_leverage, parallel, same_step=False, window=3,
                             episode_length=8, execution=None):
    """execution: optional dict of the issue-3 cost options (names as in ReferenceEnv)."""
    ex = {"slippage_model": "fixed", "commission_model": "bps", "taker_bps": -1.0,
          "per_share": 0.0, "impact_coef": 0.0, "max_participation": 1.0,
          "min_trade_value": 0.0, "allow_short": True, "borrow_per_bar": 0.0,
          "cash_rate_per_bar": 0.0, "reversal": "equity", **(execution or {})}
    zero_volume = ex.pop("zero_volume", 0.0)  # fraction of bars that traded nothing
    rng = np.random.default_rng(seed)
    n_bars = 40
    bars = random_bars(rng, n_bars, n_assets)
    bars[4][rng.random((n_bars, n_assets)) < zero_volume] = 0.0
    feats = ("log_return", "range")
    features = np.empty((n_bars, n_assets, len(feats)), dtype=np.float32)
    compute_features_nb(bars, np.array([FEATURE_IDS[f] for f in feats]), 16.0, 10.0, features)
    obs_size = observation_size(window, n_assets, len(feats), True)
    acct = np.zeros((n_envs, N_ACCOUNT))
    position = np.zeros((n_envs, n_assets))
    avg_px = np.zeros((n_envs, n_assets))
    clock = np.zeros((n_envs, N_CLOCK), dtype=np.int64)
    rng_state = rng.integers(0, 2**63, n_envs).astype(np.uint64)
    cost_params = np.zeros((n_envs, N_COST_PARAM))
    for k, name in enumerate(("commission_bps", "min_commission", "slippage_bps",
                              "half_spread_bps")):
        cost_params[:, getattr(CostParam, name.upper())] = costs[k]
    for name in ("taker_bps", "per_share", "impact_coef", "min_trade_value", "borrow_per_bar",
                 "cash_rate_per_bar"):
        cost_params[:, getattr(CostParam, name.upper())] = ex[name]
    part = ex["max_participation"]
    cost_params[:, CostParam.MAX_PARTICIPATION] = np.inf if part is None else part
    cost_params[:, CostParam.REVERSAL] = getattr(ReversalSizing, ex["reversal"].upper())
    cost_params[:, CostParam.MAKER_BPS] = -1.0
    series = np.full((N_SERIES, n_bars, n_assets), np.nan)
    series[SeriesField.AVG_VOLUME] = rng.lognormal(13, 0.3, (n_bars, n_assets))
    series[SeriesField.SIGMA] = rng.uniform(0.0, 0.03, (n_bars, n_assets))
    series[SeriesField.SPREAD_BPS] = np.where(rng.random((n_bars, n_assets)) < 0.2, np.nan,
                                              rng.uniform(0, 20, (n_bars, n_assets)))
    models = (getattr(SlippageModel, ex["slippage_model"].upper()),
              getattr(CommissionModel, ex["commission_model"].upper()), ex["allow_short"])
    reward_w = np.zeros(N_REWARDS)
    for name, w in weights.items():
        reward_w[getattr(RewardId, name.upper())] = w
    obs = np.zeros((n_envs, obs_size), dtype=np.float32)
    final = [np.zeros((n_envs, obs_size), dtype=np.float32), np.zeros((n_envs, N_ACCOUNT)),
             np.zeros((n_envs, n_assets)), np.zeros((n_envs, N_CLOCK), dtype=np.int64)]
    reward = np.zeros(n_envs)
    term = np.zeros(n_envs, dtype=np.bool_)
    trunc = np.zeros(n_envs, dtype=np.bool_)
    first_bar, last_bar = window - 1, n_bars - 1
    last_start = last_bar - episode_length
    initial_cash = 10_000.0
    flat = features.reshape(-1)
    events = np.zeros((n_envs, N_FILL_REASONS), dtype=np.int64)
    orders = np.full((n_envs, n_assets, N_ORDER), NO_ORDER)
    risk_params = np.zeros((n_envs, N_RISK_PARAM))
    risk_params[:, RiskParam.MAX_WEIGHT] = 100.0
    risk_args = (risk_params, np.arange(n_bars, dtype=np.int64), np.zeros((n_envs, n_assets)),
                 events, np.zeros((n_envs, 1, N_RECORD_F)),
                 np.zeros((n_envs, 1, N_RECORD_I), dtype=np.int64),
                 np.zeros(n_envs, dtype=np.int64), 0, 0, 0, 0, False, 252.0, False,
                 np.full((n_envs, n_assets), -1, dtype=np.int64), 0,
                 np.zeros(n_envs, dtype=np.int64), np.zeros((n_envs, 1, n_assets)),
                 np.zeros((n_envs, 1, n_assets), dtype=np.int64), orders, 10.0, 1,
                 np.full(n_envs, -1, dtype=np.int64),  # reset_start: random start bars
                 np.ones((n_bars, n_assets), dtype=np.bool_))  # tradable everywhere
    reset_envs_nb(np.ones(n_envs, dtype=np.bool_), np.full(n_envs, -1), bars, flat, acct,
                  position, avg_px, clock, rng_state, obs, events, orders, first_bar, last_start, window, initial_cash, True, 10.0)
    refs = []
    lists = as_lists(bars)
    ref_feats = features.astype(np.float64).tolist()
    for i in range(n_envs):
        ref = ReferenceEnv(lists, ref_feats, window=window, episode_length=episode_length,
                           initial_cash=initial_cash, max_leverage=max_leverage,
                           lot_size=lot_size,
                           fill_price="next_open" if fill_mode == FillPrice.NEXT_OPEN else "close",
                           commission_bps=costs[0], min_commission=costs[1],
                           slippage_bps=costs[2], half_spread_bps=costs[3], weights=weights,
                           series={"avg_volume": series[SeriesField.AVG_VOLUME].tolist(),
                                   "sigma": series[SeriesField.SIGMA].tolist(),
                                   "spread_bps": series[SeriesField.SPREAD_BPS].tolist()},
                           **ex)
        ref_obs = ref.reset(int(clock[i, Clock.BAR]))
        np.testing.assert_allclose(obs[i], np.array(ref_obs, dtype=np.float32), rtol=1e-6)
        refs.append(ref)
    kernel = step_envs_par_nb if parallel else step_envs_nb
    target = np.zeros((n_envs, n_assets))
    for _ in range(n_steps):
        action = rng.uniform(-1.3, 1.3, (n_envs, n_assets))
        expected = []
        for i in range(n_envs):
            if clock[i, Clock.NEEDS_RESET]:
                expected.append(None)
                continue
            expected.append(refs[i].step(action[i].tolist()))
        n_done = kernel(4, action, bars, flat, series, acct, position, avg_px, clock, rng_state,
                        cost_params, reward_w, target, obs, reward, term, trunc, *final,
                        first_bar, last_start, last_bar, episode_length, window, max_leverage,
                        initial_cash, 0.5, lot_size, fill_mode, 0.01, 1.0, True, 10.0,
                        same_step, *models, *risk_args)
        assert n_done == int(np.sum(term | trunc))
        for i in range(n_envs):
            if expected[i] is None:  # next-step autoreset: obs of a fresh episode, reward 0
                assert reward[i] == 0.0 and not term[i] and not trunc[i]
                ref = refs[i]
                np.testing.assert_allclose(obs[i], np.array(ref.reset(int(clock[i, Clock.BAR])),
                                                            dtype=np.float32), rtol=1e-6)
                continue
            ref = refs[i]
            ref_obs, ref_r, ref_term, ref_trunc = expected[i]
            assert term[i] == ref_term and trunc[i] == ref_trunc
            assert math.isclose(reward[i], ref_r, rel_tol=1e-9, abs_tol=1e-12)
            book = final[1][i] if (same_step and (ref_term or ref_trunc)) else acct[i]
            pos = final[2][i] if (same_step and (ref_term or ref_trunc)) else position[i]
            assert math.isclose(book[Account.EQUITY], ref.equity, rel_tol=1e-12)
            assert math.isclose(book[Account.CASH], ref.cash, rel_tol=1e-12, abs_tol=1e-6)
            assert math.isclose(book[Account.COST], ref.cost, rel_tol=1e-12, abs_tol=1e-9)
            np.testing.assert_allclose(pos, ref.position, rtol=1e-12, atol=1e-12)
            got_obs = final[0][i] if (same_step and (ref_term or ref_trunc)) else obs[i]
            np.testing.assert_allclose(got_obs, np.array(ref_obs, dtype=np.float32), rtol=1e-5,
                                       atol=1e-6)
            if same_step and (ref_term or ref_trunc):
                refs[i].reset(int(clock[i, Clock.BAR]))
                assert clock[i, Clock.STEP] == 0


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), n_assets=st.integers(1, 3),
       fill_next_open=st.booleans(), lot=st.sampled_from([0.0, 0.0, 1.0, 10.0]),
       commission=st.sampled_from([0.0, 1.0, 10.0]), min_comm=st.sampled_from([0.0, 1.0]),
       slip=st.sampled_from([0.0, 2.0]), spread=st.sampled_from([0.0, 0.5]),
       lev=st.sampled_from([0.5, 1.0, 3.0]), parallel=st.booleans(), same_step=st.booleans(),
       weights=st.sampled_from([{"log_return": 1.0}, {"pnl": 2.0},
                                {"differential_sharpe": 1.0},
                                {"log_return": 1.0, "drawdown_penalty": 0.5, "cost_penalty": 1.0}]))
def test_step_matches_reference(seed, n_assets, fill_next_open, lot, commission, min_comm, slip,
                                spread, lev, parallel, same_step, weights):
    run_kernel_and_reference(seed, 3, n_assets, 20,
                             FillPrice.NEXT_OPEN if fill_next_open else FillPrice.CLOSE, lot,
                             (commission, min_comm, slip, spread), weights, lev, parallel,
                             same_step)


def test_bad_action_changes_nothing():
    """A NaN anywhere in the batch returns BAD_ACTION before any env's state moves."""
    rng = np.random.default_rng(0)
    bars = random_bars(rng, 30, 1)
    features = np.zeros((30, 1, 1), dtype=np.float32)
    n = 4
    acct = np.zeros((n, N_ACCOUNT))
    acct[:, Account.EQUITY] = 1.0
    position, avg_px = np.zeros((n, 1)), np.zeros((n, 1))
    clock = np.full((n, N_CLOCK), 5, dtype=np.int64)
    clock[:, Clock.NEEDS_RESET] = 0
    before = (acct.copy(), position.copy(), clock.copy())
    action = np.zeros((n, 1))
    action[2, 0] = np.nan
    size = observation_size(2, 1, 1, True)
    status = step_envs_nb(1, action, bars, features.reshape(-1), np.zeros((N_SERIES, 30, 1)), acct, position, avg_px, clock,
                          np.zeros(n, dtype=np.uint64), np.zeros((n, N_COST_PARAM)),
                          np.zeros(N_REWARDS), np.zeros((n, 1)), np.zeros((n, size), np.float32),
                          np.zeros(n), np.zeros(n, np.bool_), np.zeros(n, np.bool_),
                          np.zeros((n, size), np.float32), np.zeros((n, N_ACCOUNT)),
                          np.zeros((n, 1)), np.zeros((n, N_CLOCK), np.int64),
                          1, 10, 29, 5, 2, 1.0, 1.0, 0.5, 0.0, 0, 0.01, 1.0, True, 10.0, False,
                          0, 0, True, np.zeros((n, N_RISK_PARAM)), np.arange(30),
                          np.zeros((n, 1)), np.zeros((n, N_FILL_REASONS), np.int64),
                          np.zeros((n, 1, N_RECORD_F)), np.zeros((n, 1, N_RECORD_I), np.int64),
                          np.zeros(n, np.int64), 0, 0, 0, 0, False, 252.0, False,
                          np.full((n, 1), -1, np.int64), 0, np.zeros(n, np.int64),
                          np.zeros((n, 1, 1)), np.zeros((n, 1, 1), np.int64),
                          np.full((n, 1, N_ORDER), NO_ORDER), 10.0, 1,
                          np.full(n, -1, np.int64), np.ones((30, 1), np.bool_))
    assert status < 0
    np.testing.assert_array_equal(acct, before[0])
    np.testing.assert_array_equal(position, before[1])
    np.testing.assert_array_equal(clock, before[2])


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31), n_assets=st.integers(1, 2), fill_next_open=st.booleans(),
       slippage=st.sampled_from(["fixed", "spread_column", "linear_impact", "sqrt_impact"]),
       commission=st.sampled_from(["bps", "per_share"]), taker=st.sampled_from([-1.0, 3.0]),
       part=st.sampled_from([None, 1.0, 1e-4, 1e-3]), min_trade=st.sampled_from([0.0, 500.0]),
       allow_short=st.booleans(), borrow=st.sampled_from([0.0, 1e-4]),
       cash_rate=st.sampled_from([0.0, 1e-4, -1e-4]), lot=st.sampled_from([0.0, 1.0]),
       parallel=st.booleans(), reversal=st.sampled_from(["equity", "cash"]),
       zero_volume=st.sampled_from([0.0, 0.3]))
def test_execution_options_match_reference(seed, n_assets, fill_next_open, slippage, commission,
                                           taker, part, min_trade, allow_short, borrow,
                                           cash_rate, lot, parallel, reversal, zero_volume):
    run_kernel_and_reference(
        seed, 3, n_assets, 20, FillPrice.NEXT_OPEN if fill_next_open else FillPrice.CLOSE, lot,
        (2.0, 1.0, 1.0, 0.5), {"log_return": 1.0, "cost_penalty": 1.0}, 2.0, parallel,
        execution={"slippage_model": slippage, "commission_model": commission,
                   "taker_bps": taker, "per_share": 0.01, "impact_coef": 0.3,
                   "max_participation": part, "min_trade_value": min_trade,
                   "allow_short": allow_short, "borrow_per_bar": borrow,
                   "cash_rate_per_bar": cash_rate, "reversal": reversal,
                   "zero_volume": zero_volume})
