"""Expected bars of a feed: the bar spacing, the session pattern (24/7, 24/5 weekdays, exchange
hours) inferred from the timestamps, and the grid a complete feed would hold, so missing bars are
counted only against sessions the market actually has.

Input is always the sorted unique int64 UTC ns timestamps of a feed (all symbols together).

Daily bars (a typical spacing between 20 h and 28 h) are one bar per trading *date*: the grid is
every trading date between the first and last bar, stamped at the feed's usual local time of day.
A date is taken in a zone ``z`` as the local date of the stamp; ``z`` is the one among the
candidate zones that leaves the fewest bars missing (a bar dated by its UTC midnight and one
stamped at the New York close both find their session date). Intraday bars use
``TradingCalendar.expected_timestamps`` at the feed's spacing.

Inference (``calendar=None``), per candidate zone:
  * trading weekdays: the weekdays holding at least half as many bars as the busiest weekday
    (a business-day file gives Mon-Fri; FX's two Sunday-evening hours do not make Sunday one);
    a feed spanning less than two weeks trades at least Mon-Fri (an absent weekday is a gap);
  * sessions (intraday): the time-of-day slots of the bar grid holding at least half as many
    bars as the busiest slot, as runs of consecutive slots (a lunch break splits a session);
    with fewer than 5 trading days, one session from the earliest to the latest slot with a
    bar (a gap inside a day cannot be told from a break and counts as missing);
  * holidays, early closes and lone missing days are not inferred: they count as missing bars.
The zone leaving the fewest expected bars missing wins, the first listed on a tie.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from optrader.data.calendar import NS_PER_DAY, TradingCalendar

DAILY_MIN_NS, DAILY_MAX_NS = 20 * 3_600 * 10**9, 28 * 3_600 * 10**9
# zones tried when inferring: the feed's own zone first (given by the caller), then UTC and the
# zones of the largest exchanges with daylight saving (their hours move in UTC twice a year)
CANDIDATE_ZONES = ("UTC", "America/New_York", "Europe/London", "Europe/Berlin",
                   "America/Chicago")
MIN_WEEKS = 2  # a shorter feed is taken to trade Mon-Fri at least (absent weekdays are gaps)
MIN_DAYS_FOR_BREAKS = 5  # fewer trading days: no session breaks inferred, only first/last bar
_WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Expected:
    """The expected bars of a feed and where they come from."""

    grid: np.ndarray  # int64 (E,) ascending UTC ns start times of the bars a complete feed holds
    calendar: TradingCalendar  # the configured calendar, or the inferred one
    freq_ns: int  # typical bar spacing, ns
    daily: bool  # one bar per trading date
    date_zone: str  # zone whose local dates date daily bars (the calendar's zone when intraday)
    inferred: bool  # calendar inferred from the timestamps
    missing: int  # expected bars absent from the feed (all symbols together)

    def describe(self) -> str:
        """One phrase, e.g. ``"daily bars, Mon-Fri (inferred, dates in UTC)"``."""
        cal = self.calendar
        days = describe_weekdays(cal.weekdays)
        if self.daily:
            what = f"daily bars, {days}"
        else:
            hours = ", ".join(f"{o}-{c}" for o, c in cal.sessions)
            what = f"{_fmt_freq(self.freq_ns)} bars, {days} {hours} {cal.timezone}"
        if cal.holidays:
            what += f", {len(cal.holidays)} holidays"
        how = "inferred" if self.inferred else "calendar"
        return f"{what} ({how}{f', dates in {self.date_zone}' if self.daily else ''})"


def bar_spacing(ts: np.ndarray) -> int | None:
    """Most common positive step of sorted unique int64 ``ts`` (the smallest on a tie), or None."""
    d = np.diff(ts)
    d = d[d > 0]
    if d.size == 0:
        return None
    vc = pd.Series(d).value_counts(sort=False)  # hash count: no sort of every step
    return int(vc.index[vc.to_numpy() == vc.max()].min())


def expected_bars(ts: np.ndarray, calendar: TradingCalendar | None,
                  zones: tuple = ()) -> Expected | None:
    """The bars a complete feed would hold between the first and last of ``ts``.

    Args:
        ts: int64 UTC ns timestamps of the feed (any order, repeats allowed).
        calendar: the sessions to expect, or None to infer them from ``ts`` (module docstring).
        zones: IANA zones to try first (e.g. the zone naive timestamps were read in).

    Returns:
        ``Expected``, or None when no grid can be drawn: fewer than 3 distinct timestamps, or
        bars coarser than daily (weekly, monthly).
    """
    ts = _sorted_unique(np.asarray(ts, dtype=np.int64).ravel())
    if ts.size < 3:
        return None
    freq = bar_spacing(ts)
    if freq is None or freq > DAILY_MAX_NS:
        return None
    daily = freq >= DAILY_MIN_NS
    if calendar is not None and not daily:  # intraday: the calendar's own grid, nothing to try
        grid = calendar.expected_timestamps(int(ts[0]), int(ts[-1]), freq)
        return Expected(grid, calendar, freq, False, calendar.timezone, False,
                        _n_missing(grid, ts))
    first = (calendar.timezone,) if calendar is not None else ()
    cands = list(dict.fromkeys((*zones, *first, *CANDIDATE_ZONES)))
    best = None
    for zone in cands:
        cal = calendar if calendar is not None else infer_calendar(ts, freq, zone, daily)
        grid = (daily_grid(ts, cal, zone) if daily else
                cal.expected_timestamps(int(ts[0]), int(ts[-1]), freq))
        miss = _n_missing(grid, ts)
        if best is None or miss < best.missing:
            best = Expected(grid, cal, freq, daily, zone, calendar is None, miss)
        if miss == 0:
            break
    return best


def infer_calendar(ts: np.ndarray, freq_ns: int, zone: str, daily: bool) -> TradingCalendar:
    """The weekdays and (intraday) sessions of sorted unique ``ts`` read in ``zone``."""
    local = TradingCalendar(timezone=zone).local_ns(ts)
    day = local // NS_PER_DAY
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
    per_day = np.bincount(weekday, minlength=7)
    trading = per_day >= 0.5 * per_day.max()
    if day[-1] - day[0] < MIN_WEEKS * 7:  # too short to tell a closed weekday from a gap
        trading[:5] = True
    weekdays = tuple(int(w) for w in np.flatnonzero(trading))
    if daily:
        return TradingCalendar(timezone=zone, weekdays=weekdays)
    on_day = trading[weekday]
    tod = (local - day * NS_PER_DAY)[on_day]
    phase = int(pd.Series(tod % freq_ns).mode().min())
    n_slots = -(-(NS_PER_DAY - phase) // freq_ns)
    slot = np.clip((tod - phase) // freq_ns, 0, n_slots - 1)
    per_slot = np.bincount(slot, minlength=n_slots)
    busy = per_slot >= 0.5 * per_slot.max()
    if np.unique(day[on_day]).size < MIN_DAYS_FOR_BREAKS:
        # too few days to tell a break from a gap: one session from the first to the last slot
        busy = np.zeros(n_slots, dtype=np.bool_)
        occupied = np.flatnonzero(per_slot)
        busy[occupied[0]:occupied[-1] + 1] = True
    on = np.concatenate(([False], busy, [False]))
    edges = np.diff(on.astype(np.int8))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    sessions = []
    for s, e in zip(starts, ends, strict=True):
        open_ = (phase + s * freq_ns) // 60_000_000_000  # minutes, floored
        close = min(-(-(phase + e * freq_ns) // 60_000_000_000), 24 * 60)
        if sessions and open_ <= sessions[-1][1]:  # sub-minute slots can meet after rounding
            sessions[-1][1] = close
        else:
            sessions.append([open_, close])
    return TradingCalendar(timezone=zone, weekdays=weekdays,
                           sessions=tuple((_hhmm(o), _hhmm(c)) for o, c in sessions))


def daily_grid(ts: np.ndarray, calendar: TradingCalendar, zone: str) -> np.ndarray:
    """int64 UTC ns: one stamp per trading date of ``calendar`` between the local dates (in
    ``zone``) of the first and last of sorted ``ts``, at their most common local time of day."""
    zc = TradingCalendar(timezone=zone)
    local = zc.local_ns(ts)
    day = local // NS_PER_DAY
    tod = int(pd.Series(local - day * NS_PER_DAY).mode().min())
    days = np.arange(day[0], day[-1] + 1, dtype=np.int64)
    days = days[calendar.is_trading_day(days)]
    return _sorted_unique(zc.to_utc(days * NS_PER_DAY + tod))


def describe_weekdays(weekdays) -> str:
    """``(0, 1, 2, 3, 4)`` -> ``"Mon-Fri"``; all seven -> ``"every day"``."""
    w = sorted(weekdays)
    if len(w) == 7:
        return "every day"
    if w == list(range(w[0], w[-1] + 1)) and len(w) > 2:
        return f"{_WEEKDAY_NAMES[w[0]]}-{_WEEKDAY_NAMES[w[-1]]}"
    return ",".join(_WEEKDAY_NAMES[d] for d in w)


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    """Ascending distinct values (no sort when already ascending, as most feeds are)."""
    if x.size > 1 and not (x[1:] >= x[:-1]).all():
        x = np.sort(pd.unique(x))  # hash out the repeats of a long frame first: a smaller sort
    return x[np.concatenate(([True], x[1:] != x[:-1]))] if x.size else x


def _n_missing(grid: np.ndarray, ts: np.ndarray) -> int:
    """Grid stamps absent from sorted ``ts``."""
    if grid.size == 0:
        return 0
    at = np.minimum(np.searchsorted(ts, grid), ts.size - 1)
    return int((ts[at] != grid).sum())


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _fmt_freq(ns: int) -> str:
    for unit, size in (("h", 3_600 * 10**9), ("min", 60 * 10**9), ("s", 10**9)):
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"
