"""Standard-library helpers shared by both sides of a benchmark.

`bench_tracking.py` runs in conveyor's venv and `_mlflow_tracking.py` in the
peers' venv, so this module imports nothing outside the standard library.

The CPU accounting mirrors ``shared/peers/common.py``'s ``CpuMonitor``
("foreign cores": busy CPU on the whole machine from /proc/stat minus our own),
but takes our own CPU from `os.times` rather than psutil, which conveyor's
venv does not have (without it that monitor would count our own work as foreign).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

# Seconds of CPU per process id, for services that work for us outside our tree
# (the PostgreSQL backends serving our connections).
ServiceCpu = Callable[[], dict[int, float]]


def machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine since boot (all cores, /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, _steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process (all threads) and of its children already waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _no_services() -> dict[int, float]:
    return {}


class CpuWindow:
    """CPU used on the machine during a ``with`` block, split into ours and foreign.

    ``foreign_cores`` is the busy CPU of processes outside our tree (and outside
    the services that work for us) divided by the wall time: 0 on a quiet
    machine, 1.0 when another tenant kept a whole core busy meanwhile.
    """

    def __init__(self, services: ServiceCpu = _no_services) -> None:
        self._services = services
        self.result: dict[str, float] = {}

    def __enter__(self) -> CpuWindow:
        self._service0 = self._services()
        self._busy0 = machine_busy_s()
        self._own0 = own_cpu_s()
        self._t0 = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        wall = time.perf_counter() - self._t0
        own = own_cpu_s() - self._own0
        busy = machine_busy_s() - self._busy0
        service1 = self._services()
        service = sum(max(0.0, s - self._service0.get(pid, 0.0)) for pid, s in service1.items())
        foreign = max(0.0, busy - own - service)
        self.result = {
            "wall_s": wall,
            "own_cpu_s": own,
            "service_cpu_s": service,
            "foreign_cpu_s": foreign,
            "foreign_cores": foreign / wall if wall > 0 else 0.0,
        }


def summarize(values: Iterable[float]) -> dict[str, Any]:
    """Median, min, max and count of some repetitions."""
    vals = list(values)
    if not vals:
        return {}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def elapsed_ms(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Milliseconds taken by each of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times
