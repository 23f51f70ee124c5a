"""Monitoring: dataset profiles (mergeable sketches) and data drift, exact or from profiles.

Example::

    from conveyor.monitoring import drift, profile

    report = drift("reference.parquet", "current.parquet")
    report.drifted, report.columns["fare"].statistic

    ref = profile("reference.parquet")  # store ref.to_bytes() as an artifact
    report = drift(ref, profile(window), mode="sketch")

Monitors (the ``monitors:`` section of conveyor.yaml) evaluate windows of
captured traffic: `parse_monitors`, `evaluate_window`, `run_monitors`.
"""

from __future__ import annotations

from conveyor.monitoring.domain import DomainReport, domain_classifier
from conveyor.monitoring.drift import METHODS, Reference, drift
from conveyor.monitoring.monitors import (
    MonitorConfig,
    MonitorResult,
    evaluate_window,
    parse_monitors,
    requality,
    run_monitors,
)
from conveyor.monitoring.results import ColumnDrift, DriftReport, Histogram
from conveyor.profiling.profile import ColumnProfile, Profile, profile

__all__ = [
    "METHODS",
    "ColumnDrift",
    "ColumnProfile",
    "DomainReport",
    "DriftReport",
    "Histogram",
    "MonitorConfig",
    "MonitorResult",
    "Profile",
    "Reference",
    "domain_classifier",
    "drift",
    "evaluate_window",
    "parse_monitors",
    "profile",
    "requality",
    "run_monitors",
]
