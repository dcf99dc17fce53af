"""Simulation mode (env=simulation) through the env: every env generates its own market inside the
fused step. Checked here: the incremental features/series against the load-time kernels run on the
env's own path, no look-ahead, determinism (seeds, serial/threaded, NEXT_STEP/SAME_STEP, batch
independence), fresh paths on autoreset, accounting, the market's moments and stresses seen
through ``sim_bars()``, path bars in fill records, per-env market parameters, input errors, and
risk rules against a crash.

Expected values come from first principles (the process's annual parameters, the fill timing of
``kernels/step.py``) or from the load-time kernels (``compute_features_nb``, ``ewma_nb``,
``compute_risk_series_nb``) run on bars read back from the env, never from the code under test.
"""

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import optrader
from kernels.enums import (
    Account,
    BarField,
    Clock,
    FeatureId,
    FillReason,
    SeriesField,
    SimStress,
)
from kernels.features import compute_features_nb, ewma_nb
from kernels.risk import compute_risk_series_nb
from optrader.config import ConfigError
from tests.envs.conftest import bars_frame, make_env

WINDOW = 4
WARMUP = 8
BASE = {"observation.window": str(WINDOW), "simulation.warmup": str(WARMUP),
        "env.episode_length": "20"}
OPEN, HIGH, LOW, CLOSE, VOLUME = (BarField.OPEN, BarField.HIGH, BarField.LOW, BarField.CLOSE,
                                  BarField.VOLUME)
DT = 1.0 / 252.0


def sim_cfg(overrides=()):
    """BASE with ``overrides`` ("key=value") replacing or adding keys."""
    merged = dict(BASE)
    for o in overrides:
        key, value = o.split("=", 1)
        merged[key] = value
    return optrader.compose(env="simulation", overrides=[f"{k}={v}" for k, v in merged.items()])


def make_sim(num_envs=4, overrides=(), **kw):
    return optrader.make_vec(sim_cfg(overrides), num_envs=num_envs, **kw)


def segment_rows(env, i):
    """Env i's rows from its segment's first row to its current row (its path so far, while the
    segment has not wrapped), checking that they lie inside env i's own segment."""
    seg = env._sim.seg_rows
    t = int(env.episode.clock[i, Clock.BAR])
    assert i * seg <= t < (i + 1) * seg, f"env {i}: current row {t} outside its segment"
    return np.arange(i * seg, t + 1)


def reference(bars, spec):
    """Load-time features (T, A, F) float32 and series (N, T, A) of a path bars (5, T, A)."""
    bars = np.ascontiguousarray(bars, dtype=np.float64)
    n_bars, n_assets = bars.shape[1], bars.shape[2]
    ids = np.array([getattr(FeatureId, f.upper()) for f in spec.observation.features],
                   dtype=np.int64)
    feats = np.empty((n_bars, n_assets, ids.shape[0]), dtype=np.float32)
    compute_features_nb(bars, ids, float(spec.observation.ewma_halflife),
                        float(spec.observation.clip), feats)
    series = np.full((4, n_bars, n_assets), np.nan)
    ewma_nb(np.ascontiguousarray(bars[VOLUME]), float(spec.execution.impact_halflife),
            series[SeriesField.AVG_VOLUME])
    compute_risk_series_nb(bars, float(spec.risk.vol_halflife), int(spec.risk.atr_period),
                           series[SeriesField.SIGMA], series[SeriesField.RET_MEAN],
                           series[SeriesField.ATR])
    return feats, series


def market_obs(obs, env):
    """The market part of each env's observation as (n, W, A, F)."""
    spec = env.config
    w, a, f = spec.observation.window, spec.data.n_assets, len(spec.observation.features)
    return obs[:, :w * a * f].reshape(obs.shape[0], w, a, f)


def rollout(env, n_steps, seed=0, options=None, action_fn=None):
    """(obs, rewards, terminated, truncated, info, sim bars) per step, the reset first."""
    rng = np.random.default_rng(123)
    obs, info = env.reset(seed=seed, options=options)
    traj = [(obs.copy(), None, None, None, info, env.sim_bars().copy())]
    for k in range(n_steps):
        if action_fn is None:
            a = rng.uniform(-1, 1, env.action_space.shape)
        else:
            a = action_fn(k)
        obs, r, te, tr, info = env.step(a)
        traj.append((obs.copy(), r.copy(), te.copy(), tr.copy(), info, env.sim_bars().copy()))
    return traj


