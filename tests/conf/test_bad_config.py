"""Bad configs, arguments, actions and reset options fail early with messages naming the key.

Config errors must surface before any env work: ``load_market`` is patched to fail loudly, so an
error raised after data loading started would show up as an AssertionError instead.
"""

from __future__ import annotations

import re

import gymnasium
import numpy as np
import pytest

import optrader
import optrader.envs.vector as vector_module
from optrader import ConfigError, load_spec
from optrader.envs.vector import TradingVectorEnv

SMALL = ["observation.window=4", "env.episode_length=8"]


@pytest.fixture
def no_env_work(monkeypatch):
    """Fail the test if env construction gets as far as loading market data."""

    def load_market(*args, **kwargs):
        raise AssertionError("env work started before the config error was raised")

    monkeypatch.setattr(vector_module, "load_market", load_market)


def make_vec(**kwargs):
    return gymnasium.make_vec("optrader/Trading-v0", vectorization_mode="vector_entry_point",
                              **kwargs)


# (overrides, pattern the message must match). Patterns name the dotted key.
BAD_OVERRIDES = [
    # unknown keys
    (["+execution.comission_bps=1"],
     r"execution\.comission_bps: unknown key.*did you mean 'commission_bps'\?"),
    (["execution.comission_bps=1"], r"execution\.comission_bps"),
    (["+env.episode_lenght=3"], r"env\.episode_lenght: unknown key.*'episode_length'"),
    (["+foo=1"], r"foo: unknown key"),
    (["+data.jumps.rate=1"], r"data\.jumps\.rate: unknown key"),
    # unknown values and registry names
    (["execution.fill_price=tomorrow"], r"execution\.fill_price: .*'next_open'.*'tomorrow'"),
    (["action.type=banana"], r"action\.type: .*'continuous'.*'banana'"),
    (["+reward.components.nope=1"],
     r"reward\.components: unknown reward 'nope'; known: .*'log_return'.*'pnl'"),
    (["+reward.components.log_retrun=1"], r"reward\.components: .*did you mean 'log_return'"),
    (["execution.slippage_model=square_root"],
     r"execution\.slippage_model: unknown slippage 'square_root'; known: \[.*'sqrt_impact'"),
    (["execution.commission_model=flat"], r"execution\.commission_model: .*'flat'.*'bps'"),
    (["data.source=feed"], r"data\.source: unknown data_source 'feed'"),
    (["execution=nope"], r"(?s)execution/nope.*zero_cost"),
    (["execution=null"], r"execution=null"),
    (["env.info=verbose"], r"env\.info: .*'verbose'"),
    (["env.mode=live"], r"env\.mode: .*'live'"),
    (["observation.features=[log_return,close]"], r"observation\.features: .*'close'"),
    (["observation.features=[range,range]"], r"observation\.features: duplicate"),
    (["observation.features=[]"], r"observation\.features: expected at least one"),
    (["~reward.components.log_return"], r"reward\.components: expected at least one"),
    (["agent.num_envs=3"], r"agent\.num_envs: .*even.*3"),
    # wrong types
    (["env.episode_length=abc"], r"env\.episode_length: expected int, got 'abc'"),
    (["env.episode_length=1.5"], r"env\.episode_length: expected int, got 1\.5"),
    (["env.episode_length=true"], r"env\.episode_length: expected int, got True"),
    (["env.episode_length=null"], r"env\.episode_length: expected int, got None"),
    (["execution.commission_bps='5'"], r"execution\.commission_bps: expected float, got '5'"),
    (["observation.portfolio=1"], r"observation\.portfolio: expected bool, got 1"),
    (["observation.features=log_return"], r"observation\.features: expected a list"),
    (["seed=abc"], r"seed: expected int, got 'abc'"),
    (["action.levels=[true]"], r"action\.levels"),
    # out of range
    (["observation.window=0"], r"observation\.window: expected >= 1, got 0"),
    (["env.episode_length=0"], r"env\.episode_length: expected >= 1, got 0"),
    (["env.max_leverage=0"], r"env\.max_leverage: expected > 0, got 0\.0"),
    (["env.max_leverage=-1"], r"env\.max_leverage: expected > 0, got -1\.0"),
    (["env.initial_cash=0"], r"env\.initial_cash: expected > 0"),
    (["env.initial_cash=nan"], r"env\.initial_cash: expected a finite number, got nan"),
    (["env.bankrupt_fraction=1.0"], r"env\.bankrupt_fraction: .*\[0\.0, 1\.0\)"),
    (["reward.scale=inf"], r"reward\.scale: expected a finite number"),
    (["reward.components.log_return=nan"], r"reward\.components\.log_return: .*finite"),
    (["reward.dsr_eta=0"], r"reward\.dsr_eta: .*\(0\.0, 1\.0\)"),
    (["observation.clip=0"], r"observation\.clip: expected > 0"),
    (["observation.ewma_halflife=-1"], r"observation\.ewma_halflife: expected > 0"),
    (["action.levels=[]"], r"action\.levels: expected at least one level"),
    (["action.levels=[-1.0,2.0]"], r"action\.levels: .*\[-1\.0, 1\.0\], got 2\.0"),
    (["execution.commission_bps=1e400"], r"execution\.commission_bps: expected a finite"),
    # synthetic data parameters
    (["data.n_bars=1"], r"data\.n_bars: expected >= 2"),
    (["data.volatility=-0.2"], r"data\.volatility: expected >= 0\.0, got -0\.2"),
    (["data.correlation=2"], r"data\.correlation: .*got 2\.0"),
    (["data.n_assets=3", "data.correlation=-0.6"], r"data\.correlation: .*\[-0\.5, 1\.0\]"),
    (["data.drift=abc"], r"data\.drift: expected a number"),
    (["data.drift=[0.1,0.2]"], r"data\.drift: .*data\.n_assets=1"),
    (["data.ar1=1.0"], r"data\.ar1: .*\(-1\.0, 1\.0\)"),
    (["data.init_price=0"], r"data\.init_price: expected > 0"),
    (["data.base_volume=-1"], r"data\.base_volume: expected >= 0"),
    (["data.intrabar_vol=-1"], r"data\.intrabar_vol: expected >= 0"),
    (["data.jumps.std=-1"], r"data\.jumps\.std: expected >= 0"),
    (["data.regimes.p_stay=[0.5]"], r"data\.regimes\.p_stay: expected 2 values"),
    (["data=dataframe", "data.path=1"], r"data\.path: expected a file path"),
    # malformed override strings
    (["execution.commission_bps"], r"execution\.commission_bps"),
]
# every fee must be >= 0
BAD_OVERRIDES += [([f"execution.{k}=-1"], rf"execution\.{k}: expected >= 0\.0, got -1\.0")
                  for k in ("commission_bps", "slippage_bps", "half_spread_bps",
                            "min_commission", "lot_size")]


