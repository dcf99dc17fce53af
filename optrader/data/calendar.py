"""TradingCalendar: config-driven sessions, weekdays and holidays over int64 UTC ns timestamps.

A calendar is a local time zone, one or more daily sessions given as local ``"HH:MM"`` open/close
pairs (close may be ``"24:00"``), the trading weekdays (Monday = 0) and a list of local holiday
dates. Every method takes or returns int64 nanosecond UTC arrays and is vectorised: the time-zone
arithmetic runs once per array through pandas (zoneinfo), the rest is numpy.

Conventions:
  * a bar belongs to the session *day* whose local date it falls on (``day_ids``);
  * a bar is inside a session when ``open <= local time < close``: a bar stamped exactly at the
    close counts as closed (``is_open``);
  * sessions must not cross local midnight; an overnight session (e.g. futures 18:00-17:00) has to
    be written as two sessions, and its bars are then dated by the local calendar date, not by the
    exchange's trade date;
  * early closes and late opens cannot be expressed; ``from_exchange`` keeps the regular times.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import functools
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

NS_PER_DAY = 86_400 * 10**9
NS_PER_MINUTE = 60 * 10**9
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)
_HHMM = re.compile(r"^(\d{2}):(\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

_PRESETS = {
    # 24/7: crypto and the synthetic generator
    "always_open": dict(timezone="UTC", sessions=(("00:00", "24:00"),),
                        weekdays=(0, 1, 2, 3, 4, 5, 6), holidays=()),
    # Regular NYSE/Nasdaq hours only. No holiday list and no early closes: pass ``holidays=`` or
    # use the exchange code ``XNYS`` (``pip install optrader[calendars]``) for the holidays.
    "us_equities": dict(timezone="America/New_York", sessions=(("09:30", "16:00"),),
                        weekdays=(0, 1, 2, 3, 4), holidays=()),
}


@dataclass(frozen=True)
class TradingCalendar:
    """Trading sessions in a local time zone.

    Args:
        timezone: IANA time-zone name of the exchange, e.g. ``"America/New_York"``.
        sessions: local ``("HH:MM", "HH:MM")`` open/close pairs, ascending and non-overlapping,
            ``"00:00" <= open < close <= "24:00"``; several pairs model a lunch break.
        weekdays: trading weekdays, Monday = 0 ... Sunday = 6.
        holidays: local ``"YYYY-MM-DD"`` dates with no session (``datetime.date`` also accepted).
    """

    timezone: str = "UTC"
    sessions: tuple = (("00:00", "24:00"),)
    weekdays: tuple = (0, 1, 2, 3, 4, 5, 6)
    holidays: tuple = ()
    # derived in __post_init__, not part of equality
    _tz: ZoneInfo = field(init=False, repr=False, compare=False)
    _bounds: np.ndarray = field(init=False, repr=False, compare=False)  # int64 (S, 2) ns of day
    _weekday_mask: np.ndarray = field(init=False, repr=False, compare=False)  # bool (7,)
    _holiday_days: np.ndarray = field(init=False, repr=False, compare=False)  # int64 sorted

    def __post_init__(self):
        if not isinstance(self.timezone, str) or not self.timezone:
            raise ValueError(f"timezone: expected an IANA time-zone name such as "
                             f"'America/New_York', got {self.timezone!r}")
        try:
            tz = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: unknown IANA time-zone name {self.timezone!r}; expected "
                             f"e.g. 'UTC' or 'America/New_York'") from None
        # lists (YAML/Hydra) become tuples so the calendar is hashable and compares by value
        sessions = tuple(tuple(s) if _is_seq(s) else s for s in self.sessions)
        weekdays = tuple(self.weekdays)
        holidays = tuple(str(h) if isinstance(h, _dt.date) else h for h in self.holidays)
        object.__setattr__(self, "sessions", sessions)
        object.__setattr__(self, "weekdays", weekdays)
        object.__setattr__(self, "holidays", holidays)
        object.__setattr__(self, "_tz", tz)
        object.__setattr__(self, "_bounds", _parse_sessions(sessions))
        object.__setattr__(self, "_weekday_mask", _parse_weekdays(weekdays))
        object.__setattr__(self, "_holiday_days", _parse_holidays(holidays))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def preset(cls, name: str) -> TradingCalendar:
        """``"always_open"`` (24/7 UTC) or ``"us_equities"`` (New York 09:30-16:00 Mon-Fri, no
        holiday list: add ``holidays=`` yourself or use ``from_exchange("XNYS")``)."""
        if name not in _PRESETS:
            raise ValueError(f"calendar preset: expected one of {sorted(_PRESETS)}, got {name!r}")
        return cls(**_PRESETS[name])

    @classmethod
    def named(cls, name: str, start=None, end=None) -> TradingCalendar:
        """A preset (``always_open``, ``us_equities``) or an exchange code (``XNYS``, ``XLON``,
        ... through ``from_exchange``; ``start``/``end`` bound its schedule).

        Raises:
            ValueError: an unknown name, listing the known ones.
            MissingCalendarPackage: an exchange code without ``exchange_calendars`` installed.
        """
        if not isinstance(name, str):
            raise ValueError(f"calendar name: expected a string such as 'us_equities' or 'XNYS', "
                             f"got {type(name).__name__} {name!r}")
        if name in _PRESETS:
            return cls.preset(name)
        return cls.from_exchange(name, start, end)

    @classmethod
    def from_exchange(cls, name: str, start=None, end=None) -> TradingCalendar:
        """Calendar of exchange ``name`` (e.g. ``"XNYS"``) from the optional ``exchange_calendars``
        package (``pip install optrader[calendars]``): its time zone, weekmask, regular session
        times (the most common local open, close and lunch break over its schedule) and, as
        holidays, every weekmask day between its first and last session that is not a session.
        Early closes and late opens are dropped. ``start``/``end`` (dates) widen or narrow the
        schedule (the package's default is about the last 20 years to one year ahead).
        """
        start = None if start is None else pd.Timestamp(start).tz_localize(None).normalize()
        end = None if end is None else pd.Timestamp(end).tz_localize(None).normalize()
        return _from_exchange(cls, name, start, end)

    # ------------------------------------------------------------------ queries
    def local_ns(self, ts) -> np.ndarray:
        """int64 local wall-clock nanoseconds (as if the local time were UTC) of UTC ns ``ts``."""
        ts = _as_ns(ts, "ts")
        if self.timezone == "UTC":
            return ts
        flat = np.ascontiguousarray(ts.ravel()).view("M8[ns]")
        idx = pd.DatetimeIndex(flat).tz_localize("UTC").tz_convert(self._tz)
        return idx.tz_localize(None).asi8.reshape(ts.shape)

    def day_ids(self, ts) -> np.ndarray:
        """int64 (n,) local session date of each UTC ns timestamp, as days since 1970-01-01."""
        return self.local_ns(ts) // NS_PER_DAY

    def is_open(self, ts) -> np.ndarray:
        """bool (n,): inside a session (``open <= local time < close``) on a trading weekday that
        is not a holiday."""
        local = self.local_ns(ts)
        day = local // NS_PER_DAY
        tod = local - day * NS_PER_DAY
        in_session = np.zeros(local.shape, dtype=np.bool_)
        for open_, close in self._bounds:  # a handful of sessions, not rows
            in_session |= (tod >= open_) & (tod < close)
        return in_session & self.is_trading_day(day)

    def expected_timestamps(self, start_ns: int, end_ns: int, freq_ns: int) -> np.ndarray:
        """int64 ascending UTC ns start times of the bars a complete feed would hold in
        ``[start_ns, end_ns]`` (both inclusive).

        Each session's grid restarts at its open: ``open + k * freq_ns`` for every ``k`` with the
        bar start before the close, so a last bar may be partial (09:30-16:00 at 1h ends with a
        15:30 bar). Opens and closes are converted from local wall time to UTC per day, so the grid
        follows DST (a 09:30 New York open is 14:30 UTC in winter, 13:30 in summer). A local open or
        close that does not exist (spring-forward gap) moves forward to the first valid instant;
        an ambiguous one (fall-back hour) takes its first (DST) occurrence.
        """
        for name, v in (("start_ns", start_ns), ("end_ns", end_ns), ("freq_ns", freq_ns)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"{name}: expected an integer number of UTC nanoseconds, got "
                                 f"{type(v).__name__} {v!r}")
        if freq_ns <= 0:
            raise ValueError(f"freq_ns: expected > 0 nanoseconds, got {freq_ns}")
        if end_ns < start_ns:
            raise ValueError(f"end_ns: expected >= start_ns ({start_ns}), got {end_ns}")
        # local dates that can hold a bar of [start, end]: widen by a day for the UTC offset
        d0, d1 = self.day_ids(np.array([start_ns, end_ns], dtype=np.int64))
        days = np.arange(d0 - 1, d1 + 2, dtype=np.int64)
        days = days[self.is_trading_day(days)]
        if days.size == 0 or self._bounds.shape[0] == 0:
            return np.empty(0, dtype=np.int64)
        # (D, S) UTC open/close of each session of each trading day
        local_open = days[:, None] * NS_PER_DAY + self._bounds[None, :, 0]
        local_close = days[:, None] * NS_PER_DAY + self._bounds[None, :, 1]
        opens = self.to_utc(local_open.ravel())
        closes = self.to_utc(local_close.ravel())
        n_bars = np.maximum(-((opens - closes) // freq_ns), 0)  # ceil((close - open) / freq)
        total = int(n_bars.sum())
        first = np.cumsum(n_bars) - n_bars
        k = np.arange(total, dtype=np.int64) - np.repeat(first, n_bars)
        grid = np.repeat(opens, n_bars) + k * freq_ns
        return grid[(grid >= start_ns) & (grid <= end_ns)]

    # ------------------------------------------------------------------ helpers
    def is_trading_day(self, day: np.ndarray) -> np.ndarray:
        """bool: local dates ``day`` (int64 days since 1970-01-01) that are trading weekdays and
        not holidays."""
        day = np.asarray(day, dtype=np.int64)
        weekday = (day + _EPOCH_WEEKDAY) % 7
        ok = self._weekday_mask[weekday]
        if self._holiday_days.size:
            ok &= ~np.isin(day, self._holiday_days)
        return ok

    def to_utc(self, local_ns: np.ndarray) -> np.ndarray:
        """UTC ns of local wall-clock ns (gaps shift forward, ambiguous -> first occurrence)."""
        if self.timezone == "UTC":
            return local_ns
        idx = pd.DatetimeIndex(local_ns.view("M8[ns]"))
        return idx.tz_localize(self._tz, ambiguous=np.ones(local_ns.size, dtype=np.bool_),
                               nonexistent="shift_forward").asi8


class MissingCalendarPackage(ImportError, ValueError):
    """An exchange calendar was asked for without the optional ``exchange_calendars`` package
    (an ImportError, and a ValueError like every other bad calendar setting)."""


CALENDAR_NAMES = ("auto", "always_open", "us_equities", "custom")  # names besides exchange codes
_EXCHANGE_CODE = re.compile(r"^([A-Z][A-Z0-9]{1,4}|24/[57])$")  # XNYS, CMES, ASX, 24/7 ...


def known_names() -> str:
    """The accepted calendar names, for error messages."""
    return (f"{', '.join(CALENDAR_NAMES)} or an exchange code such as XNYS, XLON, XTKS, CMES "
            f"(exchange codes need `pip install optrader[calendars]`)")


def _from_exchange(cls, name: str, start, end) -> TradingCalendar:
    try:
        import exchange_calendars as xcals
    except ImportError:
        if isinstance(name, str) and _EXCHANGE_CODE.match(name):
            raise MissingCalendarPackage(
                f"calendar {name!r}: exchange calendars need the optional package "
                f"exchange_calendars; install it with `pip install optrader[calendars]` (or "
                f"`pip install exchange-calendars`), or use us_equities (regular hours, no "
                f"holidays) or a custom calendar") from None
        raise ValueError(f"unknown calendar name {name!r}; expected {known_names()}") from None
    names = xcals.get_calendar_names(include_aliases=True)
    if name not in names:
        pool = {n.lower(): n for n in (*CALENDAR_NAMES, *names)}
        close = [pool[c] for c in difflib.get_close_matches(str(name).lower(), pool, n=3)]
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise ValueError(f"unknown calendar name {name!r}{hint}; expected {known_names()}; "
                         f"exchange_calendars knows {len(names)} codes "
                         f"(exchange_calendars.get_calendar_names())")
    return _build_exchange(cls, name, start, end)


@functools.lru_cache(maxsize=16)  # building a schedule takes about a second
def _build_exchange(cls, name: str, start, end) -> TradingCalendar:
    import exchange_calendars as xcals

    with warnings.catch_warnings():  # the package's own pandas deprecations are not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            cal = xcals.get_calendar(name, start=start, end=end)
        except (ValueError, xcals.errors.CalendarError):  # a range beyond the package's bounds
            cal = xcals.get_calendar(name)
    tz = str(cal.tz)
    sched = cal.schedule

    def local_hhmm(col) -> str | None:
        s = sched[col].dropna()
        if s.empty:
            return None
        local = s.dt.tz_convert(tz)
        minutes = int((local.dt.hour * 60 + local.dt.minute).mode().iloc[0])
        return f"{minutes // 60:02d}:{minutes % 60:02d}"

    open_, close = local_hhmm("open"), local_hhmm("close")
    brk_start = local_hhmm("break_start") if "break_start" in sched else None
    brk_end = local_hhmm("break_end") if "break_end" in sched else None
    if brk_start is not None and brk_end is not None:
        sessions = ((open_, brk_start), (brk_end, close))
    else:
        sessions = ((open_, close),)
    if close == "00:00":  # a session ending at local midnight (24/7, 24/5)
        sessions = tuple((o, "24:00" if c == "00:00" else c) for o, c in sessions)
    weekdays = tuple(i for i, c in enumerate(str(cal.weekmask)) if c == "1")
    sessions_idx = pd.DatetimeIndex(cal.sessions).tz_localize(None).normalize()
    days = pd.date_range(sessions_idx[0], sessions_idx[-1], freq="D")
    days = days[np.isin(days.day_of_week, weekdays)]
    holidays = tuple(d.strftime("%Y-%m-%d") for d in days.difference(sessions_idx))
    return cls(timezone=tz, sessions=sessions, weekdays=weekdays, holidays=holidays)


def _is_seq(x) -> bool:
    return isinstance(x, Sequence) and not isinstance(x, str)


def _as_ns(ts, name: str) -> np.ndarray:
    arr = np.asarray(ts)
    if arr.dtype.kind == "M":
        return arr.astype("M8[ns]").view(np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected int64 UTC nanoseconds, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _parse_hhmm(text, where: str) -> int:
    m = _HHMM.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"{where}: expected a local time 'HH:MM', got {text!r}")
    hh, mm = int(m.group(1)), int(m.group(2))
    if mm > 59 or hh > 24 or (hh == 24 and mm != 0):
        raise ValueError(f"{where}: expected a time between '00:00' and '24:00', got {text!r}")
    return (hh * 60 + mm) * NS_PER_MINUTE


def _parse_sessions(sessions: tuple) -> np.ndarray:
    if len(sessions) == 0:
        raise ValueError("sessions: expected at least one ('HH:MM', 'HH:MM') open/close pair, "
                         "got none")
    bounds = np.empty((len(sessions), 2), dtype=np.int64)
    for i, pair in enumerate(sessions):
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ValueError(f"sessions[{i}]: expected an ('HH:MM', 'HH:MM') open/close pair, "
                             f"got {pair!r}")
        open_ = _parse_hhmm(pair[0], f"sessions[{i}] open")
        close = _parse_hhmm(pair[1], f"sessions[{i}] close")
        if open_ >= close:
            raise ValueError(f"sessions[{i}]: expected open < close on the same local day, got "
                             f"open {pair[0]!r} >= close {pair[1]!r} (split an overnight session "
                             f"in two)")
        if i and open_ < bounds[i - 1, 1]:
            raise ValueError(f"sessions[{i}]: expected sessions in ascending, non-overlapping "
                             f"order, got open {pair[0]!r} before the previous close "
                             f"{sessions[i - 1][1]!r}")
        bounds[i] = open_, close
    return bounds


def _parse_weekdays(weekdays: tuple) -> np.ndarray:
    if len(weekdays) == 0:
        raise ValueError("weekdays: expected at least one trading weekday in 0..6 (Monday = 0), "
                         "got none")
    mask = np.zeros(7, dtype=np.bool_)
    for d in weekdays:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 0 <= d <= 6:
            raise ValueError(f"weekdays: expected integers 0..6 (Monday = 0), got {d!r} in "
                             f"{weekdays!r}")
        mask[d] = True
    return mask


def _parse_holidays(holidays: tuple) -> np.ndarray:
    days = np.empty(len(holidays), dtype=np.int64)
    for i, h in enumerate(holidays):
        try:
            if not isinstance(h, str) or not _DATE.match(h):
                raise ValueError
            date = _dt.date.fromisoformat(h)
        except ValueError:
            raise ValueError(f"holidays[{i}]: expected a local date 'YYYY-MM-DD', got "
                             f"{h!r}") from None
        days[i] = (date - _dt.date(1970, 1, 1)).days
    return np.unique(days)
