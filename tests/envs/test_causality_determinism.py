"""No look-ahead (changing bars after t changes nothing up to the step that observes t) and
bit-identical determinism for a seed."""

import numpy as np
import pytest

from tests.envs.conftest import bars_frame, make_env


def rollout(env, seed, n_steps, actions_seed=0):
    rng = np.random.default_rng(actions_seed)
    obs, info = env.reset(seed=seed)
    traj = [(obs.copy(), None, dict(info))]
    for _ in range(n_steps):
        a = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        obs, r, term, trunc, info = env.step(a)
        traj.append((obs.copy(), (r.copy(), term.copy(), trunc.copy()), dict(info)))
    return traj


@pytest.mark.parametrize("fill", ["next_open", "close"])
@pytest.mark.parametrize("features", ["[log_return]", "[log_return,range,volume]"])
def test_future_bars_change_nothing_observed_before(fill, features):
    overrides = [f"execution.fill_price={fill}", f"observation.features={features}",
                 "env.episode_length=40"]
    base = bars_frame(n_bars=300, seed=5)
    env_a = make_env(6, overrides, data=base)
    _, info = env_a.reset(seed=9)
    starts = info["bar"].copy()
    cut = int(np.median(starts)) + 15  # bar t: some envs cross it mid-episode
    changed = base.copy()
    rng = np.random.default_rng(1)
    scale = np.exp(rng.normal(0, 0.05, len(changed) - cut - 1))
    for col in ("open", "high", "low", "close"):
        changed.iloc[cut + 1:, changed.columns.get_loc(col)] *= scale
    changed.iloc[cut + 1:, changed.columns.get_loc("volume")] *= 3.0
    env_b = make_env(6, overrides, data=changed)
    ta, tb = rollout(env_a, 9, 40), rollout(env_b, 9, 40)
    compared = 0
    for (oa, sa, ia), (ob, sb, ib) in zip(ta, tb, strict=True):
        seen = ia["bar"] <= cut  # envs whose newest observed bar is <= t
        np.testing.assert_array_equal(oa[seen], ob[seen])
        for k in ("equity", "cash", "position", "cost", "drawdown", "bar"):
            np.testing.assert_array_equal(ia[k][seen], ib[k][seen])
        if sa is not None:
            for xa, xb in zip(sa, sb, strict=True):
                np.testing.assert_array_equal(xa[seen], xb[seen])
        compared += int(seen.sum())
    assert compared > 50
    # and the change did reach envs past the cut, so the comparison could have failed
    assert any(not np.array_equal(oa, ob) for (oa, _, _), (ob, _, _) in zip(ta, tb, strict=True))


def test_features_are_causal_per_bar():
    base = bars_frame(n_bars=200, seed=2)
    env_a = make_env(1, ["observation.features=[log_return,range,volume]"], data=base)
    changed = base.copy()
    changed.iloc[120:, :4] *= 1.3
    changed.iloc[120:, 4] *= 0.2
    env_b = make_env(1, ["observation.features=[log_return,range,volume]"], data=changed)
    np.testing.assert_array_equal(env_a._features[:120], env_b._features[:120])
    assert not np.array_equal(env_a._features[120:], env_b._features[120:])


@pytest.mark.parametrize("n_envs", [3, 300])
def test_same_seed_bit_identical_different_seed_differs(n_envs):
    t1 = rollout(make_env(n_envs), 42, 50)
    t2 = rollout(make_env(n_envs), 42, 50)
    for (o1, s1, i1), (o2, s2, i2) in zip(t1, t2, strict=True):
        assert o1.tobytes() == o2.tobytes()
        for k in i1:
            assert np.asarray(i1[k]).tobytes() == np.asarray(i2[k]).tobytes()
        if s1 is not None:
            assert all(a.tobytes() == b.tobytes() for a, b in zip(s1, s2, strict=True))
    t3 = rollout(make_env(n_envs), 43, 50)
    assert any(o1.tobytes() != o3.tobytes() for (o1, _, _), (o3, _, _) in zip(t1, t3, strict=True))


def test_serial_and_threaded_kernels_agree():
    ts = rollout(make_env(64, parallel=False), 7, 45)
    tp = rollout(make_env(64, parallel=True), 7, 45)
    for (o1, s1, _), (o2, s2, _) in zip(ts, tp, strict=True):
        assert o1.tobytes() == o2.tobytes()
        if s1 is not None:
            assert s1[0].tobytes() == s2[0].tobytes()
