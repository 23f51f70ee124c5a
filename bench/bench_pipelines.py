"""Pipeline step overhead: conveyor beside ZenML, on the peers' shapes, each run its own process.

    python bench/bench_pipelines.py [--reps 3] [--quick] [--skip-zenml] [--only a_int,c_cached]

The shapes are those of ``shared/peers/pipelines`` (README there): (a) a chain of
20 steps passing an int, caching off; (b) 20 steps passing a 1,000,000 x 4
float64 DataFrame; (c) a fully cached re-run of (a); plus, for conveyor, (a)
with caching on and every lookup a miss, and a chain of 100 steps. ZenML runs
the peers' own scripts from that folder (nothing is copied: ``ZENML_CUSTOM_SOURCE_ROOT``
points ZenML at it) with the venv of ``bench/peers.py ensure-zenml``, its state in a
temporary work folder (``zenml init`` there, ``ZENML_CONFIG_PATH``, analytics off),
as the peers' driver does.

Every case: one warm-up (it also primes the cache for (c)), then REPS runs;
median [min-max] of the wall time. Per step = (median run wall - median
``import`` wall) / steps, the peers' formula; "in run" is the pipeline's own
time as the script reports it (conveyor: ``pipeline_s``; ZenML: "Pipeline run
has finished in"). Foreign cores: other tenants' CPU during the runs (0 = quiet).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import CpuWindow
from peers import ensure_zenml

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / "pipelines"
PEERS = Path(os.environ.get("CONVEYOR_PIPEPEERS_DIR", "/work/shared/peers/pipelines"))
TIMEOUT_S = 900
TARGETS = {"a_int": 0.010, "a_int_cache_miss": 0.010, "c_cached": 0.010, "b_df": 0.060}
NOOP_TARGET_S = 2.0
FINISHED = r"Step .* has finished in"


@dataclass
class Case:
    tool: str
    name: str
    argv: list[str]
    steps: int = 20
    check: tuple[str, int] | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    warmup: dict[str, Any] = field(default_factory=dict)


IMPORT_STACK = (
    "import conveyor.runtime.runner, conveyor.stores.metadata.sql.store, "
    "conveyor.stores.artifacts.fsspec_store"
)


def conveyor_cases() -> list[Case]:
    py = str(ROOT / ".venv" / "bin" / "python")
    script = str(HERE / "conveyor_int.py")
    done = r"^step \S+ FINISHED"
    return [
        # `import conveyor` is lazy (a few ms); what corresponds to `import zenml`, which
        # loads ZenML's whole stack, is importing the runner and the stores a run uses.
        Case("conveyor", "import", [py, "-c", IMPORT_STACK]),
        Case("conveyor", "cli_help", [str(ROOT / ".venv" / "bin" / "conveyor"), "--help"]),
        Case("conveyor", "a_int", [py, script], check=(done, 20)),
        Case("conveyor", "a_int_cache_miss", [py, script, "--cache", "--fresh"], check=(done, 20)),
        Case("conveyor", "b_df", [py, str(HERE / "conveyor_df.py")], check=(done, 20)),
        Case("conveyor", "c_cached", [py, script, "--cache"], check=(r"FINISHED cached$", 20)),
        Case("conveyor", "noop_100", [py, script, "--steps", "100"], 100, (done, 100)),
    ]


def zenml_cases(py: Path, quick: bool) -> list[Case]:
    cases = [
        Case("zenml", "import", [str(py), "-c", "import zenml"]),
        Case("zenml", "cli_help", [str(py.parent / "zenml"), "--help"]),
        Case("zenml", "a_int", [str(py), str(PEERS / "zenml_int.py")], check=(FINISHED, 20)),
        Case("zenml", "b_df", [str(py), str(PEERS / "zenml_df.py")], check=(FINISHED, 20)),
        Case(
            "zenml",
            "c_cached",
            [str(py), str(PEERS / "zenml_int.py"), "--cache"],
            check=(r"Using cached version of step", 20),
        ),
    ]
    return [c for c in cases if not (quick and c.name == "b_df")]  # a minute per run


def conveyor_env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_PIPEPEERS_DIR"] = str(PEERS)
    env.pop("PYTHONPATH", None)
    work.mkdir(parents=True, exist_ok=True)
    return env


def zenml_env(work: Path, py: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """ZenML's environment as the peers' driver sets it, and ``zenml init`` once in ``work``."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.update(
        ZENML_ANALYTICS_OPT_IN="false",
        DO_NOT_TRACK="1",
        ZENML_CONFIG_PATH=str(work / ".zenconfig"),
        # ZenML refuses step code outside its source root (the `zenml init` folder),
        # which is why the peers' driver copies the scripts; this runs them in place.
        ZENML_CUSTOM_SOURCE_ROOT=str(PEERS),
    )
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(py.parent / "zenml"), "init"], cwd=work, env=env, capture_output=True, timeout=300
    )
    return env, {"zenml_init_s": round(time.perf_counter() - t0, 3), "rc": done.returncode}


