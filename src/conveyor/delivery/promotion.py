"""Staged promotion: run the CD checks, move the alias, or wait for a person's approval.

`deploy` runs the checks of `conveyor.delivery.checks` for a version and a stage
and stores each result (one *attempt*, grouped by its id). When every check
passes, the stage's alias moves — unless the policy requires an approval there,
in which case the attempt records a pending approval and `approve` moves it later,
if the approver is one the policy names. A version moves to a stage only after
it reached the stages before it (``staging`` before ``production``). Where the
policy declares a canary for the last stage and that alias serves a version, the
move starts a canary instead (`conveyor.delivery.canary`), which promotes or rolls
back on the evidence. The environment, infra and load results of the stage
before stand for the next one for an hour (`REUSE_S`; they depend on the version
and on policy sections every stage shares), so staging → production starts the
sandboxed server once; the quality check always runs again.

Every move is an audited alias event whose reason names the attempt and its
checks (``deploy 1a2b…: environment, infra, load, quality passed``), so
``conveyor models history`` leads back to the evidence; `rollback` reverses a move.
The checks of an attempt are stored as `CheckRecord` rows, plus two kinds of
bookkeeping rows: ``approval`` (pending, then granted, with who and why) and
``promotion`` (the alias moved: the event's id).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from conveyor.core.loop import CheckRecord, Traffic
from conveyor.delivery.checks import CHECK_NAMES, CheckResult, Holdout, run_checks
from conveyor.errors import NotFoundError, StateError, ValidationError

if TYPE_CHECKING:
    from conveyor.core.registry import AliasEvent, ModelVersion
    from conveyor.delivery.policy import DeploymentPolicy, StagePolicy
    from conveyor.registry import Registry
    from conveyor.stores.metadata.loop import LoopStore

__all__ = [
    "DeliveryResult",
    "approve",
    "attempts_of",
    "checks_behind",
    "deploy",
    "rollback",
    "stage_cleared",
]

REUSE_S = 3600.0  # how long a stage's environment, infra and load results stand for the next
APPROVAL = "approval"
PROMOTION = "promotion"
_BOOKKEEPING = (APPROVAL, PROMOTION)
_ATTEMPT_IN_REASON = re.compile(r"\b(?:deploy|canary) ([0-9a-f]{16})\b")


@dataclass(frozen=True)
class DeliveryResult:
    """What a deploy (or an approval) did, and the checks behind it.

    Attributes:
        model: the model.
        stage: the stage (alias) aimed at.
        attempt: the id grouping this attempt's stored checks.
        checks: one result per check run (the last one failed, if any failed).
        passed: every check passed.
        moved: the alias moved to the version.
        from_version: where the alias pointed before (None: nowhere).
        to_version: the version deployed.
        pending_approval: the checks passed and the move waits for an approval.
        canary_started: the checks passed and a canary started instead of the move.
        message: one sentence for a person: what happened, and what to do next.
        event_id: the alias event of the move, if it moved.
    """

    model: str
    stage: str
    attempt: str
    checks: list[CheckResult]
    passed: bool
    moved: bool
    from_version: int | None
    to_version: int
    pending_approval: bool = False
    canary_started: bool = False
    message: str = ""
    event_id: int | None = None

    @property
    def ref(self) -> str:
        """``name/version`` of the version deployed."""
        return f"{self.model}/{self.to_version}"

    @property
    def failed(self) -> CheckResult | None:
        """The check that stopped it, if one did."""
        return next((c for c in self.checks if not c.passed), None)


# -- stored attempts -----------------------------------------------------------------------


def attempts_of(
    loop_store: LoopStore, model: str, version: int, stage: str | None = None
) -> dict[str, list[CheckRecord]]:
    """A version's stored attempts (id → records, oldest first), optionally at one stage."""
    out: dict[str, list[CheckRecord]] = {}
    for record in loop_store.list_checks(model, version):
        if stage is None or record.stage == stage:
            out.setdefault(record.attempt, []).append(record)
    return out


def _checks_passed(records: Sequence[CheckRecord]) -> bool:
    checks = [r for r in records if r.name not in _BOOKKEEPING]
    return bool(checks) and all(r.passed for r in checks)


def _approval_state(records: Sequence[CheckRecord]) -> str | None:
    """``pending``, ``granted`` or None (no approval recorded) for an attempt."""
    approvals = [r for r in records if r.name == APPROVAL]
    if not approvals:
        return None
    return "granted" if approvals[-1].passed else "pending"


