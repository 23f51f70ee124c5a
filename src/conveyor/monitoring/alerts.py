"""Alert rules over one evaluated window, and the sinks alerts go to (log, webhook, retrain).

Rules (each alert's ``rule``):

================== ========= ==========================================================
rule               severity  raised when
================== ========= ==========================================================
drift_share        warning   the share of drifted input columns ≥ ``drift.share``
column_statistic   warning   a column's drift statistic > ``drift.statistics.<col>.max``
prediction_drift   warning   a model output drifted (``drift.predictions: true``)
skew               warning   training vs serving share ≥ ``drift.skew_share``
quality            critical  a quality metric outside ``quality.<metric>`` (min/max)
latency            warning   request latency p50/p99 above ``serving.p50_ms``/``p99_ms``
error_rate         critical  share of 5xx answers above ``serving.error_rate``
capture_unreadable critical  the window's capture (or feedback) files cannot be read
reference_missing  critical  the version has no reference profile to compare with
sink_failed        warning   a sink could not deliver an alert (sent to the log only)
================== ========= ==========================================================

Sinks: ``log`` (the ``conveyor.monitoring.alerts`` logger and one rich line on
stderr); ``webhook`` (a JSON POST, only to hosts on its ``allow_hosts`` list,
checked when the config is parsed; redirects are not followed; short timeout; a
failure is recorded as a ``sink_failed`` alert and never stops the evaluation);
``retrain`` (adds ``payload["retrain"] = {"pipeline": ...}`` to the stored alert
of the rules it listens to, so the automation agent, which reads
``list_alerts(since_id=...)``, starts that pipeline).
"""

from __future__ import annotations

import json
import logging
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from conveyor.core.loop import Alert, NewAlert
from conveyor.errors import ConfigError

if TYPE_CHECKING:
    from conveyor.monitoring.config import MonitorConfig
    from conveyor.monitoring.results import DriftReport
    from conveyor.stores.metadata.loop import LoopStore

__all__ = [
    "RETRAIN_RULES",
    "RULES",
    "Findings",
    "LogSink",
    "RetrainSink",
    "Sink",
    "SinkError",
    "WebhookSink",
    "apply_rules",
    "dispatch",
    "parse_sinks",
]

log = logging.getLogger(__name__)

RULES = (
    "drift_share",
    "column_statistic",
    "prediction_drift",
    "skew",
    "quality",
    "latency",
    "error_rate",
    "capture_unreadable",
    "reference_missing",
    "sink_failed",
)
# Retraining answers a change in the data or a drop in quality, not a slow server.
RETRAIN_RULES = ("drift_share", "column_statistic", "prediction_drift", "skew", "quality")
MAX_WEBHOOK_TIMEOUT_S = 30.0


class SinkError(Exception):
    """A sink could not deliver an alert (recorded as a ``sink_failed`` alert)."""


# --- sinks -------------------------------------------------------------------------


class Sink(ABC):
    """Where alerts go: ``prepare`` runs before an alert is stored, ``send`` after."""

    kind: str = ""

    def prepare(self, alert: NewAlert) -> NewAlert:
        """The alert as it should be stored (most sinks leave it as is)."""
        return alert

    @abstractmethod
    def send(self, alert: Alert) -> None:
        """Deliver a stored alert.

        Raises:
            SinkError: it could not be delivered.
        """


@dataclass(frozen=True)
class LogSink(Sink):
    """Alerts as log records (warning or error) and one line on stderr."""

    kind: str = "log"

    def send(self, alert: Alert) -> None:
        """Log the alert and print one line."""
        level = logging.ERROR if alert.severity == "critical" else logging.WARNING
        log.log(level, "alert %s [%s] %s: %s", alert.id, alert.rule, alert.source, alert.message)
        from rich.console import Console
        from rich.markup import escape

        color = {"critical": "bold red", "warning": "yellow"}.get(alert.severity, "cyan")
        Console(stderr=True, soft_wrap=True).print(
            f"[{color}]alert #{alert.id} {alert.severity}[/] {escape(alert.source)} "
            f"[{escape(alert.rule)}] {escape(alert.message)}",
            highlight=False,
        )