def run_once(case: Case, cwd: Path, env: dict[str, str], logs: Path, i: int) -> dict[str, Any]:
    out = logs / f"{case.tool}.{case.name}.{i}.log"
    with CpuWindow() as window, out.open("w") as log:
        done = subprocess.run(
            case.argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=TIMEOUT_S
        )
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.read_text(errors="replace"))
    rec: dict[str, Any] = {
        "wall_s": window.result["wall_s"],
        "rc": done.returncode,
        "foreign_cores": window.result["foreign_cores"],
        "log": str(out),
        "in_run_s": _in_run(text),
    }
    if case.check:
        rec["check"] = len(re.findall(case.check[0], text, flags=re.MULTILINE))
        rec["ok"] = done.returncode == 0 and rec["check"] == case.check[1]
    else:
        rec["ok"] = done.returncode == 0
    return rec


def _in_run(text: str) -> float | None:
    found = re.search(r"pipeline_s=([0-9.]+)", text) or re.search(
        r"Pipeline run has finished in `?([0-9.]+)s", text
    )
    return float(found[1]) if found else None


def run_case(case: Case, cwd: Path, env: dict[str, str], logs: Path, reps: int) -> None:
    case.warmup = run_once(case, cwd, env, logs, 0)
    case.runs = [run_once(case, cwd, env, logs, i) for i in range(1, reps + 1)]
    walls = " ".join(f"{r['wall_s']:.2f}" for r in case.runs)
    ok = "ok" if all(r["ok"] for r in case.runs) else "CHECK FAILED, see " + case.runs[-1]["log"]
    print(f"  {case.tool:9s} {case.name:18s} warm {case.warmup['wall_s']:.2f}s, {walls} {ok}")


def median(case: Case | None, key: str = "wall_s") -> float | None:
    values = [r[key] for r in (case.runs if case else []) if r.get(key) is not None]
    return statistics.median(values) if values else None


def spread(case: Case | None) -> str:
    if case is None or not case.runs:
        return "-"
    walls = [r["wall_s"] for r in case.runs]
    return f"{statistics.median(walls):.2f} [{min(walls):.2f}-{max(walls):.2f}]"


def per_step(case: Case | None, imported: Case | None) -> float | None:
    wall, base = median(case), median(imported)
    if case is None or wall is None or base is None:
        return None
    return (wall - base) / case.steps


def in_run_step(case: Case | None) -> float | None:
    value = median(case, "in_run_s")
    return None if case is None or value is None else value / case.steps


