"""Configuration: Hydra composition of ``conf/`` and validation into frozen dataclasses.

``compose(env="training", overrides=[...])`` returns the composed DictConfig; ``load_spec(cfg)``
checks every key and value against the schemas below (unknown keys, wrong types, out-of-range
values, unknown registry names) and returns an ``EnvSpec``; errors name the dotted key, what was
expected and what arrived. Everything is validated once, before any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from optrader.checks import (
    ConfigError,
    _as_tuple,
    _at_least,
    _finite,
    _in_range,
    _join,
    _one_of,
    _per_asset,
    _positive,
    _registered,
    _typed,
)
from optrader.research_config import (
    STRATEGY_SCHEMAS,
    BacktestConfig,
    MetricsConfig,
    ValidationConfig,
    build_strategy,
)
from optrader.trading_config import ExecutionConfig, RiskConfig


def config_dir() -> Path:
    """Directory of the YAML config groups: the repo's ``conf/`` (source tree or editable
    install) or ``optrader/conf`` inside an installed wheel (pyproject maps one to the other)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"optrader configs not found in {here.parent / 'conf'} nor "
                            f"{here / 'conf'}; reinstall the package")


def available(group: str) -> list[str]:
    """Option names of a config group (YAML files in conf/GROUP)."""
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


# ---------------------------------------------------------------------------------------------
# Schemas. One dataclass per group; each field's comment is its documentation.


@dataclass(frozen=True)
class EnvConfig:
    # training | simulation (every env generates its own market) | backtest (every env runs
    # from the split's first bar to its last) | validation (starts chosen by optrader.validate)
    mode: str = "training"
    initial_cash: float = 100_000.0  # currency
    episode_length: int = 256  # steps before truncation
    max_leverage: float = 1.0  # gross exposure cap (sum of |weights|)
    bankrupt_fraction: float = 0.5  # terminate when equity < fraction x initial_cash
    info: str = "full"  # full | minimal | none

    def check(self, key: str) -> None:
        _one_of(f"{key}.mode", self.mode, MODES)
        _positive(f"{key}.initial_cash", self.initial_cash)
        _at_least(f"{key}.episode_length", self.episode_length, 1)
        _positive(f"{key}.max_leverage", self.max_leverage)
        _in_range(f"{key}.bankrupt_fraction", self.bankrupt_fraction, 0.0, 1.0, closed_hi=False)
        _one_of(f"{key}.info", self.info, ("full", "minimal", "none"))


MODES = ("training", "simulation", "backtest", "validation")


@dataclass(frozen=True)
class RewardConfig:
    components: dict = field(default_factory=lambda: {"log_return": 1.0})  # name -> weight
    scale: float = 1.0
    dsr_eta: float = 0.01  # differential Sharpe adaptation rate, in (0, 1)

    def check(self, key: str) -> None:
        if not self.components:
            raise ConfigError(f"{key}.components: expected at least one reward, got none")
        for name, w in self.components.items():
            _registered(f"{key}.components", "reward", name)
            _typed(f"{key}.components.{name}", w, float)
            _finite(f"{key}.components.{name}", w)
        _finite(f"{key}.scale", self.scale)
        _in_range(f"{key}.dsr_eta", self.dsr_eta, 0.0, 1.0, closed_lo=False, closed_hi=False)


@dataclass(frozen=True)
class ObservationConfig:
    window: int = 32  # bars in the observation window
    features: tuple = ("log_return",)  # per-asset features (kernels.enums.FeatureId)
    ewma_halflife: float = 64.0  # bars
    portfolio: bool = True  # append the portfolio features
    clip: float = 10.0  # clip normalised features to [-clip, clip]
    extra_features: tuple = ()  # data.extra_columns appended per asset (as given, clipped)

    def check(self, key: str) -> None:
        _at_least(f"{key}.window", self.window, 1)
        if not self.features:
            raise ConfigError(f"{key}.features: expected at least one feature, got []")
        for name in self.features:
            _one_of(f"{key}.features", name, FEATURE_NAMES)
        if len(set(self.features)) != len(self.features):
            raise ConfigError(f"{key}.features: duplicate names in {list(self.features)}")
        _positive(f"{key}.ewma_halflife", self.ewma_halflife)
        _positive(f"{key}.clip", self.clip)
        for name in self.extra_features:
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{key}.extra_features: expected column names, got {name!r}")
        if len(set(self.extra_features)) != len(self.extra_features):
            raise ConfigError(f"{key}.extra_features: duplicate names in "
                              f"{list(self.extra_features)}")