def stage_cleared(loop_store: LoopStore, model: str, version: int, stage: str) -> str | None:
    """The latest attempt that cleared ``version`` for ``stage`` (checks and approval), or None.

    An attempt clears a version when all its checks passed and any approval it
    asked for was granted.
    """
    for attempt, records in reversed(attempts_of(loop_store, model, version, stage).items()):
        if _checks_passed(records) and _approval_state(records) != "pending":
            return attempt
    return None


def _reached(loop_store: LoopStore, model: str, version: int, stage: str) -> bool:
    records = loop_store.list_checks(model, version)
    return any(r.stage == stage and r.name == PROMOTION and r.passed for r in records)


def _require_earlier_stages(
    loop_store: LoopStore, policy: DeploymentPolicy, version: ModelVersion, stage: str
) -> None:
    for earlier in policy.before(stage):
        if not _reached(loop_store, version.name, version.version, earlier):
            raise StateError(
                f"{version.ref} has not reached {earlier} yet, which comes before {stage}; "
                f"run first: conveyor deploy {version.ref} --to {earlier}"
            )


def checks_behind(loop_store: LoopStore, model: str, reason: str | None) -> list[CheckRecord]:
    """The stored checks of the attempt an alias event's reason names (none if it names none)."""
    match = _ATTEMPT_IN_REASON.search(reason or "")
    if match is None:
        return []
    attempt = match.group(1)
    return list(loop_store.list_checks(model, attempt=attempt))


def _reusable(
    loop_store: LoopStore, policy: DeploymentPolicy, version: ModelVersion, stage: str
) -> list[CheckResult]:
    """The stage before's passed environment, infra and load results, if recent enough.

    They depend on the version and the policy's resources, SLO and load, which are
    the same for every stage; so moving staging → production serves the version
    in a sandbox once. Older than `REUSE_S` seconds, they run again.
    """
    earlier = policy.before(stage)
    if not earlier:
        return []
    now = time.time() * 1000
    attempts = attempts_of(loop_store, version.name, version.version, earlier[-1])
    for attempt, records in reversed(attempts.items()):
        by_name = {r.name: r for r in records}
        wanted = [by_name.get(name) for name in CHECK_NAMES[:3]]
        if all(r is not None and r.passed and now - r.created_at < REUSE_S * 1000 for r in wanted):
            return [
                CheckResult(
                    r.name, True, f"{r.detail} (reused from attempt {attempt})",
                    {**r.evidence, "reused_from": attempt},
                )
                for r in wanted
                if r is not None
            ]  # fmt: skip
    return []


# -- deploy, approve, rollback ---------------------------------------------------------------


def _new_attempt() -> str:
    return uuid.uuid4().hex[:16]


def _current(registry: Registry, model: str, alias: str) -> int | None:
    try:
        return registry.get_alias(model, alias).version
    except NotFoundError:
        return None


def _who_may(stage: StagePolicy) -> str:
    if stage.approvers:
        return " or ".join(stage.approvers)
    return "anyone (named with --actor or CONVEYOR_ACTOR; recorded)"


def _approve_command(ref: str, stage: str) -> str:
    return f'conveyor approve {ref} --to {stage} --reason "…"'


def _store(
    loop_store: LoopStore,
    version: ModelVersion,
    stage: str,
    attempt: str,
    results: Sequence[CheckResult],
) -> None:
    loop_store.add_checks(
        [
            CheckRecord(
                model=version.name,
                version=version.version,
                stage=stage,
                name=r.name,
                passed=r.passed,
                detail=r.detail,
                evidence=r.evidence,
                attempt=attempt,
            )
            for r in results
        ]
    )


def _check_text(value: str | None, field_name: str, required: bool = False) -> str | None:
    if value is None or not value.strip():
        if required:
            raise ValidationError(field_name, "is required: say who and why (it is recorded)")
        return None
    if len(value) > 2000:
        raise ValidationError(field_name, "must be at most 2000 characters")
    return value.strip()


