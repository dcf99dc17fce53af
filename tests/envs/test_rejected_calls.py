"""A rejected call changes nothing (issue 11, item 2).

Every public call that raises (a step with a bad action, a reset with a bad seed or option, a
per-env update with a bad value, ...) must leave the env exactly as it was: ``env_state`` walks
everything the env holds (every numpy array reachable from its attributes through NamedTuples,
dataclasses, dicts, lists and tuples, the scalars, the identity of every array, the RNG states)
and the state after each rejected call must equal the state before it, in data mode and in
simulation mode.
"""

import dataclasses
import enum

import gymnasium as gym
import numpy as np
import pytest

import optrader
from tests.envs.conftest import bars_frame, make_env

_SCALARS = (type(None), bool, int, float, complex, str, bytes, np.generic, enum.Enum)


def env_state(env) -> dict[str, object]:
    """Everything ``env`` holds as a flat ``{path: value}``: arrays by identity, dtype, shape and
    bytes; scalars by repr (so NaN equals NaN); Generators by their bit generator's state;
    containers, dataclasses and optrader/gymnasium objects walked recursively; any other object
    (compiled kernels, the DictConfig) by identity."""
    out: dict[str, object] = {}
    _walk(env, "env", out, {})
    return out


def _walk(obj, path: str, out: dict, seen: dict) -> None:
    if isinstance(obj, np.ndarray):
        data = repr(obj.tolist()) if obj.dtype.kind == "O" else obj.tobytes()
        out[path] = ("array", id(obj), obj.dtype.str, obj.shape, data)
        return
    if isinstance(obj, _SCALARS):
        out[path] = (type(obj).__name__, repr(obj))
        return
    if isinstance(obj, np.random.Generator):
        _walk(obj.bit_generator.state, f"{path}.bit_generator.state", out, seen)
        return
    if id(obj) in seen:  # shared or cyclic: recorded where first met
        out[path] = ("seen", id(obj))
        return
    seen[id(obj)] = obj  # kept alive: a temporary's id is never reused during one walk
    if isinstance(obj, (list, tuple)):
        out[path] = (type(obj).__name__, len(obj))
        for i, x in enumerate(obj):
            _walk(x, f"{path}[{i}]", out, seen)
    elif isinstance(obj, dict):
        out[path] = ("dict", tuple(repr(k) for k in obj))
        for k, v in obj.items():
            _walk(v, f"{path}[{k!r}]", out, seen)
    elif dataclasses.is_dataclass(obj) and not hasattr(obj, "__dict__"):
        out[path] = (type(obj).__name__, id(obj))
        for f in dataclasses.fields(obj):
            _walk(getattr(obj, f.name), f"{path}.{f.name}", out, seen)
    elif hasattr(obj, "__dict__") and type(obj).__module__.split(".")[0] in (
            "optrader", "gymnasium", "tests"):
        out[path] = (type(obj).__name__, id(obj))
        for k, v in vars(obj).items():
            _walk(v, f"{path}.{k}", out, seen)
    else:
        out[path] = ("opaque", type(obj).__name__, id(obj))


def assert_same_state(before: dict, after: dict) -> None:
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"the rejected call changed {len(changed)} entries: {changed[:12]}"


# ----------------------------------------------------------------------------------------------
# envs in a state worth protecting: reset, stepped, observation buffers released to the pool
KINDS = {
    "continuous": dict(overrides=["execution.record_fills=true", "risk=guarded"]),
    "discrete": dict(overrides=["action=discrete"]),
    "order_types": dict(overrides=["action.order_types=[market,limit]"]),
    "no_copy": dict(overrides=[], copy=False),
    "simulation": dict(simulation=True),
}


def build(kind: str):
    spec = KINDS[kind]
    if spec.get("simulation"):
        cfg = optrader.compose(env="simulation", overrides=[
            "observation.window=4", "simulation.warmup=8", "env.episode_length=20"])
        env = optrader.make_vec(cfg, num_envs=3)
    else:
        env = make_env(3, spec["overrides"], copy=spec.get("copy", True))
    env.reset(seed=0)
    env.action_space.seed(1)
    for _ in range(7):
        obs, *_ = env.step(env.action_space.sample())
    del obs  # the caller keeps nothing: the pool may hand these buffers out again
    return env


@pytest.fixture(scope="module")
def envs():
    return {}


def get_env(envs, kind):
    if kind not in envs:
        envs[kind] = build(kind)
    return envs[kind]


def _actions(env, fill=0.0, dtype=np.float32):
    return np.full(env.action_space.shape, fill, dtype=dtype)


def _nan_in_env(env, i, value=np.nan):
    a = _actions(env)
    a[i, 0] = value
    return a


def _selector_nan(env):
    a = _actions(env)
    a[:, -1] = np.nan
    return a


