"""The Gymnasium 1.x VectorEnv contract: spaces, dtypes, autoreset modes, reset_mask, close."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers.vector import RecordEpisodeStatistics

import optrader
from optrader.envs.vector import TradingVectorEnv
from tests.envs.conftest import SMALL, bars_frame, make_env


def test_make_vec_returns_native_vector_env(frame):
    envs = gym.make_vec("optrader/Trading-v0", num_envs=5, vectorization_mode="vector_entry_point",
                        overrides=SMALL, data=frame)
    assert isinstance(envs.unwrapped, TradingVectorEnv)
    assert isinstance(envs.unwrapped, gym.vector.VectorEnv)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, info = envs.reset(seed=0)
    assert obs.shape == (5, envs.single_observation_space.shape[0]) and obs.dtype == np.float32
    assert envs.observation_space.contains(obs)
    obs, r, te, tr, info = envs.step(envs.action_space.sample())
    assert r.shape == (5,) and r.dtype == np.float64
    assert te.dtype == np.bool_ and tr.dtype == np.bool_
    for k in ("equity", "cash", "position", "drawdown", "bar", "cost"):
        assert k in info and info[f"_{k}"].all()
    assert info["position"].shape == (5, 1)
    assert len(envs.unwrapped.observation_names) == obs.shape[1]
    envs.close()
    envs.close()  # closing twice is fine


@pytest.mark.parametrize("action_type", ["continuous", "discrete"])
@pytest.mark.parametrize("n_assets", [1, 3])
def test_spaces(action_type, n_assets):
    env = make_env(4, [f"action={action_type}"], data=bars_frame(n_assets=n_assets))
    if action_type == "continuous":
        assert env.single_action_space == gym.spaces.Box(-1, 1, (n_assets,), np.float32)
        assert env.action_space.shape == (4, n_assets)
    elif n_assets == 1:
        assert env.single_action_space == gym.spaces.Discrete(3)
        assert env.action_space.shape == (4,)
    else:
        assert isinstance(env.single_action_space, gym.spaces.MultiDiscrete)
        assert env.action_space.shape == (4, n_assets)
    obs, _ = env.reset(seed=1)
    for _ in range(25):
        obs, *_ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
    expected = 4 * n_assets * 1 + n_assets + 4
    assert env.single_observation_space.shape == (expected,)


def test_discrete_levels_are_target_weights():
    env = make_env(3, ["action=discrete", "execution=zero_cost"])
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([0, 1, 2]))
    o = env.market.field("open")[:, 0]
    weights = info["position"][:, 0] * o[info["bar"]] / 100_000.0
    np.testing.assert_allclose(weights, [-1.0, 0.0, 1.0], atol=1e-12)


def test_next_step_autoreset_sequence():
    env = make_env(3, ["env.episode_length=5"])
    env.reset(seed=0)
    a = np.zeros(env.action_space.shape, dtype=np.float32)
    for _ in range(5):
        obs, r, te, tr, info = env.step(a)
    assert tr.all() and not te.any()
    final_bar = info["bar"].copy()
    obs, r, te, tr, info = env.step(np.ones_like(a))  # ignored: this step resets
    assert np.all(r == 0.0) and not te.any() and not tr.any()
    assert np.all(info["equity"] == 100_000.0) and np.all(info["position"] == 0.0)
    assert not np.array_equal(info["bar"], final_bar)
    assert np.all(obs[:, -1] == 1.0)  # time left: a fresh episode
    obs, r, te, tr, info = env.step(a)
    assert np.all(obs[:, -1] == pytest.approx(1 - 1 / 5))


def test_same_step_autoreset_final_obs_and_info():
    env = make_env(3, ["env.episode_length=5"], autoreset_mode=AutoresetMode.SAME_STEP)
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    env.reset(seed=0)
    a = np.full(env.action_space.shape, 0.5, dtype=np.float32)
    for _ in range(4):
        obs, r, te, tr, info = env.step(a)
        assert "final_obs" not in info
    equity_before = info["equity"].copy()
    obs, r, te, tr, info = env.step(a)
    assert tr.all()
    assert info["_final_obs"].all() and info["_final_info"].all()
    assert info["final_obs"].dtype == object and info["final_obs"][0].shape == obs[0].shape
    final_obs = np.stack(info["final_obs"])
    assert np.all(final_obs[:, -1] == 0.0)  # the final obs has no time left
    assert np.all(obs[:, -1] == 1.0)  # the returned obs is the reset one
    assert np.all(info["equity"] == 100_000.0)  # info describes the new episode
    assert not np.allclose(info["final_info"]["equity"], 100_000.0)
    assert np.all(info["final_info"]["equity"] != equity_before)  # it moved on the last step


def test_reset_mask_resets_only_masked_envs():
    env = make_env(4)
    env.reset(seed=0)
    for _ in range(3):
        _, _, _, _, info = env.step(np.full(env.action_space.shape, 0.5, dtype=np.float32))
    before = {k: np.copy(v) for k, v in info.items()}
    mask = np.array([True, False, True, False])
    obs, info = env.reset(options={"reset_mask": mask})
    assert np.all(info["equity"][mask] == 100_000.0)
    np.testing.assert_array_equal(info["equity"][~mask], before["equity"][~mask])
    np.testing.assert_array_equal(info["bar"][~mask], before["bar"][~mask])
    np.testing.assert_array_equal(info["_equity"], mask)
    assert np.all(obs[mask][:, -1] == 1.0)


def test_record_episode_statistics_wrapper():
    env = RecordEpisodeStatistics(make_env(4, ["env.episode_length=6"]))
    env.reset(seed=0)
    episodes = 0
    for _ in range(14):
        _, _, _, _, info = env.step(env.action_space.sample())
        if "episode" in info:
            episodes += int(info["_episode"].sum())
            assert np.all(info["episode"]["l"][info["_episode"]] == 6)
    assert episodes == 8


def test_single_env_passes_check_env(frame):
    env = gym.make("optrader/Trading-v0", overrides=SMALL, data=frame)
    check_env(env.unwrapped, skip_render_check=False)
    obs, info = env.reset(seed=3)
    assert obs.shape == env.observation_space.shape and isinstance(info["equity"], float)
    obs, r, te, tr, info = env.step(env.action_space.sample())
    assert isinstance(r, float) and isinstance(te, bool)
    assert info["position"].shape == (1,)


def test_max_episode_steps_and_render(frame):
    envs = gym.make_vec("optrader/Trading-v0", num_envs=2, vectorization_mode="vector_entry_point",
                        overrides=SMALL, data=frame, max_episode_steps=3, render_mode="ansi")
    envs.reset(seed=0)
    for _ in range(3):
        *_, tr, _ = envs.step(envs.action_space.sample())
    assert tr.all()
    text = envs.render()
    lines = text.splitlines()
    assert "equity" in lines[0] and len(lines) == 3  # a header and one row per env
    for i, row in enumerate(lines[1:]):
        assert float(row.split()[2]) == pytest.approx(envs.unwrapped.portfolio.acct[i, 1])


def test_python_api_matches_gymnasium(frame):
    cfg = optrader.compose("training", [*SMALL, "execution.commission_bps=5"])
    a = optrader.make_vec(cfg, num_envs=3, data=frame)
    b = gym.make_vec("optrader/Trading-v0", num_envs=3, vectorization_mode="vector_entry_point",
                     overrides=[*SMALL, "execution.commission_bps=5"], data=frame)
    assert a.config == b.unwrapped.config
    oa, _ = a.reset(seed=1)
    ob, _ = b.reset(seed=1)
    np.testing.assert_array_equal(oa, ob)


def test_copy_false_returns_reused_buffers(frame):
    env = make_env(2, copy=False)
    o1, _ = env.reset(seed=0)
    o2, *_ = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    assert o1 is o2  # documented: the same buffer, overwritten by each step
    env_c = make_env(2)
    c1, _ = env_c.reset(seed=0)
    c2, *_ = env_c.step(np.zeros(env_c.action_space.shape, dtype=np.float32))
    assert c1 is not c2


def test_start_bars_option():
    env = make_env(4)
    lo, hi = env.start_range
    starts = np.array([lo, hi, lo + 3, lo + 3])
    obs, info = env.reset(seed=0, options={"start_bars": starts})
    np.testing.assert_array_equal(info["bar"], starts)
    np.testing.assert_array_equal(obs[2], obs[3])
    with pytest.raises(ValueError, match=r"start_bars: expected bars in \["):
        env.reset(options={"start_bars": np.array([lo - 1, lo, lo, lo])})
    with pytest.raises(ValueError, match="start_bars: expected an integer array"):
        env.reset(options={"start_bars": np.zeros(4)})


def test_kept_observations_are_never_overwritten():
    env = make_env(4, ["env.episode_length=5"])
    obs, _ = env.reset(seed=0)
    kept = [(obs, obs.copy())]
    view = None
    for k in range(12):
        obs, *_ = env.step(np.full(env.action_space.shape, 0.3, dtype=np.float32))
        if k % 3 == 0:
            kept.append((obs, obs.copy()))
        if k == 5:
            view = (obs[1:3], obs[1:3].copy())  # a view keeps its base alive and unshared
        obs = None  # drop the rest: their buffers may be reused
    obs, _ = env.reset(options={"reset_mask": np.array([True, False, True, False])})
    for arr, snapshot in [*kept, view]:
        np.testing.assert_array_equal(arr, snapshot)


def test_dropped_observation_buffers_are_reused():
    env = make_env(4)
    env.reset(seed=0)
    ids = set()
    for _ in range(20):
        obs, *_ = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
        ids.add(id(obs))
        del obs
    assert len(env._obs_pool) <= 4 and len(ids) <= 2


def test_masked_reset_keeps_other_rows_observation():
    env = make_env(4)
    env.reset(seed=0)
    obs, *_ = env.step(np.full(env.action_space.shape, 0.5, dtype=np.float32))
    before = obs.copy()
    obs2, _ = env.reset(options={"reset_mask": np.array([False, True, False, True])})
    np.testing.assert_array_equal(obs2[[0, 2]], before[[0, 2]])
    assert np.all(obs2[[1, 3], -1] == 1.0)
