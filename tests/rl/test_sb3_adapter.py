"""The Stable-Baselines3 VecEnv adapter (optrader.rl.sb3) against the native SAME_STEP env it
wraps: infos for finished envs only, terminal observations, truncation flags, episode stats,
the VecEnv methods, PPO and SB3's wrappers over it, and SB3's make_vec_env on the single env."""

import warnings

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from gymnasium.vector import AutoresetMode  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.evaluation import evaluate_policy  # noqa: E402
from stable_baselines3.common.monitor import Monitor  # noqa: E402
from stable_baselines3.common.vec_env import VecCheckNan, VecMonitor, VecNormalize  # noqa: E402

import optrader  # noqa: E402
from optrader.rl.sb3 import SB3VecEnv, make_sb3_vec_env  # noqa: E402
from tests.envs.conftest import SMALL, bars_frame  # noqa: E402

# bankruptcy at -3 % with 30 bps commission: random trading ends some episodes by termination,
# others by the 20-step limit, at different steps per env
ENDINGS = [*SMALL, "env.bankrupt_fraction=0.97", "execution.commission_bps=30"]
N = 8


def _native(mode=AutoresetMode.SAME_STEP, n=N, overrides=ENDINGS):
    return optrader.make_vec(optrader.compose("training", overrides), num_envs=n,
                             data=bars_frame(), autoreset_mode=mode)


