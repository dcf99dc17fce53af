"""PPO (Stable-Baselines3) as an optrader agent: its config schema, the missing-extra error,
checkpoints that validate and backtest unchanged, and learning on unseen bars.

The tests that train need torch and stable-baselines3 (the ``rl`` extra); they skip without them.
"""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

import optrader
from optrader.config import ConfigError, PPOAgentConfig, load_spec, suggest_override


def with_agent(agent: dict) -> dict:
    """The default training config as a plain dict, with ``agent`` replaced."""
    return {**OmegaConf.to_container(optrader.compose("training"), resolve=True), "agent": agent}


# ---------------------------------------------------------------------------------------------
# Config


def test_ppo_config_composes_with_its_own_schema():
    spec = load_spec(optrader.compose("training", ["agent=ppo", "agent.n_steps=32",
                                                   "agent.batch_size=1024"]))
    assert isinstance(spec.agent, PPOAgentConfig)
    assert (spec.agent.name, spec.agent.n_steps, spec.agent.device) == ("ppo", 32, "cpu")
    assert spec.agent.net_arch == (64, 64)
    assert load_spec(optrader.compose("training")).agent.name == "es"  # ES stays the default


@pytest.mark.parametrize(("override", "message"), [
    ("agent.batch_size=1000",
     r"agent.batch_size: expected a divisor of n_steps x num_envs = 64 x 256 = 16384, got 1000"),
    ("agent.net_arch=[64,0]", r"agent.net_arch: expected integers >= 1, got \[64.0, 0.0\]"),
    ("agent.gamma=1.5", r"agent.gamma: expected a value in \[0.0, 1.0\], got 1.5"),
    ("agent.activation=gelu", r"agent.activation: expected one of \['tanh', 'relu'\], got 'gelu'"),
])
def test_ppo_config_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_spec(optrader.compose("training", ["agent=ppo", override]))


def test_agent_keys_get_a_did_you_mean():
    assert suggest_override("agent.n_step=8") == \
        "unknown key 'agent.n_step'; did you mean 'agent.n_steps'?"
    assert suggest_override("agent.budget_step=8") == \
        "unknown key 'agent.budget_step'; did you mean 'agent.budget_steps'?"
    assert "did you mean 'agent=ppo'" in suggest_override("agent=ppp")
    with pytest.raises(ConfigError, match=r"agent.clip_rang: unknown key;.*did you mean "
                                          r"'clip_range'"):
        load_spec(with_agent({"name": "ppo", "clip_rang": 0.1}))
    with pytest.raises(ConfigError, match=r"agent.name: expected one of \['es', 'ppo'\], got "
                                          r"'ppo2'; did you mean 'ppo'\?"):
        load_spec(with_agent({"name": "ppo2"}))
