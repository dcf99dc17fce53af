"""Plain-Python scalar reference of the trading rules: the oracle the kernels are tested against,
and the "pure Python single env" of the benchmarks. Written for obviousness, not speed: lists of
floats, the ``math`` module, one env, one asset loop at a time. Nothing here imports ``kernels``.
"""

from __future__ import annotations

import math

OPEN, HIGH, LOW, CLOSE, VOLUME = range(5)
FEATURES = ("log_return", "range", "volume")


def reference_features(bars, features, halflife, clip):
    """bars[field][t][a] -> feats[t][a][j], causal EWMA normalisation with bias correction."""
    n_bars, n_assets = len(bars[CLOSE]), len(bars[CLOSE][0])
    alpha = 1.0 - math.exp(math.log(0.5) / halflife)
    out = [[[0.0] * len(features) for _ in range(n_assets)] for _ in range(n_bars)]
    for a in range(n_assets):
        m_ret2 = m_rng = m_vol = m_vol2 = w = 0.0
        for t in range(n_bars):
            ret = 0.0 if t == 0 else math.log(bars[CLOSE][t][a] / bars[CLOSE][t - 1][a])
            rng = math.log(bars[HIGH][t][a] / bars[LOW][t][a])
            lv = math.log(max(bars[VOLUME][t][a], 1e-12))
            m_ret2 = (1 - alpha) * m_ret2 + alpha * ret * ret
            m_rng = (1 - alpha) * m_rng + alpha * rng
            m_vol = (1 - alpha) * m_vol + alpha * lv
            m_vol2 = (1 - alpha) * m_vol2 + alpha * lv * lv
            w = (1 - alpha) * w + alpha
            for j, name in enumerate(features):
                if name == "log_return":
                    sd = math.sqrt(m_ret2 / w)
                    x = ret / sd if sd > 0 else 0.0
                elif name == "range":
                    mean = m_rng / w
                    x = rng / mean - 1.0 if mean > 0 else 0.0
                else:
                    mean = m_vol / w
                    var = m_vol2 / w - mean * mean
                    x = (lv - mean) / math.sqrt(var) if var > 1e-12 else 0.0
                out[t][a][j] = min(clip, max(-clip, x))
    return out


