"""The narrow interface for the records of the closed loop (monitoring, automation, delivery).

Monitors store their evaluations and alerts; the agent stores trigger events,
holds leases and keeps watermarks; delivery stores check results and the
traffic policy (canary, shadow) a server follows. One SQL implementation
(`conveyor.stores.metadata.sql.loop.SqlLoopStore`) serves SQLite and PostgreSQL.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from conveyor.core.loop import (
    Alert,
    CheckRecord,
    Evaluation,
    Lease,
    NewAlert,
    Traffic,
    TriggerEvent,
)

__all__ = ["LoopStore"]


class LoopStore(ABC):
    """Evaluations, alerts, trigger events, leases, state, checks and traffic policies."""

    # -- monitor evaluations -------------------------------------------------
    @abstractmethod
    def add_evaluation(self, evaluation: Evaluation) -> Evaluation:
        """Store an evaluation; returns it with its id and creation time."""

    @abstractmethod
    def list_evaluations(
        self, monitor: str | None = None, model: str | None = None, limit: int = 1000
    ) -> list[Evaluation]:
        """Evaluations, oldest window first (the newest ``limit``)."""

    # -- alerts ----------------------------------------------------------------
    @abstractmethod
    def add_alert(self, alert: NewAlert) -> Alert:
        """Store an alert in state ``open``."""

    @abstractmethod
    def list_alerts(
        self,
        *,
        since_id: int = 0,
        source: str | None = None,
        model: str | None = None,
        state: str | None = None,
        limit: int = 1000,
    ) -> list[Alert]:
        """Alerts with an id above ``since_id``, oldest first."""

    @abstractmethod
    def set_alert_state(self, alert_id: int, state: str) -> Alert:
        """Acknowledge or resolve an alert."""

    # -- trigger events --------------------------------------------------------
    @abstractmethod
    def add_trigger_event(
        self,
        trigger: str,
        pipeline: str,
        kind: str,
        reason: str,
        status: str = "pending",
        detail: dict[str, Any] | None = None,
    ) -> TriggerEvent:
        """Record that a trigger fired (or was considered and skipped)."""

    @abstractmethod
    def update_trigger_event(
        self,
        event_id: int,
        *,
        status: str | None = None,
        run_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> TriggerEvent:
        """Move an event on (``detail`` is merged into the stored one)."""

    @abstractmethod
    def list_trigger_events(
        self,
        trigger: str | None = None,
        status: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> list[TriggerEvent]:
        """Trigger events, oldest first (the newest ``limit``)."""

    # -- leases and state ------------------------------------------------------
    @abstractmethod
    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take (or renew) the lease ``name`` for ``ttl_s`` if it is free, expired or ours."""

    @abstractmethod
    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease back if ``holder`` holds it."""

    @abstractmethod
    def get_lease(self, name: str) -> Lease | None:
        """The lease ``name`` as stored (it may have expired), or None."""

    @abstractmethod
    def get_state(self, key: str) -> str | None:
        """A small named value (a watermark, a cursor), or None."""

    @abstractmethod
    def set_state(self, key: str, value: str) -> None:
        """Store a small named value."""

    # -- delivery --------------------------------------------------------------
    @abstractmethod
    def add_checks(self, checks: Sequence[CheckRecord]) -> list[CheckRecord]:
        """Store the results of a deploy attempt's checks."""

    @abstractmethod
    def list_checks(
        self, model: str, version: int | None = None, attempt: str | None = None
    ) -> list[CheckRecord]:
        """Check results of a model (one version, one attempt), oldest first."""

    @abstractmethod
    def set_traffic(self, traffic: Traffic) -> Traffic:
        """Store the traffic policy of a served alias (replacing the previous one)."""

    @abstractmethod
    def get_traffic(self, model: str, alias: str) -> Traffic | None:
        """The traffic policy of a served alias, or None when all traffic goes to the alias."""

    @abstractmethod
    def referenced_digests(self) -> set[str]:
        """Every artifact sha256 the loop's records point at (reports, stored profiles)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
