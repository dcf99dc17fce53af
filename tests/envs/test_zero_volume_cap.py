"""A participation cap on an asset that traded no volume is refused at construction: with a cap,
a bar without volume never fills, so such an env would silently never trade."""
import numpy as np
import pandas as pd
import pytest

import optrader


def _frame(volume: float, n: int = 300) -> pd.DataFrame:
    idx = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    close = 1.1 + 0.001 * np.sin(np.arange(n) / 7.0)
    return pd.DataFrame({"open": close, "high": close * 1.0005, "low": close * 0.9995,
                         "close": close, "volume": np.full(n, volume)}, index=idx)


def _cfg(*overrides):
    return optrader.compose(env="backtest", overrides=["observation.window=8", *overrides])


def test_a_cap_on_an_asset_without_volume_is_refused_naming_the_way_out():
    with pytest.raises(ValueError, match=r"zero volume.*max_participation=null"):
        optrader.make_vec(_cfg(), num_envs=2, data=_frame(0.0))


def test_without_a_cap_an_asset_without_volume_trades():
    envs = optrader.make_vec(_cfg("execution.max_participation=null"), num_envs=1,
                             data=_frame(0.0))
    envs.reset(seed=0)
    _, _, _, _, info = envs.step(np.ones(envs.action_space.shape, dtype=np.float32))
    _, _, _, _, info = envs.step(np.ones(envs.action_space.shape, dtype=np.float32))
    assert np.abs(envs.portfolio.position).sum() > 0


def test_per_env_cap_on_an_asset_without_volume_is_refused_and_changes_nothing():
    envs = optrader.make_vec(_cfg("execution.max_participation=null"), num_envs=2,
                             data=_frame(0.0))
    before = envs._cost_params.copy()
    with pytest.raises(ValueError, match="zero volume"):
        envs.set_per_env({"execution.max_participation": np.array([np.inf, 0.5])})
    np.testing.assert_array_equal(envs._cost_params, before)


def test_an_asset_with_volume_is_accepted_with_the_default_cap():
    envs = optrader.make_vec(_cfg(), num_envs=1, data=_frame(1e6))
    envs.reset(seed=0)