class ReferenceEnv:
    """One env following DESIGN.md's step, in plain Python.

    ``bars[field][t][a]`` lists; ``weights`` maps reward component name -> weight; costs in bps.
    """

    def __init__(self, bars, features, *, window, episode_length, initial_cash=100_000.0,
                 max_leverage=1.0, bankrupt_fraction=0.5, lot_size=0.0, fill_price="next_open",
                 commission_bps=0.0, min_commission=0.0, slippage_bps=0.0, half_spread_bps=0.0,
                 weights=None, dsr_eta=0.01, scale=1.0, portfolio=True, clip=10.0,
                 slippage_model="fixed", commission_model="bps", taker_bps=-1.0,
                 per_share=0.0, impact_coef=0.0, max_participation=1.0, min_trade_value=0.0,
                 allow_short=True, borrow_per_bar=0.0, cash_rate_per_bar=0.0, series=None,
                 reversal="equity"):
        self.bars = bars
        self.features = features
        self.window = window
        self.episode_length = episode_length
        self.initial_cash = initial_cash
        self.max_leverage = max_leverage
        self.bankrupt_fraction = bankrupt_fraction
        self.lot_size = lot_size
        self.fill_price = fill_price
        self.commission_bps = commission_bps
        self.min_commission = min_commission
        self.slippage_bps = slippage_bps
        self.half_spread_bps = half_spread_bps
        self.weights = weights or {"log_return": 1.0}
        self.dsr_eta = dsr_eta
        self.scale = scale
        self.portfolio = portfolio
        self.clip = clip
        self.n_assets = len(bars[CLOSE][0])
        self.last_bar = len(bars[CLOSE]) - 1
        self.slippage_model = slippage_model
        self.commission_model = commission_model
        self.taker_bps = taker_bps
        self.per_share = per_share
        self.impact_coef = impact_coef
        self.max_participation = max_participation  # None (or inf): no cap
        self.reversal = reversal  # "equity" | "cash"
        self.min_trade_value = min_trade_value
        self.allow_short = allow_short
        self.borrow_per_bar = borrow_per_bar
        self.cash_rate_per_bar = cash_rate_per_bar
        # series[name][t][a] for avg_volume, sigma, spread_bps (causal estimates)
        self.series = series

    def reset(self, start):
        n = self.n_assets
        self.t = start
        self.step_count = 0
        self.cash = self.initial_cash
        self.position = [0.0] * n
        self.avg_px = [0.0] * n
        self.realized = 0.0
        self.equity = self.initial_cash
        self.peak = self.initial_cash
        self.drawdown = 0.0
        self.cost = 0.0
        self.dsr_a = 0.0
        self.dsr_b = 0.0
        return self.observation(1.0)

    def observation(self, time_left):
        obs = []
        for s in range(self.t - self.window + 1, self.t + 1):
            for a in range(self.n_assets):
                obs.extend(self.features[s][a])
        if self.portfolio:
            c = self.clip
            inv = 1.0 / self.equity if self.equity > 0 else 0.0
            close = self.bars[CLOSE][self.t]
            unreal = 0.0
            for a in range(self.n_assets):
                obs.append(min(c, max(-c, self.position[a] * close[a] * inv)))
                unreal += self.position[a] * (close[a] - self.avg_px[a])
            obs.append(min(c, max(-c, self.cash * inv)))
            obs.append(min(c, max(-c, unreal * inv)))
            obs.append(min(c, max(-c, self.drawdown)))
            obs.append(time_left)
        return obs

    def targets(self, action):
        w = [min(1.0, max(-1.0, x)) * self.max_leverage for x in action]
        gross = sum(abs(x) for x in w)
        if gross > self.max_leverage:
            w = [x * (self.max_leverage / gross) for x in w]
        return w, sum(abs(x) for x in w) if gross > self.max_leverage else gross

    def step(self, action):
        t, f = self.t, self.t + 1
        if self.fill_price == "next_open":
            ref = self.bars[OPEN][f]
        else:
            ref = self.bars[CLOSE][t]
        equity_prev, dd_prev = self.equity, self.drawdown
        w, gross = self.targets(action)
        equity_ref = self.cash + sum(p * r for p, r in zip(self.position, ref, strict=True))
        cost = 0.0
        ref_t = f if self.fill_price == "next_open" else t
        for a in range(self.n_assets):
            units = self._units(w[a], equity_ref, ref[a])
            if units < 0 and not self.allow_short:
                units = 0.0
            if self.reversal == "cash" and units * self.position[a] < 0:
                # close the old side first (its costs as an order of its own), then size the
                # new side from the equity that leaves
                close_px, close_fee = self._fill(a, -self.position[a], ref[a], t, ref_t)
                closing = close_fee + abs(self.position[a]) * abs(close_px - ref[a])
                units = self._units(w[a], equity_ref - closing, ref[a])
            qty = units - self.position[a]
            if abs(qty) <= 1e-10 * max(abs(units), abs(units - qty)):
                continue
            volume = self.bars[VOLUME][ref_t][a]
            cap = self.max_participation
            if cap is not None and cap != math.inf:
                if not volume > 0:  # nobody traded in the bar: nothing fills
                    continue
                if abs(qty) > cap * volume:
                    qty = cap * volume if qty > 0 else -cap * volume
                if self.lot_size > 0:
                    qty = math.trunc(qty / self.lot_size) * self.lot_size
                if qty == 0.0:
                    continue
            if abs(qty * ref[a]) < self.min_trade_value:
                continue
            px, fee = self._fill(a, qty, ref[a], t, ref_t)
            self.cash -= qty * px + fee
            cost += fee + abs(qty) * abs(px - ref[a])
            self._book(a, qty, px)
        if self.borrow_per_bar > 0:
            for a in range(self.n_assets):
                if self.position[a] < 0:
                    fee = -self.position[a] * self.bars[CLOSE][f][a] * self.borrow_per_bar
                    self.cash -= fee
                    cost += fee
        self.cash += self.cash * self.cash_rate_per_bar
        close = self.bars[CLOSE][f]
        self.equity = self.cash + sum(p * c for p, c in zip(self.position, close, strict=True))
        self.peak = max(self.peak, self.equity)
        self.drawdown = 1.0 - self.equity / self.peak if self.peak > 0 else 1.0
        self.cost = cost
        self.t = f
        self.step_count += 1
        reward = self.scale * self.reward(equity_prev, dd_prev, cost)
        term = self.equity <= self.bankrupt_fraction * self.initial_cash or self.equity <= 0
        trunc = (not term) and (self.step_count >= self.episode_length or f >= self.last_bar)
        obs = self.observation(1.0 - self.step_count / self.episode_length)
        return obs, reward, term, trunc

    def _units(self, weight, equity, ref_px):
        """Units that hold ``weight`` of ``equity`` at ``ref_px``, toward zero to lots."""
        if equity <= 0:
            return 0.0
        units = weight * equity / ref_px
        if self.lot_size > 0:
            units = math.trunc(units / self.lot_size) * self.lot_size
        return units

    def _fill(self, a, qty, ref_px, t, ref_t):
        """(fill price, commission) of a market order of ``qty`` units around ``ref_px``."""
        volume = self.bars[VOLUME][ref_t][a]
        slip = self.slippage_bps + self.half_spread_bps
        if self.slippage_model == "spread_column":
            spread = self.series["spread_bps"][ref_t][a]
            slip = self.slippage_bps + (0.0 if math.isnan(spread) else spread / 2)
        elif self.slippage_model == "linear_impact":
            part = abs(qty) / volume if volume > 0 else 1.0
            slip += self.impact_coef * part * 1e4
        elif self.slippage_model == "sqrt_impact":
            avg = self.series["avg_volume"][t][a]
            sigma = self.series["sigma"][t][a]
            part = abs(qty) / avg if avg > 0 else 1.0
            if sigma > 0:
                slip += self.impact_coef * sigma * math.sqrt(part) * 1e4
        side = 1.0 if qty > 0 else -1.0
        px = max(0.0, ref_px * (1.0 + side * slip * 1e-4))  # a seller never pays to sell
        if self.commission_model == "per_share":
            fee = abs(qty) * self.per_share
        else:
            bps = self.commission_bps if self.taker_bps < 0 else self.taker_bps
            fee = abs(qty) * px * bps * 1e-4
        return px, max(fee, self.min_commission)

    def _book(self, a, qty, px):
        pos, avg = self.position[a], self.avg_px[a]
        new = pos + qty
        if pos == 0 or (pos > 0) == (qty > 0):
            avg = (avg * abs(pos) + px * abs(qty)) / abs(new)
        else:
            closed = min(abs(qty), abs(pos))
            self.realized += closed * (px - avg) * (1.0 if pos > 0 else -1.0)
            if abs(qty) >= abs(pos):
                avg = 0.0 if new == 0 else px
        self.position[a], self.avg_px[a] = new, avg

    def reward(self, equity_prev, dd_prev, cost):
        e, w = self.equity, self.weights
        ret = e / equity_prev - 1.0 if equity_prev > 0 else 0.0
        # Moody & Saffell (1998), eq. for D_t with A, B the EWMAs of R and R^2
        var = self.dsr_b - self.dsr_a ** 2
        dsr = 0.0
        if var > 1e-12:
            dsr = (self.dsr_b * (ret - self.dsr_a) - 0.5 * self.dsr_a * (ret * ret - self.dsr_b)) \
                / var ** 1.5
        self.dsr_a += self.dsr_eta * (ret - self.dsr_a)
        self.dsr_b += self.dsr_eta * (ret * ret - self.dsr_b)
        r = 0.0
        if w.get("log_return"):
            r += w["log_return"] * (math.log(max(e / equity_prev, 1e-12)) if equity_prev > 0
                                    else 0.0)
        if w.get("pnl"):
            r += w["pnl"] * (e - equity_prev) / self.initial_cash
        if w.get("differential_sharpe"):
            r += w["differential_sharpe"] * dsr
        if w.get("drawdown_penalty"):
            r -= w["drawdown_penalty"] * max(0.0, self.drawdown - dd_prev)
        if w.get("cost_penalty") and equity_prev > 0:
            r -= w["cost_penalty"] * cost / equity_prev
        return r
