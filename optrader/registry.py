"""Named components: rewards, slippage and commission models, data sources.

Config values name components (``reward.components``, ``execution.slippage_model``,
``execution.commission_model``, ``data.source``); they resolve here, and an unknown name is an
error that lists the known ones. ``optrader.registry.list()`` shows everything registered.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

KINDS = ("reward", "slippage", "commission", "data_source")


@dataclass(frozen=True)
class Entry:
    """A registered component: its kernel id (built-ins) or object (custom), and a description."""

    name: str
    kind: str
    value: Any
    description: str = ""
    builtin: bool = True


class Registry:
    """A mapping kind -> name -> Entry with readable errors."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}

    def _check_kind(self, kind: str) -> None:
        if kind not in self._entries:
            raise ValueError(f"unknown registry kind {kind!r}; expected one of {list(KINDS)}")

    def register(self, kind: str, name: str, value: Any, description: str = "",
                 *, builtin: bool = False, overwrite: bool = False) -> Entry:
        """Add ``name`` under ``kind``; re-registering a name needs ``overwrite=True``."""
        self._check_kind(kind)
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{kind} name must be an identifier-like string, got {name!r}")
        existing = self._entries[kind].get(name)
        if existing is not None and (existing.builtin or not overwrite):
            why = "a built-in" if existing.builtin else "already registered (pass overwrite=True)"
            raise ValueError(f"{kind} {name!r} is {why}")
        entry = Entry(name, kind, value, description, builtin)
        self._entries[kind][name] = entry
        return entry

    def get(self, kind: str, name: str) -> Entry:
        """The entry for ``name``, or a ValueError naming the known ones (and the closest)."""
        self._check_kind(kind)
        try:
            return self._entries[kind][name]
        except (KeyError, TypeError):
            known = sorted(self._entries[kind])
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown {kind} {name!r}; known: {known}{hint}") from None

    def names(self, kind: str) -> list[str]:
        self._check_kind(kind)
        return sorted(self._entries[kind])

    def list(self, kind: str | None = None) -> dict[str, list[str]] | list[str]:
        """Registered names: for one kind as a list, or for all kinds as a dict."""
        if kind is not None:
            return self.names(kind)
        return {k: self.names(k) for k in KINDS}

    def describe(self) -> str:
        """One line per entry, for ``python -m optrader.registry``."""
        lines = []
        for kind in KINDS:
            for name, e in sorted(self._entries[kind].items()):
                tag = "" if e.builtin else " (custom)"
                lines.append(f"{kind:12s} {name:22s} {e.description}{tag}")
        return "\n".join(lines)


registry = Registry()


def _register_builtins() -> None:
    from kernels.enums import RewardId

    rewards = {
        "log_return": (RewardId.LOG_RETURN, "log(E_t / E_{t-1})"),
        "pnl": (RewardId.PNL, "(E_t - E_{t-1}) / initial cash"),
        "differential_sharpe": (RewardId.DIFFERENTIAL_SHARPE,
                                "Moody & Saffell differential Sharpe ratio, rate reward.dsr_eta"),
        "drawdown_penalty": (RewardId.DRAWDOWN_PENALTY, "-max(0, increase of drawdown)"),
        "cost_penalty": (RewardId.COST_PENALTY, "-(commission + slippage) / E_{t-1}"),
    }
    for name, (rid, desc) in rewards.items():
        registry.register("reward", name, rid, desc, builtin=True)
    from kernels.enums import CommissionModel, SlippageModel

    slippage = {
        "fixed": (SlippageModel.FIXED, "slippage_bps + half_spread_bps against the trader"),
        "spread_column": (SlippageModel.SPREAD_COLUMN,
                          "slippage_bps + half the bar's spread column (bps)"),
        "linear_impact": (SlippageModel.LINEAR_IMPACT,
                          "fixed + impact_coef x 1e4 x |qty| / bar volume (bps)"),
        "sqrt_impact": (SlippageModel.SQRT_IMPACT,
                        "fixed + impact_coef x sigma x sqrt(|qty| / avg volume) x 1e4 (bps)"),
    }
    for name, (code, desc) in slippage.items():
        registry.register("slippage", name, code, desc, builtin=True)
    registry.register("commission", "bps", CommissionModel.BPS,
                      "commission_bps (maker_bps/taker_bps) of notional, at least min_commission",
                      builtin=True)
    registry.register("commission", "per_share", CommissionModel.PER_SHARE,
                      "commission_per_share x |qty|, at least min_commission", builtin=True)
    registry.register("data_source", "synthetic", "synthetic",
                      "GBM + jumps + regimes + AR(1), correlated assets (conf/data/synthetic.yaml)",
                      builtin=True)
    registry.register("data_source", "dataframe", "dataframe",
                      "a pandas DataFrame passed in Python, or a Parquet/CSV path", builtin=True)
    registry.register("data_source", "parquet", "parquet",
                      "Parquet files: long, one per symbol or symbol-partitioned "
                      "(conf/data/parquet.yaml)", builtin=True)
    registry.register("data_source", "csv", "csv",
                      "CSV files: long or one per symbol (conf/data/csv.yaml)", builtin=True)


_register_builtins()


def register_reward(name: str, fn: Any, *, overwrite: bool = False) -> Entry:
    """Register a Numba-jitted reward ``fn(equity_prev, equity, cost, drawdown, gross_exposure,
    step) -> float`` under ``name``; select it with ``reward.components.<name>=<weight>``.

    The function is fused into the step kernel (compiled once per process on first use).
    """
    if not hasattr(fn, "py_func") or not hasattr(fn, "compile"):
        raise TypeError(
            f"register_reward({name!r}, ...) expects a numba.njit function, got {type(fn).__name__}")
    try:
        value = float(fn(100.0, 101.0, 0.1, 0.01, 1.0, 1))
    except Exception as exc:  # noqa: BLE001 - any failure means the signature does not fit
        raise TypeError(
            f"reward {name!r} must accept (equity_prev, equity, cost, drawdown, gross_exposure, "
            f"step) as (float, float, float, float, float, int) and return a float; calling it "
            f"failed with {type(exc).__name__}: {exc}") from exc
    if value != value:
        raise ValueError(f"reward {name!r} returned NaN on a probe call")
    return registry.register("reward", name, fn, fn.__doc__ or "", overwrite=overwrite)