def assert_same_traj(ta, tb, rows_a=slice(None), rows_b=slice(None)):
    for (oa, ra, tea, tra, ia, ba), (ob, rb, teb, trb, ib, bb) in zip(ta, tb, strict=True):
        assert oa[rows_a].tobytes() == ob[rows_b].tobytes()
        assert ba[:, rows_a].tobytes() == bb[:, rows_b].tobytes()
        if ra is not None:
            for xa, xb in ((ra, rb), (tea, teb), (tra, trb)):
                assert xa[rows_a].tobytes() == xb[rows_b].tobytes()
        for k in ("equity", "cash", "position", "cost", "drawdown", "bar"):
            assert ia[k][rows_a].tobytes() == ib[k][rows_b].tobytes(), k


def test_reset_row_is_the_envs_own_last_warmup_bar():
    """After a reset each env stands on its own segment's row of path bar warmup - 1, so the
    first stepped bar opens at the close sim_bars() showed at the reset (no gap without a
    crash)."""
    env = make_sim(3)
    _, info = env.reset(seed=1)
    np.testing.assert_array_equal(info["bar"], WARMUP - 1)
    reset_close = env.sim_bars()[CLOSE].copy()
    seg = env._sim.seg_rows
    rows = env.episode.clock[:, Clock.BAR]
    env.step(np.zeros((3, 1)))
    np.testing.assert_array_equal(env.sim_bars()[OPEN], reset_close)
    assert np.all((rows >= np.arange(3) * seg) & (rows < np.arange(1, 4) * seg)), rows


# ---- 1. incremental features and series == the load-time kernels on the env's path -----------
CAUSAL_OVERRIDES = ["data.n_assets=2", "observation.features=[log_return,range,volume]",
                    "observation.ewma_halflife=5.0", "execution.impact_halflife=3.0",
                    "risk.vol_halflife=4.0", "risk.atr_period=3", "data.intrabar_vol=0.8"]


def test_reset_features_and_series_equal_load_time_kernels():
    env = make_sim(3, CAUSAL_OVERRIDES)
    obs, _ = env.reset(seed=11)
    spec = env.config
    for i in range(3):
        rows = segment_rows(env, i)
        assert rows.size == WARMUP  # the warm-up path: rows [i R, i R + warmup)
        path = env._bars[:, rows, :]
        assert np.all(path[OPEN, 0] == spec.data.init_price)  # a reset path starts at init_price
        feats, series = reference(path, spec)
        np.testing.assert_array_equal(env._features[rows], feats)
        np.testing.assert_array_equal(market_obs(obs, env)[i], feats[-WINDOW:])
        for field in (SeriesField.AVG_VOLUME, SeriesField.SIGMA, SeriesField.RET_MEAN,
                      SeriesField.ATR):
            np.testing.assert_array_equal(env._series[field][rows], series[field])


def test_features_and_series_still_equal_after_the_segment_wraps():
    env = make_sim(3, [*CAUSAL_OVERRIDES, "env.episode_length=80"])
    env.reset(seed=12)
    spec = env.config
    seg = env._sim.seg_rows
    paths = [[env._bars[:, segment_rows(env, i), :]] for i in range(3)]
    rng = np.random.default_rng(0)
    n_steps = 2 * seg + 7  # the segment moves its last rows to its start twice
    for _ in range(n_steps):
        obs, _, te, tr, _ = env.step(rng.uniform(-0.5, 0.5, env.action_space.shape))
        assert not (te | tr).any()
        bars = env.sim_bars()
        for i in range(3):
            paths[i].append(bars[:, i:i + 1, :])
    for i in range(3):
        path = np.concatenate(paths[i], axis=1)
        assert path.shape[1] == WARMUP + n_steps
        feats, series = reference(path, spec)
        np.testing.assert_array_equal(market_obs(obs, env)[i], feats[-WINDOW:])
        t = int(env.episode.clock[i, Clock.BAR])
        rows = np.arange(t - WINDOW + 1, t + 1)
        assert rows[0] >= i * seg and rows[-1] < (i + 1) * seg
        np.testing.assert_array_equal(env._features[rows], feats[-WINDOW:])
        for field in (SeriesField.AVG_VOLUME, SeriesField.SIGMA, SeriesField.RET_MEAN,
                      SeriesField.ATR):
            np.testing.assert_array_equal(env._series[field][rows], series[field][-WINDOW:])


