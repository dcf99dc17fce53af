"""Reinforcement-learning library adapters (optional extra ``optrader[rl]``).

``optrader.rl.sb3`` holds the Stable-Baselines3 ``VecEnv`` adapter; it imports SB3 (and so
torch) when that module is imported, never from ``import optrader`` or ``import optrader.rl``.
"""
