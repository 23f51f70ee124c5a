"""`PolicyDelivery`: the agent's hand-off of a new version to delivery, by its deployment policy.

A version a triggered run registered goes through the policy's stages in order
(``staging`` then ``production`` by default), each by `conveyor.delivery.deploy`
with its CD checks, as far as the policy lets it go on its own: it stops at a
failed check, at a stage that needs a person's approval, or at a canary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from conveyor.automation.triggers import TriggerConfig

if TYPE_CHECKING:
    from conveyor.delivery import DeploymentPolicy, Holdout
    from conveyor.registry import Registry
    from conveyor.stores.metadata.loop import LoopStore

__all__ = ["PolicyDelivery"]


class PolicyDelivery:
    """Moves a new version through its policy's stages; an `OnNewVersion` for the `Agent`.

    Args:
        registry: the model registry.
        loop_store: where the checks (and approval requests) are stored.
        policies: deployment policies by model name (the default staged promotion
            for a model that has none).
        actor: who the moves are recorded as.
        holdout: validated data for the quality check, if any.
    """

    def __init__(
        self,
        registry: Registry,
        loop_store: LoopStore,
        policies: Mapping[str, DeploymentPolicy],
        *,
        actor: str = "conveyor-agent",
        holdout: Holdout | None = None,
    ) -> None:
        self.registry = registry
        self.loop_store = loop_store
        self.policies = dict(policies)
        self.actor = actor
        self.holdout = holdout

    def __call__(self, ref: str, trigger: TriggerConfig) -> str:
        """Deploy ``ref`` stage by stage; returns what happened at each, in words."""
        from conveyor.delivery import deploy, policy_for

        version = self.registry.resolve(ref)
        policy = policy_for(self.policies, version.name)
        said = []
        for stage in policy.stages:
            result = deploy(
                version.ref,
                stage,
                registry=self.registry,
                loop_store=self.loop_store,
                policy=policy,
                actor=self.actor,
                reason=f"trigger {trigger.name}",
                holdout=self.holdout,
            )
            said.append(f"{stage}: {result.message}")
            if not result.moved:
                break
        return "; ".join(said)
