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
from optrader.config import with_value
from optrader.data.synthetic import _correlation_cholesky
from optrader.envs.params import per_env_array

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
    jump_prob = d.jumps.intensity * dt  # <= 1 (SyntheticDataConfig.check)
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


def checked_per_env(bufs: SimulationBuffers, spec, updates: dict, n: int,
                    n_assets: int) -> list[tuple[np.ndarray, tuple, np.ndarray]]:
    """The writes ``(array, index, values)`` for per-env market parameters ``{key: values}``
    (keys of ``SIM_PER_ENV_KEYS``): a scalar, (n,) or, for per-asset keys, (n, A), each
    validated by the config's own checks at both extremes, and GARCH stationarity checked in
    every env under the new values together. Nothing is written here, so a rejected update
    changes nothing."""
    sim_asset, sim_env, _, _, stress = bufs.kernel_args[:5]
    garch = {SimAsset.GARCH_ALPHA: sim_asset[:, SimAsset.GARCH_ALPHA],
             SimAsset.GARCH_BETA: sim_asset[:, SimAsset.GARCH_BETA]}
    dt = 1.0 / spec.data.periods_per_year
    writes = []
    for key, values in updates.items():
        target, field, unit, per_asset = SIM_PER_ENV_KEYS[key]
        arr = per_env_array(key, values, [(n,), (n, n_assets)] if per_asset else [(n,)])
        group, field_name = key.split(".", 1)
        for v in (arr.min(), arr.max()):
            with_value(spec, group, field_name, v).check(group)
        if unit == "int" and not np.all(arr == np.round(arr)):
            bad = arr[arr != np.round(arr)][:5].tolist()
            raise ValueError(f"per_env[{key!r}]: expected whole bars, got {bad}")
        if unit == "dt":
            arr = arr * dt
        elif unit == "sqrt_dt":
            arr = arr * np.sqrt(dt)
        elif unit == "log1p":
            arr = np.log1p(arr)
        if target == "sim_asset":
            arr = np.broadcast_to(arr if arr.ndim == 2 else arr[:, None], (n, n_assets))
            writes.append((sim_asset, (slice(None), field, slice(None)), arr))
            if field in garch:
                garch[field] = arr
        elif target == "sim_env":
            writes.append((sim_env, (slice(None), field), arr))
        else:
            writes.append((stress, (slice(None), field), arr.astype(np.int64)))
    keys = [k for k in updates if k.startswith("simulation.garch.")]
    total = garch[SimAsset.GARCH_ALPHA] + garch[SimAsset.GARCH_BETA]
    if keys and not np.all(total < 1.0):
        raise ValueError(f"per_env[{keys[0]!r}]: expected simulation.garch.alpha + beta < 1 in "
                         f"every env, got up to {float(total.max())}")
    return writes