# ---- 2. no look-ahead ------------------------------------------------------------------------
@pytest.mark.parametrize("fill", ["next_open", "close"])
def test_future_crash_changes_nothing_observed_before_it(fill):
    length = 30
    env = make_sim(2, ["simulation.crash.probability=1.0", f"env.episode_length={length}",
                       f"execution.fill_price={fill}"],
                   per_env={"simulation.crash.size": np.array([0.0, -0.2])})
    # a seed whose crash bar leaves several steps before and after it
    for s in range(100):
        env.reset(seed=0, options={"env_seeds": np.array([s, s])})
        crash = env._sim.kernel_args[4][:, SimStress.CRASH_BAR].copy()
        if WARMUP + 5 <= crash[0] <= WARMUP + length - 6:
            break
    assert crash[0] == crash[1]  # same seed, same draws: size 0 only hides the gap
    crash = int(crash[0])
    traj = rollout(env, length, options={"env_seeds": np.array([s, s])},
                   action_fn=lambda k: np.full((2, 1), np.cos(0.7 * k)))
    before = after = 0
    for k, (obs, r, _, _, info, bars) in enumerate(traj):
        bar = info["bar"]
        assert bar[0] == bar[1] == WARMUP - 1 + k
        if bar[0] < crash:
            assert obs[0].tobytes() == obs[1].tobytes()
            np.testing.assert_array_equal(bars[:, 0], bars[:, 1])
            np.testing.assert_array_equal(info["equity"][0], info["equity"][1])
            if r is not None:
                assert r[0] == r[1]
            before += 1
        else:
            assert not np.array_equal(obs[0], obs[1])
            assert info["equity"][0] != info["equity"][1]
            after += 1
        if bar[0] == crash:
            prev_close = traj[k - 1][5][CLOSE]
            assert bars[OPEN, 0, 0] == prev_close[0, 0]  # size 0: no gap
            np.testing.assert_allclose(bars[OPEN, 1, 0] / prev_close[1, 0], 0.8, rtol=1e-12)
    assert before >= 6 and after >= 6


# ---- 3. determinism --------------------------------------------------------------------------
def test_serial_and_threaded_kernels_bit_identical_over_autoresets():
    over = ["data.n_assets=2", "simulation=stressed", f"simulation.warmup={WARMUP}"]
    ts = rollout(make_sim(8, over, parallel=False), 50, seed=5)
    tp = rollout(make_sim(8, over, parallel=True), 50, seed=5)
    assert sum(int((x[2] | x[3]).sum()) for x in ts[1:]) >= 16  # two autoresets per env
    assert_same_traj(ts, tp)


def test_same_seed_same_run_different_seed_different_path():
    t1 = rollout(make_sim(4), 45, seed=42)
    t2 = rollout(make_sim(4), 45, seed=42)
    assert_same_traj(t1, t2)
    t3 = rollout(make_sim(4), 45, seed=43)
    assert not np.array_equal(t1[0][5], t3[0][5])
    assert all(not np.array_equal(a[5][CLOSE], b[5][CLOSE]) for a, b in zip(t1, t3, strict=True))
    # and the envs of one batch have different paths
    closes = t1[10][5][CLOSE, :, 0]
    assert np.unique(closes).size == 4


def test_env_trajectory_independent_of_batch_size_and_position():
    seeds4 = np.array([10, 11, 12, 13])
    where = np.array([5, 9, 2, 15])  # the same seeds at other indices of a batch of 16
    seeds16 = 100 + np.arange(16)
    seeds16[where] = seeds4

    def actions(seeds):
        return lambda k: np.sin(0.37 * seeds[:, None] + 0.3 * k)

    t4 = rollout(make_sim(4), 50, options={"env_seeds": seeds4}, action_fn=actions(seeds4))
    t16 = rollout(make_sim(16), 50, options={"env_seeds": seeds16}, action_fn=actions(seeds16))
    assert_same_traj(t4, t16, slice(None), where)


def _obs_streams(env, n_steps, actions):
    """Per env: the sequence of observations, path bars and equities of its episodes, with the
    final observation of a SAME_STEP episode put before the next episode's first."""
    obs, info = env.reset(seed=21)
    n = env.num_envs
    streams = [[(obs[i].copy(), int(info["bar"][i]), float(info["equity"][i]))]
               for i in range(n)]
    for _ in range(n_steps):
        obs, _, te, tr, info = env.step(actions)
        for i in range(n):
            if (te[i] or tr[i]) and "final_obs" in info:
                fi = info["final_info"]
                streams[i].append((info["final_obs"][i], int(fi["bar"][i]),
                                   float(fi["equity"][i])))
            streams[i].append((obs[i].copy(), int(info["bar"][i]), float(info["equity"][i])))
    return streams


def test_next_step_and_same_step_give_the_same_paths():
    actions = np.array([[0.5], [-0.3], [1.0], [0.0]])
    ns = _obs_streams(make_sim(4), 62, actions)
    ss = _obs_streams(make_sim(4, autoreset_mode=AutoresetMode.SAME_STEP), 62, actions)
    for i in range(4):
        m = min(len(ns[i]), len(ss[i]))
        assert m >= 3 * 20
        for (oa, ba, ea), (ob, bb, eb) in zip(ns[i][:m], ss[i][:m], strict=True):
            assert oa.tobytes() == ob.tobytes()
            assert ba == bb and ea == eb