FEATURE_NAMES = ("log_return", "range", "volume")


@dataclass(frozen=True)
class ActionConfig:
    type: str = "continuous"  # continuous | discrete
    levels: tuple = (-1.0, 0.0, 1.0)  # discrete target weights, fractions of max_leverage
    order_types: tuple = ()  # empty: execution.order_type; else the action picks one per asset

    def check(self, key: str) -> None:
        _one_of(f"{key}.type", self.type, ("continuous", "discrete"))
        for name in self.order_types:
            _one_of(f"{key}.order_types", name, ("market", "limit", "stop"))
        if len(self.levels) < 1:
            raise ConfigError(f"{key}.levels: expected at least one level, got []")
        for v in self.levels:
            _typed(f"{key}.levels", v, float)
            _in_range(f"{key}.levels", v, -1.0, 1.0)


@dataclass(frozen=True)
class SplitConfig:
    """Train / validation / test by fraction of the bars or by date; episodes of an env sample
    only from the split named by ``use`` (observation windows included)."""

    train: Any = 1.0  # fraction of bars in (0, 1], or the end date of train (ISO, exclusive)
    validation: Any = 0.0  # fraction of bars, or the end date of validation; test is the rest
    use: str = "train"  # the split episodes come from: train | validation | test | all

    def check(self, key: str) -> None:
        _one_of(f"{key}.use", self.use, ("train", "validation", "test", "all"))
        by_date = isinstance(self.train, str)
        if by_date != isinstance(self.validation, str) and not (
                by_date and self.validation in (0, 0.0, None)):
            raise ConfigError(f"{key}: expected train and validation both as fractions or both "
                              f"as dates, got train={self.train!r}, "
                              f"validation={self.validation!r}")
        if by_date:
            import pandas as pd

            for name in ("train", "validation"):
                v = getattr(self, name)
                if isinstance(v, str):
                    try:
                        pd.Timestamp(v)
                    except ValueError:
                        raise ConfigError(f"{key}.{name}: expected an ISO date like "
                                          f"'2023-01-01', got {v!r}") from None
            if isinstance(self.validation, str) and pd.Timestamp(self.validation) < \
                    pd.Timestamp(self.train):
                raise ConfigError(f"{key}.validation: the validation end {self.validation!r} is "
                                  f"before the train end {self.train!r}")
            return
        _typed(f"{key}.train", self.train, float)
        _typed(f"{key}.validation", self.validation, float)
        _in_range(f"{key}.train", self.train, 0.0, 1.0, closed_lo=False)
        _in_range(f"{key}.validation", self.validation, 0.0, 1.0)
        if self.train + self.validation > 1.0 + 1e-12:
            raise ConfigError(f"{key}: train + validation must be <= 1 (the rest is test), got "
                              f"{self.train} + {self.validation}")


@dataclass(frozen=True)
class CalendarConfig:
    """Trading sessions: day boundaries (risk.max_daily_loss) and off-hours detection."""

    name: str = "auto"  # auto | always_open | us_equities | custom | an exchange code (XNYS...)
    timezone: str = "UTC"  # sessions are local times in this zone (custom)
    sessions: Any = (("00:00", "24:00"),)  # local (open, close) pairs (custom)
    weekdays: Any = (0, 1, 2, 3, 4, 5, 6)  # trading weekdays, Monday = 0 (custom)
    holidays: tuple = ()  # local dates without a session, "YYYY-MM-DD" (custom)

    def check(self, key: str) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"{key}.name: expected a calendar name, got {self.name!r}")
        for pair in self.sessions:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2
                    and all(isinstance(x, str) for x in pair)):
                raise ConfigError(f"{key}.sessions: expected [open, close] pairs of 'HH:MM' "
                                  f"strings, got {pair!r}")
        for d in self.weekdays:
            if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 6:
                raise ConfigError(f"{key}.weekdays: expected integers 0 (Monday) .. 6, got {d!r}")


