"""Embedded default market: annual-unit parameters in, float64 (T, A) OHLCV arrays out.

This module owns unit conversion and validation; the process itself (GBM with Ito correction,
AR(1) log returns, Merton jumps, a two-state regime chain, Brownian-bridge wicks, lognormal
volume) is documented and implemented in ``kernels.markets``.

Unit conversion with ``dt = 1 / periods_per_year``: per-bar drift = ``drift * dt``, per-bar vol =
``volatility * sqrt(dt)``, per-bar jump probability = ``jump_intensity * dt`` (at most one jump
per bar, so this must be <= 1). ``ar1``, jump sizes, regime probabilities and multipliers are
per bar already.

Timestamps (``synthetic_timestamps``) agree with ``periods_per_year``: with ``freq="auto"`` (the
default) 252 bars a year are business days, 365 / 365.25 calendar days, 260 weekdays, 52 weeks,
12 month ends, 4 quarter ends, 1 year end; 252 x k bars a year are k bars in each business day's
session from 14:30 UTC (US equities in winter); 260 x k or 365.25 x k (k an integer) are 24/5 or
24/7 bars of 24 h / k (365 x k too); any other value is bars of 365.25 days / periods_per_year, every day. An
explicit pandas ``freq`` is accepted only when the periods per year inferred from the stamps it
makes (``optrader.annualisation``) are within 10 % of ``periods_per_year``.
"""

from collections.abc import Sequence

import numpy as np

from kernels.markets import simulate_market_nb
from optrader.annualisation import NS_PER_DAY, infer_periods_per_year

_MAX_SEED = 2**32 - 1  # np.random.seed inside Numba takes a uint32
_CORR_ATOL = 1e-8


def _per_asset(name, value, n_assets):
    """Broadcast a scalar or a length-n_assets sequence to a finite float64 (n_assets,) array."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n_assets, float(arr))
    elif arr.shape != (n_assets,):
        raise ValueError(
            f"{name}: expected a scalar or a sequence of length n_assets={n_assets}, "
            f"got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected finite values, got {arr.tolist()}")
    return np.ascontiguousarray(arr)


def _pair(name, value):
    """A finite float64 (2,) array: one value per regime."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (2,):
        raise ValueError(f"{name}: expected 2 values (regime 0, regime 1), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected finite values, got {arr.tolist()}")
    return arr