def _actions(steps, n=N, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (steps, n, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def lockstep():
    """60 steps of the adapter and of a native SAME_STEP twin with the same seed and actions."""
    adapter, twin = SB3VecEnv(_native()), _native()
    adapter.seed(7)
    obs_a = adapter.reset()
    obs_n, _ = twin.reset(seed=7, options={"env_seeds": np.arange(7, 7 + N)})
    np.testing.assert_array_equal(obs_a, obs_n)
    steps = []
    for a in _actions(60):
        o, r, d, infos = adapter.step(a)
        no, nr, te, tr, ninfo = twin.step(a)
        steps.append((o.copy(), r.copy(), d.copy(), infos, no.copy(), nr.copy(), te.copy(),
                      tr.copy(), ninfo))
    yield steps
    adapter.close()
    twin.close()


def test_steps_match_the_native_env(lockstep):
    for o, r, d, _, no, nr, te, tr, _ in lockstep:
        np.testing.assert_array_equal(o, no)
        np.testing.assert_array_equal(r, nr)
        np.testing.assert_array_equal(d, te | tr)
    dones = np.array([s[2] for s in lockstep])
    assert 0 < dones.sum() < dones.size, "expected some envs to finish, and not all at once"


def test_infos_only_for_finished_envs(lockstep):
    keys = {"terminal_observation", "TimeLimit.truncated", "episode", "equity"}
    for _, _, d, infos, *_ in lockstep:
        assert isinstance(infos, list) and len(infos) == N
        for i, info in enumerate(infos):
            if d[i]:
                assert set(info) == keys, f"env {i}: expected keys {keys}, got {set(info)}"
            else:
                assert info == {}, f"env {i} did not finish: expected {{}}, got {info}"


def test_terminal_observation_is_the_native_final_obs(lockstep):
    seen = 0
    for _, _, d, infos, _, _, _, _, ninfo in lockstep:
        for i in np.flatnonzero(d):
            term = infos[i]["terminal_observation"]
            assert term.dtype == np.float32
            np.testing.assert_array_equal(term, ninfo["final_obs"][i])
            seen += 1
    assert seen > N


def test_terminal_observation_matches_next_step_mode():
    """Independent of SAME_STEP's final_obs: under NEXT_STEP the step that ends an episode
    returns its final observation; compare each env's first episode."""
    adapter, nxt = SB3VecEnv(_native()), _native(AutoresetMode.NEXT_STEP)
    adapter.seed(3)
    adapter.reset()
    nxt.reset(seed=3, options={"env_seeds": np.arange(3, 3 + N)})
    pending = set(range(N))
    for a in _actions(40, seed=1):
        _, _, d, infos = adapter.step(a)
        no, _, te, tr, _ = nxt.step(a)
        for i in sorted(pending & set(np.flatnonzero(te | tr).tolist())):
            assert d[i]
            np.testing.assert_array_equal(infos[i]["terminal_observation"], no[i])
            pending.discard(i)
    assert not pending, f"envs {sorted(pending)} never finished"


def test_time_limit_truncated_flag(lockstep):
    kinds = set()
    for _, _, d, infos, _, _, te, tr, _ in lockstep:
        for i in np.flatnonzero(d):
            expected = bool(tr[i] and not te[i])
            assert infos[i]["TimeLimit.truncated"] is expected, \
                f"env {i}: terminated={te[i]}, truncated={tr[i]}, got {infos[i]}"
            kinds.add(expected)
    assert kinds == {True, False}, "expected both truncations and terminations"


def test_episode_info_against_manual_accumulation(lockstep):
    ret, length = np.zeros(N), np.zeros(N, dtype=int)
    episodes = 0
    for _, r, d, infos, *_ in lockstep:
        ret += r
        length += 1
        for i in np.flatnonzero(d):
            ep = infos[i]["episode"]
            assert ep["l"] == length[i]
            assert ep["r"] == pytest.approx(ret[i], rel=1e-12, abs=1e-15)
            assert ep["t"] >= 0.0
            ret[i], length[i] = 0.0, 0
            episodes += 1
    assert episodes > N


def test_get_attr_set_attr_env_method_and_wrapped():
    venv = SB3VecEnv(_native(n=4))
    assert venv.observation_space == venv.env.single_observation_space
    assert venv.action_space == venv.env.single_action_space
    assert venv.get_attr("num_envs") == [4, 4, 4, 4]
    assert venv.get_attr("render_mode", indices=[1, 3]) == [None, None]
    assert venv.get_attr("num_envs", indices=2) == [4]
    with pytest.raises(AttributeError):
        venv.get_attr("no_such_attribute")
    assert venv.has_attr("market") and not venv.has_attr("no_such_attribute")
    with pytest.raises(IndexError, match=r"expected env indices in \[0, 3\], got \[4\]"):
        venv.get_attr("num_envs", indices=[4])
    venv.reset()
    bars = venv.env_method("bar_of", 0, indices=[0, 1])
    assert bars == [venv.env.bar_of(0)] * 2
    venv.set_attr("tag", "x")
    assert venv.get_attr("tag") == ["x"] * 4
    with pytest.raises(ValueError, match=r"whole batch.*got \[0\]"):
        venv.set_attr("tag", "y", indices=[0])
    assert venv.env_is_wrapped(Monitor) == [True] * 4
    assert venv.env_is_wrapped(gym.wrappers.TimeLimit, indices=[0]) == [False]
    venv.close()


def test_seed_makes_resets_and_episodes_reproducible():
    a, b = SB3VecEnv(_native(n=4)), SB3VecEnv(_native(n=4))
    assert a.seed(11) == [11, 12, 13, 14]
    b.seed(11)
    np.testing.assert_array_equal(a.reset(), b.reset())
    for act in _actions(30, n=4):
        oa, ra, *_ = a.step(act)
        ob, rb, *_ = b.step(act)
        np.testing.assert_array_equal(oa, ob)
        np.testing.assert_array_equal(ra, rb)
    b.seed(12)
    b.reset()
    a.seed(11)
    assert not np.array_equal(a.reset(), b.reset())  # other seeds, other start bars
    a.close()
    b.close()


def test_set_options_reach_the_native_reset():
    venv = SB3VecEnv(_native(n=4))
    lo, hi = venv.env.start_range
    venv.set_options({"start_bars": np.full(4, lo)})
    venv.reset()
    assert [venv.env.bar_of(i) for i in range(4)] == [lo] * 4
    venv.set_options([{"start_bars": np.full(4, lo)}, {}, {}, {}])
    with pytest.raises(ValueError, match=r"one options dict for the batch"):
        venv.reset()
    venv.close()


def test_refuses_envs_it_cannot_drive():
    with pytest.raises(ValueError, match=r"expected autoreset_mode=SAME_STEP.*got "):
        SB3VecEnv(_native(AutoresetMode.NEXT_STEP, n=2))
    with pytest.raises(TypeError, match=r"expected a gymnasium.vector.VectorEnv.*got str"):
        SB3VecEnv("optrader/Trading-v0")
    with pytest.raises(ValueError, match=r"expected copy=True, got False"):
        make_sb3_vec_env(num_envs=2, overrides=SMALL, data=bars_frame(), copy=False)


def test_render_ansi():
    venv = make_sb3_vec_env(num_envs=2, overrides=SMALL, data=bars_frame(), render_mode="ansi")
    assert venv.render_mode == "ansi"
    venv.reset()
    text = venv.render()
    assert isinstance(text, str) and "equity" in text
    venv.close()


@pytest.mark.filterwarnings("ignore:.*Monitor.*:UserWarning")
def test_ppo_learns_through_sb3_wrappers():
    """PPO over the adapter, and over SB3's VecCheckNan / VecMonitor / VecNormalize around it:
    the rollouts run, episode stats reach ep_info_buffer, evaluate_policy reads them."""
    venv = make_sb3_vec_env(num_envs=8, overrides=SMALL, data=bars_frame())
    model = PPO("MlpPolicy", venv, n_steps=128, batch_size=256, n_epochs=1, seed=0,
                device="cpu")
    model.learn(2048)
    assert model.num_timesteps >= 2048
    assert len(model.ep_info_buffer) >= 8 * 2048 // (8 * 20) - 8
    assert all(ep["l"] == 20 for ep in model.ep_info_buffer)  # SMALL: no bankruptcy
    rewards, lengths = evaluate_policy(model, venv, n_eval_episodes=8, return_episode_rewards=True)
    assert lengths == [20] * 8 and all(np.isfinite(rewards))

    wrapped = VecNormalize(VecMonitor(VecCheckNan(
        make_sb3_vec_env(num_envs=8, overrides=SMALL, data=bars_frame()), raise_exception=True)))
    model = PPO("MlpPolicy", wrapped, n_steps=64, batch_size=256, n_epochs=1, seed=0,
                device="cpu")
    model.learn(1024)
    assert model.num_timesteps >= 1024 and len(model.ep_info_buffer) > 0
    venv.close()
    wrapped.close()


def test_single_env_rgb_array_gets_the_error_sb3_retries_on():
    with pytest.raises(TypeError, match=r"render_mode: expected None, 'ansi' or 'human'.*"
                                        r"got 'rgb_array'"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # gymnasium's own render_modes warning
            gym.make("optrader/Trading-v0", render_mode="rgb_array", overrides=SMALL,
                     data=bars_frame())


@pytest.mark.filterwarnings("ignore:.*render_mode='rgb_array'.*:UserWarning")
def test_sb3_make_vec_env_on_the_registered_env():
    venv = make_vec_env("optrader/Trading-v0", n_envs=2, seed=0,
                        env_kwargs={"overrides": SMALL, "data": bars_frame()})
    assert venv.num_envs == 2 and venv.render_mode is None
    obs = venv.reset()
    assert obs.shape == (2, *venv.observation_space.shape)
    finished = 0
    for a in _actions(25, n=2):
        obs, _, d, infos = venv.step(a)
        for i in np.flatnonzero(d):
            assert infos[i]["episode"]["l"] == 20
            assert infos[i]["terminal_observation"].shape == venv.observation_space.shape
            finished += 1
    assert finished == 2
    venv.close()