@dataclass(frozen=True)
class QualityConfig:
    min_score: float = 0.95  # loading fails below this quality score (see optrader.data.quality)
    jump_sigma: float = 10.0  # a close-to-close move beyond this many robust sigmas is flagged
    zero_volume_run: int = 10  # this many zero-volume bars in a row are flagged

    def check(self, key: str) -> None:
        _in_range(f"{key}.min_score", self.min_score, 0.0, 1.0)
        _positive(f"{key}.jump_sigma", self.jump_sigma)
        _at_least(f"{key}.zero_volume_run", self.zero_volume_run, 1)


@dataclass(frozen=True)
class CacheConfig:
    enabled: bool = True  # keep the loaded, validated, aligned arrays on disk (memory-mapped)
    dir: Any = None  # null: $OPTRADER_CACHE_DIR or ~/.cache/optrader

    def check(self, key: str) -> None:
        if self.dir is not None and not isinstance(self.dir, (str, os.PathLike)):
            raise ConfigError(f"{key}.dir: expected a directory path or null, got {self.dir!r}")


@dataclass(frozen=True)
class JumpsConfig:
    intensity: float = 0.0  # jumps per year
    mean: float = 0.0  # mean log jump size
    std: float = 0.0

    def check(self, key: str) -> None:
        _at_least(f"{key}.intensity", self.intensity, 0.0)
        _at_least(f"{key}.std", self.std, 0.0)


@dataclass(frozen=True)
class RegimesConfig:
    enabled: bool = False
    p_stay: tuple = (0.99, 0.95)  # per-bar probability of staying in regime 0 / 1
    vol_mult: tuple = (1.0, 2.5)
    drift_mult: tuple = (1.0, -1.0)

    def check(self, key: str) -> None:
        for name in ("p_stay", "vol_mult", "drift_mult"):
            v = getattr(self, name)
            if len(v) != 2:
                raise ConfigError(f"{key}.{name}: expected 2 values (one per regime), got {list(v)}")
        for p in self.p_stay:
            _in_range(f"{key}.p_stay", p, 0.0, 1.0)


@dataclass(frozen=True)
class SyntheticDataConfig:
    source: str = "synthetic"
    n_bars: int = 20_000
    n_assets: int = 1
    seed: int = 7
    start: str = "2000-01-03"  # timestamp of bar 0
    freq: str = "auto"  # pandas offset of one bar; auto: from periods_per_year (252: "B")
    periods_per_year: float = 252.0
    drift: Any = 0.05  # annual, scalar or one per asset
    volatility: Any = 0.2  # annual, scalar or one per asset
    correlation: float = 0.3  # pairwise
    ar1: Any = 0.0  # AR(1) coefficient of log returns
    jumps: JumpsConfig = field(default_factory=JumpsConfig)
    regimes: RegimesConfig = field(default_factory=RegimesConfig)
    init_price: float = 100.0
    base_volume: float = 1e6
    intrabar_vol: float = 0.5
    # held-out validation and test bars by default, as the file sources
    split: SplitConfig = field(default_factory=lambda: SplitConfig(train=0.7, validation=0.15))

    def check(self, key: str) -> None:
        self.split.check(f"{key}.split")
        _at_least(f"{key}.n_bars", self.n_bars, 2)
        _at_least(f"{key}.n_assets", self.n_assets, 1)
        _positive(f"{key}.periods_per_year", self.periods_per_year)
        for name in ("drift", "volatility", "ar1"):
            _per_asset(f"{key}.{name}", getattr(self, name), self.n_assets)
        for v in _as_tuple(self.volatility):
            _at_least(f"{key}.volatility", v, 0.0)
        for v in _as_tuple(self.ar1):  # |ar1| >= 1 makes log returns explode
            _in_range(f"{key}.ar1", v, -1.0, 1.0, closed_lo=False, closed_hi=False)
        # an equicorrelation matrix is positive semi-definite only for rho >= -1 / (A - 1)
        lo = -1.0 / (self.n_assets - 1) if self.n_assets > 1 else -1.0
        _in_range(f"{key}.correlation", self.correlation, lo, 1.0)
        _positive(f"{key}.init_price", self.init_price)
        _at_least(f"{key}.base_volume", self.base_volume, 0.0)
        _at_least(f"{key}.intrabar_vol", self.intrabar_vol, 0.0)
        self.jumps.check(f"{key}.jumps")
        if self.jumps.intensity > self.periods_per_year:  # at most one jump per bar
            raise ConfigError(f"{key}.jumps.intensity: expected at most {key}.periods_per_year="
                              f"{self.periods_per_year} jumps per year (one per bar), got "
                              f"{self.jumps.intensity}")
        self.regimes.check(f"{key}.regimes")


