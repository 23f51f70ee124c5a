"""Metric history as chunks: one row per (run, key) per committed batch, points packed as arrays."""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable, Sequence
from typing import Any

from conveyor.core.entities import Metric
from conveyor.stores.metadata.base import MetricRow

__all__ = ["decode_history", "encode_chunks", "latest_of_chunks"]

# Writing uses the standard library's arrays (numpy costs 100 ms to import, and a
# short pipeline writes but never reads history); reading uses numpy.
_STEP = "<i8"
_VALUE = "<f8"


def _packed(code: str, items: list[Any]) -> bytes:
    packed = array(code, items)
    if sys.byteorder == "big":
        packed.byteswap()  # stored little-endian everywhere
    return packed.tobytes()


def encode_chunks(rows: Sequence[MetricRow]) -> list[dict[str, Any]]:
    """Group points by (run, key) and pack each group into one chunk row."""
    groups: dict[tuple[str, str], tuple[list[int], list[float], list[int]]] = {}
    for run_id, key, value, step, ts in rows:
        group = groups.get((run_id, key))
        if group is None:
            group = groups[(run_id, key)] = ([], [], [])
        group[0].append(step)
        group[1].append(value)
        group[2].append(ts)
    chunks = []
    for (run_id, key), (steps, values, stamps) in groups.items():
        chunks.append(
            {
                "run_id": run_id,
                "key": key,
                "count": len(steps),
                "min_step": min(steps),
                "max_step": max(steps),
                "steps_blob": _packed("q", steps),
                "values_blob": _packed("d", values),
                "timestamps_blob": _packed("q", stamps),
                # carried for latest_of_chunks, not a column
                "_latest": _latest_point(steps, values, stamps),
            }
        )
    return chunks


def _latest_point(
    steps: list[int], values: list[float], stamps: list[int]
) -> tuple[int, int, float]:
    # Highest step, then latest timestamp, then the point written last.
    step, ts, index = max(zip(steps, stamps, range(len(steps)), strict=True))
    return step, ts, values[index]


def latest_of_chunks(chunks: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latest point of each chunk, as rows for the ``latest_metrics`` upsert."""
    rows = []
    for chunk in chunks:
        step, ts, value = chunk.pop("_latest")
        rows.append(
            {
                "run_id": chunk["run_id"],
                "key": chunk["key"],
                "value": None if math.isnan(value) else value,
                "step": step,
                "timestamp": ts,
            }
        )
    return rows


def decode_history(key: str, chunks: Sequence[tuple[bytes, bytes, bytes]]) -> list[Metric]:
    """Every point of the chunks, ordered by step, then timestamp, then write order."""
    if not chunks:
        return []
    import numpy as np

    steps = np.concatenate([np.frombuffer(c[0], dtype=_STEP) for c in chunks])
    values = np.concatenate([np.frombuffer(c[1], dtype=_VALUE) for c in chunks])
    stamps = np.concatenate([np.frombuffer(c[2], dtype=_STEP) for c in chunks])
    # lexsort is stable on the last key, so equal (step, timestamp) keep write order.
    order = np.lexsort((stamps, steps))
    return [
        Metric(key, v, s, t)
        for s, v, t in zip(
            steps[order].tolist(), values[order].tolist(), stamps[order].tolist(), strict=True
        )
    ]
