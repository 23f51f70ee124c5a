"""Prometheus metrics of the serving app, written in the text exposition format by hand."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Sequence
from itertools import accumulate

__all__ = ["Histogram", "Metrics"]

_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = [*labels, *extra]
    if not items:
        return ""
    text = ",".join(f'{k}="{_escape(v)}"' for k, v in items)
    return "{" + text + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Histogram:
    """A cumulative histogram per label set.

    Args:
        name: the metric's name.
        help_text: its HELP line.
        buckets: the upper bounds, increasing (``+Inf`` is added).
    """

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.help_text = help_text
        self.buckets = tuple(buckets)
        self._counts: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = defaultdict(float)

    def observe(self, value: float, labels: Labels = ()) -> None:
        """Count ``value`` under ``labels`` (one bucket per value; cumulated when rendered)."""
        counts = self._counts.get(labels)
        if counts is None:
            counts = self._counts[labels] = [0] * (len(self.buckets) + 1)
        counts[bisect_left(self.buckets, value)] += 1
        self._sums[labels] += value

    def render(self) -> list[str]:
        """The metric's lines."""
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} histogram"]
        for labels, counts in sorted(self._counts.items()):
            cumulative = list(accumulate(counts))
            for bound, count in zip(self.buckets, cumulative, strict=False):
                le = (("le", _number(bound)),)
                lines.append(f"{self.name}_bucket{_labels(labels, le)} {count}")
            total = cumulative[-1]
            lines.append(f"{self.name}_bucket{_labels(labels, (('le', '+Inf'),))} {total}")
            lines.append(f"{self.name}_sum{_labels(labels)} {_number(self._sums[labels])}")
            lines.append(f"{self.name}_count{_labels(labels)} {total}")
        return lines


class Metrics:
    """Request, batch, queue and model-load metrics of one serving app.

    Updates come from the event loop and from worker threads, so they take a lock.

    Args:
        queue_depth: called at render time; the queue depth of each model by name.
    """

    def __init__(self, queue_depth: Callable[[], dict[str, int]]) -> None:
        self._lock = threading.Lock()
        self._queue_depth = queue_depth
        self._requests: dict[Labels, int] = defaultdict(int)
        self.request_seconds = Histogram(
            "conveyor_request_seconds", "Seconds to answer a request.", _SECONDS_BUCKETS
        )
        self.batch_size = Histogram(
            "conveyor_batch_size", "Rows per prediction batch.", _BATCH_BUCKETS
        )
        self.load_seconds = Histogram(
            "conveyor_model_load_seconds", "Seconds to load and check a version.", _SECONDS_BUCKETS
        )

    def request(self, model: str, version: str, protocol: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        labels = (
            ("model", model),
            ("version", version),
            ("protocol", protocol),
            ("status", str(status)),
        )
        with self._lock:
            self._requests[labels] += 1
            self.request_seconds.observe(seconds, (("model", model), ("protocol", protocol)))

    def batch(self, model: str, rows: int) -> None:
        """Count one prediction batch of ``rows`` rows."""
        with self._lock:
            self.batch_size.observe(rows, (("model", model),))

    def model_loaded(self, model: str, seconds: float) -> None:
        """Count one version loaded (and checked) in ``seconds``."""
        with self._lock:
            self.load_seconds.observe(seconds, (("model", model),))

    def render(self) -> str:
        """All metrics in the Prometheus text format."""
        name = "conveyor_requests_total"
        lines = [f"# HELP {name} Requests answered.", f"# TYPE {name} counter"]
        with self._lock:
            lines += [f"{name}{_labels(k)} {v}" for k, v in sorted(self._requests.items())]
            lines += self.request_seconds.render()
            lines += self.batch_size.render()
            lines += self.load_seconds.render()
        gauge = "conveyor_queue_depth"
        lines += [f"# HELP {gauge} Requests waiting to be batched.", f"# TYPE {gauge} gauge"]
        for model, depth in sorted(self._queue_depth().items()):
            lines.append(f"{gauge}{_labels((('model', model),))} {depth}")
        return "\n".join(lines) + "\n"
