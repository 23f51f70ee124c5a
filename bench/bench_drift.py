"""Drift benchmark: conveyor beside Evidently's DataDriftPreset and the scipy floor, same data.

    python bench/bench_drift.py [--rows 10000,100000,1000000] [--reps 3] [--quick]
                                [--skip-evidently] [--evidently-reps N] [--out FILE]

Data: the peers' generator (``make_data`` of shared/peers/bench_drift.py,
imported, not copied): reference and current frames of ROWS rows each, 20
numeric columns (5 shifted) and 3 categorical ones (1 shifted).

Every measurement is its own process (``_drift_child.py``) under
``/usr/bin/time -v``, so peak RSS and process wall time are per case; the
repetitions take turns across implementations. Making the data in memory peaks
higher than holding it, so each child also reports the peak *during the work*
(VmHWM reset once the frames exist): that is the figure set against Evidently's.
Implementations:

  evidently         Report([DataDriftPreset()]) on the frames (Evidently 0.7.23, its own venv)
  scipy             the peers' scipy floor on the frames
  conveyor          drift(ref, cur) on the same pandas frames, in memory
  conveyor-parquet  drift("ref.parquet", "cur.parquet"): the frames never in memory
  conveyor-profile  profile(frame) of the reference and the current frame (time of one)
  conveyor-sketch   drift(mode="sketch") from the two stored profiles (load included)

Then, at the smallest size, Evidently and conveyor are run with the other
methods (ks/chisquare, psi, jensenshannon) and their statistics and verdicts
compared column by column. Raw numbers go to bench/results/drift-<UTC>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _measure import CpuWindow, summarize
from peers import ensure_evidently
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHILD = HERE / "_drift_child.py"
RESULTS = HERE / "results"
PEERS = Path(os.environ.get("CONVEYOR_PEERS_DIR", ROOT.parent / "shared" / "peers"))
IMPLS = (
    "evidently",
    "scipy",
    "conveyor",
    "conveyor-parquet",
    "conveyor-profile",
    "conveyor-sketch",
)
CROSSCHECK = (("ks", "chisquare"), ("psi", "psi"), ("jensenshannon", "jensenshannon"))
TIME_FIELDS = {
    "wall_s": r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)",
    "rss_mb": r"Maximum resident set size \(kbytes\): (\d+)",
}

console = Console(width=None if sys.stdout.isatty() else 170)


# --- running one case -------------------------------------------------------------------


def parse_time_v(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    wall = re.search(TIME_FIELDS["wall_s"], text)
    if wall:
        seconds = 0.0
        for part in wall.group(1).split(":"):
            seconds = seconds * 60 + float(part)
        out["wall_s"] = seconds
    rss = re.search(TIME_FIELDS["rss_mb"], text)
    if rss:
        out["rss_mb"] = int(rss.group(1)) / 1024
    return out


def run_child(
    python: str, impl: str, rows: int, data: Path, extra: list[str], timeout: int
) -> dict[str, Any]:
    cmd = ["/usr/bin/time", "-v", python, str(CHILD), impl, "--rows", str(rows)]
    cmd += ["--data", str(data), "--peers", str(PEERS), *extra]
    with CpuWindow() as window:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        except subprocess.TimeoutExpired:
            return {"impl": impl, "rows": rows, "error": f"timeout {timeout}s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"impl": impl, "rows": rows, "error": done.stderr[-3000:]}
    result: dict[str, Any] = json.loads(lines[-1])
    result.update(parse_time_v(done.stderr))
    if result.get("data_peak_mb"):  # the child reset VmHWM after making its data
        result["rss_mb"] = max(result.get("rss_mb", 0.0), result["data_peak_mb"])
    result["foreign_cores"] = window.result["foreign_cores"]
    return result


def ensure_data(rows: int, timeout: int) -> Path:
    """The peers' frames for ``rows`` as Parquet under bench/results (made once, not timed)."""
    data = RESULTS / "drift-data" / str(rows)
    if not (data / "cur.parquet").exists():
        result = run_child(sys.executable, "make-data", rows, data, [], timeout)
        if "error" in result:
            raise SystemExit(f"could not write the data for {rows} rows:\n{result['error']}")
    return data


# --- the plan ---------------------------------------------------------------------------


def python_for(impl: str, evidently_python: str | None) -> str:
    return evidently_python if impl == "evidently" and evidently_python else sys.executable


def reps_for(impl: str, rows: int, args: argparse.Namespace) -> int:
    if impl == "evidently" and rows >= 1_000_000:
        return min(args.reps, args.evidently_reps)
    return args.reps


def log(result: dict[str, Any]) -> None:
    if "error" in result:
        console.print(
            f"[red]{result['impl']} rows={result['rows']} failed[/]: {result['error'][-400:]}"
        )
        return
    console.print(
        f"{result['impl']:>16} rows={result['rows']:>9,}: compute {result['compute_s']:.3f} s, "
        f"wall {result.get('wall_s', 0):.1f} s, peak {result.get('rss_mb', 0):.0f} MB "
        f"(during the work {result.get('work_peak_mb') or 0:.0f} MB), "
        f"foreign cores {result['foreign_cores']:.2f}",
        highlight=False,
    )


