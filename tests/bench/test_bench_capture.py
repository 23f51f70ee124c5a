"""The capture benchmark's figures: the interval it prints around a median of rounds."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from bench_capture import _median_interval  # noqa: E402


def test_the_interval_holds_the_median_and_narrows_with_more_rounds() -> None:
    import random

    draw = random.Random(5).gauss
    few = [draw(0.92, 0.1) for _ in range(10)]
    many = [draw(0.92, 0.1) for _ in range(400)]
    low, high = _median_interval(few)
    assert low <= statistics.median(few) <= high
    wide = high - low
    low, high = _median_interval(many)
    assert low <= statistics.median(many) <= high
    assert high - low < wide / 2
    assert low < 0.92 < high
    assert _median_interval(few) == _median_interval(few)  # a fixed seed: the same figures
    assert _median_interval([0.9] * 7) == (0.9, 0.9)
