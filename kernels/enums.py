"""Integer codes shared by kernels and the Python layer (NamedTuples of ints, 0 = the default).

Kernels never raise in the hot path; they return these codes and the Python layer turns them
into readable errors.
"""

from typing import NamedTuple

import numpy as np


class FillPriceT(NamedTuple):
    NEXT_OPEN: int = 0  # decide at close t, fill at open t+1
    CLOSE: int = 1  # fill at close t (same bar the agent observed)


FillPrice = FillPriceT()


class StepStatusT(NamedTuple):
    OK: int = 0
    BAD_ACTION: int = 1  # a NaN or inf in the action; nothing was changed


StepStatus = StepStatusT()


class RewardIdT(NamedTuple):
    """Column of each built-in component in the reward weight vector."""

    LOG_RETURN: int = 0  # log(E_t / E_{t-1})
    PNL: int = 1  # (E_t - E_{t-1}) / initial cash
    DIFFERENTIAL_SHARPE: int = 2  # Moody & Saffell (1998) D_t
    DRAWDOWN_PENALTY: int = 3  # -max(0, dd_t - dd_{t-1})
    COST_PENALTY: int = 4  # -cost_t / E_{t-1}
    CUSTOM: int = 5  # the user-registered jitted reward(s), summed with their own weights


RewardId = RewardIdT()
N_REWARDS = len(RewardId)


class FeatureIdT(NamedTuple):
    LOG_RETURN: int = 0  # log(c_t / c_{t-1}) / EWMA std of the same, causal
    RANGE: int = 1  # log(h_t / l_t) / its EWMA mean, minus 1
    VOLUME: int = 2  # log(v_t) minus its EWMA mean, over its EWMA std


FeatureId = FeatureIdT()


class InfoLevelT(NamedTuple):
    FULL: int = 0
    MINIMAL: int = 1
    NONE: int = 2


InfoLevel = InfoLevelT()


class AccountT(NamedTuple):
    """Columns of the per-env float64 account array ``acct`` (n, N_ACCOUNT)."""

    CASH: int = 0  # currency
    EQUITY: int = 1  # cash + sum(position * close), currency
    PEAK: int = 2  # running max of equity this episode
    DRAWDOWN: int = 3  # 1 - equity / peak, in [0, 1] while equity > 0
    COST: int = 4  # commission + slippage paid in the last step, currency
    REALIZED: int = 5  # realised P&L this episode, currency, before costs
    DSR_A: int = 6  # EWMA of returns (differential Sharpe state)
    DSR_B: int = 7  # EWMA of squared returns
    DAY_EQUITY: int = 8  # equity at the close before the current trading day (daily loss)


Account = AccountT()
N_ACCOUNT = len(Account)


class ClockT(NamedTuple):
    """Columns of the per-env int64 clock array ``clock`` (n, N_CLOCK)."""

    BAR: int = 0  # index of the last closed bar the env has seen
    START: int = 1  # bar at which the episode started
    STEP: int = 2  # steps taken in this episode
    NEEDS_RESET: int = 3  # 1 after a done step in next-step autoreset mode
    HALT: int = 4  # a Halt code: trading stopped by a risk rule


Clock = ClockT()
N_CLOCK = len(Clock)


class CostParamT(NamedTuple):
    """Columns of the per-env cost parameter array ``cost_params`` (n, N_COST_PARAM)."""

    COMMISSION_BPS: int = 0  # of traded notional
    MIN_COMMISSION: int = 1  # currency per order
    SLIPPAGE_BPS: int = 2  # fixed, against the trader
    HALF_SPREAD_BPS: int = 3  # paid on every fill
    MAKER_BPS: int = 4  # limit orders (< 0: COMMISSION_BPS)
    TAKER_BPS: int = 5  # market and stop orders (< 0: COMMISSION_BPS)
    PER_SHARE: int = 6  # currency per unit (per_share model)
    IMPACT_COEF: int = 7  # see kernels.costs.slippage_bps_nb
    MAX_PARTICIPATION: int = 8  # fraction of the fill bar's volume, in (0, 1]; inf: no cap
    MIN_TRADE_VALUE: int = 9  # currency
    BORROW_PER_BAR: int = 10  # fraction of short notional charged per bar
    CASH_RATE_PER_BAR: int = 11  # fraction of cash credited (debited if negative) per bar
    REVERSAL: int = 12  # a ReversalSizing code (stored as a float)


