"""How many bars make a year: configured, or inferred from the bar timestamps and the calendar.

Every annualised figure (CAGR, volatility, Sharpe, Sortino, Calmar, turnover) scales per-bar
statistics by ``periods_per_year`` (ppy). ``infer_periods_per_year`` reads it off int64 UTC ns
bar timestamps; ``annualisation_for`` is what the entry points (backtest, validate, train) call:
``metrics.periods_per_year`` when it is > 0, the generator's ``data.periods_per_year`` for
synthetic data and simulation mode, else the inference. Both return an ``Annualisation``
(ppy, where it came from, and from what), which every report writes next to its metrics.

Inference, from the typical bar spacing (the most common gap between consecutive timestamps):

============================  ==============================================================
spacing                       periods per year
============================  ==============================================================
intraday, 24/7 (crypto)       365.25 x bars per day (24 h / spacing)
intraday, 24/5 (FX)           260 x bars per day
intraday, exchange sessions   252 x bars per session (the median count of bars per session)
daily                         252 on weekdays only; 365.25 on all 7 days of the week
weekly / monthly / quarterly  52 / 12 / 4
yearly                        1
other multi-day spacings      365.25 days / spacing (calendar time)
============================  ==============================================================

A market is 24/7 when all seven UTC weekdays carry bars (each at least a fifth as many as the
busiest; FX's Sunday-evening open does not count), or, over less than a week of data, when any
bar falls on a Saturday. Intraday bars form sessions split at gaps longer than max(4 bars, 3 h);
sessions with a median length of 20 h or more are a round-the-clock market (24/7 or 24/5),
shorter ones exchange sessions. A ``calendar`` name fixes the kind of market instead:
``always_open`` / ``24/7`` / ``crypto`` (365.25 days), ``24/5`` / ``fx`` / ``forex`` (260 days),
any other name (``us_equities``, an exchange code such as ``XNYS``) an exchange's 252 sessions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

NS_PER_HOUR = 3_600 * 10**9
NS_PER_DAY = 24 * NS_PER_HOUR
DAYS_24_7 = 365.25  # calendar days per year
DAYS_24_5 = 260.0  # weekdays per year
SESSIONS = 252.0  # exchange trading days per year (weekdays less ~8 holidays)
ROUND_THE_CLOCK = frozenset({"always_open", "24/7", "crypto"})
WEEKDAYS_24H = frozenset({"24/5", "fx", "forex"})
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)
_SATURDAY = 5
# (lowest, highest spacing in days, periods per year, name)
_MULTI_DAY = ((5.0, 8.0, 52.0, "weekly"), (27.0, 32.0, 12.0, "monthly"),
              (88.0, 93.0, 4.0, "quarterly"), (360.0, 367.0, 1.0, "yearly"))


class Annualisation(NamedTuple):
    """The periods per year used to annualise, and how they were obtained."""

    periods_per_year: float  # bars per year, > 0
    source: str  # "configured" (metrics.periods_per_year) | "synthetic" | "inferred"
    basis: str  # from what, e.g. "1h bars, 24/5 (FX): 260 days x 24 bars"

    def as_dict(self) -> dict:
        """JSON-ready {"periods_per_year", "source", "basis"} (reports write this)."""
        return {"periods_per_year": float(self.periods_per_year), "source": self.source,
                "basis": self.basis}

    def __str__(self) -> str:
        return f"{self.periods_per_year:,.6g} bars/year ({self.source}: {self.basis})"


def configured(periods_per_year: float, basis: str = "metrics.periods_per_year") -> Annualisation:
    """An Annualisation given by the config (a number > 0)."""
    ppy = _positive(periods_per_year)
    return Annualisation(ppy, "configured", basis)


def infer_periods_per_year(timestamps, calendar: str | None = None) -> Annualisation:
    """Periods per year of bars at ``timestamps``; see the module docstring for the rules.

    Args:
        timestamps: int64 (T,) UTC nanoseconds (datetime64 is taken as its ns), T >= 2 distinct;
            order does not matter.
        calendar: None (read the kind of market off the timestamps) or a calendar name that
            fixes it (``always_open``, ``24/5``, ``us_equities``, ``XNYS``, ...).

    Returns:
        ``Annualisation(ppy, "inferred", basis)``.

    Raises:
        TypeError: timestamps that are not integers or datetime64.
        ValueError: fewer than 2 distinct timestamps, or a calendar that is not a string.
    """
    ts = np.asarray(timestamps)
    if ts.dtype.kind == "M":
        ts = ts.astype("datetime64[ns]").view(np.int64)
    if ts.dtype.kind not in "iu":
        raise TypeError(f"timestamps: expected int64 UTC nanoseconds, got dtype {ts.dtype}")
    if calendar is not None and (not isinstance(calendar, str) or not calendar):
        raise ValueError(f"calendar: expected a calendar name or None, got {calendar!r}")
    t = np.unique(ts.ravel().astype(np.int64))
    if t.size < 2:
        raise ValueError(f"timestamps: expected at least 2 distinct bar times to infer "
                         f"periods_per_year, got {t.size}; set metrics.periods_per_year")
    gaps = np.diff(t)
    values, counts = np.unique(gaps, return_counts=True)
    bar = int(values[np.argmax(counts)])  # the most common spacing (the smallest of ties)
    label = _duration(bar)
    if bar >= 20 * NS_PER_HOUR:
        return _multi_day(t, bar, label, calendar)
    # intraday: sessions are runs of bars split at gaps longer than max(4 bars, 3 h)
    breaks = np.flatnonzero(gaps > max(4 * bar, 3 * NS_PER_HOUR))
    first = np.concatenate(([0], breaks + 1))
    last = np.concatenate((breaks, [t.size - 1]))
    length = float(np.median(t[last] - t[first])) + bar
    kind = _kind(calendar)
    if kind == "sessions" or (kind is None and length < 20 * NS_PER_HOUR):
        per_session = float(np.median(last - first + 1))
        return Annualisation(SESSIONS * per_session, "inferred",
                             f"{label} bars in exchange sessions: {SESSIONS:g} sessions x "
                             f"{per_session:g} bars (median per session)"
                             + _named(calendar))
    if kind is None:
        kind = "24/7" if _every_day(t) else "24/5"
    days = DAYS_24_7 if kind == "24/7" else DAYS_24_5
    per_day = NS_PER_DAY / bar
    what = "24/7" if kind == "24/7" else "24/5 (FX)"
    return Annualisation(days * per_day, "inferred",
                         f"{label} bars, {what}: {days:g} days x {per_day:g} bars"
                         + _named(calendar))


def annualisation_for(spec, market=None) -> Annualisation:
    """The annualisation of metrics of runs on ``market`` under the checked config ``spec``.

    ``metrics.periods_per_year`` when > 0; for synthetic data and simulation mode the generator's
    ``data.periods_per_year`` (its bars are that fraction of a year; the synthetic timestamps are
    built to agree); else inferred from ``market.timestamps`` and ``data.calendar.name`` (the
    default ``always_open`` means "no calendar named": the timestamps decide).
    """
    ppy = float(spec.metrics.periods_per_year or 0.0)
    if ppy > 0.0:
        return configured(ppy)
    data = spec.data
    # synthetic: the generator's own bars (a DataFrame passed over the synthetic default is not)
    if market is None or (data.source == "synthetic" and market.source == "synthetic market"):
        what = "simulation mode" if market is None else "synthetic market"
        return Annualisation(_positive(data.periods_per_year), "synthetic",
                             f"data.periods_per_year of the {what} (its bar length)")
    if data.source != "synthetic" and data.periods_per_year > 0.0:  # set for the file data
        return configured(data.periods_per_year, "data.periods_per_year")
    calendar = getattr(getattr(data, "calendar", None), "name", None)
    if calendar in ("auto", "always_open"):  # auto (the default): inferred, so unnamed
        calendar = None
    return infer_periods_per_year(market.timestamps, calendar)


# ---- helpers -----------------------------------------------------------------------------------
def _positive(v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
            or not np.isfinite(v) or v <= 0:
        raise ValueError(f"periods_per_year: expected a finite number > 0, got {v!r}")
    return float(v)


def _multi_day(t: np.ndarray, bar: int, label: str, calendar: str | None) -> Annualisation:
    days = bar / NS_PER_DAY
    if days < 1.5:
        kind = _kind(calendar)
        if kind == "24/7" or (kind is None and _every_day(t)):
            return Annualisation(DAYS_24_7, "inferred", "daily bars on all 7 days of the week: "
                                 f"{DAYS_24_7:g} days" + _named(calendar))
        if kind == "24/5":
            return Annualisation(DAYS_24_5, "inferred",
                                 f"daily bars, 24/5 (FX): {DAYS_24_5:g} weekdays"
                                 + _named(calendar))
        return Annualisation(SESSIONS, "inferred", f"daily bars on weekdays: {SESSIONS:g} "
                             "sessions" + _named(calendar))
    for lo, hi, ppy, name in _MULTI_DAY:
        if lo <= days <= hi:
            return Annualisation(ppy, "inferred", f"{name} bars: {ppy:g}")
    return Annualisation(DAYS_24_7 / days, "inferred",
                         f"{label} bars in calendar time: {DAYS_24_7:g} days / {days:g}")


def _kind(calendar: str | None) -> str | None:
    """The market kind a calendar name fixes: "24/7", "24/5", "sessions", or None (unnamed)."""
    if calendar is None:
        return None
    name = calendar.strip().lower()
    if name in ROUND_THE_CLOCK:
        return "24/7"
    if name in WEEKDAYS_24H:
        return "24/5"
    return "sessions"


def _every_day(t: np.ndarray) -> bool:
    """Whether bars trade on all seven days of the week (UTC)."""
    weekday = ((t // NS_PER_DAY) + _EPOCH_WEEKDAY) % 7
    if t[-1] - t[0] < 7 * NS_PER_DAY:  # no full week seen: a Saturday bar decides
        return bool((weekday == _SATURDAY).any())
    per_day = np.bincount(weekday, minlength=7)
    return bool((per_day >= 0.2 * per_day.max()).all())


def _duration(ns: int) -> str:
    """A spacing as text: '1min', '1h', '7d', '8.766h'."""
    for unit, size in (("d", NS_PER_DAY), ("h", NS_PER_HOUR), ("min", 60 * 10**9),
                       ("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if ns >= size:
            return f"{ns // size}{unit}" if ns % size == 0 else f"{ns / size:.4g}{unit}"
    return f"{ns}ns"


def _named(calendar: str | None) -> str:
    return f" (calendar {calendar})" if calendar is not None else ""