@dataclass(frozen=True)
class DataFrameDataConfig:
    source: str = "dataframe"
    path: Any = None  # a Parquet or CSV file, or None when a DataFrame is passed
    periods_per_year: float = 0.0  # bars per year; 0: inferred from the bar timestamps
    split: SplitConfig = field(default_factory=SplitConfig)

    def check(self, key: str) -> None:
        if self.path is not None and not isinstance(self.path, (str, os.PathLike)):
            raise ConfigError(f"{key}.path: expected a file path or null, got {self.path!r}")
        _at_least(f"{key}.periods_per_year", self.periods_per_year, 0.0)  # 0: inferred
        self.split.check(f"{key}.split")


@dataclass(frozen=True)
class FileDataConfig:
    """Bars from Parquet or CSV files (``source: parquet | csv``), see ``optrader.data.load``."""

    source: str = "parquet"
    path: Any = None  # a file, a glob, a directory (one file per symbol, or symbol=... parts), or a list
    columns: dict = field(default_factory=dict)  # canonical name -> your column name
    timestamp: Any = None  # the timestamp column (null: timestamp, datetime, date or time)
    timestamp_unit: str = "auto"  # epoch unit of numeric timestamps: auto | s | ms | us | ns
    timezone: str = "UTC"  # zone of naive timestamps
    symbols: Any = None  # read only these symbols (null: all)
    start: Any = None  # first timestamp read (inclusive, ISO; naive = timezone)
    end: Any = None  # last timestamp read (exclusive)
    extra_columns: tuple = ()  # extra numeric columns to load (MarketData.extra)
    align: str = "intersection"  # intersection | union (a tradable mask where a symbol has no bar)
    resample: Any = None  # null, or a coarser bar such as "1h" (OHLCV-correct aggregation)
    periods_per_year: float = 0.0  # bars per year; 0: inferred from the bar timestamps
    calendar: CalendarConfig = field(default_factory=CalendarConfig)
    split: SplitConfig = field(default_factory=lambda: SplitConfig(train=0.7, validation=0.15))
    quality: QualityConfig = field(default_factory=QualityConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)

    def check(self, key: str) -> None:
        paths = () if self.path is None else (
            self.path if isinstance(self.path, (list, tuple)) else (self.path,))
        for p in paths:
            if not isinstance(p, (str, os.PathLike)):
                raise ConfigError(f"{key}.path: expected file paths, got {p!r}")
        for k, v in self.columns.items():
            _one_of(f"{key}.columns", k, ("timestamp", "symbol", "open", "high", "low", "close",
                                          "volume", "spread"))
            if not isinstance(v, str):
                raise ConfigError(f"{key}.columns.{k}: expected a column name, got {v!r}")
        _one_of(f"{key}.timestamp_unit", self.timestamp_unit, ("auto", "s", "ms", "us", "ns"))
        _one_of(f"{key}.align", self.align, ("intersection", "union"))
        if self.resample is not None and not isinstance(self.resample, str):
            raise ConfigError(f"{key}.resample: expected null or a bar size like '1h', got "
                              f"{self.resample!r}")
        _at_least(f"{key}.periods_per_year", self.periods_per_year, 0.0)  # 0: inferred
        self.calendar.check(f"{key}.calendar")
        self.split.check(f"{key}.split")
        self.quality.check(f"{key}.quality")
        self.cache.check(f"{key}.cache")


DATA_SCHEMAS = {"synthetic": SyntheticDataConfig, "dataframe": DataFrameDataConfig,
                "parquet": FileDataConfig, "csv": FileDataConfig}


