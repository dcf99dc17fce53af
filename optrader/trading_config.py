"""Schemas of the ``execution`` and ``risk`` config groups (see conf/execution, conf/risk).

Every rate is documented with its unit; the Python layer converts annual rates to per-bar rates
with ``data.periods_per_year`` before they reach the kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kernels.enums import ReversalSizing
from optrader.checks import ConfigError, _at_least, _in_range, _one_of, _positive, _registered

ORDER_TYPES = ("market", "limit", "stop")
SIZING_RULES = ("direct", "fixed_fraction", "vol_target", "kelly")
STOP_KINDS = ("none", "pct", "atr")
REVERSAL_SIZINGS = tuple(name.lower() for name in ReversalSizing._fields)  # equity, cash


def _participation(key: str, v) -> None:
    """A fraction of the bar's volume in (0, 1], or None / inf for no cap (inf is how a
    ``per_env`` array says null)."""
    if v is None or (isinstance(v, float) and v == math.inf):
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v <= 1.0:
        raise ConfigError(f"{key}: expected a fraction of the bar's volume in (0, 1], or null "
                          f"for no cap (np.inf in a per_env array), got {v!r}")


@dataclass(frozen=True)
class ExecutionConfig:
    fill_price: str = "next_open"  # next_open | close
    commission_model: str = "bps"  # bps | per_share (registry kind "commission")
    commission_bps: float = 1.0  # of traded notional
    maker_bps: float = -1.0  # limit orders; < 0: commission_bps
    taker_bps: float = -1.0  # market and stop orders; < 0: commission_bps
    commission_per_share: float = 0.0  # currency per unit (per_share model)
    min_commission: float = 0.0  # currency per order
    slippage_model: str = "fixed"  # fixed | spread_column | linear_impact | sqrt_impact
    slippage_bps: float = 1.0  # against the trader
    half_spread_bps: float = 0.5  # paid on every fill (fixed and impact models)
    impact_coef: float = 0.1  # linear: bps x 1e-4 per unit participation; sqrt: x sigma
    impact_halflife: float = 20.0  # bars, EWMA of volume and volatility for the impact models
    # of the fill bar's volume, in (0, 1]; the rest is not filled and a bar with no volume fills
    # nothing; null: no cap, volume is ignored
    max_participation: float | None = 1.0
    min_trade_value: float = 0.0  # currency; smaller orders are skipped (no dust rebalances)
    lot_size: float = 0.0  # 0 = fractional units
    latency: int = 0  # bars: an order decided at close t fills at bar t+1+latency
    order_type: str = "market"  # market | limit | stop, for actions that do not choose
    order_offset_bps: float = 10.0  # limit/stop price distance from the last close
    time_in_force: int = 1  # bars a limit/stop order waits before it expires
    allow_short: bool = True
    borrow_bps_annual: float = 0.0  # on short notional, charged every bar
    cash_rate_annual: float = 0.0  # interest on positive cash (and charged on negative cash)
    record_fills: bool = False  # keep fill records (envs.drain_fills()); off costs nothing
    # sizing of an order that flips a position: equity (w x equity before costs) | cash (close
    # the old side first, size the new one from the equity left after its costs)
    reversal: str = "equity"

    @property
    def participation_cap(self) -> float:
        """``max_participation`` as the kernels read it: inf for null (no cap)."""
        return math.inf if self.max_participation is None else float(self.max_participation)

    @property
    def reversal_code(self) -> int:
        """``reversal`` as a ``kernels.enums.ReversalSizing`` code."""
        return getattr(ReversalSizing, self.reversal.upper())

    def check(self, key: str) -> None:
        _one_of(f"{key}.fill_price", self.fill_price, ("next_open", "close"))
        _registered(f"{key}.commission_model", "commission", self.commission_model)
        _registered(f"{key}.slippage_model", "slippage", self.slippage_model)
        for name in ("commission_bps", "commission_per_share", "min_commission", "slippage_bps",
                     "half_spread_bps", "impact_coef", "min_trade_value", "lot_size",
                     "order_offset_bps", "borrow_bps_annual"):
            _at_least(f"{key}.{name}", getattr(self, name), 0.0)
        for name in ("maker_bps", "taker_bps"):
            v = getattr(self, name)
            if v < 0 and v != -1.0:
                raise ConfigError(f"{key}.{name}: expected >= 0 (or -1 for commission_bps), "
                                  f"got {v!r}")
        _positive(f"{key}.impact_halflife", self.impact_halflife)
        _participation(f"{key}.max_participation", self.max_participation)
        _one_of(f"{key}.reversal", self.reversal, REVERSAL_SIZINGS)
        _at_least(f"{key}.latency", self.latency, 0)
        _at_least(f"{key}.time_in_force", self.time_in_force, 1)
        _one_of(f"{key}.order_type", self.order_type, ORDER_TYPES)
        _in_range(f"{key}.cash_rate_annual", self.cash_rate_annual, -1.0, 1.0)
        if self.fill_price == "close" and (self.latency or self.order_type != "market"):
            raise ConfigError(f"{key}.fill_price=close fills at the decision bar's close; it "
                              f"cannot be combined with latency or limit/stop orders")


@dataclass(frozen=True)
class StopConfig:
    kind: str = "none"  # none | pct | atr
    value: float = 0.05  # fraction of the price (pct) or ATR multiple (atr)

    def check(self, key: str) -> None:
        _one_of(f"{key}.kind", self.kind, STOP_KINDS)
        _positive(f"{key}.value", self.value)


@dataclass(frozen=True)
class RiskConfig:
    sizing: str = "direct"  # direct | fixed_fraction | vol_target | kelly
    fraction: float = 1.0  # fixed_fraction: weight x fraction
    target_vol: float = 0.15  # vol_target: annualised volatility aimed at per asset
    kelly_fraction: float = 0.5  # kelly: fraction of the full Kelly leverage
    vol_halflife: float = 20.0  # bars, EWMA of returns for vol targeting and Kelly
    max_weight: float = 10.0  # cap on |weight| per asset after sizing (env.max_leverage caps gross)
    stop_loss: StopConfig = field(default_factory=StopConfig)
    take_profit: StopConfig = field(default_factory=lambda: StopConfig(value=0.1))
    trailing_stop: StopConfig = field(default_factory=StopConfig)
    atr_period: int = 14  # bars, Wilder ATR for atr stops
    max_daily_loss: float = 0.0  # fraction of the day's opening equity; 0 = off
    max_drawdown: float = 0.0  # fraction from the episode's peak equity; 0 = off
    drawdown_action: str = "terminate"  # terminate (training) | halt (trade no more)
    maintenance_margin: float = 0.0  # fraction of gross notional; 0 = off

    def check(self, key: str) -> None:
        _one_of(f"{key}.sizing", self.sizing, SIZING_RULES)
        _positive(f"{key}.fraction", self.fraction)
        _positive(f"{key}.target_vol", self.target_vol)
        _in_range(f"{key}.kelly_fraction", self.kelly_fraction, 0.0, 1.0, closed_lo=False)
        _positive(f"{key}.vol_halflife", self.vol_halflife)
        _positive(f"{key}.max_weight", self.max_weight)
        for name in ("stop_loss", "take_profit", "trailing_stop"):
            getattr(self, name).check(f"{key}.{name}")
        _at_least(f"{key}.atr_period", self.atr_period, 1)
        _in_range(f"{key}.max_daily_loss", self.max_daily_loss, 0.0, 1.0, closed_hi=False)
        _in_range(f"{key}.max_drawdown", self.max_drawdown, 0.0, 1.0, closed_hi=False)
        _one_of(f"{key}.drawdown_action", self.drawdown_action, ("terminate", "halt"))
        _in_range(f"{key}.maintenance_margin", self.maintenance_margin, 0.0, 1.0,
                  closed_hi=False)
