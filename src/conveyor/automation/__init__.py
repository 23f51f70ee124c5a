"""Continuous training: triggers and the agent that closes the loop.

The agent evaluates triggers (schedule, new data, monitor alerts, manual),
runs pipelines and moves models by their deployment policy; leases in the
metadata store keep two agents from doing the same work twice.
"""

from conveyor.automation.agent import Agent, RunOutcome, request_run
from conveyor.automation.pipelines import PipelineRunner
from conveyor.automation.triggers import Firing, TriggerConfig, due, parse_triggers

__all__ = [
    "Agent",
    "Firing",
    "PipelineRunner",
    "RunOutcome",
    "TriggerConfig",
    "due",
    "parse_triggers",
    "request_run",
]