@dataclass(frozen=True)
class WebhookSink(Sink):
    """A JSON POST of each alert to ``url``, whose host must be in ``allow_hosts``."""

    url: str = ""
    allow_hosts: tuple[str, ...] = ()
    timeout_s: float = 2.0
    kind: str = "webhook"

    def send(self, alert: Alert) -> None:
        """POST ``{"alert": {...}}``; a redirect, an error status or no answer fail it."""
        import urllib.error
        import urllib.request

        _check_host(self.url, self.allow_hosts, "webhook.url")  # the allowlist, again
        body = json.dumps({"alert": alert_dict(alert)}, default=str, allow_nan=False)
        request = urllib.request.Request(  # noqa: S310  (http(s) only, host on the allowlist)
            self.url,
            data=body.encode(),
            headers={"content-type": "application/json", "user-agent": "conveyor-monitor"},
            method="POST",
        )
        # No proxies (the allowlist is about where bytes go) and no redirects.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
        try:
            with opener.open(request, timeout=self.timeout_s) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:
                target = exc.headers.get("location", "?")
                raise SinkError(f"webhook {self.url}: redirect to {target} not followed") from None
            raise SinkError(f"webhook {self.url}: answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SinkError(f"webhook {self.url}: {type(exc).__name__}: {reason}") from None
        if status >= 300:
            raise SinkError(f"webhook {self.url}: answered HTTP {status}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse every redirect: the 3xx answer surfaces as an HTTPError."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass(frozen=True)
class RetrainSink(Sink):
    """Marks alerts of ``rules`` for retraining: ``payload["retrain"] = {"pipeline": ...}``."""

    pipeline: str = ""
    rules: tuple[str, ...] = RETRAIN_RULES
    kind: str = "retrain"

    def prepare(self, alert: NewAlert) -> NewAlert:
        """Add the retrain request to the payload of the rules it listens to."""
        if alert.rule not in self.rules:
            return alert
        return replace(alert, payload={**alert.payload, "retrain": {"pipeline": self.pipeline}})

    def send(self, alert: Alert) -> None:
        """Nothing to send: the agent reads the stored alert."""


def alert_dict(alert: Alert) -> dict[str, Any]:
    """A stored alert as plain data (for webhooks and JSON output)."""
    return {
        "id": alert.id,
        "source": alert.source,
        "rule": alert.rule,
        "severity": alert.severity,
        "message": alert.message,
        "model": alert.model,
        "version": alert.version,
        "evaluation_id": alert.evaluation_id,
        "payload": alert.payload,
        "state": alert.state,
        "created_at": alert.created_at,
    }


def _check_host(url: str, allow_hosts: Sequence[str], where: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: must be an http:// or https:// URL with a host, got {url!r}")
    if parts.hostname.lower() not in {h.lower() for h in allow_hosts}:
        raise ConfigError(
            f"{where}: host {parts.hostname!r} is not in allow_hosts "
            f"({', '.join(allow_hosts) or 'empty'}); webhooks go only to allowed hosts"
        )


def _parse_webhook(value: Any, where: str) -> WebhookSink:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be a mapping with url and allow_hosts, got {value!r}")
    unknown = sorted(set(value) - {"url", "allow_hosts", "timeout_s"})
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]}: unknown key; expected url, allow_hosts, timeout_s"
        )
    url = value.get("url")
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{where}.url: is required (an http:// or https:// URL)")
    hosts = value.get("allow_hosts")
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and h for h in hosts):
        raise ConfigError(
            f"{where}.allow_hosts: must be a non-empty list of host names the webhook may reach"
        )
    _check_host(url, hosts, f"{where}.url")
    timeout = value.get("timeout_s", 2.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ConfigError(f"{where}.timeout_s: must be a number of seconds, got {timeout!r}")
    if not 0 < timeout <= MAX_WEBHOOK_TIMEOUT_S:
        raise ConfigError(f"{where}.timeout_s: must be in (0, {MAX_WEBHOOK_TIMEOUT_S:g}]")
    return WebhookSink(url=url, allow_hosts=tuple(hosts), timeout_s=float(timeout))


def _parse_retrain(value: Any, where: str) -> RetrainSink:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be a mapping with pipeline, got {value!r}")
    unknown = sorted(set(value) - {"pipeline", "rules"})
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; expected pipeline, rules")
    pipeline = value.get("pipeline")
    if not isinstance(pipeline, str) or not pipeline.strip():
        raise ConfigError(f"{where}.pipeline: is required (the pipeline to retrain with)")
    rules = value.get("rules", list(RETRAIN_RULES))
    if not isinstance(rules, list) or not rules:
        raise ConfigError(f"{where}.rules: must be a non-empty list of rule names")
    for rule in rules:
        if rule not in RULES:
            raise ConfigError(f"{where}.rules: unknown rule {rule!r}; use {', '.join(RULES)}")
    return RetrainSink(pipeline=pipeline, rules=tuple(rules))


_SINKS = {"webhook": _parse_webhook, "retrain": _parse_retrain}


def parse_sinks(value: Any, where: str = "sinks") -> tuple[Sink, ...]:
    """``[log, {webhook: {...}}, {retrain: {...}}]`` as sinks.

    Raises:
        ConfigError: an unknown sink, a missing key, or a webhook host off its allowlist.
    """
    if not isinstance(value, list):
        raise ConfigError(f"{where}: must be a list of sinks (log, webhook, retrain)")
    sinks: list[Sink] = []
    for i, item in enumerate(value):
        spot = f"{where}[{i}]"
        if item == "log":
            sinks.append(LogSink())
        elif isinstance(item, Mapping) and len(item) == 1 and next(iter(item)) in _SINKS:
            kind = next(iter(item))
            sinks.append(_SINKS[kind](item[kind], f"{spot}.{kind}"))
        else:
            raise ConfigError(
                f"{spot}: unknown sink {item!r}; use log, {{webhook: {{url, allow_hosts}}}} "
                "or {retrain: {pipeline}}"
            )
    return tuple(sinks)


# --- rules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Findings:
    """What an evaluation found in one window, as the rules read it."""

    monitor: str
    model: str
    window_start: int
    window_end: int
    version: int | None = None
    rows: int = 0
    drift: DriftReport | None = None
    predictions: DriftReport | None = None
    skew: DriftReport | None = None
    quality: Mapping[str, float | None] = field(default_factory=dict)
    labelled: int = 0
    serving: Mapping[str, float | None] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)  # rule -> what went wrong