CostParam = CostParamT()
N_COST_PARAM = len(CostParam)


class BarFieldT(NamedTuple):
    """First axis of the market array ``bars`` (5, T, A), float64."""

    OPEN: int = 0
    HIGH: int = 1
    LOW: int = 2
    CLOSE: int = 3
    VOLUME: int = 4


BarField = BarFieldT()


# ---- execution realism and risk (issue 3) ------------------------------------------------------


class OrderTypeT(NamedTuple):
    MARKET: int = 0  # fills at the reference price (open t+1, or close t)
    LIMIT: int = 1  # buy at <= limit, sell at >= limit; fills at the better of open and limit
    STOP: int = 2  # buy stop triggers at high >= stop, sell stop at low <= stop; gaps fill at open


OrderType = OrderTypeT()


class SlippageModelT(NamedTuple):
    FIXED: int = 0  # slippage_bps + half_spread_bps
    SPREAD_COLUMN: int = 1  # slippage_bps + half the bar's spread column (bps)
    LINEAR_IMPACT: int = 2  # fixed + impact_coef x participation (|qty| / bar volume), in bps x 1e4
    SQRT_IMPACT: int = 3  # fixed + impact_coef x sigma x sqrt(|qty| / average volume)


SlippageModel = SlippageModelT()


class CommissionModelT(NamedTuple):
    BPS: int = 0  # commission_bps of notional (maker_bps / taker_bps for limit / market orders)
    PER_SHARE: int = 1  # commission_per_share x |qty|


CommissionModel = CommissionModelT()


class ReversalSizingT(NamedTuple):
    """How an agent order that flips a position (long to short or short to long) is sized
    (``execution.reversal``)."""

    EQUITY: int = 0  # the new side is weight x equity at the reference price, before any cost
    CASH: int = 1  # the old side is closed first: weight x (equity - the closing costs)


ReversalSizing = ReversalSizingT()


class SizingRuleT(NamedTuple):
    DIRECT: int = 0  # the action's weight as is
    FIXED_FRACTION: int = 1  # weight x fraction
    VOL_TARGET: int = 2  # weight x target_vol / realised vol (annualised), capped
    KELLY: int = 3  # weight x kelly_fraction x mean / variance of the asset's returns, capped


SizingRule = SizingRuleT()


class StopKindT(NamedTuple):
    NONE: int = 0
    PCT: int = 1  # a fraction of the entry (or trailing peak) price
    ATR: int = 2  # a multiple of the average true range at the bar the position was checked


StopKind = StopKindT()


class FillReasonT(NamedTuple):
    """Why a fill happened (fill records) or a trade was changed or refused (risk counters)."""

    NONE: int = 0
    SIGNAL: int = 1  # the agent's order
    STOP_LOSS: int = 2
    TAKE_PROFIT: int = 3
    TRAILING_STOP: int = 4
    DAILY_LOSS: int = 5  # max daily loss hit: flattened, halted until the next trading day
    DRAWDOWN: int = 6  # drawdown circuit breaker: flattened
    LIQUIDATION: int = 7  # equity below maintenance margin
    MAX_WEIGHT: int = 8  # a target weight was capped
    SHORT_BLOCKED: int = 9  # shorting disabled: a negative target was raised to 0
    PARTIAL: int = 10  # max participation cut the order
    MIN_TRADE: int = 11  # below min_trade_value: skipped
    EXPIRED: int = 12  # a limit/stop order reached its time in force unfilled
    NOT_TRADABLE: int = 13  # the asset had no bar there (union alignment): the order waited
    NO_VOLUME: int = 14  # max participation set and the fill bar traded no volume: not filled


FillReason = FillReasonT()
N_FILL_REASONS = len(FillReason)


class SeriesFieldT(NamedTuple):
    """First axis of the load-time causal series array ``series`` (N_SERIES, T, A), float64."""

    AVG_VOLUME: int = 0  # EWMA of volume (execution.impact_halflife)
    SIGMA: int = 1  # EWMA std of log returns per bar (risk.vol_halflife)
    RET_MEAN: int = 2  # EWMA mean of log returns per bar (risk.vol_halflife)
    ATR: int = 3  # Wilder average true range (risk.atr_period), currency
    SPREAD_BPS: int = 4  # the data's spread column in bps, NaN when the data has none


