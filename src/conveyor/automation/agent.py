"""The agent that closes the loop: evaluates triggers, runs pipelines, hands new versions on.

One pass (`Agent.run_once`) looks at every declared trigger. A trigger that is
due is taken under its lease in the loop store (so of several agents on one
store exactly one acts on it), evaluated again under the lease, checked against
its cooldown and concurrency limit (a refusal is a ``skipped`` event with the
reason), and run: the event moves ``running`` → ``succeeded``/``failed`` and
links the run it started. The watermark moves only after a run succeeded, and
before the event says so, so a killed agent never causes a second run of work
that finished. A failing run is retried with exponential backoff, then an
alert is raised. A heartbeat thread renews the lease while a run goes on; if
the agent dies its lease expires and the next agent marks the orphaned event
failed and takes over.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from conveyor.automation.triggers import Firing, TriggerConfig, due, initial_state
from conveyor.core.loop import NewAlert, TriggerEvent
from conveyor.errors import NotFoundError, StateError
from conveyor.stores.metadata.loop import LoopStore

__all__ = ["Agent", "RunOutcome", "RunPipeline", "default_holder", "request_run"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How one pipeline run the agent started ended.

    Attributes:
        run_id: the pipeline's run (None when it failed before a run existed).
        succeeded: whether it finished without a failed step.
        error: what went wrong, in one line, when it did not succeed.
        versions: the model versions it registered, as ``"name/3"``.
    """

    run_id: str | None
    succeeded: bool = True
    error: str | None = None
    versions: tuple[str, ...] = ()


# A pipeline run: given the trigger and its parameters, the run's id (a plain
# string counts as success) or a `RunOutcome`; an exception counts as a failure.
RunPipeline = Callable[[TriggerConfig, dict[str, Any]], "str | RunOutcome | None"]
OnNewVersion = Callable[[str, TriggerConfig], Any]

_LIVE = ("running",)
_STARTED = ("running", "succeeded", "failed")