def _valid_then_bad(env):
    """A valid first key then a bad second one: the first must not be applied either."""
    if env.simulation:
        return {"data.volatility": np.full(env.num_envs, 0.3), "data.ar1": "x"}
    return {"execution.commission_bps": np.full(env.num_envs, 7.0),
            "execution.slippage_bps": ["a"] * env.num_envs}


n = 3  # envs per batch (build)
ALL = set(KINDS)
DATA = ALL - {"simulation"}
FLOAT = {"continuous", "order_types", "no_copy", "simulation"}
# (id, kinds it applies to, call, exception type)
CALLS = [
    # step
    ("step_wrong_batch", ALL, lambda e: e.step(np.zeros((n + 1, 1), np.float32)), ValueError),
    ("step_flat", FLOAT - {"order_types"}, lambda e: e.step(np.zeros(n, np.float32)), ValueError),
    ("step_ragged", FLOAT - {"order_types"}, lambda e: e.step([[0.0], [0.0, 1.0], [0.0]]),
     ValueError),
    ("step_none", ALL, lambda e: e.step(None), ValueError),
    ("step_strings", ALL, lambda e: e.step(np.full(e.action_space.shape, "a")), TypeError),
    ("step_int_for_float", FLOAT, lambda e: e.step(_actions(e, 0, np.int64)), TypeError),
    ("step_nan_first_env", FLOAT, lambda e: e.step(_nan_in_env(e, 0)), ValueError),
    ("step_inf_last_env", FLOAT, lambda e: e.step(_nan_in_env(e, n - 1, -np.inf)), ValueError),
    ("step_nan_float64", FLOAT, lambda e: e.step(_nan_in_env(e, 1).astype(np.float64)),
     ValueError),
    ("step_nan_selector", {"order_types"}, lambda e: e.step(_selector_nan(e)), ValueError),
    ("step_float_for_discrete", {"discrete"}, lambda e: e.step(np.zeros(n)), TypeError),
    ("step_index_too_high", {"discrete"}, lambda e: e.step(np.full(n, 3)), ValueError),
    ("step_index_negative", {"discrete"}, lambda e: e.step(np.array([0, -1, 0])), ValueError),
    # reset
    ("reset_seed_negative", ALL, lambda e: e.reset(seed=-1), ValueError),
    ("reset_seed_float", ALL, lambda e: e.reset(seed=1.5), TypeError),
    ("reset_seed_str", ALL, lambda e: e.reset(seed="1"), TypeError),
    ("reset_seed_bool", ALL, lambda e: e.reset(seed=True), TypeError),
    ("reset_options_list", ALL, lambda e: e.reset(options=[("reset_mask", None)]), TypeError),
    ("reset_unknown_option", ALL, lambda e: e.reset(seed=5, options={"mask": None}), ValueError),
    ("reset_mask_int", ALL,
     lambda e: e.reset(seed=5, options={"reset_mask": np.ones(n, np.int64)}), ValueError),
    ("reset_mask_short", ALL,
     lambda e: e.reset(seed=5, options={"reset_mask": np.ones(n - 1, bool)}), ValueError),
    ("reset_env_seeds_negative", ALL,
     lambda e: e.reset(seed=5, options={"env_seeds": np.array([1, -2, 3])}), ValueError),
    ("reset_env_seeds_float", ALL,
     lambda e: e.reset(options={"env_seeds": np.ones(n)}), ValueError),
    ("reset_start_bars_low", DATA,
     lambda e: e.reset(seed=5, options={"start_bars": np.zeros(n, np.int64)}), ValueError),
    ("reset_start_bars_float", DATA,
     lambda e: e.reset(options={"start_bars": np.full(n, 10.0)}), ValueError),
    ("reset_start_bars_simulation", {"simulation"},
     lambda e: e.reset(options={"start_bars": np.zeros(n, np.int64)}), ValueError),
    ("reset_bad_mask_after_good_seeds", ALL,
     lambda e: e.reset(seed=9, options={"env_seeds": np.arange(n),
                                        "reset_mask": np.zeros(n)}), ValueError),
    # per-env updates
    ("per_env_not_dict", ALL, lambda e: e.set_per_env([("execution.commission_bps", 1.0)]),
     TypeError),
    ("per_env_unknown_key", ALL, lambda e: e.set_per_env({"execution.comission_bps": 1.0}),
     ValueError),
    ("per_env_strings", ALL,
     lambda e: e.set_per_env({"execution.commission_bps": np.array(["1"] * n)}), TypeError),
    ("per_env_nan", ALL,
     lambda e: e.set_per_env({"execution.commission_bps": [1.0, np.nan, 1.0]}), ValueError),
    ("per_env_wrong_length", ALL,
     lambda e: e.set_per_env({"risk.stop_loss.value": [0.1] * (n + 1)}), ValueError),
    ("per_env_out_of_range", ALL,
     lambda e: e.set_per_env({"execution.commission_bps": [1.0, -1.0, 1.0]}), ValueError),
    ("per_env_latency_over_ring", ALL, lambda e: e.set_per_env({"execution.latency": 2}),
     ValueError),
    ("per_env_valid_then_bad", ALL, lambda e: e.set_per_env(_valid_then_bad(e)), TypeError),
    ("per_env_sim_negative_vol", {"simulation"},
     lambda e: e.set_per_env({"data.volatility": [0.1, -0.2, 0.1]}), ValueError),
    ("per_env_sim_garch_sum", {"simulation"},
     lambda e: e.set_per_env({"simulation.garch.alpha": 0.5, "simulation.garch.beta": 0.6}),
     ValueError),
    ("per_env_sim_per_asset_shape", {"simulation"},
     lambda e: e.set_per_env({"data.jumps.intensity": np.ones((n, 1))}), ValueError),
    # other public calls
    ("drain_fills_off", ALL - {"continuous"}, lambda e: e.drain_fills(), RuntimeError),
    ("sim_bars_data_mode", DATA, lambda e: e.sim_bars(), RuntimeError),
]
CASES = [pytest.param(kind, call, exc, id=f"{kind}-{name}")
         for name, kinds, call, exc in CALLS for kind in sorted(kinds)]


