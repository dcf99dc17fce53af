"""Numba kernels of optrader: numpy + numba only, no Python objects, no imports of optrader.

Modules, one concern each: enums (codes), rng (per-env counters), portfolio (targets, positions,
mark to market), execution (trade decisions), costs (slippage and commission models, order-size
rules), orders (limit/stop prices and fills), fills (execute, book and record one fill), risk
(sizing, stops, causal risk series), reward (components), features (causal features, observation
rows), markets (whole-path synthetic bars), simulation (per-env bars generated inside a step),
step (the fused batched step).
"""