# ---- 4. autoreset: a fresh path --------------------------------------------------------------
def test_autoreset_starts_a_fresh_path_next_step():
    length = 20
    env = make_sim(4)
    cash0 = env.config.env.initial_cash
    env.reset(seed=3)
    a = np.full((4, 1), 0.7)
    for _ in range(length):
        obs, r, te, tr, info = env.step(a)
    assert tr.all() and not te.any()
    np.testing.assert_array_equal(info["bar"], WARMUP - 1 + length)
    last_obs, last_close = obs.copy(), env.sim_bars()[CLOSE].copy()
    assert np.all(info["position"] != 0)
    obs, r, te, tr, info = env.step(a)
    np.testing.assert_array_equal(info["bar"], WARMUP - 1)
    np.testing.assert_array_equal(info["equity"], cash0)
    np.testing.assert_array_equal(info["cash"], cash0)
    np.testing.assert_array_equal(info["position"], 0.0)
    np.testing.assert_array_equal(r, 0.0)
    assert not (te | tr).any()
    assert np.all(env.sim_bars()[CLOSE] != last_close)
    assert all(not np.array_equal(obs[i], last_obs[i]) for i in range(4))
    # the new episode runs its full length again
    for k in range(length):
        obs, r, te, tr, info = env.step(a)
        assert tr.all() == (k == length - 1)
    np.testing.assert_array_equal(info["bar"], WARMUP - 1 + length)


def test_autoreset_path_features_restart_from_the_new_path():
    env = make_sim(3, [*CAUSAL_OVERRIDES, "env.episode_length=25"])
    env.reset(seed=4)
    spec = env.config
    for _ in range(26):  # 25 steps, then the reset step
        obs, _, _, _, info = env.step(np.full(env.action_space.shape, 0.3))
    np.testing.assert_array_equal(info["bar"], WARMUP - 1)
    for i in range(3):
        rows = segment_rows(env, i)
        assert rows.size == WARMUP
        path = env._bars[:, rows, :]
        assert np.all(path[OPEN, 0] == spec.data.init_price)
        feats, series = reference(path, spec)
        np.testing.assert_array_equal(market_obs(obs, env)[i], feats[-WINDOW:])
        np.testing.assert_array_equal(env._series[SeriesField.ATR][rows], series[SeriesField.ATR])
        np.testing.assert_array_equal(env._series[SeriesField.SIGMA][rows],
                                      series[SeriesField.SIGMA])


def test_same_step_final_obs_and_bar_match_next_step():
    length = 20
    env_ns = make_sim(4)
    env_ss = make_sim(4, autoreset_mode=AutoresetMode.SAME_STEP)
    cash0 = env_ns.config.env.initial_cash
    env_ns.reset(seed=8)
    env_ss.reset(seed=8)
    a = np.array([[0.2], [1.0], [-1.0], [0.5]])
    for k in range(length):
        o_ns, r_ns, _, tr_ns, i_ns = env_ns.step(a)
        o_ss, r_ss, _, tr_ss, i_ss = env_ss.step(a)
        np.testing.assert_array_equal(r_ns, r_ss)
        if k < length - 1:
            assert o_ns.tobytes() == o_ss.tobytes()
            assert "final_obs" not in i_ss
    assert tr_ns.all() and tr_ss.all()
    fi = i_ss["final_info"]
    np.testing.assert_array_equal(fi["bar"], WARMUP - 1 + length)
    np.testing.assert_array_equal(fi["equity"], i_ns["equity"])
    np.testing.assert_array_equal(fi["position"], i_ns["position"])
    for i in range(4):
        assert i_ss["final_obs"][i].tobytes() == o_ns[i].tobytes()
    np.testing.assert_array_equal(i_ss["bar"], WARMUP - 1)
    np.testing.assert_array_equal(i_ss["equity"], cash0)
    # NEXT_STEP's reset step returns the observation SAME_STEP returned with the final one
    o_ns2, _, _, _, i_ns2 = env_ns.step(a)
    assert o_ns2.tobytes() == o_ss.tobytes()
    np.testing.assert_array_equal(i_ns2["bar"], WARMUP - 1)


# ---- 5. accounting ---------------------------------------------------------------------------
@pytest.mark.parametrize("execution", ["default", "realistic"])
def test_equity_is_cash_plus_positions_at_the_generated_close(execution):
    env = make_sim(8, ["data.n_assets=2", f"execution={execution}", "env.episode_length=25"])
    traj = rollout(env, 60, seed=2)
    total_cost = 0.0
    for *_, info, bars in traj:
        value = (info["position"] * bars[CLOSE]).sum(axis=1)
        np.testing.assert_allclose(info["equity"], info["cash"] + value, rtol=1e-12)
        assert np.all(info["cost"] >= 0)
        total_cost += info["cost"].sum()
    assert total_cost > 0