@pytest.mark.parametrize(("overrides", "match"), BAD_OVERRIDES,
                         ids=[" ".join(o) for o, _ in BAD_OVERRIDES])
def test_bad_override_fails_before_env_work(overrides, match, no_env_work):
    # make_vec composes and validates exactly as optrader.compose + optrader.load_spec do
    with pytest.raises(ConfigError, match=match):
        make_vec(num_envs=2, overrides=[*SMALL, *overrides], data=None)


def test_compose_and_load_spec_raise_directly():
    cfg = optrader.compose(overrides=["+execution.comission_bps=1"])  # composes: '+' appends
    with pytest.raises(ConfigError, match=r"did you mean 'commission_bps'"):
        load_spec(cfg)
    with pytest.raises(ConfigError, match=r"execution\.fill_price"):
        load_spec(optrader.compose(overrides=["execution.fill_price=tomorrow"]))


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("num_envs", [0, -1, 1.5, True, "2", None])
def test_bad_num_envs(num_envs, no_env_work):
    with pytest.raises(ValueError, match=r"num_envs: expected an integer >= 1, got"):
        make_vec(num_envs=num_envs, overrides=SMALL)
    with pytest.raises(ValueError, match=r"num_envs"):
        optrader.make_vec(None, num_envs=num_envs)


def test_unknown_mode(no_env_work):
    with pytest.raises(ConfigError, match=r"env: unknown mode 'nope'; known modes: .*training"):
        optrader.compose(env="nope")
    with pytest.raises(ConfigError, match=r"unknown mode 'nope'"):
        make_vec(num_envs=2, env="nope")


@pytest.mark.parametrize("overrides", ["execution.commission_bps=5", None, 5])
def test_compose_rejects_non_list_overrides(overrides):
    with pytest.raises(TypeError, match=r"overrides: expected a list"):
        optrader.compose(overrides=overrides)


