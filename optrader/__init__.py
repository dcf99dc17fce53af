"""optrader: vectorized, Numba-fused trading environments (Gymnasium 1.x).

``import optrader`` registers ``optrader/Trading-v0``::

    envs = gymnasium.make_vec("optrader/Trading-v0", num_envs=1024,
                              vectorization_mode="vector_entry_point",
                              overrides=["execution.commission_bps=5"])

The same configuration from Python: ``cfg = optrader.compose(env="training", overrides=[...])``
then ``optrader.make_vec(cfg, num_envs=1024, data=None)``.
"""

from optrader.config import ConfigError, compose, load_spec
from optrader.registry import register_reward, registry

__version__ = "0.1.0"


def make_vec(cfg=None, num_envs: int = 1, data=None, **kwargs):
    """A TradingVectorEnv of ``num_envs`` envs for a composed config (default: training)."""
    from optrader.envs.vector import TradingVectorEnv

    return TradingVectorEnv(num_envs=num_envs, cfg=cfg, data=data, **kwargs)


def _register_gymnasium() -> None:
    import gymnasium

    env_id = "optrader/Trading-v0"
    if env_id in gymnasium.registry:
        return
    gymnasium.register(
        id=env_id,
        entry_point="optrader.envs.single:TradingEnv",
        vector_entry_point="optrader.envs.vector:TradingVectorEnv",
    )


_register_gymnasium()

__all__ = ["ConfigError", "compose", "load_spec", "make_vec", "register_reward", "registry"]