def deploy(
    ref: str,
    stage: str,
    *,
    registry: Registry,
    loop_store: LoopStore,
    policy: DeploymentPolicy,
    actor: str | None = None,
    reason: str | None = None,
    holdout: Holdout | None = None,
) -> DeliveryResult:
    """Run the CD checks for ``ref`` at ``stage`` and move the alias if the policy lets it.

    Args:
        ref: the version (``flights/7``, ``flights@staging``, or ``flights``: the latest).
        stage: the stage, which is the alias moved (``staging``, ``production``).
        registry: the model registry.
        loop_store: where the checks (and approvals) are stored.
        policy: the model's deployment policy.
        actor: who deploys (recorded with the move; the OS user by default).
        reason: why, added to the move's recorded reason.
        holdout: validated data for the quality check (see `Holdout`).

    Returns:
        The checks and what happened: moved, waiting for approval, canary started,
        or stopped at a failed check (the alias unchanged).

    Raises:
        ValidationError: the stage is not one of the policy's.
        StateError: the version has not reached the stages before this one.
        NotFoundError: the ref names no version.
    """
    version = registry.resolve(ref)
    stage_policy = policy.stage(stage)
    reason = _check_text(reason, "reason")
    _require_earlier_stages(loop_store, policy, version, stage)
    current = _current(registry, version.name, stage)
    attempt = _new_attempt()
    if current == version.version:
        return DeliveryResult(
            version.name, stage, attempt, [], True, False, current, version.version,
            message=f"{version.ref} is already at {stage}",
        )  # fmt: skip
    reuse = _reusable(loop_store, policy, version, stage)
    results = run_checks(registry, version, policy, holdout, reuse=reuse)
    _store(loop_store, version, stage, attempt, results)
    passed = all(r.passed for r in results)
    if not passed:
        failed = next(r for r in results if not r.passed)
        return DeliveryResult(
            version.name, stage, attempt, results, False, False, current, version.version,
            message=f"{version.ref} stopped at the {failed.name} check: {failed.detail}; "
            f"{stage} unchanged",
        )  # fmt: skip
    if stage_policy.requires_approval:
        return _ask_approval(loop_store, version, stage_policy, attempt, results, current, actor)
    return _advance(
        registry, loop_store, policy, version, stage, attempt, results, current, actor, reason
    )


def _ask_approval(
    loop_store: LoopStore,
    version: ModelVersion,
    stage: StagePolicy,
    attempt: str,
    results: list[CheckResult],
    current: int | None,
    actor: str | None,
) -> DeliveryResult:
    command = _approve_command(version.ref, stage.name)
    message = (
        f"{version.ref} passed its checks for {stage.name}; the policy requires an approval "
        f"before it moves: {_who_may(stage)} may approve with {command}"
    )
    pending = CheckResult(
        APPROVAL,
        False,
        f"pending: {_who_may(stage)} may approve with {command}",
        {"status": "pending", "approvers": list(stage.approvers), "requested_by": actor},
    )
    _store(loop_store, version, stage.name, attempt, [pending])
    return DeliveryResult(
        version.name, stage.name, attempt, results, True, False, current, version.version,
        pending_approval=True, message=message,
    )  # fmt: skip


def _advance(
    registry: Registry,
    loop_store: LoopStore,
    policy: DeploymentPolicy,
    version: ModelVersion,
    stage: str,
    attempt: str,
    results: list[CheckResult],
    current: int | None,
    actor: str | None,
    reason: str | None,
    approval: str | None = None,
) -> DeliveryResult:
    """Move the alias — or start a canary where the policy has one for this stage."""
    if policy.canary is not None and stage == policy.stages[-1] and current is not None:
        from conveyor.delivery.canary import start_canary

        why = f"deploy {attempt} passed" + (f"; {approval}" if approval else "")
        start_canary(
            version.name, version.version, alias=stage, share=policy.canary.share,
            loop_store=loop_store, actor=actor or "conveyor", reason=why, attempt=attempt,
        )  # fmt: skip
        return DeliveryResult(
            version.name, stage, attempt, results, True, False, current, version.version,
            canary_started=True,
            message=f"{version.ref} passed its checks; canary started on {stage} with "
            f"{policy.canary.share:.0%} of its traffic (v{current} serves the rest)",
        )  # fmt: skip
    names = ", ".join(r.name for r in results) or "no checks"
    why = f"deploy {attempt}: {names} passed"
    if approval:
        why += f"; {approval}"
    if reason:
        why += f"; {reason}"
    event = move_alias(registry, loop_store, version, stage, attempt, why, actor)
    return DeliveryResult(
        version.name, stage, attempt, results, True, True, current, version.version,
        message=f"{version.ref} moved to {stage} (was "
        f"{'none' if current is None else f'v{current}'})",
        event_id=event.id,
    )  # fmt: skip


