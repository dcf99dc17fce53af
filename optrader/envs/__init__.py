"""Gymnasium environments: ``TradingVectorEnv`` (batched, fused kernel) and ``TradingEnv``."""