def test_make_vec_rejects_a_string_of_overrides(no_env_work):
    with pytest.raises(TypeError, match=r"overrides: expected a list"):
        make_vec(num_envs=2, overrides="execution.commission_bps=5")


def test_cfg_and_overrides_together(no_env_work):
    cfg = optrader.compose(overrides=SMALL)
    with pytest.raises(ConfigError, match=r"overrides"):
        make_vec(num_envs=2, cfg=cfg, overrides=["execution.commission_bps=5"])


def test_load_spec_rejects_non_configs():
    with pytest.raises(TypeError, match=r"config: expected a DictConfig or dict, got str"):
        load_spec("execution.commission_bps=5")
    with pytest.raises(ConfigError, match=r"env: no mode selected"):
        load_spec({"seed": 0})
    with pytest.raises(ConfigError, match=r"execution: expected a mapping"):
        load_spec({"env": {}, "execution": [1, 2]})


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"max_episode_steps": 0}, r"max_episode_steps: expected an integer >= 1"),
    ({"max_episode_steps": -1}, r"max_episode_steps"),
    ({"max_episode_steps": True}, r"max_episode_steps"),
    ({"render_mode": "rgb_array"}, r"render_mode: .*'rgb_array'"),
    ({"autoreset_mode": "sometimes"}, r"autoreset_mode: .*'sometimes'"),
    ({"autoreset_mode": "Disabled"}, r"autoreset_mode: DISABLED"),
])
def test_bad_constructor_arguments(kwargs, match, no_env_work):
    with pytest.raises(ValueError, match=match):
        make_vec(num_envs=2, overrides=SMALL, **kwargs)


# ---------------------------------------------------------------------------------------------
# Bad actions and reset options: errors leave every env exactly as it was.


def _make(bars, *extra, num_envs=2):
    return TradingVectorEnv(num_envs=num_envs, cfg=optrader.compose(overrides=[*SMALL, *extra]),
                            data=bars)


@pytest.fixture(scope="module")
def twins(bars):
    """Two identical continuous envs (2 envs, 1 asset): one gets the bad call, one does not."""
    a, b = _make(bars), _make(bars)
    yield a, b
    a.close()
    b.close()


@pytest.fixture(scope="module")
def discrete_env(bars):
    env = _make(bars, "action=discrete")
    yield env
    env.close()


def snapshot(env) -> dict:
    return {"acct": env.portfolio.acct.copy(), "position": env.portfolio.position.copy(),
            "avg_px_open": env.portfolio.avg_px_open.copy(), "clock": env.episode.clock.copy(),
            "rng": env.episode.rng.copy(), "np_random": env.np_random.bit_generator.state}


def assert_same_state(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for k in before:
        if k == "np_random":
            assert before[k] == after[k], "the env's Generator was reseeded or advanced"
        else:
            np.testing.assert_array_equal(before[k], after[k], err_msg=k)


def assert_same_step(out_a, out_b) -> None:
    for x, y in zip(out_a[:4], out_b[:4], strict=True):
        np.testing.assert_array_equal(x, y)
    assert out_a[4].keys() == out_b[4].keys()
    for k in out_a[4]:
        np.testing.assert_array_equal(out_a[4][k], out_b[4][k], err_msg=k)


def check_rejected(twins, bad, exc, match):
    """The bad action raises, changes nothing, and the next valid step matches the twin's."""
    a, b = twins
    a.reset(seed=11)
    b.reset(seed=11)
    warm = np.full((2, 1), 0.5, dtype=np.float32)
    assert_same_step(a.step(warm), b.step(warm))
    before = snapshot(a)
    with pytest.raises(exc, match=match):
        a.step(bad)
    assert_same_state(before, snapshot(a))
    nxt = np.array([[-0.25], [1.0]], dtype=np.float32)
    out_a, out_b = a.step(nxt), b.step(nxt)
    assert_same_step(out_a, out_b)
    assert (out_a[4]["position"] != before["position"]).any()  # the valid step did trade


@pytest.mark.parametrize("shape", [(2,), (2, 2), (1, 1), (3, 1), (2, 1, 1), ()])
def test_wrong_action_shape(twins, shape):
    check_rejected(twins, np.zeros(shape, dtype=np.float32), ValueError,
                   r"actions: expected shape \(2, 1\).*got " + re.escape(str(shape)))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_, np.complex128])