def move_alias(
    registry: Registry,
    loop_store: LoopStore,
    version: ModelVersion,
    stage: str,
    attempt: str,
    reason: str,
    actor: str | None,
) -> AliasEvent:
    """Move ``stage`` to ``version`` (an audited event) and record the move with the attempt."""
    event = registry.set_alias(version.name, stage, version.version, reason=reason, actor=actor)
    record = CheckResult(
        PROMOTION,
        True,
        f"{stage}: {event.from_version or 'none'} → {event.to_version}",
        {"event_id": event.id, "from_version": event.from_version, "actor": event.actor},
    )
    _store(loop_store, version, stage, attempt, [record])
    return event


def approve(
    ref: str,
    stage: str,
    *,
    registry: Registry,
    loop_store: LoopStore,
    policy: DeploymentPolicy,
    actor: str,
    reason: str,
    holdout: Holdout | None = None,
) -> DeliveryResult:
    """Approve ``ref`` for ``stage`` and move the alias (or start its canary).

    The version must have passed its checks for ``stage`` (the latest attempt; when
    it has none, the checks run now) and reached the stages before it.

    Raises:
        StateError: ``actor`` is not an approver the policy names (the message says
            who may and how), the stage needs no approval, the version has not
            reached the earlier stages, or its latest checks for ``stage`` failed.
        ValidationError: no actor or no reason.
    """
    actor_name = _check_text(actor, "actor", required=True)
    why = _check_text(reason, "reason", required=True)
    assert actor_name is not None
    assert why is not None
    version = registry.resolve(ref)
    stage_policy = policy.stage(stage)
    if not stage_policy.requires_approval:
        raise StateError(
            f"{stage} needs no approval in {version.name}'s policy: the checks move it; "
            f"run: conveyor deploy {version.ref} --to {stage}"
        )
    if not stage_policy.may_approve(actor_name):
        raise StateError(
            f"{actor_name!r} may not approve {version.ref} for {stage}: only "
            f"{_who_may(stage_policy)} may approve, with "
            f"{_approve_command(version.ref, stage)} --actor NAME"
        )
    _require_earlier_stages(loop_store, policy, version, stage)
    current = _current(registry, version.name, stage)
    if current == version.version:
        raise StateError(f"{version.ref} is already at {stage}")
    attempts = attempts_of(loop_store, version.name, version.version, stage)
    if attempts:
        attempt, records = list(attempts.items())[-1]
        if not _checks_passed(records):
            failed = next(r for r in records if r.name not in _BOOKKEEPING and not r.passed)
            raise StateError(
                f"{version.ref} failed its latest checks for {stage} (attempt {attempt}, "
                f"{failed.name}: {failed.detail}); nothing to approve"
            )
        results = [
            CheckResult(r.name, r.passed, r.detail, r.evidence)
            for r in records
            if r.name not in _BOOKKEEPING
        ]
    else:
        attempt = _new_attempt()
        reuse = _reusable(loop_store, policy, version, stage)
        results = run_checks(registry, version, policy, holdout, reuse=reuse)
        _store(loop_store, version, stage, attempt, results)
        if not all(r.passed for r in results):
            failed_now = next(r for r in results if not r.passed)
            return DeliveryResult(
                version.name, stage, attempt, results, False, False, current, version.version,
                message=f"{version.ref} stopped at the {failed_now.name} check: "
                f"{failed_now.detail}; {stage} unchanged",
            )  # fmt: skip
    granted = CheckResult(
        APPROVAL, True, f"approved by {actor_name}: {why}",
        {"status": "granted", "actor": actor_name, "reason": why},
    )  # fmt: skip
    _store(loop_store, version, stage, attempt, [granted])
    approval = f"approved by {actor_name}: {why}"
    return _advance(
        registry, loop_store, policy, version, stage, attempt, results, current, actor_name,
        None, approval,
    )  # fmt: skip


def rollback(
    model: str,
    alias: str,
    *,
    registry: Registry,
    loop_store: LoopStore | None = None,
    actor: str | None = None,
    reason: str | None = None,
) -> AliasEvent:
    """Move ``alias`` back to its previous version in one step (an audited event).

    A canary running on the alias is stopped too (all traffic to the restored version).

    Raises:
        NotFoundError: the model or alias does not exist.
        StateError: the alias has no earlier position to go back to.
    """
    why = _check_text(reason, "reason") or "rollback"
    event = registry.rollback(model, alias, reason=why, actor=actor)
    if loop_store is not None:
        traffic = loop_store.get_traffic(model, alias)
        if traffic is not None and traffic.canary_version is not None:
            loop_store.set_traffic(
                Traffic(
                    model, alias, None, 0.0, traffic.shadow_version, traffic.sticky_key,
                    actor=event.actor, reason=f"canary stopped by rollback: {why}",
                )
            )  # fmt: skip
    return event
