"""The ``monitors:`` section of conveyor.yaml, parsed into `MonitorConfig` values with clear errors.

Example::

    monitors:
      - name: flights-production
        model: flights            # the served model (capture files are per model)
        alias: production         # whose version's reference profile to compare against
        window: 1h                # s/m/h/d
        label: arr_delayed        # optional: what the feedback label means
        task: classification      # or regression: which quality metrics
        drift: {share: 0.3, methods: {distance: psi}, threshold: null}
        quality: {roc_auc: {min: 0.65}, accuracy: {min: 0.7}}
        serving: {p99_ms: 50, error_rate: 0.01}
        min_rows: 100
        sinks: [log, {webhook: {url: "http://127.0.0.1:9000/hook", allow_hosts: ["127.0.0.1"]}}]

Every key is checked; an error names the monitor and the key
(``monitors[0] (flights-production).drift.share: must be in (0, 1]``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import ConfigError
from conveyor.monitoring.alerts import Sink, parse_sinks

__all__ = [
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
    "Bound",
    "DriftConfig",
    "MonitorConfig",
    "ServingConfig",
    "parse_duration",
    "parse_monitors",
]

CLASSIFICATION_METRICS = (
    "accuracy",
    "roc_auc",
    "precision",
    "recall",
    "f1",
    "log_loss",
    "brier",
    "positive_rate",
)
REGRESSION_METRICS = ("mae", "rmse", "r2", "mape", "bias")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_MODES = ("sketch", "exact")


@dataclass(frozen=True)
class Bound:
    """Where a metric must stay: at least ``min`` and/or at most ``max``."""

    min: float | None = None
    max: float | None = None

    def broken_by(self, value: float | None) -> str | None:
        """Which side ``value`` breaks (``"min"`` or ``"max"``), or None."""
        if value is None:
            return None
        if self.min is not None and value < self.min:
            return "min"
        if self.max is not None and value > self.max:
            return "max"
        return None


@dataclass(frozen=True)
class DriftConfig:
    """How inputs are tested for drift, and when drift raises an alert.

    Attributes:
        share: the dataset drifts (rule ``drift_share``) when at least this share of
            the tested columns drifted.
        methods: drift method per column (``ks``, ``wasserstein``, ``psi``…).
        threshold: one threshold for every column (None: each method's default).
        thresholds: threshold per column (over ``threshold``).
        statistics: rule ``column_statistic``: a column's statistic above its max.
        columns: test only these input columns (None: every input the reference has).
        mode: ``sketch`` (from the stored profile) or ``exact`` (needs ``reference``).
        reference: a Parquet file with the reference data, for exact mode.
        predictions: raise ``prediction_drift`` when a model output drifted.
        skew_share: raise ``skew`` when this share of features differ between training
            and all the serving traffic of the version so far (None: never).
        enabled: False turns drift off (quality and serving only).
    """

    share: float = 0.5
    methods: Mapping[str, str] = field(default_factory=dict)
    threshold: float | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)
    statistics: Mapping[str, float] = field(default_factory=dict)
    columns: tuple[str, ...] | None = None
    mode: str = "sketch"
    reference: str | None = None
    predictions: bool = False
    skew_share: float | None = None
    enabled: bool = True

    def column_thresholds(self, names: tuple[str, ...] | list[str]) -> dict[str, float]:
        """The threshold of each of ``names`` that has one set."""
        out = {n: self.threshold for n in names if self.threshold is not None}
        out.update({n: v for n, v in self.thresholds.items() if n in names})
        return {k: float(v) for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class ServingConfig:
    """Service levels read from the captured latency and status (None: not checked)."""

    p50_ms: float | None = None
    p99_ms: float | None = None
    error_rate: float | None = None


@dataclass(frozen=True)
class MonitorConfig:
    """One monitor: a served model, its reference, a window length, rules and sinks.

    Attributes:
        name: the monitor's name (evaluations and alerts are stored under it).
        model: the served model's name (its capture files and its registry entry).
        alias: the alias whose version's reference profile windows are compared with
            when no version answered in the window.
        window_ms: the window length in milliseconds; windows align to the epoch.
        label: what the feedback label means (for people; optional).
        task: ``classification`` or ``regression``.
        drift: drift settings and rules.
        quality: bound per quality metric (rule ``quality``).
        serving: latency and error-rate service levels (rules ``latency``, ``error_rate``).
        min_rows: fewer rows (drift) or labelled rows (quality) than this: no verdict.
        sinks: where alerts go.
        prediction: the output column with the predicted value (``out.<prediction>``).
        score: the output column with the positive class's score (None: the first
            ``probability``/``score`` output, when there is one).
        positive: the positive class (None: 1, True, or the largest label).
        slices: input columns to report quality by (their most frequent values).
        label_delay_ms: labels arrive up to this long after a window closes; until then
            `run_monitors` re-evaluates a window's quality when new labels came in.
        route: the captured route to monitor (``primary``).
    """

    name: str
    model: str
    alias: str = "production"
    window_ms: int = 3_600_000
    label: str | None = None
    task: str = "classification"
    drift: DriftConfig = field(default_factory=DriftConfig)
    quality: Mapping[str, Bound] = field(default_factory=dict)
    serving: ServingConfig = field(default_factory=ServingConfig)
    min_rows: int = 100
    sinks: tuple[Sink, ...] = ()
    prediction: str = "prediction"
    score: str | None = None
    positive: Any = None
    slices: tuple[str, ...] = ()
    label_delay_ms: int = 0
    route: str = "primary"


# --- parsing --------------------------------------------------------------------


def parse_duration(value: Any, where: str) -> int:
    """``"90s"``, ``"15m"``, ``"1h"`` or ``"7d"`` in milliseconds.

    Raises:
        ConfigError: the value is not a positive whole number with one of s, m, h, d.
    """
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None or int(match.group(1)) <= 0:
        raise ConfigError(f"{where}: must be a duration such as 30s, 15m, 1h or 1d, got {value!r}")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{where}: must be a mapping of names to values, got {value!r}")
    return dict(value)


def _known(data: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]}: unknown key; expected one of {', '.join(allowed)}"
        )


def _number(value: Any, where: str, *, low: float = 0.0, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ConfigError(f"{where}: must be a number, got {value!r}")
    if value < low or (high is not None and value > high):
        span = f"[{low:g}, {high:g}]" if high is not None else f"at least {low:g}"
        raise ConfigError(f"{where}: must be {span}, got {value!r}")
    return float(value)


def _optional_number(value: Any, where: str, **limits: float) -> float | None:
    return None if value is None else _number(value, where, **limits)


def _text(value: Any, where: str, *, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be a non-empty string, got {value!r}")
    if pattern is not None and not pattern.match(value):
        raise ConfigError(
            f"{where}: must be 1-128 letters, digits, '.', '_' or '-' "
            f"(starting with a letter or digit), got {value!r}"
        )
    return value


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: must be a list of column names, got {value!r}")
    return tuple(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: must be true or false, got {value!r}")
    return value


_DRIFT_KEYS = (
    "share",
    "methods",
    "threshold",
    "thresholds",
    "statistics",
    "columns",
    "mode",
    "reference",
    "predictions",
    "skew_share",
    "enabled",
)


def _parse_drift(value: Any, where: str) -> DriftConfig:
    from conveyor.monitoring.drift import METHODS

    if value is False:
        return DriftConfig(enabled=False)
    data = _mapping(value, where)
    _known(data, _DRIFT_KEYS, where)
    methods = _mapping(data.get("methods"), f"{where}.methods")
    for column, method in methods.items():
        if method not in METHODS:
            raise ConfigError(
                f"{where}.methods.{column}: unknown drift method {method!r}; "
                f"use one of {', '.join(METHODS)}"
            )
    thresholds = {
        k: _number(v, f"{where}.thresholds.{k}")
        for k, v in _mapping(data.get("thresholds"), f"{where}.thresholds").items()
    }
    statistics = {}
    for column, rule in _mapping(data.get("statistics"), f"{where}.statistics").items():
        spot = f"{where}.statistics.{column}"
        bound = _mapping(rule, spot)
        _known(bound, ("max",), spot)
        if "max" not in bound:
            raise ConfigError(f"{spot}: needs max (alert when the statistic goes above it)")
        statistics[column] = _number(bound["max"], f"{spot}.max")
    mode = data.get("mode", "sketch")
    if mode not in _MODES:
        raise ConfigError(f"{where}.mode: must be sketch or exact, got {mode!r}")
    reference = data.get("reference")
    if reference is not None:
        reference = _text(reference, f"{where}.reference")
    if mode == "exact" and reference is None:
        raise ConfigError(
            f"{where}.reference: exact mode needs the reference data (a Parquet path)"
        )
    columns = data.get("columns")
    return DriftConfig(
        share=_number(data.get("share", 0.5), f"{where}.share", low=1e-9, high=1.0),
        methods=methods,
        threshold=_optional_number(data.get("threshold"), f"{where}.threshold"),
        thresholds=thresholds,
        statistics=statistics,
        columns=None if columns is None else _names(columns, f"{where}.columns"),
        mode=mode,
        reference=reference,
        predictions=_bool(data.get("predictions", False), f"{where}.predictions"),
        skew_share=_optional_number(
            data.get("skew_share"), f"{where}.skew_share", low=1e-9, high=1.0
        ),
        enabled=_bool(data.get("enabled", True), f"{where}.enabled"),
    )


def _parse_quality(value: Any, task: str, where: str) -> dict[str, Bound]:
    allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    out = {}
    for metric, rule in _mapping(value, where).items():
        spot = f"{where}.{metric}"
        if metric not in allowed:
            raise ConfigError(f"{spot}: not a {task} metric; use one of {', '.join(allowed)}")
        bound = _mapping(rule, spot)
        _known(bound, ("min", "max"), spot)
        if not bound:
            raise ConfigError(f"{spot}: needs min and/or max")
        out[metric] = Bound(
            _optional_number(bound.get("min"), f"{spot}.min", low=-1e300),
            _optional_number(bound.get("max"), f"{spot}.max", low=-1e300),
        )
    return out


def _parse_serving(value: Any, where: str) -> ServingConfig:
    data = _mapping(value, where)
    _known(data, ("p50_ms", "p99_ms", "error_rate"), where)
    return ServingConfig(
        p50_ms=_optional_number(data.get("p50_ms"), f"{where}.p50_ms"),
        p99_ms=_optional_number(data.get("p99_ms"), f"{where}.p99_ms"),
        error_rate=_optional_number(data.get("error_rate"), f"{where}.error_rate", high=1.0),
    )


_MONITOR_KEYS = (
    "name",
    "model",
    "alias",
    "window",
    "label",
    "task",
    "drift",
    "quality",
    "serving",
    "min_rows",
    "sinks",
    "prediction",
    "score",
    "positive",
    "slices",
    "label_delay",
    "route",
)


def _min_rows(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: must be a whole number of at least 1, got {value!r}")
    return value


def _parse_one(item: Any, index: int) -> MonitorConfig:
    where = f"monitors[{index}]"
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: must be a mapping with at least name and model, got {item!r}")
    data = dict(item)
    if "name" not in data:
        raise ConfigError(f"{where}.name: is required")
    name = _text(data["name"], f"{where}.name", pattern=_NAME)
    where = f"{where} ({name})"
    _known(data, _MONITOR_KEYS, where)
    if "model" not in data:
        raise ConfigError(f"{where}.model: is required (the served model's name)")
    task = data.get("task", "classification")
    if task not in ("classification", "regression"):
        raise ConfigError(f"{where}.task: must be classification or regression, got {task!r}")
    label = data.get("label")
    score = data.get("score")
    route = data.get("route", "primary")
    if route not in ("primary", "canary", "shadow"):
        raise ConfigError(f"{where}.route: must be primary, canary or shadow, got {route!r}")
    delay = data.get("label_delay")
    return MonitorConfig(
        name=name,
        model=_text(data["model"], f"{where}.model", pattern=_NAME),
        alias=_text(data.get("alias", "production"), f"{where}.alias"),
        window_ms=parse_duration(data.get("window", "1h"), f"{where}.window"),
        label=None if label is None else _text(label, f"{where}.label"),
        task=task,
        drift=_parse_drift(data.get("drift"), f"{where}.drift"),
        quality=_parse_quality(data.get("quality"), task, f"{where}.quality"),
        serving=_parse_serving(data.get("serving"), f"{where}.serving"),
        min_rows=_min_rows(data.get("min_rows", 100), f"{where}.min_rows"),
        sinks=parse_sinks(data.get("sinks", ["log"]), f"{where}.sinks"),
        prediction=_text(data.get("prediction", "prediction"), f"{where}.prediction"),
        score=None if score is None else _text(score, f"{where}.score"),
        positive=data.get("positive"),
        slices=_names(data.get("slices", []), f"{where}.slices"),
        label_delay_ms=0 if delay is None else parse_duration(delay, f"{where}.label_delay"),
        route=route,
    )


def parse_monitors(section: Any) -> list[MonitorConfig]:
    """The monitors of conveyor.yaml's ``monitors:`` list (None or missing: none).

    Raises:
        ConfigError: a key is unknown, missing or breaks its rule (the message names
            the monitor and the key), or two monitors share a name.
    """
    if section is None:
        return []
    if not isinstance(section, list):
        raise ConfigError(f"monitors: must be a list of monitors, got {type(section).__name__}")
    monitors = [_parse_one(item, i) for i, item in enumerate(section)]
    seen: set[str] = set()
    for i, monitor in enumerate(monitors):
        if monitor.name in seen:
            raise ConfigError(f"monitors[{i}].name: {monitor.name!r} is used by another monitor")
        seen.add(monitor.name)
    return monitors