def test_non_float_continuous_action(twins, dtype):
    check_rejected(twins, np.zeros((2, 1), dtype=dtype), TypeError,
                   rf"actions: expected a float array.*got dtype {np.dtype(dtype)}")


@pytest.mark.parametrize(("value", "bad_env"), [(np.nan, 0), (np.inf, 1), (-np.inf, 0)])
def test_non_finite_action(twins, value, bad_env):
    bad = np.zeros((2, 1), dtype=np.float32)
    bad[bad_env] = value
    check_rejected(twins, bad, ValueError,
                   rf"actions: expected finite values.*envs \[{bad_env}\]; no env was stepped")


def test_non_finite_action_names_every_bad_env(twins):
    check_rejected(twins, np.full((2, 1), np.nan), ValueError, r"envs \[0, 1\]")


@pytest.mark.parametrize(("bad", "exc", "match"), [
    (np.array([0.0, 1.0]), TypeError, r"expected integer indices.*got dtype float64"),
    (np.array([0.0, 1.0], dtype=np.float32), TypeError, r"got dtype float32"),
    (np.array([True, False]), TypeError, r"got dtype bool"),
    (np.array([0, 3]), ValueError, r"expected indices in \[0, 2\], got values in \[0, 3\]"),
    (np.array([-1, 2]), ValueError, r"expected indices in \[0, 2\], got values in \[-1, 2\]"),
    (np.zeros((2, 1), dtype=np.int64), ValueError, r"expected shape \(2,\)"),
])
def test_bad_discrete_action(discrete_env, bad, exc, match):
    env = discrete_env
    env.reset(seed=3)
    env.step(np.array([2, 0]))
    before = snapshot(env)
    with pytest.raises(exc, match=match):
        env.step(bad)
    assert_same_state(before, snapshot(env))
    _, _, _, _, info = env.step(np.array([0, 2]))  # still usable: short env 0, long env 1
    assert info["position"][0, 0] < 0 < info["position"][1, 0]


def test_step_before_reset(bars):
    env = _make(bars)
    with pytest.raises(RuntimeError, match=r"step\(\) called before reset\(\)"):
        env.step(np.zeros((2, 1), dtype=np.float32))
    env.reset(seed=0)
    env.step(np.zeros((2, 1), dtype=np.float32))  # fine once reset


@pytest.mark.parametrize(("options", "match"), [
    ({"reset_mask": np.ones(3, dtype=bool)}, r"reset_mask: .*shape \(2,\).*\(3,\)"),
    ({"reset_mask": np.ones((2, 1), dtype=bool)}, r"reset_mask: .*\(2, 1\)"),
    ({"reset_mask": np.ones(2, dtype=np.int64)}, r"reset_mask: expected a bool array.*int64"),
    ({"reset_mask": [1, 0]}, r"reset_mask: expected a bool array"),
    ({"reset_mask": np.ones(2, dtype=np.float64)}, r"reset_mask: .*float64"),
    ({"mask": np.ones(2, dtype=bool)}, r"reset options: unknown keys \['mask'\]"),
])
def test_bad_reset_options(twins, options, match):
    a, b = twins
    a.reset(seed=5)
    b.reset(seed=5)
    act = np.full((2, 1), 0.5, dtype=np.float32)
    a.step(act)
    b.step(act)
    before = snapshot(a)
    with pytest.raises(ValueError, match=match):
        a.reset(options=options)
    assert_same_state(before, snapshot(a))
    assert_same_step(a.step(act), b.step(act))
    # a valid partial reset still works afterwards
    a.reset(options={"reset_mask": np.array([True, False])})


def test_bad_reset_options_with_seed_change_nothing(twins):
    a, _ = twins
    a.reset(seed=5)
    before = snapshot(a)
    with pytest.raises(ValueError, match=r"reset_mask"):
        a.reset(seed=6, options={"reset_mask": np.ones(3, dtype=bool)})
    assert_same_state(before, snapshot(a))


def test_first_reset_must_reset_every_env(bars):
    env = _make(bars)
    with pytest.raises(ValueError, match=r"reset_mask: the first reset must reset every env"):
        env.reset(seed=0, options={"reset_mask": np.array([True, False])})
    with pytest.raises(RuntimeError, match=r"before reset"):
        env.step(np.zeros((2, 1), dtype=np.float32))