SeriesField = SeriesFieldT()
N_SERIES = len(SeriesField)


class RiskParamT(NamedTuple):
    """Columns of the per-env risk parameter array ``risk_params`` (n, N_RISK_PARAM)."""

    FRACTION: int = 0  # fixed_fraction sizing
    TARGET_VOL: int = 1  # vol_target sizing, annualised
    KELLY_FRACTION: int = 2
    MAX_WEIGHT: int = 3  # cap on |weight| per asset
    SL_VALUE: int = 4  # stop loss: fraction or ATR multiple
    TP_VALUE: int = 5  # take profit
    TRAIL_VALUE: int = 6  # trailing stop
    MAX_DAILY_LOSS: int = 7  # fraction of the day's opening equity (0 = off)
    MAX_DRAWDOWN: int = 8  # fraction from peak (0 = off)
    MAINT_MARGIN: int = 9  # fraction of gross notional (0 = off)


RiskParam = RiskParamT()
N_RISK_PARAM = len(RiskParam)


class HaltT(NamedTuple):
    NONE: int = 0
    DAY: int = 1  # max daily loss: no trading until the next trading day
    EPISODE: int = 2  # drawdown breaker in halt mode: no trading for the rest of the episode


Halt = HaltT()


class RecordFieldT(NamedTuple):
    """Float columns of the fill records ``rec_f`` (n, slots, N_RECORD_F)."""

    QTY: int = 0  # signed units
    PRICE: int = 1  # fill price after slippage
    COMMISSION: int = 2  # currency
    SLIPPAGE: int = 3  # currency, |qty| x |price - reference|


RecordField = RecordFieldT()
N_RECORD_F = len(RecordField)


class RecordIntT(NamedTuple):
    """Integer columns of the fill records ``rec_i`` (n, slots, N_RECORD_I)."""

    BAR: int = 0  # bar index of the fill
    ASSET: int = 1
    ORDER_TYPE: int = 2  # OrderType
    REASON: int = 3  # FillReason


RecordInt = RecordIntT()
N_RECORD_I = len(RecordInt)

FILL_DTYPE = np.dtype([("env", np.int64), ("bar", np.int64), ("asset", np.int64),
                       ("side", np.int8), ("qty", np.float64), ("price", np.float64),
                       ("commission", np.float64), ("slippage", np.float64),
                       ("order_type", np.int8), ("reason", np.int8)], align=True)
"""One fill as a record: side +1 buy / -1 sell, qty signed units, price after slippage,
commission and slippage in currency, order_type ``OrderType``, reason ``FillReason``."""

TRADE_DTYPE = np.dtype([("env", np.int64), ("asset", np.int64), ("side", np.int8),
                        ("qty", np.float64), ("entry_bar", np.int64), ("exit_bar", np.int64),
                        ("entry_price", np.float64), ("exit_price", np.float64),
                        ("pnl", np.float64), ("return", np.float64), ("bars", np.int64),
                        ("commission", np.float64), ("entry_fill", np.int64),
                        ("exit_fill", np.int64)], align=True)
"""One FIFO round trip (``kernels.trades``): side +1 long / -1 short, qty units (> 0), prices in
currency, pnl in currency net of ``commission`` (the entry and exit fills' costs apportioned to
qty), return = pnl / (qty x entry_price), bars = exit_bar - entry_bar, entry_fill / exit_fill =
indices into the fills given. An open lot has exit_bar, bars, exit_fill = -1 and exit_price,
pnl, return = NaN."""


class WorkingOrderT(NamedTuple):
    """Float columns of the per-env, per-asset working orders ``orders`` (n, A, N_ORDER)."""

    TYPE: int = 0  # OrderType code, or -1 when no order is working
    SIDE: int = 1  # +1 buy / -1 sell
    PRICE: int = 2  # limit or stop price
    WEIGHT: int = 3  # the target weight the order trades toward
    AGE: int = 4  # bars it has waited


WorkingOrder = WorkingOrderT()
N_ORDER = len(WorkingOrder)
NO_ORDER = -1.0