def table(cases: list[Case], reps: int) -> Any:
    from rich.table import Table

    by = {(c.tool, c.name): c for c in cases}
    t = Table(
        title=f"Pipelines, {reps} run(s) per case after a warm-up: median [min-max]",
        caption="per step = (wall - import wall) / steps; in run = the pipeline's own time; "
        "target met: by the per-step formula / in run",
    )
    for col in ("case", "conveyor s", "per step", "in run", "zenml s", "per step", "zenml/ours"):
        t.add_column(col, justify="left" if col == "case" else "right", no_wrap=True)
    t.add_column("target", no_wrap=True)
    names = dict.fromkeys(c.name for c in cases)
    for name in names:
        ours, theirs = by.get(("conveyor", name)), by.get(("zenml", name))
        mine = per_step(ours, by.get(("conveyor", "import"))) if name not in _BASE else None
        peer = per_step(theirs, by.get(("zenml", "import"))) if name not in _BASE else None
        ratio = _ratio(median(theirs), median(ours)) if name in _BASE else _ratio(peer, mine)
        t.add_row(
            name,
            spread(ours),
            _ms(mine),
            _ms(in_run_step(ours)),
            spread(theirs),
            _ms(peer),
            ratio,
            _target(name, ours, mine),
        )
    return t


_BASE = ("import", "cli_help")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


def _ratio(peer: float | None, ours: float | None) -> str:
    return "-" if peer is None or not ours else f"{peer / ours:.1f}x"


def _target(name: str, case: Case | None, step_s: float | None) -> str:
    if name == "noop_100" and case is not None:
        wall = median(case)
        return f"< {NOOP_TARGET_S:.0f} s: {'✓' if wall and wall < NOOP_TARGET_S else '✗'}"
    if name in TARGETS and step_s is not None:
        limit = TARGETS[name]
        ran = in_run_step(case)
        process = "✓" if step_s <= limit else "✗"
        inside = "✓" if ran is not None and ran <= limit else "✗"
        return f"≤ {limit * 1000:.0f} ms: {process} / {inside}"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 run per case; no ZenML (b)")
    parser.add_argument("--skip-zenml", action="store_true", help="conveyor only")
    parser.add_argument("--only", help="comma list of case names (import is always run)")
    parser.add_argument("--out", type=Path, help="raw JSON (default bench/results/…)")
    args = parser.parse_args()
    reps = 1 if args.quick else args.reps
    work = Path(tempfile.mkdtemp(prefix="conveyor-bench-pipelines-"))
    logs = work / "logs"
    logs.mkdir()
    plan: list[tuple[Case, Path, dict[str, str]]] = []
    setup: dict[str, Any] = {}
    cenv = conveyor_env(work / "conveyor")
    plan += [(c, work / "conveyor", cenv) for c in conveyor_cases()]
    if not args.skip_zenml:
        py = ensure_zenml()
        zenv, setup["zenml"] = zenml_env(work / "zenml", py)
        plan += [(c, work / "zenml", zenv) for c in zenml_cases(py, args.quick)]
    only = set(args.only.split(",")) | {"import"} if args.only else None
    plan = [p for p in plan if only is None or p[0].name in only]
    # Alternate tools case by case, so a drift in machine load hits both alike.
    order = list(dict.fromkeys(c.name for c, _, _ in plan))
    plan.sort(key=lambda p: order.index(p[0].name))
    for case, cwd, env in plan:
        run_case(case, cwd, env, logs, reps)
    from rich.console import Console

    cases = [c for c, _, _ in plan]
    console = Console(width=max(Console().width, 150))
    console.print(table(cases, reps))
    foreign = [r["foreign_cores"] for c in cases for r in c.runs]
    if foreign:
        console.print(
            f"foreign cores: median {statistics.median(foreign):.2f} "
            f"[{min(foreign):.2f}-{max(foreign):.2f}]; logs in {logs}"
        )
    _save(args.out, cases, setup, reps)
    for state in ("conveyor", "zenml"):  # stores and artifacts (GBs for ZenML's (b)); keep logs
        shutil.rmtree(work / state, ignore_errors=True)


def _save(out: Path | None, cases: list[Case], setup: dict[str, Any], reps: int) -> None:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out or ROOT / "bench" / "results" / f"pipelines-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "date": stamp,
        "reps": reps,
        "cpu_count": os.cpu_count(),
        "setup": setup,
        "cases": [
            {"tool": c.tool, "name": c.name, "argv": c.argv, "steps": c.steps}
            | {"warmup": c.warmup, "runs": c.runs}
            for c in cases
        ],
    }
    path.write_text(json.dumps(data, indent=1))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
