"""Numba kernels of optrader: numpy + numba only, no Python objects, no imports of optrader.

Modules, one concern each: enums (codes), rng (per-env counters), portfolio (targets, positions,
mark to market), execution (fills, slippage, commission), reward (components), features (causal
features, observation rows), markets (synthetic bars), step (the fused batched step).
"""
