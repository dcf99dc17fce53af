"""Clear messages from the env (issue 11, "Unclear messages"): per_env values that are not
numbers or have the wrong shape, any call after close(), drain_fills without fill records, and
the names of info["risk_events"]'s columns."""

import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import optrader
from kernels.enums import N_FILL_REASONS, FillReason
from optrader.envs.vector import RISK_EVENT_NAMES, TradingVectorEnv
from tests.envs.conftest import SMALL, bars_frame, make_env

ROOT = Path(__file__).resolve().parents[2]


def make_sim(num_envs=2, **kw):
    cfg = optrader.compose(env="simulation", overrides=[
        "observation.window=4", "simulation.warmup=8", "env.episode_length=20"])
    return optrader.make_vec(cfg, num_envs=num_envs, **kw)


# (values, exception, what the message must say besides the key and the expected shape)
BAD_VALUES = [
    (np.array(["1.0", "2.0"]), TypeError, r"got strings \(dtype <U3, e\.g\. '1\.0'\)"),
    (["a", "b"], TypeError, "got strings"),
    ("5", TypeError, "got strings"),
    (np.array([b"1", b"2"]), TypeError, "got bytes"),
    (np.array([1.0, None], dtype=object), TypeError, "object array holding NoneType None"),
    ([1.0, "2"], TypeError, "got strings"),
    (np.array([1.0, "2"], dtype=object), TypeError, "object array holding str '2'"),
    ({"a": 1}, TypeError, "object array holding dict"),
    (np.array([True, False]), TypeError, "got booleans"),
    (np.array([1 + 2j, 0j]), TypeError, "got complex numbers"),
    ([[1.0], [2.0, 3.0]], ValueError, "got a ragged list"),
    ([1.0, 2.0, 3.0], ValueError, r"got shape \(3,\) \(3 values for 2 envs\)"),
    ([], ValueError, r"got shape \(0,\) \(0 values for 2 envs\)"),
    (np.ones((2, 2)), ValueError, r"got shape \(2, 2\)"),
    ([1.0, np.nan], ValueError, r"expected finite numbers, got NaN or inf for envs \[1\]"),
    ([np.inf, 1.0], ValueError, r"expected finite numbers, got NaN or inf for envs \[0\]"),
]


@pytest.mark.parametrize("values,exc,detail", BAD_VALUES)
@pytest.mark.parametrize("key", ["execution.commission_bps", "risk.stop_loss.value",
                                 "execution.latency"])
def test_per_env_bad_values_name_key_expected_and_got(key, values, exc, detail):
    with pytest.raises(exc) as err:
        make_env(2, per_env={key: values})
    msg = str(err.value)
    assert msg.startswith(f"per_env[{key!r}]: expected ")
    assert re.search(detail, msg), msg
    if exc is TypeError or "shape" in detail:
        assert r"a scalar or shape (2,)" in msg
    assert "could not convert" not in msg


@pytest.mark.parametrize("values,exc,detail", BAD_VALUES)
def test_simulation_per_env_bad_values(values, exc, detail):
    key = "data.volatility"  # per-asset: (n,) or (n, A)
    with pytest.raises(exc) as err:
        make_sim(2, per_env={key: values})
    msg = str(err.value)
    assert msg.startswith(f"per_env[{key!r}]: expected ")
    if "got shape (2, 2)" in detail:
        assert "(2,) or (2, 1)" in msg
    elif not re.search(detail, msg):
        assert "ragged" in msg or "(2,) or (2, 1)" in msg, msg


def test_set_per_env_same_messages_after_construction():
    env = make_env(2)
    with pytest.raises(TypeError, match=r"per_env\['execution.slippage_bps'\]: .*got strings"):
        env.set_per_env({"execution.slippage_bps": ["1", "2"]})
    with pytest.raises(TypeError, match=r"per_env: expected a dict"):
        env.set_per_env([1.0, 2.0])


def test_per_env_numbers_in_any_numeric_form_are_accepted():
    env = make_env(2, per_env={"execution.commission_bps": np.array([1, 2], dtype=object)})
    np.testing.assert_array_equal(env._cost_params[:, 0], [1.0, 2.0])
    env.set_per_env({"execution.commission_bps": np.float32(3.0)})
    np.testing.assert_array_equal(env._cost_params[:, 0], [3.0, 3.0])
    values = np.array([4, 5], dtype=np.int8)
    env.set_per_env({"execution.commission_bps": values})
    values[:] = 0  # the env keeps its own copy
    np.testing.assert_array_equal(env._cost_params[:, 0], [4.0, 5.0])


def test_set_per_env_takes_effect_on_the_next_step():
    """Changing a cost between steps gives the same step as an env built with that cost."""
    env, ref = make_env(2), make_env(2, per_env={"execution.commission_bps": [0.0, 50.0]})
    env.reset(seed=0)
    ref.reset(seed=0)
    env.set_per_env({"execution.commission_bps": [0.0, 50.0]})
    costs = np.zeros(2)
    for k in range(6):
        a = np.full((2, 1), (-1.0) ** k, dtype=np.float32)  # a trade every step
        got, want = env.step(a), ref.step(a)
        np.testing.assert_array_equal(got[4]["cost"], want[4]["cost"])
        np.testing.assert_array_equal(got[4]["equity"], want[4]["equity"])
        costs += got[4]["cost"]
    assert costs[1] > costs[0]