@pytest.mark.parametrize("fill", ["next_open", "close"])
def test_full_weight_without_costs_tracks_the_close(fill):
    """Weight 1, no costs. next_open: the first fill is at open f with all the cash, so
    equity_1 = E0 close_1 / open_1; afterwards cash is 0 and equity_f = units close_f, i.e.
    equity_f / equity_t = close_f / close_t. close: the fill is at close t, so the ratio is
    close_f / close_t from the first step on."""
    env = make_sim(4, ["execution=zero_cost", f"execution.fill_price={fill}",
                       "env.episode_length=40"])
    traj = rollout(env, 40, seed=6, action_fn=lambda k: np.ones((4, 1)))
    cash0 = env.config.env.initial_cash
    for k in range(1, len(traj)):
        _, r, _, _, info, bars = traj[k]
        prev_info, prev_bars = traj[k - 1][4], traj[k - 1][5]
        if k == 1 and fill == "next_open":
            expected = cash0 * bars[CLOSE, :, 0] / bars[OPEN, :, 0]
        else:
            expected = prev_info["equity"] * bars[CLOSE, :, 0] / prev_bars[CLOSE, :, 0]
        np.testing.assert_allclose(info["equity"], expected, rtol=1e-12)
        np.testing.assert_allclose(r, np.log(info["equity"] / prev_info["equity"]), rtol=1e-9,
                                   atol=1e-14)
        np.testing.assert_allclose(info["position"][:, 0] * bars[CLOSE, :, 0], info["equity"],
                                   rtol=1e-12)


# ---- 6. the market's moments, seen through the env -------------------------------------------
def run_paths(env, seed=0, n_episodes=1, options=None, include_reset=False):
    """Bars (5, steps, n, A), path bars (steps, n) and the stress table of each episode, holding
    no position: the bars generated by the episode's steps (path bars warmup ..
    warmup + episode_length - 1), after its reset bar (warmup - 1) if ``include_reset``."""
    length = env.config.env.episode_length
    a = np.zeros(env.action_space.shape)
    episodes = []
    _, info = env.reset(seed=seed, options=options)
    for e in range(n_episodes):
        if e:
            _, _, _, _, info = env.step(a)  # NEXT_STEP's reset step
        stress = env._sim.kernel_args[4].copy()
        bars, idx = [env.sim_bars().copy()], [info["bar"]]
        for _ in range(length):
            _, _, _, _, info = env.step(a)
            bars.append(env.sim_bars().copy())
            idx.append(info["bar"])
        first = 0 if include_reset else 1
        episodes.append((np.stack(bars[first:], axis=1), np.stack(idx[first:]), stress))
    return episodes


def test_gbm_moments_and_correlation_through_the_env():
    vol, drift, rho = 0.2, 1.0, 0.6
    env = make_sim(512, ["data.n_assets=2", f"data.correlation={rho}", f"data.drift={drift}",
                         f"data.volatility={vol}", "env.episode_length=60"])
    (bars, idx, _), = run_paths(env, seed=1)
    assert np.all(idx == WARMUP + np.arange(60)[:, None])
    r = np.log(bars[CLOSE, 1:] / bars[CLOSE, :-1])  # (steps, n, A) close-to-close
    n = r.shape[0] * r.shape[1]
    sd = vol * np.sqrt(DT)
    for a in range(2):
        x = r[..., a].ravel()
        assert abs(x.std() / sd - 1.0) < 5.0 / np.sqrt(2 * n)
        # Ito: E log return = (drift - vol**2 / 2) dt
        assert abs(x.mean() - (drift - 0.5 * vol**2) * DT) < 5.0 * sd / np.sqrt(n)
    corr = np.corrcoef(r[..., 0].ravel(), r[..., 1].ravel())[0, 1]
    assert abs(corr - rho) < 5.0 * (1 - rho**2) / np.sqrt(n)
    # envs are independent of each other
    cross = np.corrcoef(r[:, :-1, 0].ravel(), r[:, 1:, 0].ravel())[0, 1]
    assert abs(cross) < 5.0 / np.sqrt(n)
    # no gaps without a crash: every open is the previous close
    np.testing.assert_array_equal(bars[OPEN, 1:], bars[CLOSE, :-1])


