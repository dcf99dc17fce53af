"""Simulation mode's buffers: per-env market parameters (per bar) and the per-env row segments
the fused step reads instead of a shared market (see ``kernels/sim_rows.py``).

Units: the config is annual like the synthetic data config; with dt = 1 / periods_per_year the
kernels get drift x dt and volatility x sqrt(dt) per bar, jump probability intensity x dt per
bar, and the crash as a log gap log(1 + size). ar1, jump sizes, GARCH, regime probabilities and
multipliers are per bar already.

Memory: R = keep + SEGMENT_SLACK rows per env, keep = max(window, max latency + 1, 2); a row is
(5 bars + N_SERIES series) x 8 bytes + F x 4 bytes of features per asset.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kernels.enums import (
    N_ROW_STATE,
    N_SERIES,
    N_SIM_ASSET,
    N_SIM_CLOCK,
    N_SIM_ENV,
    N_SIM_REGIME,
    N_SIM_STATE,
    N_SIM_STRESS,
    SimAsset,
    SimEnv,
    SimRegime,
    SimStress,
)
from kernels.sim_rows import ewma_alpha_nb
from optrader.checks import ConfigError
from optrader.data.synthetic import _correlation_cholesky

SEGMENT_SLACK = 16  # rows generated between two moves of the last `keep` rows to the segment start

# per_env keys of simulation mode: key -> (array, field, unit conversion, per-asset allowed)
SIM_PER_ENV_KEYS = {
    "data.drift": ("sim_asset", SimAsset.DRIFT, "dt", True),
    "data.volatility": ("sim_asset", SimAsset.VOL, "sqrt_dt", True),
    "data.ar1": ("sim_asset", SimAsset.AR1, None, True),
    "data.init_price": ("sim_asset", SimAsset.INIT_PRICE, None, True),
    "data.base_volume": ("sim_asset", SimAsset.BASE_VOLUME, None, True),
    "simulation.garch.alpha": ("sim_asset", SimAsset.GARCH_ALPHA, None, True),
    "simulation.garch.beta": ("sim_asset", SimAsset.GARCH_BETA, None, True),
    "data.jumps.intensity": ("sim_env", SimEnv.JUMP_INTENSITY, "dt", False),
    "data.jumps.mean": ("sim_env", SimEnv.JUMP_MEAN, None, False),
    "data.jumps.std": ("sim_env", SimEnv.JUMP_STD, None, False),
    "data.intrabar_vol": ("sim_env", SimEnv.INTRABAR_VOL, None, False),
    "simulation.crash.probability": ("sim_env", SimEnv.CRASH_PROB, None, False),
    "simulation.crash.size": ("sim_env", SimEnv.CRASH_SIZE, "log1p", False),
    "simulation.vol_spike.probability": ("sim_env", SimEnv.SPIKE_PROB, None, False),
    "simulation.vol_spike.mult": ("sim_env", SimEnv.SPIKE_MULT, None, False),
    "simulation.vol_spike.length": ("stress", SimStress.SPIKE_LEN, "int", False),
    "simulation.drought.probability": ("sim_env", SimEnv.DROUGHT_PROB, None, False),
    "simulation.drought.mult": ("sim_env", SimEnv.DROUGHT_MULT, None, False),
    "simulation.drought.length": ("stress", SimStress.DROUGHT_LEN, "int", False),
}


class SimulationBuffers(NamedTuple):
    bars: np.ndarray  # float64 (5, n R, A)
    series: np.ndarray  # float64 (N_SERIES, n R, A)
    features: np.ndarray  # float32 (n R, A, F)
    day: np.ndarray  # int64 (n R,)
    reset_start: np.ndarray  # int64 (n,) start row of each env's episode
    kernel_args: tuple  # kernels.step's sim arguments, in _SIM_ARGS order
    seg_rows: int


def build(spec, n: int, feature_ids: np.ndarray, max_latency: int) -> SimulationBuffers:
    """Allocate the segments and fill the per-env parameters from the validated spec."""
    d, sim, obs = spec.data, spec.simulation, spec.observation
    n_assets = d.n_assets
    dt = 1.0 / d.periods_per_year
    keep = max(obs.window, max_latency + 1, 2)
    seg_rows = keep + SEGMENT_SLACK
    rows = n * seg_rows

    sim_asset = np.zeros((n, N_SIM_ASSET, n_assets))
    for field, value in ((SimAsset.DRIFT, np.asarray(d.drift, float) * dt),
                         (SimAsset.VOL, np.asarray(d.volatility, float) * np.sqrt(dt)),
                         (SimAsset.GARCH_ALPHA, sim.garch.alpha),
                         (SimAsset.GARCH_BETA, sim.garch.beta),
                         (SimAsset.AR1, d.ar1),
                         (SimAsset.INIT_PRICE, d.init_price),
                         (SimAsset.BASE_VOLUME, d.base_volume)):
        sim_asset[:, field, :] = value
    jump_prob = d.jumps.intensity * dt
    if jump_prob > 1.0:
        raise ConfigError(f"data.jumps.intensity: expected at most data.periods_per_year="
                          f"{d.periods_per_year} jumps per year (one per bar), got "
                          f"{d.jumps.intensity}")
    sim_env = np.zeros((n, N_SIM_ENV))
    for field, value in ((SimEnv.JUMP_INTENSITY, jump_prob), (SimEnv.JUMP_MEAN, d.jumps.mean),
                         (SimEnv.JUMP_STD, d.jumps.std), (SimEnv.INTRABAR_VOL, d.intrabar_vol),
                         (SimEnv.CRASH_SIZE, np.log1p(sim.crash.size)),
                         (SimEnv.SPIKE_MULT, sim.vol_spike.mult),
                         (SimEnv.DROUGHT_MULT, sim.drought.mult),
                         (SimEnv.CRASH_PROB, sim.crash.probability),
                         (SimEnv.SPIKE_PROB, sim.vol_spike.probability),
                         (SimEnv.DROUGHT_PROB, sim.drought.probability)):
        sim_env[:, field] = value
    stress = np.full((n, N_SIM_STRESS), -1, dtype=np.int64)
    stress[:, SimStress.SPIKE_LEN] = sim.vol_spike.length
    stress[:, SimStress.DROUGHT_LEN] = sim.drought.length
    regime_table = np.ones((N_SIM_REGIME, 2))
    if d.regimes.enabled:  # otherwise a chain that never leaves regime 0 and draws nothing
        regime_table[SimRegime.P_STAY] = d.regimes.p_stay
        regime_table[SimRegime.VOL_MULT] = d.regimes.vol_mult
        regime_table[SimRegime.DRIFT_MULT] = d.regimes.drift_mult
    try:
        chol = _correlation_cholesky(d.correlation, n_assets)
    except ValueError as exc:
        raise ConfigError(f"data.{exc}") from None

    n_feat = feature_ids.shape[0]
    bufs = SimulationBuffers(
        bars=np.ones((5, rows, n_assets)),
        series=np.zeros((N_SERIES, rows, n_assets)),
        features=np.zeros((rows, n_assets, n_feat), dtype=np.float32),
        day=np.zeros(rows, dtype=np.int64),
        reset_start=np.zeros(n, dtype=np.int64),
        kernel_args=(sim_asset, sim_env, chol, regime_table, stress,
                     np.zeros((n, N_SIM_STATE, n_assets)),
                     np.zeros((n, N_SIM_CLOCK), dtype=np.int64),
                     np.zeros((n, N_ROW_STATE, n_assets)), seg_rows, keep, sim.bars_per_day,
                     feature_ids, ewma_alpha_nb(obs.ewma_halflife),
                     ewma_alpha_nb(spec.execution.impact_halflife),
                     ewma_alpha_nb(spec.risk.vol_halflife), spec.risk.atr_period, sim.warmup),
        seg_rows=seg_rows,
    )
    return bufs


def apply_per_env(bufs: SimulationBuffers, key: str, values, n: int, n_assets: int,
                  periods_per_year: float) -> None:
    """Write a per-env market parameter: a scalar, (n,) or, for per-asset keys, (n, A)."""
    name, field, unit, per_asset = SIM_PER_ENV_KEYS[key]
    arr = np.asarray(values, dtype=np.float64)
    shapes = [(n,), (n, n_assets)] if per_asset else [(n,)]
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape not in shapes:
        raise ValueError(f"per_env[{key!r}]: expected a scalar or shape "
                         f"{' or '.join(map(str, shapes))}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"per_env[{key!r}]: expected finite values, got NaN or inf")
    _check_range(key, arr, periods_per_year)
    dt = 1.0 / periods_per_year
    if unit == "dt":
        arr = arr * dt
    elif unit == "sqrt_dt":
        arr = arr * np.sqrt(dt)
    elif unit == "log1p":
        arr = np.log1p(arr)
    sim_asset, sim_env, _, _, stress = bufs.kernel_args[:5]
    if name == "sim_asset":
        sim_asset[:, field, :] = arr if arr.ndim == 2 else arr[:, None]
    elif name == "sim_env":
        sim_env[:, field] = arr
    else:
        stress[:, field] = arr.astype(np.int64)
    ga, gb = sim_asset[:, SimAsset.GARCH_ALPHA], sim_asset[:, SimAsset.GARCH_BETA]
    if not np.all(ga + gb < 1.0):
        raise ValueError(f"per_env[{key!r}]: expected simulation.garch.alpha + beta < 1 in every "
                         f"env, got up to {float((ga + gb).max())}")


_RANGES = {  # key -> (lo, hi, lo closed, hi closed) of the user's (annual) values
    "data.volatility": (0.0, np.inf, True, True),
    "data.ar1": (-1.0, 1.0, False, False),
    "data.init_price": (0.0, np.inf, False, True),
    "data.base_volume": (0.0, np.inf, True, True),
    "simulation.garch.alpha": (0.0, 1.0, True, False),
    "simulation.garch.beta": (0.0, 1.0, True, False),
    "data.jumps.intensity": (0.0, None, True, True),
    "data.jumps.std": (0.0, np.inf, True, True),
    "data.intrabar_vol": (0.0, np.inf, True, True),
    "simulation.crash.probability": (0.0, 1.0, True, True),
    "simulation.crash.size": (-1.0, 1.0, False, True),
    "simulation.vol_spike.probability": (0.0, 1.0, True, True),
    "simulation.vol_spike.mult": (0.0, np.inf, False, True),
    "simulation.vol_spike.length": (1.0, np.inf, True, True),
    "simulation.drought.probability": (0.0, 1.0, True, True),
    "simulation.drought.mult": (0.0, np.inf, False, True),
    "simulation.drought.length": (1.0, np.inf, True, True),
}


def _check_range(key: str, arr: np.ndarray, periods_per_year: float) -> None:
    if key not in _RANGES:
        return
    lo, hi, lo_closed, hi_closed = _RANGES[key]
    if hi is None:
        hi = periods_per_year  # at most one jump per bar
    ok = (arr >= lo if lo_closed else arr > lo) & (arr <= hi if hi_closed else arr < hi)
    if key.endswith(".length"):
        ok &= arr == np.round(arr)
    if not ok.all():
        bad = arr[~ok]
        raise ValueError(f"per_env[{key!r}]: expected values in {'[' if lo_closed else '('}{lo}, "
                         f"{hi}{']' if hi_closed else ')'}"
                         f"{' (whole bars)' if key.endswith('.length') else ''}, got "
                         f"{bad[:5].tolist()}")
