"""Value checks shared by the config schemas: each raises ConfigError naming the dotted key,
what was expected and what arrived."""

from __future__ import annotations

import types
import typing
from typing import Any

from optrader.registry import registry


class ConfigError(ValueError):
    """A config key or value is wrong; the message names the dotted key."""


def _typed(key: str, v: Any, t: Any) -> Any:
    if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
        return v
    ok = {
        float: isinstance(v, (int, float)) and not isinstance(v, bool),
        int: isinstance(v, int) and not isinstance(v, bool),
        bool: isinstance(v, bool),
        str: isinstance(v, str),
    }.get(t, True)
    if not ok:
        raise ConfigError(f"{key}: expected {t.__name__}, got {v!r} ({type(v).__name__})")
    return float(v) if t is float else v


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _one_of(key: str, v: Any, options) -> None:
    if v not in options:
        raise ConfigError(f"{key}: expected one of {list(options)}, got {v!r}")


def _registered(key: str, kind: str, name: str) -> None:
    try:
        registry.get(kind, name)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _as_tuple(v: Any) -> tuple:
    return v if isinstance(v, tuple) else (v,)


def _per_asset(key: str, v: Any, n_assets: int) -> None:
    """A finite number, or a list of n_assets finite numbers."""
    values = _as_tuple(v)
    if isinstance(v, tuple) and len(v) != n_assets:
        raise ConfigError(f"{key}: expected a number or {n_assets} numbers (one per asset, "
                          f"data.n_assets={n_assets}), got {list(v)}")
    for x in values:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise ConfigError(f"{key}: expected a number or a list of numbers, got {v!r}")
        _finite(key, x)


def _finite(key: str, v: float) -> None:
    if v != v or v in (float("inf"), float("-inf")):
        raise ConfigError(f"{key}: expected a finite number, got {v!r}")


def _positive(key: str, v: float) -> None:
    _finite(key, v)
    if not v > 0:
        raise ConfigError(f"{key}: expected > 0, got {v!r}")


def _at_least(key: str, v: float, lo: float) -> None:
    _finite(key, v)
    if not v >= lo:
        raise ConfigError(f"{key}: expected >= {lo}, got {v!r}")


def _in_range(key, v, lo, hi, closed_lo=True, closed_hi=True) -> None:
    _finite(key, v)
    ok_lo = v >= lo if closed_lo else v > lo
    ok_hi = v <= hi if closed_hi else v < hi
    if not (ok_lo and ok_hi):
        lb = "[" if closed_lo else "("
        rb = "]" if closed_hi else ")"
        raise ConfigError(f"{key}: expected a value in {lb}{lo}, {hi}{rb}, got {v!r}")