def apply_rules(monitor: MonitorConfig, found: Findings) -> list[NewAlert]:
    """The alerts the monitor's rules raise on ``found`` (not yet stored)."""
    raised: list[tuple[str, str, str, dict[str, Any]]] = []
    for rule, message in found.errors.items():
        raised.append((rule, "critical", message, {}))
    raised += _drift_alerts(monitor, found)
    raised += _quality_alerts(monitor, found)
    raised += _serving_alerts(monitor, found)
    window = {"window_start": found.window_start, "window_end": found.window_end}
    return [
        NewAlert(
            source=found.monitor,
            rule=rule,
            severity=severity,
            message=message,
            model=found.model,
            version=found.version,
            payload={**window, **detail},
        )
        for rule, severity, message, detail in raised
    ]


def _drift_alerts(
    monitor: MonitorConfig, found: Findings
) -> list[tuple[str, str, str, dict[str, Any]]]:
    out: list[tuple[str, str, str, dict[str, Any]]] = []
    report, rules = found.drift, monitor.drift
    if report is not None and report.share_drifted is not None:
        share = report.share_drifted
        if share >= rules.share:
            cols = report.drifted_columns
            msg = (
                f"{share:.0%} of input columns drifted (threshold {rules.share:.0%}): "
                f"{', '.join(cols[:8])}{' …' if len(cols) > 8 else ''}"
            )
            out.append(("drift_share", "warning", msg, {"share": share, "columns": cols}))
        for column, limit in rules.statistics.items():
            result = report.columns.get(column)
            if result is not None and result.statistic is not None and result.statistic > limit:
                msg = f"{column}: {result.method} {result.statistic:.4g} above {limit:g}"
                detail = {"column": column, "statistic": result.statistic, "max": limit}
                out.append(("column_statistic", "warning", msg, detail))
    if rules.predictions and found.predictions is not None:
        cols = found.predictions.drifted_columns
        if cols:
            msg = f"the model's outputs drifted: {', '.join(cols)}"
            out.append(("prediction_drift", "warning", msg, {"columns": cols}))
    skew, most = found.skew, rules.skew_share
    skew_share = None if skew is None else skew.share_drifted
    if skew is not None and most is not None and skew_share is not None and skew_share >= most:
        cols = skew.drifted_columns
        msg = f"training-serving skew in {skew_share:.0%} of features: {', '.join(cols[:8])}"
        out.append(("skew", "warning", msg, {"share": skew_share, "columns": cols}))
    return out


