"""Start-up time of the command line: ``conveyor --help`` beside ``mlflow --help``.

    python bench/bench_cli.py [--reps 10]

Each figure is the median wall time of REPS fresh processes (after one warm-up
that fills the OS file cache), with [min-max]. Target: conveyor ≤ 0.5 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import peers_python

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 0.5


def wall(argv: list[str], reps: int) -> list[float]:
    """Wall seconds of ``reps`` runs of ``argv`` (one unmeasured warm-up first)."""
    subprocess.run(argv, capture_output=True, check=True)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    conveyor = wall([str(ROOT / ".venv" / "bin" / "conveyor"), "--help"], args.reps)
    mlflow_bin = peers_python().parent / "mlflow"
    mlflow = wall([str(mlflow_bin), "--help"], args.reps) if mlflow_bin.exists() else []
    table = Table(title=f"CLI start-up, median of {args.reps} [min-max]")
    for col in ("command", "seconds", "target", "met"):
        table.add_column(col)
    med = statistics.median(conveyor)
    table.add_row(
        "conveyor --help",
        f"{med:.3f} [{min(conveyor):.3f}-{max(conveyor):.3f}]",
        f"≤ {TARGET_S} s",
        "✓" if med <= TARGET_S else "✗",
    )
    if mlflow:
        m = statistics.median(mlflow)
        table.add_row("mlflow --help", f"{m:.3f} [{min(mlflow):.3f}-{max(mlflow):.3f}]", "-", "")
        table.caption = f"conveyor starts {m / med:.1f}x faster than mlflow"
    Console().print(table)


if __name__ == "__main__":
    main()
