"""Profile and schema inference (``lifecycle.analyze``) on 1,000,000 rows x 30 columns.

    python bench/bench_analyze.py [--rows 1000000] [--reps 3]

Beside it, in the same run on the same frame: pandas' own summary
(``describe(include="all")`` plus ``nunique``), the floor most people reach
for, which gives fewer statistics (no quantile sketch, no histograms, no
schema). TFDV, the tool the schema workflow follows, does not install on this
Python. Target: analyze ≤ 1 s at 1M x 30. Medians of REPS, [min-max].
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd


def make_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """20 numeric columns (some with nulls) and 10 categorical ones of 5 to 200 levels."""
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {}
    for i in range(20):
        column = rng.normal(i, 1 + i / 10, rows)
        if i % 5 == 0:
            column[rng.random(rows) < 0.02] = np.nan
        data[f"num_{i}"] = column
    for i in range(10):
        levels = np.array([f"v{j}" for j in range(5 + 20 * i)], dtype=object)
        data[f"cat_{i}"] = pd.Categorical(levels[rng.integers(0, len(levels), rows)])
    return pd.DataFrame(data)


def timed(fn, reps: int) -> list[float]:  # type: ignore[no-untyped-def]
    fn()  # warm-up: imports, caches
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    from conveyor import lifecycle as lc

    frame = make_frame(args.rows)
    ours = timed(lambda: lc.analyze(frame), args.reps)
    pandas = timed(lambda: (frame.describe(include="all"), frame.nunique()), args.reps)
    table = Table(title=f"analyze: {args.rows:,} rows x {frame.shape[1]} columns, {args.reps} reps")
    for col in ("what", "seconds", "target", "met"):
        table.add_column(col)
    med = statistics.median(ours)
    table.add_row(
        "conveyor lifecycle.analyze (profile + schema)",
        f"{med:.3f} [{min(ours):.3f}-{max(ours):.3f}]",
        "≤ 1 s",
        "✓" if med <= 1.0 else "✗",
    )
    floor = statistics.median(pandas)
    table.add_row(
        "pandas describe(include='all') + nunique",
        f"{floor:.3f} [{min(pandas):.3f}-{max(pandas):.3f}]",
        "-",
        "",
    )
    table.caption = f"conveyor / pandas time: {med / floor:.2f}"
    Console().print(table)


if __name__ == "__main__":
    main()