@dataclass(frozen=True)
class GarchConfig:
    alpha: float = 0.0  # weight of the last squared shock (per bar)
    beta: float = 0.0  # persistence of the conditional variance; alpha + beta < 1

    def check(self, key: str) -> None:
        _at_least(f"{key}.alpha", self.alpha, 0.0)
        _at_least(f"{key}.beta", self.beta, 0.0)
        if not self.alpha + self.beta < 1.0:
            raise ConfigError(f"{key}: expected alpha + beta < 1 (a stationary variance), got "
                              f"{self.alpha} + {self.beta} = {self.alpha + self.beta}")


@dataclass(frozen=True)
class CrashConfig:
    probability: float = 0.0  # chance that an episode has a crash, at a uniform random bar
    size: float = -0.2  # the crash bar opens this simple return below the last close

    def check(self, key: str) -> None:
        _in_range(f"{key}.probability", self.probability, 0.0, 1.0)
        _in_range(f"{key}.size", self.size, -1.0, 1.0, closed_lo=False)


@dataclass(frozen=True)
class WindowStressConfig:
    probability: float = 0.0  # chance that an episode has the window, starting at a random bar
    mult: float = 1.0  # multiplier of volatility (vol_spike) or volume (drought) inside it
    length: int = 20  # bars

    def check(self, key: str) -> None:
        _in_range(f"{key}.probability", self.probability, 0.0, 1.0)
        _positive(f"{key}.mult", self.mult)
        _at_least(f"{key}.length", self.length, 1)


@dataclass(frozen=True)
class SimulationConfig:
    """Simulation mode (env.mode=simulation): the market model is the synthetic ``data``
    config (drift, volatility, correlation, ar1, jumps, regimes, prices, volume; annual units),
    generated per env on the fly, plus GARCH volatility and stress scenarios from here."""

    warmup: int = 64  # bars generated before each episode (>= observation.window)
    bars_per_day: int = 1  # bars per trading day (the daily-loss limit's day boundary)
    garch: GarchConfig = field(default_factory=GarchConfig)
    crash: CrashConfig = field(default_factory=CrashConfig)
    vol_spike: WindowStressConfig = field(
        default_factory=lambda: WindowStressConfig(mult=3.0))
    drought: WindowStressConfig = field(default_factory=lambda: WindowStressConfig(mult=0.1))

    def check(self, key: str) -> None:
        _at_least(f"{key}.warmup", self.warmup, 1)
        _at_least(f"{key}.bars_per_day", self.bars_per_day, 1)
        self.garch.check(f"{key}.garch")
        self.crash.check(f"{key}.crash")
        self.vol_spike.check(f"{key}.vol_spike")
        self.drought.check(f"{key}.drought")


@dataclass(frozen=True)
class AgentConfig:
    """``agent=es``: evolution strategies (``optrader.agents.es``)."""

    name: str = "es"
    policy: str = "linear"  # linear | mlp
    hidden: int = 32
    sigma: float = 0.05  # perturbation std
    learning_rate: float = 0.03
    weight_decay: float = 0.0  # L2 pull toward 0, added to the ascent direction
    optimizer: str = "adam"  # adam | sgd
    num_envs: int = 256  # population (even: antithetic pairs)
    budget_steps: int = 300_000_000  # env-steps of training (~100 s on 2 cores, linear policy)
    eval_episodes: int = 64
    checkpoint: str = ""  # policy.npz (or the run dir holding it) for backtest / validate

    def check(self, key: str) -> None:
        _one_of(f"{key}.name", self.name, ("es",))  # a schema per name: AGENT_SCHEMAS
        _one_of(f"{key}.policy", self.policy, ("linear", "mlp"))
        _at_least(f"{key}.hidden", self.hidden, 1)
        _positive(f"{key}.sigma", self.sigma)
        _positive(f"{key}.learning_rate", self.learning_rate)
        _at_least(f"{key}.weight_decay", self.weight_decay, 0.0)
        _one_of(f"{key}.optimizer", self.optimizer, ("adam", "sgd"))
        _at_least(f"{key}.num_envs", self.num_envs, 2)
        if self.num_envs % 2:
            raise ConfigError(f"{key}.num_envs: expected an even population (antithetic pairs), "
                              f"got {self.num_envs}")
        _at_least(f"{key}.budget_steps", self.budget_steps, 1)
        _at_least(f"{key}.eval_episodes", self.eval_episodes, 1)


