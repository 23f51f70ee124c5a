"""`SqlLoopStore`: the closed loop's records on SQLite or PostgreSQL through SQLAlchemy Core.

A lease is one row taken with an atomic upsert that only overwrites an expired
lease or the caller's own, so of two agents racing for a trigger exactly one
holds it, on either dialect, across processes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, delete, insert, select, update

from conveyor.core.loop import (
    ALERT_STATES,
    SEVERITIES,
    TRIGGER_STATUSES,
    Alert,
    CheckRecord,
    Evaluation,
    Lease,
    NewAlert,
    Traffic,
    TriggerEvent,
)
from conveyor.errors import NotFoundError, ValidationError
from conveyor.stores.metadata.loop import LoopStore
from conveyor.stores.metadata.sql import schema as t
from conveyor.stores.metadata.sql.engine import SqlEngines, create_engines, upsert
from conveyor.stores.metadata.sql.migrate import ensure_schema

__all__ = ["SqlLoopStore"]

T = TypeVar("T")
_SHA256 = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def _loads(text: str | None) -> dict[str, Any]:
    return dict(json.loads(text)) if text else {}


def _insert(conn: Connection, table: Any, row: dict[str, Any]) -> int:
    key = conn.execute(insert(table).values(**row)).inserted_primary_key
    assert key is not None
    return int(key[0])


def _one_of(field: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValidationError(field, f"must be one of {', '.join(allowed)}, got {value!r}")


def _nonempty(field: str, value: str, limit: int) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, f"must be a non-empty string, got {value!r}")
    if len(value) > limit:
        raise ValidationError(field, f"must be at most {limit} characters, got {len(value)}")


class SqlLoopStore(LoopStore):
    """The loop's records in the metadata database (the same one as runs and models).

    Args:
        url: ``sqlite:///path/conveyor.db``, ``sqlite://`` (in memory) or ``postgresql://…``.
        migrate: bring the schema to the current revision on open (the default).
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self._db: SqlEngines = create_engines(url)
        self.migrated = ensure_schema(self._db) if migrate else False

    def _write(self, fn: Callable[[Connection], T]) -> T:
        def attempt() -> T:
            with self._db.write() as conn:
                return fn(conn)

        return self._db.retrying(attempt)

    # -- monitor evaluations -------------------------------------------------
    def add_evaluation(self, evaluation: Evaluation) -> Evaluation:
        """Store an evaluation; returns it with its id and creation time."""
        _nonempty("monitor", evaluation.monitor, 128)
        _nonempty("model", evaluation.model, 128)
        if evaluation.window_end < evaluation.window_start:
            raise ValidationError(
                "window_end",
                f"must not be before window_start "
                f"({evaluation.window_end} < {evaluation.window_start})",
            )
        now = _now_ms()
        row = {
            "monitor": evaluation.monitor,
            "model": evaluation.model,
            "window_start": evaluation.window_start,
            "window_end": evaluation.window_end,
            "status": evaluation.status,
            "drift_share": evaluation.drift_share,
            "metrics": _dumps(evaluation.metrics),
            "report_sha256": evaluation.report_sha256,
            "created_at": now,
        }
        new_id = self._write(lambda conn: _insert(conn, t.monitor_evaluations, row))
        return _evaluation({**row, "id": new_id})

    def list_evaluations(
        self, monitor: str | None = None, model: str | None = None, limit: int = 1000
    ) -> list[Evaluation]:
        """Evaluations, oldest window first (the newest ``limit``)."""
        e = t.monitor_evaluations
        query = select(e).order_by(e.c.window_end.desc(), e.c.id.desc()).limit(limit)
        if monitor is not None:
            query = query.where(e.c.monitor == monitor)
        if model is not None:
            query = query.where(e.c.model == model)
        with self._db.read() as conn:
            rows = conn.execute(query).mappings().all()
        return [_evaluation(dict(r)) for r in reversed(rows)]

    # -- alerts ----------------------------------------------------------------
    def add_alert(self, alert: NewAlert) -> Alert:
        """Store an alert in state ``open``."""
        _nonempty("source", alert.source, 128)
        _nonempty("rule", alert.rule, 256)
        _nonempty("message", alert.message, 100_000)
        _one_of("severity", alert.severity, SEVERITIES)
        row = {
            "source": alert.source,
            "rule": alert.rule,
            "severity": alert.severity,
            "message": alert.message,
            "model": alert.model,
            "version": alert.version,
            "evaluation_id": alert.evaluation_id,
            "payload": _dumps(alert.payload),
            "state": "open",
            "created_at": _now_ms(),
        }
        new_id = self._write(lambda conn: _insert(conn, t.alerts, row))
        return _alert({**row, "id": new_id})

    def list_alerts(
        self,
        *,
        since_id: int = 0,
        source: str | None = None,
        model: str | None = None,
        state: str | None = None,
        limit: int = 1000,
    ) -> list[Alert]:
        """Alerts with an id above ``since_id``, oldest first (the newest ``limit``)."""
        a = t.alerts
        query = select(a).where(a.c.id > since_id).order_by(a.c.id.desc()).limit(limit)
        if source is not None:
            query = query.where(a.c.source == source)
        if model is not None:
            query = query.where(a.c.model == model)
        if state is not None:
            _one_of("state", state, ALERT_STATES)
            query = query.where(a.c.state == state)
        with self._db.read() as conn:
            rows = conn.execute(query).mappings().all()
        return [_alert(dict(r)) for r in reversed(rows)]

    def set_alert_state(self, alert_id: int, state: str) -> Alert:
        """Acknowledge or resolve an alert."""
        _one_of("state", state, ALERT_STATES)

        def apply(conn: Connection) -> dict[str, Any]:
            conn.execute(update(t.alerts).where(t.alerts.c.id == alert_id).values(state=state))
            row = conn.execute(select(t.alerts).where(t.alerts.c.id == alert_id)).mappings().first()
            if row is None:
                raise NotFoundError(f"alert {alert_id} does not exist")
            return dict(row)

        return _alert(self._write(apply))

    # -- trigger events --------------------------------------------------------
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
        _nonempty("trigger", trigger, 128)
        _nonempty("pipeline", pipeline, 128)
        _nonempty("kind", kind, 16)
        _one_of("status", status, TRIGGER_STATUSES)
        now = _now_ms()
        row = {
            "trigger": trigger,
            "pipeline": pipeline,
            "kind": kind,
            "reason": reason,
            "status": status,
            "run_id": None,
            "detail": _dumps(detail or {}),
            "created_at": now,
            "updated_at": now,
        }
        new_id = self._write(lambda conn: _insert(conn, t.trigger_events, row))
        return _trigger_event({**row, "id": new_id})

    def update_trigger_event(
        self,
        event_id: int,
        *,
        status: str | None = None,
        run_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> TriggerEvent:
        """Move an event on (``detail`` is merged into the stored one)."""
        if status is not None:
            _one_of("status", status, TRIGGER_STATUSES)
        e = t.trigger_events

        def apply(conn: Connection) -> dict[str, Any]:
            row = conn.execute(select(e).where(e.c.id == event_id)).mappings().first()
            if row is None:
                raise NotFoundError(f"trigger event {event_id} does not exist")
            values: dict[str, Any] = {"updated_at": _now_ms()}
            if status is not None:
                values["status"] = status
            if run_id is not None:
                values["run_id"] = run_id
            if detail:
                values["detail"] = _dumps({**_loads(row["detail"]), **detail})
            conn.execute(update(e).where(e.c.id == event_id).values(**values))
            return {**dict(row), **values}

        return _trigger_event(self._write(apply))

    def list_trigger_events(
        self,
        trigger: str | None = None,
        status: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> list[TriggerEvent]:
        """Trigger events, oldest first (the newest ``limit``)."""
        e = t.trigger_events
        query = select(e).order_by(e.c.id.desc()).limit(limit)
        if trigger is not None:
            query = query.where(e.c.trigger == trigger)
        if status is not None:
            query = query.where(e.c.status.in_(list(status)))
        with self._db.read() as conn:
            rows = conn.execute(query).mappings().all()
        return [_trigger_event(dict(r)) for r in reversed(rows)]

    # -- leases and state ------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take (or renew) the lease ``name`` for ``ttl_s`` if it is free, expired or ours."""
        _nonempty("lease", name, 256)
        _nonempty("holder", holder, 256)
        if not ttl_s > 0:
            raise ValidationError("ttl_s", f"must be greater than 0, got {ttl_s!r}")
        now = _now_ms()
        row = {
            "name": name,
            "holder": holder,
            "expires_at": now + int(ttl_s * 1000),
            "acquired_at": now,
        }

        def apply(conn: Connection) -> bool:
            if self._db.dialect == "postgresql":
                # Serialize racers on the row so the check below reads the winner.
                conn.execute(
                    select(t.leases.c.name).where(t.leases.c.name == name).with_for_update()
                )
            upsert(
                conn,
                t.leases,
                [row],
                keys=["name"],
                update=["holder", "expires_at", "acquired_at"],
                where="leases.expires_at < excluded.acquired_at OR leases.holder = excluded.holder",
            )
            got = conn.execute(select(t.leases.c.holder).where(t.leases.c.name == name)).scalar()
            return got == holder

        return self._write(apply)

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease back if ``holder`` holds it."""
        self._write(
            lambda conn: conn.execute(
                delete(t.leases).where(t.leases.c.name == name, t.leases.c.holder == holder)
            )
        )

    def get_lease(self, name: str) -> Lease | None:
        """The lease ``name`` as stored (it may have expired), or None."""
        with self._db.read() as conn:
            row = conn.execute(select(t.leases).where(t.leases.c.name == name)).mappings().first()
        return None if row is None else Lease(**dict(row))

    def get_state(self, key: str) -> str | None:
        """A small named value (a watermark, a cursor), or None."""
        s = t.loop_state
        with self._db.read() as conn:
            value = conn.execute(select(s.c.value).where(s.c.key == key)).scalar()
        return None if value is None else str(value)

    def set_state(self, key: str, value: str) -> None:
        """Store a small named value."""
        _nonempty("key", key, 256)
        row = {"key": key, "value": value, "updated_at": _now_ms()}
        self._write(
            lambda conn: upsert(
                conn, t.loop_state, [row], keys=["key"], update=["value", "updated_at"]
            )
        )

    # -- delivery --------------------------------------------------------------
    def add_checks(self, checks: Sequence[CheckRecord]) -> list[CheckRecord]:
        """Store the results of a deploy attempt's checks."""
        now = _now_ms()
        rows = []
        for check in checks:
            _nonempty("model", check.model, 128)
            _nonempty("check name", check.name, 64)
            rows.append(
                {
                    "model": check.model,
                    "version": check.version,
                    "stage": check.stage,
                    "attempt": check.attempt,
                    "name": check.name,
                    "passed": bool(check.passed),
                    "detail": check.detail,
                    "evidence": _dumps(check.evidence),
                    "created_at": now,
                }
            )

        def apply(conn: Connection) -> list[int]:
            return [_insert(conn, t.delivery_checks, r) for r in rows]

        ids = self._write(apply)
        return [_check({**r, "id": i}) for r, i in zip(rows, ids, strict=True)]

    def list_checks(
        self, model: str, version: int | None = None, attempt: str | None = None
    ) -> list[CheckRecord]:
        """Check results of a model (one version, one attempt), oldest first."""
        c = t.delivery_checks
        query = select(c).where(c.c.model == model).order_by(c.c.id)
        if version is not None:
            query = query.where(c.c.version == version)
        if attempt is not None:
            query = query.where(c.c.attempt == attempt)
        with self._db.read() as conn:
            rows = conn.execute(query).mappings().all()
        return [_check(dict(r)) for r in rows]

    def set_traffic(self, traffic: Traffic) -> Traffic:
        """Store the traffic policy of a served alias (replacing the previous one)."""
        _nonempty("model", traffic.model, 128)
        _nonempty("alias", traffic.alias, 64)
        if not 0.0 <= traffic.canary_share <= 1.0:
            raise ValidationError(
                "canary_share", f"must be between 0 and 1, got {traffic.canary_share!r}"
            )
        if traffic.canary_share > 0 and traffic.canary_version is None:
            raise ValidationError("canary_version", "required when canary_share is above 0")
        row: dict[str, Any] = {
            "model": traffic.model,
            "alias": traffic.alias,
            "canary_version": traffic.canary_version,
            "canary_share": float(traffic.canary_share),
            "shadow_version": traffic.shadow_version,
            "sticky_key": traffic.sticky_key,
            "actor": traffic.actor,
            "reason": traffic.reason,
            "updated_at": _now_ms(),
        }
        columns = [k for k in row if k not in ("model", "alias")]
        self._write(
            lambda conn: upsert(conn, t.traffic, [row], keys=["model", "alias"], update=columns)
        )
        return Traffic(**row)

    def get_traffic(self, model: str, alias: str) -> Traffic | None:
        """The traffic policy of a served alias, or None when all traffic goes to the alias."""
        tr = t.traffic
        with self._db.read() as conn:
            row = (
                conn.execute(select(tr).where(tr.c.model == model, tr.c.alias == alias))
                .mappings()
                .first()
            )
        return None if row is None else Traffic(**dict(row))

    def referenced_digests(self) -> set[str]:
        """Every artifact sha256 the loop's records point at (reports, stored profiles).

        Evaluations name their HTML report; state values (JSON written by monitors)
        name the profiles they keep, as 64-digit hex strings anywhere in the value.
        """
        e, st = t.monitor_evaluations, t.loop_state
        with self._db.read() as conn:
            reports = conn.execute(select(e.c.report_sha256).where(e.c.report_sha256.is_not(None)))
            found = {str(r[0]) for r in reports}
            for (value,) in conn.execute(select(st.c.value)):
                found.update(_SHA256.findall(value))
        return found

    def close(self) -> None:
        """Release connections."""
        self._db.dispose()


def _evaluation(row: dict[str, Any]) -> Evaluation:
    return Evaluation(
        id=int(row["id"]),
        monitor=row["monitor"],
        model=row["model"],
        window_start=int(row["window_start"]),
        window_end=int(row["window_end"]),
        status=row["status"],
        drift_share=row["drift_share"],
        metrics=_loads(row["metrics"]),
        report_sha256=row["report_sha256"],
        created_at=int(row["created_at"]),
    )


def _alert(row: dict[str, Any]) -> Alert:
    return Alert(
        id=int(row["id"]),
        source=row["source"],
        rule=row["rule"],
        severity=row["severity"],
        message=row["message"],
        model=row["model"],
        version=row["version"],
        evaluation_id=row["evaluation_id"],
        payload=_loads(row["payload"]),
        state=row["state"],
        created_at=int(row["created_at"]),
    )


def _trigger_event(row: dict[str, Any]) -> TriggerEvent:
    return TriggerEvent(
        id=int(row["id"]),
        trigger=row["trigger"],
        pipeline=row["pipeline"],
        kind=row["kind"],
        reason=row["reason"],
        status=row["status"],
        run_id=row["run_id"],
        detail=_loads(row["detail"]),
        created_at=int(row["created_at"]),
        updated_at=int(row["updated_at"]),
    )


def _check(row: dict[str, Any]) -> CheckRecord:
    return CheckRecord(
        id=int(row["id"]),
        model=row["model"],
        version=int(row["version"]),
        stage=row["stage"],
        attempt=row["attempt"],
        name=row["name"],
        passed=bool(row["passed"]),
        detail=row["detail"],
        evidence=_loads(row["evidence"]),
        created_at=int(row["created_at"]),
    )