def _scalar(name, value):
    """A finite Python float."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a real number, got {value!r}") from None
    if not np.isfinite(out):
        raise ValueError(f"{name}: expected a finite number, got {out}")
    return out


def _count(name, value, minimum):
    """An int >= minimum (bools and floats are rejected so a typo does not silently truncate)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def _correlation_cholesky(correlation, n_assets):
    """Lower Cholesky factor of a scalar pairwise or (A, A) correlation matrix, validated."""
    arr = np.asarray(correlation, dtype=np.float64)
    if arr.ndim == 0:
        rho = float(arr)
        if not -1.0 <= rho <= 1.0:
            raise ValueError(f"correlation: expected a value in [-1, 1], got {rho}")
        if n_assets == 1:
            return np.ones((1, 1))
        # An equicorrelation matrix is positive definite iff -1/(A-1) < rho < 1.
        lo = -1.0 / (n_assets - 1)
        if not lo < rho < 1.0:
            raise ValueError(
                f"correlation: expected {lo:.6g} < correlation < 1 so that the matrix is positive "
                f"definite for n_assets={n_assets}, got {rho}"
            )
        arr = np.full((n_assets, n_assets), rho)
        np.fill_diagonal(arr, 1.0)
        return np.ascontiguousarray(np.linalg.cholesky(arr))
    if arr.shape != (n_assets, n_assets):
        raise ValueError(
            f"correlation: expected a scalar or an ({n_assets}, {n_assets}) matrix, "
            f"got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("correlation: expected finite entries, got NaN or inf")
    if not np.allclose(arr, arr.T, rtol=0.0, atol=_CORR_ATOL):
        err = float(np.max(np.abs(arr - arr.T)))
        raise ValueError(f"correlation: expected a symmetric matrix, got max |C - C.T| = {err:.3g}")
    if not np.allclose(np.diag(arr), 1.0, rtol=0.0, atol=_CORR_ATOL):
        raise ValueError(f"correlation: expected ones on the diagonal, got {np.diag(arr).tolist()}")
    try:
        chol = np.linalg.cholesky(0.5 * (arr + arr.T))
    except np.linalg.LinAlgError:
        min_eig = float(np.linalg.eigvalsh(0.5 * (arr + arr.T)).min())
        raise ValueError(
            f"correlation: expected a positive definite matrix, got smallest eigenvalue {min_eig:.3g}"
        ) from None
    return np.ascontiguousarray(chol)


def generate_synthetic(
    n_bars: int,
    n_assets: int,
    seed: int = 0,
    drift: float | Sequence[float] = 0.05,
    volatility: float | Sequence[float] = 0.2,
    correlation: float | Sequence[Sequence[float]] | np.ndarray = 0.0,
    ar1: float | Sequence[float] = 0.0,
    jump_intensity: float = 0.0,
    jump_mean: float = 0.0,
    jump_std: float = 0.0,
    regimes: bool = False,
    regime_p_stay: Sequence[float] = (0.99, 0.95),
    regime_vol_mult: Sequence[float] = (1.0, 2.5),
    regime_drift_mult: Sequence[float] = (1.0, -1.0),
    init_price: float | Sequence[float] = 100.0,
    base_volume: float | Sequence[float] = 1e6,
    intrabar_vol: float = 0.5,
    periods_per_year: float = 252.0,
) -> dict[str, np.ndarray]:
    """Generate A correlated synthetic OHLCV series of T bars, deterministic in ``seed``.

    Args:
        n_bars: number of bars T (>= 2).
        n_assets: number of assets A (>= 1).
        seed: RNG seed in [0, 2**32 - 1]; the same seed and arguments give bit-identical output.
        drift: ANNUAL arithmetic drift mu, scalar or one per asset. With ``ar1 = 0`` the mean
            gross return per bar is exactly ``exp(mu / periods_per_year)`` (Ito and jump
            compensation are applied), so the mean log return per bar is lower by
            ``vol_bar**2 / 2`` plus the jump compensator.
        volatility: ANNUAL volatility sigma (>= 0), scalar or one per asset; it is the std of the
            AR(1) innovation.
        correlation: pairwise correlation of the return shocks, a scalar (same for every pair)
            or a symmetric positive definite (A, A) matrix with ones on the diagonal.
        ar1: AR(1) coefficient of each asset's log return per bar, |ar1| < 1, scalar or one per
            asset; 0 disables it.
        jump_intensity: expected Merton jumps per YEAR per asset (>= 0); at most one per bar.
        jump_mean: mean of the log jump size.
        jump_std: std of the log jump size (>= 0).
        regimes: enable the two-state regime chain shared by all assets (starts in regime 0).
        regime_p_stay: probability of staying in regime 0 / regime 1 each bar, in [0, 1].
        regime_vol_mult: volatility multiplier (>= 0) in regime 0 / regime 1.
        regime_drift_mult: drift multiplier in regime 0 / regime 1.
        init_price: open of the first bar (> 0), scalar or one per asset.
        base_volume: typical volume per bar (> 0), scalar or one per asset.
        intrabar_vol: wick scale as a fraction of the bar's volatility (>= 0); 1.0 makes each
            high/low the extreme of a Brownian bridge with the bar's own volatility.
        periods_per_year: bars per year used to convert the annual figures (> 0).

    Returns:
        ``{"open", "high", "low", "close", "volume"}``, each float64 ``(n_bars, n_assets)``
        C-contiguous. ``open[t] == close[t - 1]`` (no gaps), ``open[0] == init_price``,
        ``0 < low <= min(open, close) <= max(open, close) <= high`` and ``volume > 0``.

    Raises:
        ValueError: an argument is out of range or has the wrong shape (the message names it),
            or the path left the float64 range (log price beyond about +-700, e.g. 0.8 annual vol
            over ~4000 years of daily bars).
    """
    n_bars = _count("n_bars", n_bars, 2)
    n_assets = _count("n_assets", n_assets, 1)
    seed = _count("seed", seed, 0)
    if seed > _MAX_SEED:
        raise ValueError(f"seed: expected an integer in [0, {_MAX_SEED}], got {seed}")

    periods_per_year = _scalar("periods_per_year", periods_per_year)
    if periods_per_year <= 0.0:
        raise ValueError(f"periods_per_year: expected > 0, got {periods_per_year}")
    drift_a = _per_asset("drift", drift, n_assets)
    vol_a = _per_asset("volatility", volatility, n_assets)
    if np.any(vol_a < 0.0):
        raise ValueError(f"volatility: expected >= 0 for every asset, got {vol_a.tolist()}")
    ar1_a = _per_asset("ar1", ar1, n_assets)
    if np.any(np.abs(ar1_a) >= 1.0):
        raise ValueError(f"ar1: expected -1 < ar1 < 1 for every asset, got {ar1_a.tolist()}")
    chol = _correlation_cholesky(correlation, n_assets)

    jump_intensity = _scalar("jump_intensity", jump_intensity)
    if jump_intensity < 0.0:
        raise ValueError(f"jump_intensity: expected >= 0 jumps per year, got {jump_intensity}")
    jump_prob = jump_intensity / periods_per_year
    if jump_prob > 1.0:
        raise ValueError(
            f"jump_intensity: expected <= periods_per_year={periods_per_year} jumps per year "
            f"(at most one jump per bar), got {jump_intensity}"
        )
    jump_mean = _scalar("jump_mean", jump_mean)
    jump_std = _scalar("jump_std", jump_std)
    if jump_std < 0.0:
        raise ValueError(f"jump_std: expected >= 0, got {jump_std}")

    p_stay = _pair("regime_p_stay", regime_p_stay)
    if np.any((p_stay < 0.0) | (p_stay > 1.0)):
        raise ValueError(f"regime_p_stay: expected probabilities in [0, 1], got {p_stay.tolist()}")
    vol_mult = _pair("regime_vol_mult", regime_vol_mult)
    if np.any(vol_mult < 0.0):
        raise ValueError(f"regime_vol_mult: expected values >= 0, got {vol_mult.tolist()}")
    drift_mult = _pair("regime_drift_mult", regime_drift_mult)
    if not regimes:
        # A chain that never leaves regime 0, whose multipliers are 1: the kernel then draws no
        # regime uniforms at all.
        p_stay, vol_mult, drift_mult = np.ones(2), np.ones(2), np.ones(2)

    price0 = _per_asset("init_price", init_price, n_assets)
    if np.any(price0 <= 0.0):
        raise ValueError(f"init_price: expected > 0 for every asset, got {price0.tolist()}")
    volume0 = _per_asset("base_volume", base_volume, n_assets)
    if np.any(volume0 <= 0.0):
        raise ValueError(f"base_volume: expected > 0 for every asset, got {volume0.tolist()}")
    intrabar_vol = _scalar("intrabar_vol", intrabar_vol)
    if intrabar_vol < 0.0:
        raise ValueError(f"intrabar_vol: expected >= 0, got {intrabar_vol}")

    dt = 1.0 / periods_per_year
    out = {key: np.empty((n_bars, n_assets)) for key in ("open", "high", "low", "close", "volume")}
    simulate_market_nb(
        seed, drift_a * dt, vol_a * np.sqrt(dt), chol, ar1_a, jump_prob, jump_mean, jump_std,
        p_stay, vol_mult, drift_mult, price0, volume0, intrabar_vol,
        out["open"], out["high"], out["low"], out["close"], out["volume"],
    )
    # GBM's median path moves like exp((mu - sigma^2/2) t): over centuries of bars with a large
    # vol it can leave float64 (~1e-308 .. 1e308). Fail loudly instead of returning zeros/inf.
    low_min, high_max = float(out["low"].min()), float(out["high"].max())
    if not (low_min > 0.0 and high_max < np.inf):
        raise ValueError(
            f"n_bars: expected prices to stay within float64 over {n_bars} bars, got "
            f"min low {low_min:.3g} and max high {high_max:.3g}; use fewer bars or a smaller "
            "volatility / jump size"
        )
    return out


_FREQ_TOL = 0.1  # relative disagreement of an explicit freq with periods_per_year that is refused
_SESSION_OPEN_NS = (14 * 60 + 30) * 60 * 10**9  # 14:30 UTC, 09:30 New York in winter
_SESSION_NS = 390 * 60 * 10**9  # 6.5 h
_CALENDAR_FREQ = {252.0: "B", 260.0: "B", 365.0: "D", 365.25: "D", 52.0: "W-FRI", 12.0: "ME",
                  4.0: "QE", 1.0: "YE"}


def synthetic_timestamps(start, n_bars: int, freq: str, periods_per_year: float) -> np.ndarray:
    """int64 (n_bars,) UTC ns bar times of a synthetic market with ``periods_per_year`` bars a year.

    Args:
        start: the first bar's time (anything ``pandas.Timestamp`` takes; naive = UTC).
        n_bars: number of bars (>= 1).
        freq: "auto" (the spacing and calendar follow from ``periods_per_year``, see the module
            docstring) or a pandas offset such as "1h", which must agree with periods_per_year.
        periods_per_year: the generator's bars per year (> 0).

    Raises:
        ValueError: a freq that disagrees with periods_per_year, an unusable start or freq, or
            times past the nanosecond range (year 2262).
    """
    import pandas as pd

    n_bars = _count("n_bars", n_bars, 1)
    ppy = _scalar("periods_per_year", periods_per_year)
    if ppy <= 0.0:
        raise ValueError(f"periods_per_year: expected > 0, got {ppy}")
    if not isinstance(freq, str) or not freq:
        raise ValueError(f"freq: expected 'auto' or a pandas offset such as '1h', got {freq!r}")
    try:
        t0 = pd.Timestamp(start)
        t0 = t0.tz_localize("UTC") if t0.tz is None else t0.tz_convert("UTC")
        if freq != "auto":
            ts = pd.date_range(t0, periods=n_bars, freq=freq).as_unit("ns").asi8
        else:
            ts = _auto_timestamps(t0, n_bars, ppy)
    except (TypeError, ValueError, OverflowError, pd.errors.OutOfBoundsDatetime) as exc:
        raise ValueError(f"start / freq / n_bars: cannot build {n_bars} timestamps from "
                         f"start={start!r} every {freq!r} (nanosecond timestamps end in 2262; "
                         f"use fewer bars or more bars per year): {exc}") from None
    if freq != "auto" and n_bars >= 2:
        got = infer_periods_per_year(ts)
        if abs(got.periods_per_year / ppy - 1.0) > _FREQ_TOL:
            raise ValueError(f"freq: expected bars that make periods_per_year={ppy:g} a year, got "
                             f"freq={freq!r}, whose stamps make {got}; use freq='auto' (the "
                             f"spacing follows periods_per_year) or change periods_per_year")
    return ts


def _auto_timestamps(t0, n_bars: int, ppy: float) -> np.ndarray:
    import pandas as pd

    if ppy in _CALENDAR_FREQ:
        return pd.date_range(t0, periods=n_bars, freq=_CALENDAR_FREQ[ppy]).as_unit("ns").asi8
    for days in (252.0, 260.0, 365.0, 365.25):
        k = ppy / days
        if k >= 2.0 and k == round(k):
            k = int(k)
            if days == 252.0:  # k bars in each business day's session
                n_days = -(-n_bars // k)
                day0 = t0.normalize()
                days_ns = pd.bdate_range(day0, periods=n_days).as_unit("ns").asi8
                step = _SESSION_NS // k
                step = step - step % 10**9 if step >= 10**9 else step  # whole seconds
                offs = _SESSION_OPEN_NS + np.arange(k, dtype=np.int64) * step
                return (days_ns[:, None] + offs[None, :]).ravel()[:n_bars]
            step = NS_PER_DAY // k
            if days == 260.0:  # round the clock on weekdays
                n_days = -(-n_bars // k)
                days_ns = pd.bdate_range(t0.normalize(), periods=n_days).as_unit("ns").asi8
                offs = np.arange(k, dtype=np.int64) * step
                return (days_ns[:, None] + offs[None, :]).ravel()[:n_bars]
            return _evenly(t0.value, n_bars, step)
    return _evenly(t0.value, n_bars, int(round(365.25 * NS_PER_DAY / ppy)))


def _evenly(t0: int, n_bars: int, step: int) -> np.ndarray:
    """t0 + k * step for k < n_bars, int64 ns, refusing steps below 1 ns and overflow."""
    if step < 1:
        raise ValueError(f"bars {step} ns apart: periods_per_year is too large")
    if float(t0) + float(step) * (n_bars - 1) > np.iinfo(np.int64).max:
        raise OverflowError(f"the last of {n_bars} bars {step} ns apart would fall after 2262")
    return t0 + np.arange(n_bars, dtype=np.int64) * step