@pytest.mark.parametrize("kind,call,exc", CASES)
def test_rejected_call_changes_nothing(envs, kind, call, exc):
    env = get_env(envs, kind)
    before = env_state(env)
    with pytest.raises(exc):
        call(env)
    assert_same_state(before, env_state(env))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_env_still_works_after_rejected_calls(envs, kind):
    """After every rejected call above, the env steps on exactly as an untouched twin does."""
    env, twin = get_env(envs, kind), build(kind)
    for kind_, call, exc in (c.values for c in CASES):
        if kind_ == kind:
            with pytest.raises(exc):
                call(env)
    a = env.action_space.sample()
    got, want = env.step(a), twin.step(a)
    for x, y in zip(got[:4], want[:4], strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(got[4]["equity"], want[4]["equity"])


def test_step_before_reset_changes_nothing():
    env = make_env(2)
    before = env_state(env)
    with pytest.raises(RuntimeError, match=r"before reset"):
        env.step(np.zeros((2, 1), np.float32))
    assert_same_state(before, env_state(env))


def test_state_snapshot_sees_changes():
    """The snapshot is not blind: a swapped observation buffer, a consumed RNG, a changed
    scalar, a grown list and one changed array element are each reported."""
    env = build("continuous")
    base = env_state(env)
    env._obs = env._obs.copy()  # another buffer, same contents: seen by identity
    assert env_state(env) != base
    env = build("continuous")
    base = env_state(env)
    env.np_random.random()
    assert env_state(env) != base
    base = env_state(env)
    env._events_possible = not env._events_possible
    assert env_state(env) != base
    base = env_state(env)
    env._obs_pool.append(np.empty_like(env._obs))
    assert env_state(env) != base
    base = env_state(env)
    env.portfolio.acct[1, 0] += 1e-9
    changed = {k for k in base if base[k] != env_state(env).get(k)}
    assert "env.portfolio[0]" in changed


@pytest.mark.parametrize("keep_obs", [False, True])
def test_partial_reset_after_rejected_step_keeps_other_rows(keep_obs):
    """The issue's case: a step rejected for a NaN action, then a partial reset: the rows not
    reset keep the observation of the last good step (not a stale or unwritten buffer)."""
    env = make_env(4)
    env.reset(seed=0)
    for _ in range(3):
        obs, *_ = env.step(np.full((4, 1), 0.5, np.float32))
    last = obs.copy()
    if not keep_obs:
        del obs
    bad = np.full((4, 1), 0.5, np.float32)
    bad[2, 0] = np.nan
    with pytest.raises(ValueError, match=r"finite.*envs \[2\]"):
        env.step(bad)
    obs2, _ = env.reset(options={"reset_mask": np.array([False, True, False, True])})
    np.testing.assert_array_equal(obs2[[0, 2]], last[[0, 2]])
    # and stepping on continues from the last good step
    twin = make_env(4)
    twin.reset(seed=0)
    for _ in range(3):
        twin.step(np.full((4, 1), 0.5, np.float32))
    twin_obs, _ = twin.reset(options={"reset_mask": np.array([False, True, False, True])})
    np.testing.assert_array_equal(obs2, twin_obs)


def test_single_env_rejected_reset_keeps_its_rng():
    env = gym.make("optrader/Trading-v0", overrides=["observation.window=4",
                                                      "env.episode_length=20"],
                   data=bars_frame())
    env.reset(seed=3)
    state = env.unwrapped.np_random.bit_generator.state
    inner = env_state(env.unwrapped._vec)
    with pytest.raises(ValueError):
        env.reset(seed=-4)
    assert env.unwrapped.np_random.bit_generator.state == state
    assert_same_state(inner, env_state(env.unwrapped._vec))