@dataclass(frozen=True)
class PPOAgentConfig:
    """``agent=ppo``: Stable-Baselines3's PPO with an MLP policy (``optrader.agents.ppo``)."""

    name: str = "ppo"
    net_arch: tuple = (64, 64)  # hidden units per layer, policy and value nets (separate)
    activation: str = "tanh"  # tanh | relu
    log_std_init: float = -0.5  # initial log std of the Gaussian (continuous actions)
    n_steps: int = 64  # env-steps per env per rollout; a rollout is n_steps x num_envs
    batch_size: int = 4096  # minibatch; must divide n_steps x num_envs
    n_epochs: int = 4  # passes over each rollout
    learning_rate: float = 3e-4  # Adam step size
    gamma: float = 0.99  # discount
    gae_lambda: float = 0.95  # GAE lambda
    clip_range: float = 0.2  # PPO ratio clip
    ent_coef: float = 0.0  # entropy bonus weight
    vf_coef: float = 0.5  # value loss weight
    max_grad_norm: float = 0.5  # global gradient norm clip
    device: str = "cpu"  # torch device (cpu: small MLPs gain nothing on a GPU)
    torch_threads: int = 1  # torch.set_num_threads while training; 0 keeps torch's default
    num_envs: int = 256  # envs stepped together (one SB3 VecEnv)
    budget_steps: int = 5_000_000  # env-steps of training (rounded up to whole rollouts)
    eval_episodes: int = 64
    checkpoint: str = ""  # policy.zip / policy.npz (or the run dir) for backtest / validate

    def check(self, key: str) -> None:
        _one_of(f"{key}.name", self.name, ("ppo",))
        if not self.net_arch:
            raise ConfigError(f"{key}.net_arch: expected a list of hidden layer sizes, got []")
        for units in self.net_arch:
            if not (isinstance(units, (int, float)) and units >= 1 and float(units).is_integer()):
                raise ConfigError(f"{key}.net_arch: expected integers >= 1, got "
                                  f"{list(self.net_arch)}")
        _one_of(f"{key}.activation", self.activation, ("tanh", "relu"))
        _finite(f"{key}.log_std_init", self.log_std_init)
        _at_least(f"{key}.n_steps", self.n_steps, 1)
        _at_least(f"{key}.batch_size", self.batch_size, 2)  # SB3 normalises advantages per batch
        _at_least(f"{key}.n_epochs", self.n_epochs, 1)
        _positive(f"{key}.learning_rate", self.learning_rate)
        _in_range(f"{key}.gamma", self.gamma, 0.0, 1.0)
        _in_range(f"{key}.gae_lambda", self.gae_lambda, 0.0, 1.0)
        _positive(f"{key}.clip_range", self.clip_range)
        _at_least(f"{key}.ent_coef", self.ent_coef, 0.0)
        _at_least(f"{key}.vf_coef", self.vf_coef, 0.0)
        _positive(f"{key}.max_grad_norm", self.max_grad_norm)
        _one_of(f"{key}.device", self.device.split(":")[0], ("cpu", "cuda", "mps"))
        _at_least(f"{key}.torch_threads", self.torch_threads, 0)
        _at_least(f"{key}.num_envs", self.num_envs, 1)
        rollout = self.n_steps * self.num_envs
        if rollout % self.batch_size:
            raise ConfigError(f"{key}.batch_size: expected a divisor of n_steps x num_envs = "
                              f"{self.n_steps} x {self.num_envs} = {rollout}, got "
                              f"{self.batch_size}")
        _at_least(f"{key}.budget_steps", self.budget_steps, 1)
        _at_least(f"{key}.eval_episodes", self.eval_episodes, 1)


# agent.name -> schema; ``conf/agent/NAME.yaml`` sets name
AGENT_SCHEMAS = {"es": AgentConfig, "ppo": PPOAgentConfig}


