"""Continuous delivery: the CD checks, staged promotion with approval, canary, containers.

A version reaches an alias only through its deployment policy's gates; every
move is an audited event in the registry that one command reverses.

- `parse_deployments` / `DeploymentPolicy`: the ``deployments:`` section of
  ``conveyor.yaml`` (staged promotion with approval for production by default).
- `deploy` runs the CD checks (`run_checks`: environment, infra in a sandboxed
  server, load, quality) and moves the alias, asks for an approval, or starts a
  canary; `approve` moves it on a named approver's word; `rollback` reverses.
- `start_canary` / `evaluate_canary`: a share of traffic to the new version,
  compared on the capture log, promoted or rolled back automatically.
"""

from conveyor.delivery.canary import CanaryDecision, canary_status, evaluate_canary, start_canary
from conveyor.delivery.checks import CheckResult, Holdout, run_checks
from conveyor.delivery.policy import DeploymentPolicy, parse_deployments, policy_for
from conveyor.delivery.promotion import DeliveryResult, approve, deploy, rollback

__all__ = [
    "CanaryDecision",
    "CheckResult",
    "DeliveryResult",
    "DeploymentPolicy",
    "Holdout",
    "approve",
    "canary_status",
    "deploy",
    "evaluate_canary",
    "parse_deployments",
    "policy_for",
    "rollback",
    "run_checks",
    "start_canary",
]