def test_crash_is_one_twenty_percent_gap_per_episode():
    length = 40
    env = make_sim(256, ["simulation=crash", f"simulation.warmup={WARMUP}",
                         f"env.episode_length={length}"])
    crash_bars = []
    for bars, idx, stress in run_paths(env, seed=2, n_episodes=2, include_reset=True):
        ratio = bars[OPEN, 1:, :, 0] / bars[CLOSE, :-1, :, 0]  # (steps, n)
        gapped = ratio != 1.0
        np.testing.assert_array_equal(gapped.sum(axis=0), 1)
        np.testing.assert_allclose(ratio[gapped], 0.8, rtol=1e-12)
        step, env_i = np.nonzero(gapped)
        bar = idx[1:][step, env_i]
        assert bar.min() >= WARMUP and bar.max() <= WARMUP + length - 1
        np.testing.assert_array_equal(bar[np.argsort(env_i, kind="stable")],
                                      stress[:, SimStress.CRASH_BAR])
        crash_bars.append(bar)
    crash_bars = np.concatenate(crash_bars)
    assert crash_bars.min() <= WARMUP + 3 and crash_bars.max() >= WARMUP + length - 4


def test_drought_cuts_volume_tenfold_inside_its_window():
    env = make_sim(256, ["simulation=drought", f"simulation.warmup={WARMUP}",
                         "env.episode_length=60"])
    (bars, idx, stress), = run_paths(env, seed=3)
    start = stress[:, SimStress.DROUGHT_START]
    length = stress[:, SimStress.DROUGHT_LEN]
    assert np.all((start >= WARMUP) & (start <= WARMUP + 59)) and np.all(length == 20)
    inside = (idx >= start) & (idx < start + length)
    lv = np.log(bars[VOLUME, :, :, 0])
    assert inside.sum() > 1000 and (~inside).sum() > 1000
    assert abs(lv[inside].mean() - lv[~inside].mean() - np.log(0.1)) < 0.1


def _sq_return_autocorr(bars):
    r = np.log(bars[CLOSE, 1:, :, 0] / bars[CLOSE, :-1, :, 0])
    x = r * r - (r * r).mean()
    return (x[1:] * x[:-1]).sum() / (x * x).sum(), r


def test_garch_clusters_volatility_and_default_does_not():
    over = ["env.episode_length=60"]
    (plain, _, _), = run_paths(make_sim(512, over), seed=4)
    (garch, _, _), = run_paths(make_sim(512, [*over, "simulation.garch.alpha=0.1",
                                              "simulation.garch.beta=0.85"]), seed=4)
    rho_plain, _ = _sq_return_autocorr(plain)
    rho_garch, r = _sq_return_autocorr(garch)
    # GARCH(1,1): rho_1(eps**2) = alpha (1 - alpha beta - beta**2) / (1 - 2 alpha beta - beta**2)
    assert abs(rho_plain) < 0.03
    assert rho_garch > 0.08
    # the unconditional variance stays vol**2
    assert abs(r.std() / (0.2 * np.sqrt(DT)) - 1.0) < 0.1


# ---- 7. fill records carry path bars ---------------------------------------------------------
@pytest.mark.parametrize("fill", ["next_open", "close"])
def test_fill_records_carry_path_bars(fill):
    env = make_sim(4, ["execution=zero_cost", "execution.record_fills=true",
                       f"execution.fill_price={fill}"])
    env.reset(seed=9)
    prev = env.sim_bars().copy()
    rng = np.random.default_rng(1)
    n_fills = n_reset_steps = 0
    for _ in range(45):
        _, _, te, tr, info = env.step(rng.uniform(-1, 1, (4, 1)))
        bars = env.sim_bars().copy()
        fills = env.drain_fills()
        resetting = info["bar"] == WARMUP - 1  # NEXT_STEP's reset step: no fills
        n_reset_steps += int(resetting.sum())
        assert not np.isin(fills["env"], np.nonzero(resetting)[0]).any()
        for f in fills:
            e = f["env"]
            assert f["reason"] == FillReason.SIGNAL
            if fill == "next_open":
                assert f["bar"] == info["bar"][e]
                assert f["price"] == bars[OPEN, e, f["asset"]]
            else:
                assert f["bar"] == info["bar"][e] - 1
                assert f["price"] == prev[CLOSE, e, f["asset"]]
        n_fills += len(fills)
        prev = bars
    assert n_reset_steps == 8 and n_fills > 100