@dataclass(frozen=True)
class EnvSpec:
    """The validated, frozen configuration of a TradingVectorEnv."""

    env: EnvConfig = field(default_factory=EnvConfig)
    data: Any = field(default_factory=SyntheticDataConfig)  # one of DATA_SCHEMAS
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    observation: ObservationConfig = field(default_factory=ObservationConfig)
    action: ActionConfig = field(default_factory=ActionConfig)
    agent: Any = field(default_factory=AgentConfig)  # one of AGENT_SCHEMAS
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    strategy: Any = field(default_factory=STRATEGY_SCHEMAS["sma_cross"])  # STRATEGY_SCHEMAS
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    seed: int = 0

    def check(self, key: str = "") -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if hasattr(v, "check"):
                v.check(f.name)
        if self.env.mode == "simulation":
            if self.data.source != "synthetic":
                raise ConfigError(f"data.source: env.mode=simulation generates its market from "
                                  f"the synthetic model; expected data=synthetic, got "
                                  f"{self.data.source!r}")
            if self.simulation.warmup < self.observation.window:
                raise ConfigError(f"simulation.warmup: expected at least observation.window="
                                  f"{self.observation.window} bars (the first observation's "
                                  f"window), got {self.simulation.warmup}")
            if self.observation.extra_features:
                raise ConfigError(f"observation.extra_features: simulated markets have no extra "
                                  f"columns; expected [], got {list(self.observation.extra_features)}")
            if self.execution.slippage_model == "spread_column":
                raise ConfigError("execution.slippage_model: spread_column needs a spread "
                                  "column, which simulated markets do not have; use fixed with "
                                  "execution.half_spread_bps")


# ---------------------------------------------------------------------------------------------
# Composition and validation.


def compose(env: str = "training", overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Compose ``conf/config.yaml`` with ``+env=<env>`` and Hydra ``overrides``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    modes = available("env")
    if env not in modes:
        raise ConfigError(f"env: unknown mode {env!r}; known modes: {modes}")
    if not isinstance(overrides, (list, tuple)):
        raise TypeError(f"overrides: expected a list of 'key=value' strings, got "
                        f"{type(overrides).__name__} {overrides!r}")
    overrides = [str(o) for o in overrides]
    # Inside a @hydra.main app GlobalHydra is already initialized; set it aside and restore it.
    outer = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=[f"+env={env}", *overrides])
    except (HydraException, ValueError) as exc:  # Hydra raises bare ValueErrors too (group=null)
        raise override_error(exc, overrides) from None
    finally:
        restore_gh_from_backup(outer)


def override_error(exc: Exception, overrides: list[str] | tuple[str, ...]) -> ConfigError:
    """A one-line ConfigError for an override Hydra rejected (``exc``), with a did-you-mean when
    an override names a key or group option that does not exist (``suggest_override``).

    Shared by ``compose`` and the command lines (``optrader.cli_errors``), so a typo gets the
    same message from Python and from ``python -m optrader.train``.
    """
    hydra_text = " ".join(str(exc).split()) or type(exc).__name__
    for o in overrides:
        hint = suggest_override(str(o))
        if hint is not None:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return ConfigError(f"{o}: {hint} (Hydra: {first})")
    return ConfigError(f"bad override in {list(overrides)}: {hydra_text}")


def suggest_override(override: str) -> str | None:
    """``"unknown key 'agent.budget_step'; did you mean 'agent.budget_steps'?"`` when the
    override's key (or a group option, ``execution=realistc``) is not in the schemas (or
    ``conf/GROUP``) and a close name is; None otherwise. ``+key`` appends are left to
    ``load_spec``, ``hydra.*`` keys to Hydra."""
    key, eq, value = override.partition("=")
    if key.startswith("+") or key.startswith("hydra.") or key == "hydra":
        return None
    key = key.lstrip("~")
    parts = key.split(".")
    hints = typing.get_type_hints(EnvSpec)
    if parts[0] not in hints:
        close = difflib.get_close_matches(parts[0], sorted(hints), n=1)
        known = ".".join([*close[:1], *parts[1:]])
        return f"unknown key {key!r}; did you mean {known!r}?" if close else None
    if len(parts) == 1:  # a group option
        options = available(parts[0]) if (config_dir() / parts[0]).is_dir() else []
        if eq and options and value not in options and value != "null":
            close = difflib.get_close_matches(value, options, n=1)
            if close:
                return (f"unknown option {value!r} of group {parts[0]!r}; did you mean "
                        f"'{parts[0]}={close[0]}'? (options: {', '.join(options)})")
        return None
    group = parts[0]
    classes = ([*DATA_SCHEMAS.values()] if group == "data" else
               [*STRATEGY_SCHEMAS.values()] if group == "strategy" else
               [*AGENT_SCHEMAS.values()] if group == "agent" else [hints[group]])
    for depth, part in enumerate(parts[1:], start=1):
        classes = [c for c in classes if dataclasses.is_dataclass(c)]
        if not classes:
            return None  # a free-form mapping (reward.components, ...): load_spec names keys
        fields = {f.name: typing.get_type_hints(c)[f.name]
                  for c in classes for f in dataclasses.fields(c)}
        if part not in fields:
            close = difflib.get_close_matches(part, sorted(fields), n=1)
            if not close:
                return None
            known = ".".join(parts[:depth] + [close[0]])
            return f"unknown key {key!r}; did you mean {known!r}?"
        classes = [fields[part]]
    return None