# ---- simulation mode (kernels.simulation, kernels.sim_rows) ------------------------------------
class SimAssetT(NamedTuple):
    """Middle axis of the per-env, per-asset market parameters ``sim_asset`` float64
    (n, N_SIM_ASSET, A); every rate per bar."""

    DRIFT: int = 0  # mean simple return per bar (regime 0)
    VOL: int = 1  # unconditional std of the AR(1) innovation, log units per bar
    GARCH_ALPHA: int = 2
    GARCH_BETA: int = 3
    AR1: int = 4
    INIT_PRICE: int = 5  # currency
    BASE_VOLUME: int = 6  # units per bar


SimAsset = SimAssetT()
N_SIM_ASSET = len(SimAsset)


class SimEnvT(NamedTuple):
    """Columns of the per-env market parameters ``sim_env`` float64 (n, N_SIM_ENV)."""

    JUMP_INTENSITY: int = 0  # probability of a jump per bar and asset
    JUMP_MEAN: int = 1  # mean log jump size
    JUMP_STD: int = 2  # std of the log jump size
    INTRABAR_VOL: int = 3  # wick scale, a fraction of the bar's sigma
    CRASH_SIZE: int = 4  # log gap of the crash bar (log(0.8) for -20 %)
    SPIKE_MULT: int = 5  # vol multiplier inside the vol-spike window
    DROUGHT_MULT: int = 6  # volume multiplier inside the drought window
    CRASH_PROB: int = 7  # probability that an episode has a crash (drawn at each path reset)
    SPIKE_PROB: int = 8  # probability that an episode has a vol spike
    DROUGHT_PROB: int = 9  # probability that an episode has a liquidity drought


SimEnv = SimEnvT()
N_SIM_ENV = len(SimEnv)


class SimStressT(NamedTuple):
    """Columns of the per-env stress windows ``stress`` int64 (n, N_SIM_STRESS), in path bars
    (bar 0 is the first bar generated after a reset); a negative start disables a window."""

    CRASH_BAR: int = 0
    SPIKE_START: int = 1
    SPIKE_LEN: int = 2
    DROUGHT_START: int = 3
    DROUGHT_LEN: int = 4


SimStress = SimStressT()
N_SIM_STRESS = len(SimStress)


class SimRegimeT(NamedTuple):
    """Rows of the shared regime table ``regime_table`` float64 (N_SIM_REGIME, 2)."""

    P_STAY: int = 0  # per-bar probability of staying in regime 0 / 1
    VOL_MULT: int = 1
    DRIFT_MULT: int = 2


SimRegime = SimRegimeT()
N_SIM_REGIME = len(SimRegime)


class SimStateT(NamedTuple):
    """Middle axis of the per-env, per-asset generator state ``sim_state`` float64
    (n, N_SIM_STATE, A)."""

    CLOSE: int = 0  # last close (currency)
    DEV: int = 1  # AR(1) deviation of the log return
    H: int = 2  # GARCH conditional variance of the next bar's base shock


SimState = SimStateT()
N_SIM_STATE = len(SimState)


class SimClockT(NamedTuple):
    """Columns of the per-env generator clock ``sim_clock`` int64 (n, N_SIM_CLOCK)."""

    REGIME: int = 0  # regime of the next bar, 0 or 1
    BAR_INDEX: int = 1  # path bars generated since the reset (the index of the next bar)


SimClock = SimClockT()
N_SIM_CLOCK = len(SimClock)


class RowStateT(NamedTuple):
    """Middle axis of the per-env, per-asset recursions ``row_state`` float64
    (n, N_ROW_STATE, A) that simulation mode carries from one generated bar to the next, so
    that its features and series equal ``compute_features_nb`` / ``ewma_nb`` /
    ``compute_risk_series_nb`` run over the env's whole path."""

    F_RET2: int = 0  # feature EWMA of squared log returns
    F_RNG: int = 1  # feature EWMA of log(high / low)
    F_VOL: int = 2  # feature EWMA of log volume
    F_VOL2: int = 3  # feature EWMA of squared log volume
    F_W: int = 4  # feature EWMA bias correction
    AV_M: int = 5  # volume EWMA (execution.impact_halflife)
    AV_W: int = 6
    R_M1: int = 7  # return EWMA (risk.vol_halflife)
    R_M2: int = 8
    R_W: int = 9
    ATR: int = 10  # Wilder ATR


RowState = RowStateT()
N_ROW_STATE = len(RowState)