def test_same_step_fill_records_of_done_envs_carry_their_last_bar():
    env = make_sim(4, ["execution=zero_cost", "execution.record_fills=true"],
                   autoreset_mode=AutoresetMode.SAME_STEP)
    env.reset(seed=9)
    rng = np.random.default_rng(2)
    checked_done = 0
    for _ in range(45):
        _, _, te, tr, info = env.step(rng.uniform(-1, 1, (4, 1)))
        fills = env.drain_fills()
        done = te | tr
        for f in fills:
            e = f["env"]
            if done[e]:
                assert f["bar"] == info["final_info"]["bar"][e] == WARMUP - 1 + 20
                checked_done += 1
            else:
                assert f["bar"] == info["bar"][e]
    assert checked_done >= 4


# ---- 8. per-env market parameters and input errors -------------------------------------------
def test_per_env_volatility_per_asset():
    n = 128
    vols = np.empty((n, 2))
    vols[: n // 2] = [0.1, 0.3]
    vols[n // 2:] = [0.4, 0.05]
    env = make_sim(n, ["data.n_assets=2", "env.episode_length=60"],
                   per_env={"data.volatility": vols})
    (bars, _, _), = run_paths(env, seed=5)
    r = np.log(bars[CLOSE, 1:] / bars[CLOSE, :-1])  # (steps, n, A)
    for group in (slice(0, n // 2), slice(n // 2, n)):
        for a in range(2):
            x = r[:, group, a].ravel()
            sd = vols[group][0, a] * np.sqrt(DT)
            assert abs(x.std() / sd - 1.0) < 5.0 / np.sqrt(2 * x.size)


def test_per_env_scalar_volatility_per_env():
    vols = np.array([0.1, 0.4] * 64)
    env = make_sim(128, ["env.episode_length=60"], per_env={"data.volatility": vols})
    (bars, _, _), = run_paths(env, seed=6)
    r = np.log(bars[CLOSE, 1:, :, 0] / bars[CLOSE, :-1, :, 0])
    for v in (0.1, 0.4):
        x = r[:, vols == v].ravel()
        assert abs(x.std() / (v * np.sqrt(DT)) - 1.0) < 5.0 / np.sqrt(2 * x.size)


@pytest.mark.parametrize("per_env,match", [
    ({"data.volatilty": [0.1, 0.2]}, "unknown key 'data.volatilty'"),
    ({"data.volatility": [0.1, 0.2, 0.3]}, r"expected a scalar or shape"),
    ({"data.jumps.intensity": np.ones((2, 1))}, r"expected a scalar or shape \(2,\)"),
    ({"data.volatility": [0.1, -0.2]}, r"data\.volatility"),
    ({"data.ar1": [0.0, 1.0]}, r"data\.ar1"),
    ({"simulation.garch.alpha": [0.1, 0.5], "simulation.garch.beta": 0.6}, r"alpha \+ beta"),
    ({"simulation.crash.probability": [0.5, 1.5]}, r"simulation\.crash\.probability"),
    ({"data.volatility": [0.1, np.nan]}, "finite"),
])
def test_bad_per_env_market_parameters(per_env, match):
    with pytest.raises(ValueError, match=match):
        make_sim(2, per_env=per_env)


@pytest.mark.parametrize("overrides,match", [
    (["simulation.garch.alpha=0.5", "simulation.garch.beta=0.6"], r"alpha \+ beta"),
    (["data.ar1=1.0"], r"data\.ar1"),
    (["simulation.warmup=3"], r"simulation\.warmup"),
    (["data=dataframe"], r"data\.source"),
    (["execution.slippage_model=spread_column"], "spread_column"),
])
def test_bad_simulation_configs(overrides, match):
    with pytest.raises(ConfigError, match=match):
        make_sim(2, overrides)


def test_sim_mode_api_errors():
    env = make_sim(2)
    with pytest.raises(ValueError, match="start_bars"):
        env.reset(seed=0, options={"start_bars": np.array([10, 10])})
    with pytest.raises(AttributeError, match="start_range"):
        _ = env.start_range
    with pytest.raises(ValueError, match="data"):
        optrader.make_vec(sim_cfg(), num_envs=2, data=bars_frame())
    assert env.simulation
    with pytest.raises(RuntimeError, match="sim_bars"):
        make_env(2).sim_bars()


# ---- 9. risk rules in simulation mode --------------------------------------------------------
def test_stop_loss_exits_a_crash_at_the_open():
    length = 40
    env = make_sim(64, ["simulation=crash", f"simulation.warmup={WARMUP}",
                        f"env.episode_length={length}", "execution=zero_cost",
                        "execution.record_fills=true", "risk.stop_loss.kind=pct",
                        "risk.stop_loss.value=0.05"])
    env.reset(seed=10)
    crash = env._sim.kernel_args[4][:, SimStress.CRASH_BAR].copy()
    a = np.ones((64, 1))
    prev_bars = env.sim_bars().copy()
    prev_events = np.zeros_like(env.risk_events)
    prev_pos = np.zeros(64)
    checked = 0
    for _ in range(length):
        avg_px = env.portfolio.avg_px_open[:, 0].copy()
        prev_equity = env.portfolio.acct[:, Account.EQUITY].copy()
        _, _, _, _, info = env.step(a)
        bars = env.sim_bars().copy()
        fills = env.drain_fills()
        events = info["risk_events"]
        # envs that held a position into their crash bar (not those crashing on the first bar)
        for i in np.nonzero((info["bar"] == crash) & (prev_pos > 0))[0]:
            open_ = bars[OPEN, i, 0]
            np.testing.assert_allclose(open_ / prev_bars[CLOSE, i, 0], 0.8, rtol=1e-12)
            if open_ <= 0.95 * avg_px[i]:  # the gap jumps the stop
                assert events[i, FillReason.STOP_LOSS] == prev_events[i, FillReason.STOP_LOSS] + 1
                stop = fills[(fills["env"] == i) & (fills["reason"] == FillReason.STOP_LOSS)]
                assert len(stop) == 1 and stop["price"][0] == open_
                assert stop["bar"][0] == crash[i]
                assert info["position"][i, 0] == 0.0
                # out at the open: the loss is the gap, nothing of the crash bar's body
                np.testing.assert_allclose(info["equity"][i] / prev_equity[i], 0.8, rtol=1e-9)
                checked += 1
        prev_bars, prev_events = bars, events.copy()
        prev_pos = info["position"][:, 0].copy()
    assert checked >= 30
    assert info["risk_events"][:, FillReason.STOP_LOSS].sum() >= checked


@pytest.mark.parametrize("bars_per_day,resumes", [(1, True), (10_000, False)])
def test_daily_loss_limit_flattens_on_the_crash_and_resumes_next_day(bars_per_day, resumes):
    """A -20 % gap on a full position breaks a 10 % daily limit: flat at the crash bar's close,
    trading again on the next day (one bar per day) or never (one day per episode). Low volatility
    so that no ordinary bar comes near the limit."""
    length = 30
    env = make_sim(32, ["simulation=crash", f"simulation.warmup={WARMUP}",
                        f"env.episode_length={length}", "execution=zero_cost",
                        "data.volatility=0.05", "risk.max_daily_loss=0.1",
                        f"simulation.bars_per_day={bars_per_day}"])
    env.reset(seed=11)
    crash = env._sim.kernel_args[4][:, SimStress.CRASH_BAR].copy()
    held = crash > WARMUP  # a crash on the first bar hits before the first fill
    assert held.sum() >= 20
    a = np.ones((32, 1))
    seen = np.zeros(32, dtype=bool)
    for _ in range(length):
        _, _, _, _, info = env.step(a)
        bar = info["bar"]
        hit = held & (bar == crash)
        assert np.all(info["risk_events"][hit, FillReason.DAILY_LOSS] == 1)
        assert np.all(info["position"][hit, 0] == 0.0)
        after = held & (bar > crash)
        assert np.all((info["position"][after, 0] > 0) == resumes)
        assert np.all(info["risk_events"][bar < crash, FillReason.DAILY_LOSS] == 0)
        seen |= hit
    assert np.array_equal(seen, held)


def test_guarded_risk_on_a_stressed_market_runs_and_counts_events():
    env = make_sim(64, ["data.n_assets=2", "simulation=stressed", f"simulation.warmup={WARMUP}",
                        "risk=guarded", "execution=realistic", "env.episode_length=40"])
    traj = rollout(env, 85, seed=12)
    for obs, _, _, _, info, bars in traj:
        assert np.isfinite(obs).all() and np.isfinite(info["equity"]).all()
        value = (info["position"] * bars[CLOSE]).sum(axis=1)
        np.testing.assert_allclose(info["equity"], info["cash"] + value, rtol=1e-12)
    # counters are per episode: the largest count of each reason over the run
    most = np.max([x[4]["risk_events"].max(axis=0) for x in traj], axis=0)
    assert most[FillReason.STOP_LOSS] + most[FillReason.TRAILING_STOP] > 0


def test_single_env_in_simulation_mode_passes_check_env():
    """gymnasium.make(..., env="simulation") is a plain gymnasium.Env on a fresh path."""
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    env = gym.make("optrader/Trading-v0", env="simulation",
                   overrides=[f"{k}={v}" for k, v in BASE.items()])
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=3)
    assert info["bar"] == WARMUP - 1
    done = False
    steps = 0
    while not done:
        obs, _, term, trunc, info = env.step(env.action_space.sample())
        done = term or trunc
        steps += 1
    assert trunc and steps == int(BASE["env.episode_length"])
    assert info["bar"] == WARMUP - 1 + steps
