"""`TrafficRouter`: follows a served alias's traffic policy (canary, shadow) and picks a side.

The delivery engine writes policies (`conveyor.core.loop.Traffic`) to the loop
store; each router reads its alias's policy every ``poll_seconds`` in a worker
thread. A new policy's canary and shadow versions are loaded and checked with
their stored input example *before* any request goes to them; if one cannot be
loaded, the whole policy is held back (every request stays on the primary) and
``conveyor_traffic_policy_error`` in /metrics says why.

A canary takes ``canary_share`` of the requests: by a stable hash (CRC-32) of the
``sticky_key`` header's value when the policy names one and the request carries
it, so a client stays on one side; else by a random draw.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from conveyor.serving.metrics import Histogram

if TYPE_CHECKING:
    from conveyor.core.loop import Traffic
    from conveyor.serving.model import ServedModel

__all__ = ["Routes", "TrafficRouter", "render_route_metrics"]

log = logging.getLogger(__name__)

_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_RETRY_SECONDS = 30.0  # a policy whose versions failed to load is tried again after this


@dataclass(frozen=True, slots=True)
class Routes:
    """The sides of a served alias in effect now (replaced whole, never mutated)."""

    canary: ServedModel | None = None
    share: float = 0.0
    sticky_key: str | None = None
    shadow: ServedModel | None = None

    @property
    def active(self) -> bool:
        """Whether any request goes anywhere but the primary."""
        return self.canary is not None or self.shadow is not None


def _key(traffic: Traffic | None) -> tuple[object, ...]:
    if traffic is None:
        return (None, 0.0, None, None)
    share = traffic.canary_share if traffic.canary_version is not None else 0.0
    canary = traffic.canary_version if share > 0 else None
    return (canary, share, traffic.shadow_version, traffic.sticky_key)


class TrafficRouter:
    """The canary and shadow of one served alias, kept in step with its stored policy.

    Args:
        primary: the model serving the alias.
        read_policy: reads the alias's policy (called in a worker thread).
        load: loads, checks and starts a fixed version (``name/3``) as a `ServedModel`.
        poll_seconds: how often the policy is read.
    """

    def __init__(
        self,
        primary: ServedModel,
        read_policy: Callable[[], Traffic | None],
        load: Callable[[int], Awaitable[ServedModel]],
        *,
        poll_seconds: float = 1.0,
    ) -> None:
        self.primary = primary
        self.read_policy = read_policy
        self.load = load
        self.poll_seconds = poll_seconds
        self.routes = Routes()
        self.problem: tuple[str, str] | None = None  # (version, why) of a held-back policy
        self._applied: tuple[object, ...] = _key(None)
        self._failed: tuple[tuple[object, ...], float] | None = None
        self._task: asyncio.Task[None] | None = None
        self._random = random.Random().random  # noqa: S311 - traffic split, not secrets
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._seconds = Histogram(
            "conveyor_route_request_seconds",
            "Seconds to answer a request, by route (primary, canary, shadow).",
            _SECONDS_BUCKETS,
        )

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        """Read the policy once and start polling it."""
        with contextlib.suppress(Exception):
            await self.refresh()
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        """Stop polling and stop the canary and shadow models."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        old, self.routes = self.routes, Routes()
        await _stop_unused(old, self.routes)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.refresh()
            except Exception:
                log.exception("serving %s: reading the traffic policy failed", self.primary.name)

    async def refresh(self) -> bool:
        """Read the policy and apply it if it changed; returns whether the routes changed."""
        traffic = await asyncio.to_thread(self.read_policy)
        key = _key(traffic)
        if key == self._applied:
            return False
        failed = self._failed
        if failed is not None and failed[0] == key and time.monotonic() < failed[1]:
            return False
        canary_v, share, shadow_v, sticky = key
        old = self.routes
        try:
            canary = await self._side(canary_v, old.canary)
            shadow = await self._side(shadow_v, old.shadow)
        except _LoadFailed as exc:
            self.problem = (str(exc.version), exc.reason)
            self._failed = (key, time.monotonic() + _RETRY_SECONDS)
            log.error(
                "serving %s: traffic policy held back, all requests stay on the primary: "
                "version %s: %s",
                self.primary.name,
                exc.version,
                exc.reason,
            )
            return False
        self.routes = Routes(canary, float(share), sticky, shadow)  # type: ignore[arg-type]
        self._applied, self._failed, self.problem = key, None, None
        await _stop_unused(old, self.routes)
        log.info(
            "serving %s: traffic now canary=%s (%.0f%%) shadow=%s",
            self.primary.name,
            canary_v,
            float(share) * 100,  # type: ignore[arg-type]
            shadow_v,
        )
        return True

    async def _side(self, version: object, current: ServedModel | None) -> ServedModel | None:
        if version is None:
            return None
        assert isinstance(version, int)
        if current is not None and current.current.version.version == version:
            return current
        try:
            return await self.load(version)
        except Exception as exc:
            raise _LoadFailed(version, f"{type(exc).__name__}: {exc}") from exc

    # -- the request path --------------------------------------------------
    def pick(self, headers: Mapping[str, str]) -> tuple[str, ServedModel]:
        """The route (``primary`` or ``canary``) and model for a request with ``headers``."""
        routes = self.routes
        canary = routes.canary
        if canary is None:
            return "primary", self.primary
        value = headers.get(routes.sticky_key) if routes.sticky_key else None
        if value is not None:
            draw = zlib.crc32(value.encode("utf-8", "surrogatepass")) / 4294967296.0
        else:
            draw = self._random()
        return ("canary", canary) if draw < routes.share else ("primary", self.primary)

    def observe(self, route: str, version: int | str, status: int, seconds: float) -> None:
        """Count one request answered on ``route`` by ``version``."""
        labels = (("model", self.primary.name), ("route", route), ("version", str(version)))
        with self._lock:
            self._requests[(route, str(version), str(status))] += 1
            self._seconds.observe(seconds, labels)

    def metric_lines(self) -> dict[str, list[str]]:
        """This router's Prometheus samples, by metric family."""
        model = _escape(self.primary.name)
        with self._lock:
            requests = [
                f'conveyor_route_requests_total{{model="{model}",route="{route}",'
                f'version="{version}",status="{status}"}} {count}'
                for (route, version, status), count in sorted(self._requests.items())
            ]
            seconds = self._seconds.render()[2:]
        routes = self.routes
        canary = routes.canary.current.version.version if routes.canary else ""
        shadow = routes.shadow.current.version.version if routes.shadow else ""
        policy = [
            f'conveyor_traffic_policy{{model="{model}",canary="{canary}",shadow="{shadow}"}} '
            f"{routes.share if routes.canary else 0}"
        ]
        errors = []
        if self.problem is not None:
            version, why = self.problem
            errors.append(
                f'conveyor_traffic_policy_error{{model="{model}",version="{version}",'
                f'reason="{_escape(why[:300])}"}} 1'
            )
        return {
            "conveyor_route_requests_total": requests,
            "conveyor_route_request_seconds": seconds,
            "conveyor_traffic_policy": policy,
            "conveyor_traffic_policy_error": errors,
        }


_FAMILIES = (
    ("conveyor_route_requests_total", "counter", "Requests answered, by route and version."),
    ("conveyor_route_request_seconds", "histogram", "Seconds to answer a request, by route."),
    ("conveyor_traffic_policy", "gauge", "The canary share in effect (0: none), its versions."),
    ("conveyor_traffic_policy_error", "gauge", "A traffic policy held back, and why (1)."),
)


def render_route_metrics(routers: list[TrafficRouter]) -> list[str]:
    """The Prometheus lines of every router, each metric family together."""
    samples = [router.metric_lines() for router in routers]
    lines: list[str] = []
    for name, kind, text in _FAMILIES:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for each in samples:
            lines += each[name]
    return lines


class _LoadFailed(Exception):
    def __init__(self, version: int, reason: str) -> None:
        super().__init__(reason)
        self.version = version
        self.reason = reason


async def _stop_unused(old: Routes, new: Routes) -> None:
    keep = {id(new.canary), id(new.shadow)}
    for side in (old.canary, old.shadow):
        if side is not None and id(side) not in keep:
            with contextlib.suppress(Exception):
                await side.stop()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