# ----------------------------------------------------------------------------------------------
CLOSED_CALLS = {
    "step": lambda e: e.step(np.zeros(e.action_space.shape, np.float32)),
    "reset": lambda e: e.reset(seed=0),
    "drain_fills": lambda e: e.drain_fills(),
    "set_per_env": lambda e: e.set_per_env({"execution.commission_bps": 1.0}),
    "sim_bars": lambda e: e.sim_bars(),
}


@pytest.mark.parametrize("name", sorted(CLOSED_CALLS))
@pytest.mark.parametrize("mode", ["data", "simulation"])
@pytest.mark.parametrize("was_reset", [True, False])
def test_calls_after_close_say_the_env_is_closed(name, mode, was_reset):
    env = make_env(2, ["execution.record_fills=true"]) if mode == "data" else make_sim(2)
    if was_reset:
        env.reset(seed=0)
    env.close()
    with pytest.raises(RuntimeError, match=rf"^{name}: the env is closed \(close\(\) was "
                                           r"called\).*make a new env"):
        CLOSED_CALLS[name](env)
    env.close()  # closing again stays fine


def test_single_env_after_close_says_closed():
    env = gym.make("optrader/Trading-v0", overrides=SMALL, data=bars_frame())
    env.reset(seed=0)
    env.close()
    with pytest.raises(RuntimeError, match=r"^step: the env is closed"):
        env.unwrapped.step(np.zeros(1, np.float32))
    with pytest.raises(RuntimeError, match=r"^reset: the env is closed"):
        env.unwrapped.reset(seed=1)


def test_step_before_reset_still_says_so():
    env = make_env(2)
    with pytest.raises(RuntimeError, match=r"^step\(\) called before reset\(\)"):
        env.step(np.zeros((2, 1), np.float32))


# ----------------------------------------------------------------------------------------------
def test_drain_fills_without_recording_names_the_setting():
    env = make_env(1)
    env.reset(seed=0)
    with pytest.raises(RuntimeError) as err:
        env.drain_fills()
    msg = str(err.value)
    assert "execution.record_fills=true" in msg and msg.startswith("drain_fills: ")
    # and the override it names works
    on = make_env(1, ["execution.record_fills=true"])
    on.reset(seed=0)
    on.step(np.ones((1, 1), np.float32))
    on.step(np.ones((1, 1), np.float32))
    assert len(on.drain_fills()) >= 1


# ----------------------------------------------------------------------------------------------
def test_risk_event_names_name_every_column():
    env = make_env(3, ["risk=guarded"])
    assert env.risk_event_names is RISK_EVENT_NAMES is TradingVectorEnv.risk_event_names
    assert isinstance(RISK_EVENT_NAMES, tuple)
    _, info = env.reset(seed=0)
    _, _, _, _, info = env.step(np.zeros((3, 1), np.float32))
    assert info["risk_events"].shape == (3, len(env.risk_event_names))
    assert len(env.risk_event_names) == N_FILL_REASONS == len(FillReason)
    for name in FillReason._fields:  # each name sits at its code's column
        assert env.risk_event_names[getattr(FillReason, name)] == name
    single = gym.make("optrader/Trading-v0", overrides=SMALL, data=bars_frame())
    assert single.unwrapped.risk_event_names == RISK_EVENT_NAMES


def test_docs_list_every_risk_event_at_its_index():
    text = (ROOT / "docs" / "execution_and_risk.md").read_text()
    section = text[text.index("**Risk events.**"):text.index("**Fill records.**")]
    rows = dict(re.findall(r"^\s*\|\s*(\d+)\s*\|\s*([A-Z_]+)\s*\|", section, flags=re.M))
    assert {int(k): v for k, v in rows.items()} == dict(enumerate(RISK_EVENT_NAMES))
    assert "risk_event_names" in section
    readme = (ROOT / "README.md").read_text()
    assert "risk_event_names" in readme
    for doc in (section, readme):  # a column count, if stated, is the true one
        for count in re.findall(r"risk_events\W{0,3}\s*\(n, (\d+)\)", doc):
            assert int(count) == len(RISK_EVENT_NAMES)


def test_per_env_inf_only_where_it_means_none():
    """inf is "no cap" for execution.max_participation (null in the config); NaN never is."""
    env = make_env(2, per_env={"execution.max_participation": [np.inf, 0.5]})
    assert np.isinf(env._cost_params[0]).any()
    with pytest.raises(ValueError, match=r"expected numbers, not NaN, got NaN for envs \[1\]"):
        make_env(2, per_env={"execution.max_participation": [0.5, np.nan]})
    with pytest.raises(ValueError, match=r"'execution.min_trade_value'.*finite"):
        make_env(2, per_env={"execution.min_trade_value": [np.inf, 1.0]})