def _quality_alerts(
    monitor: MonitorConfig, found: Findings
) -> list[tuple[str, str, str, dict[str, Any]]]:
    if found.labelled < monitor.min_rows:
        return []  # too few labels for a verdict
    out: list[tuple[str, str, str, dict[str, Any]]] = []
    for metric, bound in monitor.quality.items():
        value = found.quality.get(metric)
        side = bound.broken_by(value)
        if side is None or value is None:
            continue
        limit = bound.min if side == "min" else bound.max
        word = "below" if side == "min" else "above"
        msg = f"{metric} {value:.4g} {word} {limit:g} on {found.labelled} labelled rows"
        detail = {"metric": metric, "value": value, side: limit, "labelled": found.labelled}
        out.append(("quality", "critical", msg, detail))
    return out


def _serving_alerts(
    monitor: MonitorConfig, found: Findings
) -> list[tuple[str, str, str, dict[str, Any]]]:
    out: list[tuple[str, str, str, dict[str, Any]]] = []
    slo = monitor.serving
    for key, limit in (("p50_ms", slo.p50_ms), ("p99_ms", slo.p99_ms)):
        value = found.serving.get(f"latency_{key}")
        if limit is not None and value is not None and value > limit:
            msg = f"latency {key[:3]} {value:.1f} ms above {limit:g} ms"
            out.append(("latency", "warning", msg, {"stat": key, "value": value, "max": limit}))
    rate = found.serving.get("error_rate")
    if slo.error_rate is not None and rate is not None and rate > slo.error_rate:
        msg = f"error rate {rate:.2%} above {slo.error_rate:.2%}"
        out.append(("error_rate", "critical", msg, {"value": rate, "max": slo.error_rate}))
    return out


# --- storing and sending -----------------------------------------------------------


def dispatch(
    alerts: Sequence[NewAlert], sinks: Sequence[Sink], loop_store: LoopStore
) -> tuple[list[Alert], list[str]]:
    """Store each alert (as the sinks prepare it) and send it to every sink.

    A sink that fails is recorded as a ``sink_failed`` alert (sent to log sinks only)
    and reported in the returned failures; it never raises.

    Returns:
        The stored alerts (``sink_failed`` ones included) and the failure messages.
    """
    stored: list[Alert] = []
    failures: list[str] = []
    for new in alerts:
        for sink in sinks:
            new = sink.prepare(new)
        alert = loop_store.add_alert(new)
        stored.append(alert)
        for sink in sinks:
            try:
                sink.send(alert)
            except SinkError as exc:
                failures.append(str(exc))
                stored.append(_sink_failed(alert, str(exc), sinks, loop_store))
    return stored, failures


def _sink_failed(alert: Alert, message: str, sinks: Sequence[Sink], store: LoopStore) -> Alert:
    log.warning("alert %s not delivered: %s", alert.id, message)
    failed = store.add_alert(
        NewAlert(
            source=alert.source,
            rule="sink_failed",
            severity="warning",
            message=f"alert #{alert.id} ({alert.rule}) not delivered: {message}",
            model=alert.model,
            version=alert.version,
            evaluation_id=alert.evaluation_id,
            payload={"alert_id": alert.id, "error": message},
        )
    )
    for sink in sinks:
        if isinstance(sink, LogSink):
            sink.send(failed)
    return failed