def measure(
    args: argparse.Namespace, impls: list[str], evidently_python: str | None
) -> list[dict[str, Any]]:
    results = []
    for rows in args.rows:
        data = ensure_data(rows, args.timeout)
        for rep in range(args.reps):
            for impl in impls:
                if rep < reps_for(impl, rows, args):
                    result = run_child(
                        python_for(impl, evidently_python), impl, rows, data, [], args.timeout
                    )
                    result["rep"] = rep
                    log(result)
                    results.append(result)
    return results


def crosscheck(args: argparse.Namespace, evidently_python: str) -> list[dict[str, Any]]:
    rows = min(args.rows)
    data = ensure_data(rows, args.timeout)
    checks = []
    for num, cat in CROSSCHECK:
        extra = ["--num-method", num, "--cat-method", cat]
        pair = {}
        for impl in ("evidently", "conveyor"):
            pair[impl] = run_child(
                python_for(impl, evidently_python), impl, rows, data, extra, args.timeout
            )
        checks.append({"rows": rows, "num_method": num, "cat_method": cat, **agreement(pair)})
    return checks


# --- comparing ----------------------------------------------------------------------------


def agreement(pair: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per-column verdicts and values of conveyor beside Evidently's."""
    theirs, ours = pair["evidently"].get("columns"), pair["conveyor"].get("columns")
    if not theirs or not ours:
        return {"error": "a side failed", "columns": {}}
    columns = {}
    for name, e in theirs.items():
        c = ours[name]
        diff = abs(e["value"] - c["value"]) if c["value"] is not None else None
        columns[name] = {
            "evidently_method": e["method"],
            "conveyor_method": c["method"],
            "evidently_value": e["value"],
            "conveyor_value": c["value"],
            "abs_diff": diff,
            "evidently_drifted": e["drifted"],
            "conveyor_drifted": c["drifted"],
            "agree": e["drifted"] == c["drifted"],
        }
    agree = sum(col["agree"] for col in columns.values())
    diffs = [col["abs_diff"] for col in columns.values() if col["abs_diff"] is not None]
    return {
        "agree": agree,
        "total": len(columns),
        "max_abs_diff": max(diffs, default=None),
        "columns": columns,
    }


def cells(results: list[dict[str, Any]]) -> dict[tuple[int, str], dict[str, Any]]:
    out: dict[tuple[int, str], dict[str, Any]] = {}
    for rows in sorted({r["rows"] for r in results}):
        for impl in IMPLS:
            ok = [
                r for r in results if r["rows"] == rows and r["impl"] == impl and "error" not in r
            ]
            if ok:
                out[(rows, impl)] = {
                    key: summarize(r[key] for r in ok if key in r)
                    for key in (
                        "compute_s",
                        "wall_s",
                        "rss_mb",
                        "work_peak_mb",
                        "data_mb",
                        "foreign_cores",
                        "profile_cur_s",
                    )
                }
    return out


def _span(s: dict[str, Any], fmt: str) -> str:
    if not s:
        return "-"
    text = format(s["median"], fmt)
    return text if s["n"] == 1 else f"{text} [{format(s['min'], fmt)}-{format(s['max'], fmt)}]"


def _ratio(ours: dict[str, Any], theirs: dict[str, Any] | None, key: str) -> str:
    if not theirs or not ours.get(key) or not theirs.get(key):
        return "-"
    value = theirs[key]["median"] / ours[key]["median"]
    return f"{value:.0f}x" if value >= 10 else f"{value:.1f}x"


def print_summary(summary: dict[tuple[int, str], dict[str, Any]]) -> None:
    table = Table(
        title="drift: conveyor beside Evidently and the scipy floor (medians \\[min-max])"
    )
    heads = ("rows", "implementation", "compute s", "process wall s", "peak RSS MB")
    for head in (
        *heads,
        "peak during the work MB",
        "faster than Evidently (compute / wall)",
        "work peak vs Evidently",
        "vs scipy compute",
    ):
        table.add_column(head, justify="right" if head != "implementation" else "left")
    for (rows, impl), cell in summary.items():
        evidently, floor = summary.get((rows, "evidently")), summary.get((rows, "scipy"))
        share = "-"
        if evidently and cell.get("work_peak_mb") and evidently.get("work_peak_mb"):
            share = f"{cell['work_peak_mb']['median'] / evidently['work_peak_mb']['median']:.2f}"
        speed = f"{_ratio(cell, evidently, 'compute_s')} / {_ratio(cell, evidently, 'wall_s')}"
        row = (f"{rows:,}", impl, _span(cell["compute_s"], ".3f"), _span(cell["wall_s"], ".1f"))
        table.add_row(
            *row,
            _span(cell["rss_mb"], ".0f"),
            _span(cell["work_peak_mb"], ".0f"),
            speed,
            share,
            _ratio(cell, floor, "compute_s"),
        )
    console.print(table)


def print_agreement(title: str, check: dict[str, Any]) -> None:
    table = Table(title=title)
    for head in (
        "column",
        "Evidently method",
        "Evidently",
        "conveyor",
        "|diff|",
        "drifted E / c",
        "agree",
    ):
        table.add_column(head)
    for name, col in check["columns"].items():
        verdicts = f"{col['evidently_drifted']} / {col['conveyor_drifted']}"
        diff = "-" if col["abs_diff"] is None else f"{col['abs_diff']:.1e}"
        values = (f"{col['evidently_value']:.6g}", f"{col['conveyor_value']:.6g}", diff)
        table.add_row(
            name,
            col["evidently_method"],
            *values,
            verdicts,
            "yes" if col["agree"] else "[red]NO[/]",
        )
    console.print(table)
    console.print(
        f"{check['agree']} of {check['total']} verdicts agree; max |diff| {check['max_abs_diff']}"
    )


def default_agreement(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for rows in sorted({r["rows"] for r in results}):
        pick = {
            impl: next(
                (r for r in results if r["rows"] == rows and r["impl"] == impl and "columns" in r),
                {},
            )
            for impl in ("evidently", "conveyor")
        }
        if pick["evidently"] and pick["conveyor"]:
            out.append({"rows": rows, **agreement(pick)})
    return out


def print_targets(summary: dict[tuple[int, str], dict[str, Any]]) -> None:
    def median(rows: int, impl: str, key: str) -> float | None:
        cell = summary.get((rows, impl), {}).get(key)
        return cell["median"] if cell else None

    lines = []
    exact = median(1_000_000, "conveyor", "compute_s")
    if exact is not None:
        lines.append(f"exact at 1M (in memory): {exact:.2f} s compute (target <= 3.7 s)")
    evidently_work = median(1_000_000, "evidently", "work_peak_mb")
    for impl, how in (("conveyor", "in memory"), ("conveyor-parquet", "from Parquet")):
        ours = median(1_000_000, impl, "work_peak_mb")
        if ours and evidently_work:
            lines.append(
                f"peak RSS during the report at 1M {how}: {ours:.0f} MB = "
                f"{ours / evidently_work:.2f} of Evidently's {evidently_work:.0f} MB "
                "(target <= 0.33)"
            )
    small = (median(10_000, "conveyor", "compute_s"), median(10_000, "evidently", "compute_s"))
    if all(small):
        lines.append(f"at 10k: {small[1] / small[0]:.0f}x Evidently's compute (target >= 10x)")
    for rows in sorted({rows for rows, _ in summary}):
        sketch, prof = (
            median(rows, "conveyor-sketch", "compute_s"),
            median(rows, "conveyor-profile", "compute_s"),
        )
        if sketch is not None and prof is not None:
            lines.append(f"{rows:,} rows: sketch drift {sketch:.3f} s (target <= 0.5 s)")
            lines.append(f"{rows:,} rows: profile of one frame {prof:.2f} s (1M target <= 1 s)")
    for line in lines:
        console.print(line, highlight=False)


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--rows", default=None, help="comma-separated sizes (default 10000,100000,1000000)"
    )
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3; --quick 1)")
    ap.add_argument(
        "--evidently-reps", type=int, default=1, help="Evidently's reps at >= 1M rows (default 1)"
    )
    ap.add_argument("--quick", action="store_true", help="small sizes (2000, 20000), one rep")
    ap.add_argument("--skip-evidently", action="store_true")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per process")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    default_rows = "2000,20000" if args.quick else "10000,100000,1000000"
    args.rows = [int(r) for r in (args.rows or default_rows).split(",")]
    args.reps = args.reps or (1 if args.quick else 3)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (PEERS / "bench_drift.py").exists():
        raise SystemExit(
            f"the peers' generator is missing: {PEERS}/bench_drift.py (set CONVEYOR_PEERS_DIR)"
        )
    evidently_python = None if args.skip_evidently else str(ensure_evidently())
    impls = [i for i in IMPLS if i != "evidently" or evidently_python]
    results = measure(args, impls, evidently_python)
    summary = cells(results)
    print_summary(summary)
    agreements = default_agreement(results)
    for check in agreements:
        print_agreement(f"default methods, {check['rows']:,} rows: Evidently vs conveyor", check)
    checks = crosscheck(args, evidently_python) if evidently_python else []
    for check in checks:
        methods = f"{check['num_method']}/{check['cat_method']}"
        print_agreement(f"{methods}, {check['rows']:,} rows: Evidently vs conveyor", check)
    print_targets(summary)
    out = args.out or RESULTS / f"drift-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "drift",
        "params": {**vars(args), "out": str(out)},
        "results": results,
        "summary": [{"rows": r, "impl": i, **c} for (r, i), c in summary.items()],
        "agreement": agreements,
        "crosscheck": checks,
        "median_foreign_cores": statistics.median(
            [r.get("foreign_cores", 0) for r in results] or [0]
        ),
    }
    out.write_text(json.dumps(doc, indent=1, default=str))
    console.print(f"raw results: {out}")
    failed = [r for r in results if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