def load_spec(cfg: DictConfig | dict) -> EnvSpec:
    """Validate a composed config into an EnvSpec (every key checked, nothing defaulted silently
    except keys absent from the YAML that have schema defaults)."""
    if isinstance(cfg, DictConfig):
        raw = OmegaConf.to_container(cfg, resolve=True)
    elif isinstance(cfg, dict):
        raw = dict(cfg)
    else:
        raise TypeError(f"config: expected a DictConfig or dict, got {type(cfg).__name__}")
    if "env" not in raw:
        raise ConfigError("env: no mode selected; compose with env='training' "
                          "(or pass +env=training on the command line)")
    data_raw = raw.get("data") or {}
    if not isinstance(data_raw, dict):
        raise ConfigError(f"data: expected a mapping, got {data_raw!r}")
    source = data_raw.get("source", "synthetic")
    _registered("data.source", "data_source", source)
    data = _build(DATA_SCHEMAS[source], data_raw, "data")
    strategy = build_strategy(raw.get("strategy"), _build)
    agent_raw = raw.get("agent") or {}
    if not isinstance(agent_raw, dict):
        raise ConfigError(f"agent: expected a mapping, got {agent_raw!r}")
    name = agent_raw.get("name", "es")
    if name not in AGENT_SCHEMAS:
        close = difflib.get_close_matches(str(name), sorted(AGENT_SCHEMAS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"agent.name: expected one of {sorted(AGENT_SCHEMAS)}, got "
                          f"{name!r}{hint}")
    agent = _build(AGENT_SCHEMAS[name], agent_raw, "agent")
    spec = _build(EnvSpec, raw, "", prebuilt={"data": data, "strategy": strategy, "agent": agent})
    spec.check()
    return spec


def with_value(spec, group: str, name: str, value: float):
    """The group's config with ``name`` (possibly ``stop_loss.value``) set to ``value``."""
    cfg = getattr(spec, group)
    if "." in name:
        outer, inner = name.split(".", 1)
        return dataclasses.replace(cfg, **{outer: dataclasses.replace(getattr(cfg, outer),
                                                                      **{inner: float(value)})})
    return dataclasses.replace(cfg, **{name: float(value)})


def _build(cls, raw: Any, key: str, prebuilt: dict | None = None):
    if not isinstance(raw, dict):
        raise ConfigError(f"{key or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in names]
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(str(k), sorted(names), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{_join(key, k)}: unknown key; known keys: {sorted(names)}{hint}")
    values = dict(prebuilt or {})
    for f in dataclasses.fields(cls):
        if f.name not in raw or f.name in values:
            continue
        sub = _join(key, f.name)
        t = hints[f.name]
        v = raw[f.name]
        if dataclasses.is_dataclass(t):
            values[f.name] = _build(t, v, sub)
        else:
            values[f.name] = _coerce(sub, v, t)
    return cls(**values)


def _coerce(key: str, v: Any, t: Any) -> Any:
    if t is Any:
        return tuple(v) if isinstance(v, list) else v
    if t is tuple:
        if not isinstance(v, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {v!r}")
        return tuple(_coerce_scalar(key, x) for x in v)
    if t is dict:
        if not isinstance(v, dict):
            raise ConfigError(f"{key}: expected a mapping of name -> value, got {v!r}")
        return {str(k): x for k, x in v.items()}
    return _typed(key, v, t)


def _coerce_scalar(key: str, x: Any) -> Any:
    if isinstance(x, bool) or not isinstance(x, (int, float, str)):
        raise ConfigError(f"{key}: expected numbers or names, got {x!r}")
    return float(x) if isinstance(x, int) else x
