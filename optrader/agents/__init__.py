"""Agents that train on ``TradingVectorEnv``: evolution strategies in numpy (``es``)."""

from optrader.agents.es import (
    Checkpoint,
    EvolutionStrategy,
    Policy,
    buy_and_hold_actor,
    centered_ranks,
    episode_returns,
    evaluate,
    evaluate_actor,
    evaluate_baselines,
    load_checkpoint,
    policy_actor,
    random_actor,
    save_checkpoint,
)

__all__ = ["Checkpoint", "EvolutionStrategy", "Policy", "buy_and_hold_actor", "centered_ranks",
           "episode_returns", "evaluate", "evaluate_actor", "evaluate_baselines",
           "load_checkpoint", "policy_actor", "random_actor", "save_checkpoint"]
