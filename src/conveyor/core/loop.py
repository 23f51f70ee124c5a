"""The records of the closed loop: evaluations, alerts, triggers, leases, checks, traffic.

Monitor evaluations and their alerts, trigger events, leases, delivery check
results and the traffic policies (canary, shadow) a server follows.

Pure values, no I/O. Times are epoch milliseconds. Free-form details travel as
JSON-able dicts (``payload``, ``evidence``, ``detail``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ALERT_STATES",
    "SEVERITIES",
    "TRIGGER_STATUSES",
    "Alert",
    "CheckRecord",
    "Evaluation",
    "Lease",
    "NewAlert",
    "Traffic",
    "TriggerEvent",
]

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
ALERT_STATES: tuple[str, ...] = ("open", "acknowledged", "resolved")
# pending: recorded, not yet acted on; running: a run was started; succeeded/failed:
# its run ended; skipped: no run was started (``detail`` says why: cooldown, limit…).
TRIGGER_STATUSES: tuple[str, ...] = ("pending", "running", "succeeded", "failed", "skipped")


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One evaluation of a monitor over one window of captured traffic."""

    monitor: str
    model: str
    window_start: int
    window_end: int
    status: str  # "ok", "drift", "degraded", "error", "empty"
    drift_share: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    report_sha256: str | None = None
    created_at: int = 0
    id: int = 0


@dataclass(frozen=True, slots=True)
class NewAlert:
    """An alert as a rule raises it."""

    source: str  # the monitor (or agent, or canary) that raised it
    rule: str
    severity: str
    message: str
    model: str | None = None
    version: int | None = None
    evaluation_id: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Alert:
    """A stored alert."""

    id: int
    source: str
    rule: str
    severity: str
    message: str
    model: str | None
    version: int | None
    evaluation_id: int | None
    payload: dict[str, Any]
    state: str
    created_at: int


@dataclass(frozen=True, slots=True)
class TriggerEvent:
    """One firing (or considered firing) of a trigger, and the run it started, if any."""

    id: int
    trigger: str
    pipeline: str
    kind: str  # "schedule", "data", "alert", "manual"
    reason: str
    status: str
    run_id: str | None
    detail: dict[str, Any]
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds a named lease, and until when."""

    name: str
    holder: str
    expires_at: int
    acquired_at: int


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """The stored result of one delivery check of one model version."""

    model: str
    version: int
    stage: str
    name: str
    passed: bool
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)
    attempt: str = ""  # groups the checks of one deploy attempt
    created_at: int = 0
    id: int = 0


@dataclass(frozen=True, slots=True)
class Traffic:
    """How requests to a served alias are split: a canary share and/or a shadow copy."""

    model: str
    alias: str
    canary_version: int | None = None
    canary_share: float = 0.0
    shadow_version: int | None = None
    sticky_key: str | None = None  # a request header whose value pins a client to one side
    updated_at: int = 0
    actor: str = ""
    reason: str = ""