def default_holder() -> str:
    """A name for this agent that no other process shares: host, pid and a nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def request_run(
    loop_store: LoopStore,
    trigger: TriggerConfig,
    reason: str,
    *,
    params: dict[str, Any] | None = None,
    by: str | None = None,
) -> TriggerEvent:
    """Record a manual request to run ``trigger``: a pending event the next agent pass runs.

    Raises:
        ValidationError: the reason is empty.
    """
    from conveyor.errors import ValidationError

    if not reason or not reason.strip():
        raise ValidationError("reason", "must say why the pipeline should run")
    detail: dict[str, Any] = {"params": dict(params or {})}
    if by:
        detail["by"] = by
    return loop_store.add_trigger_event(
        trigger.name, trigger.pipeline, "manual", reason.strip(), "pending", detail
    )


class Agent:
    """Evaluates triggers and runs their pipelines, one pass at a time or forever.

    Args:
        triggers: the declared triggers.
        loop_store: where events, leases, watermarks and alerts are kept.
        run_pipeline: runs a trigger's pipeline with the given parameters (see
            `RunPipeline`; `conveyor.automation.PipelineRunner` runs ``@pipeline``s).
        on_new_version: called with each version a successful run registered
            (``"flights/7"``) and the trigger, to move it by its deployment policy;
            what it returns is recorded with the event.
        holder: this agent's name in leases and events (unique per process by default).
        lease_ttl_s: how long a lease outlives a silent agent; renewed every third of it.
        on_event: called with each event as it is recorded or moves on (for log lines).
    """

    def __init__(
        self,
        triggers: Sequence[TriggerConfig],
        *,
        loop_store: LoopStore,
        run_pipeline: RunPipeline,
        on_new_version: OnNewVersion | None = None,
        holder: str | None = None,
        lease_ttl_s: float = 60.0,
        on_event: Callable[[TriggerEvent], None] | None = None,
    ) -> None:
        self.triggers = list(triggers)
        self.loop_store = loop_store
        self.run_pipeline = run_pipeline
        self.on_new_version = on_new_version
        self.holder = holder or default_holder()
        self.lease_ttl_s = lease_ttl_s
        self.on_event = on_event
        self._by_name = {t.name: t for t in self.triggers}
        self._stop = threading.Event()

    # -- passes --------------------------------------------------------------------
    def run_once(self, now: datetime | None = None) -> list[TriggerEvent]:
        """Evaluate every trigger once; run those that are due (one after another).

        Args:
            now: the time schedules are evaluated at (the current time by default).

        Returns:
            The events this pass recorded or acted on, in their final state.
        """
        at = now or datetime.now(UTC)
        acted: list[TriggerEvent] = []
        open_events = self.loop_store.list_trigger_events(status=("pending", "running"))
        acted.extend(self._recover(e for e in open_events if e.status == "running"))
        for trigger in self.triggers:
            if self._stop.is_set():
                break
            for event in open_events:
                if event.status == "pending" and event.trigger == trigger.name:
                    acted.extend(self._manual(trigger, event, at))
            acted.extend(self._evaluate(trigger, at))
        for event in open_events:
            if event.status == "pending" and event.trigger not in self._by_name:
                acted.append(self._undeclared(event))
        return acted

    def run_forever(self, interval_s: float = 30.0) -> None:
        """Run passes every ``interval_s`` until `stop` is called (sleeping in between)."""
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a store hiccup must not end the agent; the next pass retries
                log.exception("agent pass failed")
            self._stop.wait(interval_s)

    def stop(self) -> None:
        """End `run_forever` after the current run, and cut short any backoff wait."""
        self._stop.set()

    def run_now(self, name: str, reason: str, params: dict[str, Any] | None = None) -> TriggerEvent:
        """Run trigger ``name`` at once, as a manual request (``conveyor trigger --now``).

        Raises:
            NotFoundError: no such trigger is declared.
            StateError: another agent holds the trigger's lease (the request stays
                pending, and that agent's next pass runs it).
        """
        trigger = self.trigger(name)
        event = request_run(self.loop_store, trigger, reason, params=params)
        self._emit(event)
        done = self._manual(trigger, event, datetime.now(UTC))
        if not done:
            lease = self.loop_store.get_lease(trigger.lease_name)
            who = lease.holder if lease else "another agent"
            raise StateError(
                f"trigger {name!r} is busy ({who} holds it); event {event.id} stays pending "
                "and the next agent pass runs it"
            )
        return done[-1]

    def mark_seen(self, name: str, reason: str) -> TriggerEvent | None:
        """Take what trigger ``name`` sees now as done, without a run (a skipped event says so).

        For data a model was already trained on by hand, or alerts already dealt
        with: the watermark moves to the present, so only what comes later fires.

        Returns:
            The skipped event, or None when nothing was due.

        Raises:
            NotFoundError: no such trigger is declared.
            StateError: another agent holds the trigger's lease.
        """
        trigger = self.trigger(name)
        if not self._acquire(trigger):
            raise StateError(f"trigger {name!r} is busy (another agent holds it); try again")
        try:
            at = datetime.now(UTC)
            firing = due(trigger, self._state(trigger, at), at, loop_store=self.loop_store)
            if firing is None:
                return None
            if firing.watermark is not None:
                self.loop_store.set_state(trigger.watermark_key, firing.watermark)
            event = self.loop_store.add_trigger_event(
                trigger.name,
                trigger.pipeline,
                firing.kind,
                firing.reason,
                "skipped",
                {"skip": "marked_seen", "why": reason, "holder": self.holder},
            )
            self._emit(event)
            return event
        finally:
            self._release(trigger)

    def trigger(self, name: str) -> TriggerConfig:
        """The declared trigger ``name``.

        Raises:
            NotFoundError: none is declared by that name (the message lists those that are).
        """
        found = self._by_name.get(name)
        if found is None:
            known = ", ".join(self._by_name) or "none"
            raise NotFoundError(f"no trigger {name!r} is declared (declared: {known})")
        return found

    # -- one trigger -----------------------------------------------------------------
    def _evaluate(self, trigger: TriggerConfig, at: datetime) -> list[TriggerEvent]:
        state = self._state(trigger, at)
        if due(trigger, state, at, loop_store=self.loop_store) is None:
            return []  # the common case: no lease, no write
        if not self._acquire(trigger):
            return []  # another agent is on it
        try:
            # Under the lease the watermark may have moved (another agent ran it).
            firing = due(trigger, self._state(trigger, at), at, loop_store=self.loop_store)
            if firing is None:
                return []
            skipped = self._limits(trigger, firing, manual=False)
            if skipped is not None:
                return [skipped] if isinstance(skipped, TriggerEvent) else []
            return [self._execute(trigger, firing, None)]
        finally:
            self._release(trigger)

    def _manual(
        self, trigger: TriggerConfig, event: TriggerEvent, at: datetime
    ) -> list[TriggerEvent]:
        if not self._acquire(trigger):
            return []
        try:
            pending = self.loop_store.list_trigger_events(trigger.name, status=("pending",))
            if event.id not in {e.id for e in pending}:
                return []  # another agent ran it meanwhile
            if self._limits(trigger, None, manual=True) is not None:
                return []  # stays pending until a slot frees
            # A manual run reads the data there now: it moves a data trigger's watermark.
            firing = None
            if trigger.kind == "data":
                firing = due(trigger, self._state(trigger, at), at, loop_store=self.loop_store)
            return [self._execute(trigger, firing, event)]
        finally:
            self._release(trigger)

    def _state(self, trigger: TriggerConfig, at: datetime) -> str | None:
        state = self.loop_store.get_state(trigger.watermark_key)
        if state is None:
            state = initial_state(trigger, at)
            if state is not None:
                self.loop_store.set_state(trigger.watermark_key, state)
        return state

    def _limits(
        self, trigger: TriggerConfig, firing: Firing | None, *, manual: bool
    ) -> TriggerEvent | bool | None:
        """None when the trigger may run; else the skipped event (or True if not recorded)."""
        running = [
            e
            for e in self.loop_store.list_trigger_events(status=_LIVE)
            if e.pipeline == trigger.pipeline
        ]
        if len(running) >= trigger.max_concurrent:
            ids = ", ".join(f"{e.id} ({e.trigger})" for e in running[:3])
            why = (
                f"concurrency limit {trigger.max_concurrent}: {trigger.pipeline} is already "
                f"running (event {ids})"
            )
            return True if manual else self._skip(trigger, firing, "concurrency", why)
        if manual or not trigger.cooldown_s:
            return None
        last = self.loop_store.list_trigger_events(trigger.name, status=_STARTED, limit=1)
        if last:
            ago = time.time() - last[0].created_at / 1000
            if ago < trigger.cooldown_s:
                why = (
                    f"cooldown {_span(trigger.cooldown_s)}: the last run started "
                    f"{_span(ago)} ago (event {last[0].id})"
                )
                return self._skip(trigger, firing, "cooldown", why)
        return None

    def _skip(
        self, trigger: TriggerConfig, firing: Firing | None, cause: str, why: str
    ) -> TriggerEvent | bool:
        assert firing is not None
        key = hashlib.sha256((firing.watermark or firing.reason).encode()).hexdigest()[:16]
        last = self.loop_store.list_trigger_events(trigger.name, limit=1)
        if last and last[0].status == "skipped":
            seen = last[0].detail
            if seen.get("skip") == cause and seen.get("key") == key:
                return True  # said once already: no new event each pass
        event = self.loop_store.add_trigger_event(
            trigger.name,
            trigger.pipeline,
            firing.kind,
            firing.reason,
            "skipped",
            {"skip": cause, "why": why, "key": key, "holder": self.holder},
        )
        self._emit(event)
        return event

    # -- running ---------------------------------------------------------------------
    def _execute(
        self, trigger: TriggerConfig, firing: Firing | None, event: TriggerEvent | None
    ) -> TriggerEvent:
        start = {"holder": self.holder, "attempts": []}
        if event is None:
            assert firing is not None
            event = self.loop_store.add_trigger_event(
                trigger.name,
                trigger.pipeline,
                firing.kind,
                firing.reason,
                "running",
                {**firing.detail, **start},
            )
        else:
            event = self.loop_store.update_trigger_event(event.id, status="running", detail=start)
        self._emit(event)
        params = {**trigger.params, **dict(event.detail.get("params") or {})}
        with _Heartbeat(self.loop_store, trigger.lease_name, self.holder, self.lease_ttl_s):
            outcome, attempts = self._attempts(trigger, event, params)
            if not outcome.succeeded:
                return self._failed(trigger, event, outcome, attempts)
            if firing is not None and firing.watermark is not None:
                self.loop_store.set_state(trigger.watermark_key, firing.watermark)
            event = self.loop_store.update_trigger_event(
                event.id,
                status="succeeded",
                run_id=outcome.run_id,
                detail={"attempts": attempts, "versions": list(outcome.versions)},
            )
            self._emit(event)
            if outcome.versions and self.on_new_version is not None:
                event = self._deliver(trigger, event, outcome.versions)
        return event

    def _attempts(
        self, trigger: TriggerConfig, event: TriggerEvent, params: dict[str, Any]
    ) -> tuple[RunOutcome, list[dict[str, Any]]]:
        attempts: list[dict[str, Any]] = []
        outcome = RunOutcome(None, False, "not run")
        for number in range(1, trigger.attempts + 1):
            outcome = self._attempt(trigger, params)
            attempts.append({"run_id": outcome.run_id, "error": outcome.error})
            if outcome.succeeded or number == trigger.attempts:
                break
            wait = trigger.backoff_s * 2 ** (number - 1)
            detail = {"attempts": attempts, "retry_in_s": wait}
            self._emit(self.loop_store.update_trigger_event(event.id, detail=detail))
            if self._stop.wait(wait):
                break
        return outcome, attempts

    def _attempt(self, trigger: TriggerConfig, params: dict[str, Any]) -> RunOutcome:
        try:
            result = self.run_pipeline(trigger, dict(params))
        except Exception as exc:  # the pipeline's failure is the event's, not the agent's
            return RunOutcome(None, False, f"{type(exc).__name__}: {exc}"[:2000])
        if isinstance(result, RunOutcome):
            return result
        return RunOutcome(result)

    def _failed(
        self,
        trigger: TriggerConfig,
        event: TriggerEvent,
        outcome: RunOutcome,
        attempts: list[dict[str, Any]],
    ) -> TriggerEvent:
        tries = len(attempts)
        event = self.loop_store.update_trigger_event(
            event.id,
            status="failed",
            run_id=outcome.run_id,
            detail={"attempts": attempts, "error": outcome.error},
        )
        self._emit(event)
        message = (
            f"trigger {trigger.name!r}: {trigger.pipeline} failed {tries} time(s); "
            f"last error: {outcome.error}"
        )
        self.loop_store.add_alert(
            NewAlert(
                source="agent",
                rule="pipeline_failed",
                severity="critical",
                message=message[:2000],
                payload={
                    "trigger": trigger.name,
                    "pipeline": trigger.pipeline,
                    "event_id": event.id,
                    "run_ids": [a["run_id"] for a in attempts if a["run_id"]],
                },
            )
        )
        return event

    def _deliver(
        self, trigger: TriggerConfig, event: TriggerEvent, versions: Sequence[str]
    ) -> TriggerEvent:
        assert self.on_new_version is not None
        delivered: dict[str, str] = {}
        for ref in versions:
            try:
                delivered[ref] = str(self.on_new_version(ref, trigger))[:2000]
            except Exception as exc:  # delivery refusing is recorded, and alerted on
                delivered[ref] = f"failed: {type(exc).__name__}: {exc}"[:2000]
                self.loop_store.add_alert(
                    NewAlert(
                        source="agent",
                        rule="delivery_failed",
                        severity="warning",
                        message=f"delivering {ref} (trigger {trigger.name!r}) failed: {exc}"[:2000],
                        payload={"trigger": trigger.name, "event_id": event.id, "version": ref},
                    )
                )
        event = self.loop_store.update_trigger_event(event.id, detail={"delivery": delivered})
        self._emit(event)
        return event

    # -- leases and orphans ------------------------------------------------------------
    def _acquire(self, trigger: TriggerConfig) -> bool:
        return self.loop_store.acquire_lease(trigger.lease_name, self.holder, self.lease_ttl_s)

    def _release(self, trigger: TriggerConfig) -> None:
        self.loop_store.release_lease(trigger.lease_name, self.holder)

    def _recover(self, running: Any) -> list[TriggerEvent]:
        """Mark failed the running events whose agent is gone (its lease expired)."""
        recovered = []
        now_ms = int(time.time() * 1000)
        for event in running:
            lease = self.loop_store.get_lease(f"trigger:{event.trigger}")
            holder = event.detail.get("holder")
            if lease is not None and lease.expires_at >= now_ms and lease.holder == holder:
                continue  # its agent is alive and renewing
            name = f"trigger:{event.trigger}"
            if not self.loop_store.acquire_lease(name, self.holder, self.lease_ttl_s):
                continue
            try:
                abandoned = self._abandon(event, holder)
                if abandoned is not None:
                    recovered.append(abandoned)
            finally:
                self.loop_store.release_lease(name, self.holder)
        return recovered

    def _abandon(self, event: TriggerEvent, holder: Any) -> TriggerEvent | None:
        current = self.loop_store.list_trigger_events(event.trigger, status=("running",))
        if event.id not in {e.id for e in current}:
            return None  # it ended meanwhile
        why = f"agent {holder} stopped during the run (its lease expired)"
        event = self.loop_store.update_trigger_event(
            event.id, status="failed", detail={"abandoned": why, "taken_over_by": self.holder}
        )
        self._emit(event)
        if event.kind == "manual":  # a person asked for a run: ask again
            retry = self.loop_store.add_trigger_event(
                event.trigger,
                event.pipeline,
                "manual",
                f"{event.reason} (again: event {event.id} was abandoned)",
                "pending",
                {"params": event.detail.get("params", {}), "retry_of": event.id},
            )
            self._emit(retry)
        return event

    def _undeclared(self, event: TriggerEvent) -> TriggerEvent:
        event = self.loop_store.update_trigger_event(
            event.id,
            status="skipped",
            detail={"skip": "undeclared", "why": f"no trigger {event.trigger!r} is declared"},
        )
        self._emit(event)
        return event

    def _emit(self, event: TriggerEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)


class _Heartbeat:
    """Renews a lease every third of its time to live while a run goes on."""

    def __init__(self, store: LoopStore, name: str, holder: str, ttl_s: float) -> None:
        self.store, self.name, self.holder, self.ttl_s = store, name, holder, ttl_s
        self.lost = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease {name}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._done.wait(self.ttl_s / 3):
            try:
                if not self.store.acquire_lease(self.name, self.holder, self.ttl_s):
                    self.lost = True
                    log.warning("lost the lease %s to another agent", self.name)
            except Exception:  # a busy store: the next beat tries again
                log.exception("renewing the lease %s failed", self.name)


def _span(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
