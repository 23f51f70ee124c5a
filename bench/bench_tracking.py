"""Tracking benchmark: conveyor (SQLite, PostgreSQL) beside MLflow (SQLite), in the same run.

    python bench/bench_tracking.py [--reps 3] [--quick] [--skip-mlflow] [--skip-postgres]
                                   [--only a,b,c,d] [--out FILE]

Figures (each repetition on a fresh store; medians over repetitions, [min-max]):

  a  ``log_metric`` in a loop until durable (flush included)             calls/s
  b  1M metric points as ``log_metrics`` of 10 keys per step, until durable  s per 1M points
  c  runs created with 10 params and 10 metrics each                    runs/s
  d  ``search_runs`` with a metric filter and a metric order, 100 results  ms

MLflow runs in the peers' venv (``bench/peers.py``) as a subprocess per
repetition (``_mlflow_tracking.py``), with smaller counts where it is slow;
rates are per second, so they compare. Raw numbers go to
``bench/results/tracking-<UTC timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _measure import CpuWindow, ServiceCpu, elapsed_ms, summarize
from peers import peers_python
from rich.console import Console
from rich.table import Table

from conveyor.core.entities import RunStatus
from conveyor.stores.backends import open_artifact_store, open_metadata_store
from conveyor.stores.metadata.base import NewRun, WriteBatch
from conveyor.tracking.tracker import Tracker

HERE = Path(__file__).resolve().parent
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
KEYS = [f"m{k}" for k in range(10)]
PARAMS = {f"p{k}": f"value-{k}" for k in range(10)}
METRICS = {key: 0.1 * k for k, key in enumerate(KEYS)}
SEARCH_FILTER = "metrics.m0 > 0.5"
SEARCH_ORDER = "metrics.m1 DESC"
SEARCH_LIMIT = 100
FIGURE_KEYS = ("a", "b", "c", "d")
CONVEYOR_BACKENDS = ("conveyor-sqlite", "conveyor-postgres")
MLFLOW = "mlflow-sqlite"
ALL_BACKENDS = (*CONVEYOR_BACKENDS, MLFLOW)

# Wide enough for the table when the output goes to a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 160)
Result = dict[str, Any]


# --- sizes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does, per side."""

    log_metric_calls: int
    batch_points: int
    create_runs: int
    search_runs: int
    search_repeats: int
    mlflow_log_metric_calls: int
    mlflow_batches: int  # of 1,000 points
    mlflow_create_runs: int
    mlflow_search_runs: int


FULL = Sizes(100_000, 1_000_000, 1_000, 10_000, 20, 2_000, 100, 200, 1_000)
QUICK = Sizes(10_000, 100_000, 200, 2_000, 5, 300, 10, 20, 100)


# --- conveyor stores -------------------------------------------------------------


@dataclass
class Store:
    """A tracker on a fresh store, and how to count the CPU of the services behind it."""

    tracker: Tracker
    services: ServiceCpu

    def window(self) -> CpuWindow:
        return CpuWindow(self.services)


@contextmanager
def conveyor_store(backend: str, postgres_base: str) -> Iterator[Store]:
    """A fresh conveyor store on ``backend``, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        if backend == "conveyor-sqlite":
            with _tracker(f"sqlite:///{tmp}/conveyor.db", tmp, dict) as store:
                yield store
            return
        port = urlsplit(postgres_base).port or 5432
        with postgres_schema(postgres_base) as url, _tracker(url, tmp, backend_cpu(port)) as store:
            yield store


@contextmanager
def _tracker(url: str, tmp: str, services: ServiceCpu) -> Iterator[Store]:
    tracker = Tracker(open_metadata_store(url), open_artifact_store(f"{tmp}/artifacts"))
    try:
        yield Store(tracker, services)
    finally:
        tracker.close()
        tracker.runs.close()


@contextmanager
def postgres_schema(base: str) -> Iterator[str]:
    """A URL whose connections use a new schema ``bench_<uuid>``, dropped afterwards."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        joiner = "&" if "?" in base else "?"
        yield f"{base}{joiner}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def postgres_reachable(base: str) -> str | None:
    """None if PostgreSQL answers at ``base``, else why not."""
    try:
        import psycopg

        psycopg.connect(base, connect_timeout=3).close()
    except Exception as exc:  # any failure means: skip this backend
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def backend_cpu(pg_port: int) -> ServiceCpu:
    """CPU seconds of the local PostgreSQL backends that serve this process's connections.

    They work for us, so they must not count as foreign load. A backend is
    found by the client port in its process title, ``… 127.0.0.1(PORT) …``.
    """

    def measure() -> dict[int, float]:
        marks = [f"({port})".encode() for port in _our_ports_to(pg_port)]
        found = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
                if title.startswith(b"postgres:") and any(m in title for m in marks):
                    found[int(pid)] = _process_cpu_s(pid)
            except OSError:
                continue  # gone meanwhile
        return found

    return measure


def _our_ports_to(remote_port: int) -> set[int]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue  # no IPv6, say
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def _process_cpu_s(pid: str) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- conveyor figures --------------------------------------------------------------


def figure_a(store: Store, sizes: Sizes) -> Result:
    """``log_metric`` calls per second, until durable."""
    n = sizes.log_metric_calls
    with store.tracker.start_run("bench-a") as run, store.window() as cpu:
        t0 = time.perf_counter()
        for i in range(n):
            run.log_metric("loss", i * 0.5, step=i)
        run.flush()
        seconds = time.perf_counter() - t0
    _check_points(store, run.id, "loss", n)
    return {"calls": n, "seconds": seconds, "calls_per_s": n / seconds, "cpu": cpu.result}


def figure_b(store: Store, sizes: Sizes) -> Result:
    """Points per second logged as ``log_metrics`` of 10 keys at one step, until durable."""
    rng = random.Random(0)
    steps = [{key: rng.random() for key in KEYS} for _ in range(100)]
    calls = sizes.batch_points // len(KEYS)
    with store.tracker.start_run("bench-b") as run, store.window() as cpu:
        t0 = time.perf_counter()
        for step in range(calls):
            run.log_metrics(steps[step % 100], step=step)
        run.flush()
        seconds = time.perf_counter() - t0
    _check_points(store, run.id, "m0", calls)
    points = calls * len(KEYS)
    return {
        "points": points,
        "seconds": seconds,
        "points_per_s": points / seconds,
        "cpu": cpu.result,
    }


def figure_c(store: Store, sizes: Sizes) -> Result:
    """Runs per second, each with 10 params and 10 metrics, ended (hence durable)."""
    n = sizes.create_runs
    with store.window() as cpu:
        t0 = time.perf_counter()
        for _ in range(n):
            with store.tracker.start_run("bench-c") as run:
                run.log_params(PARAMS)
                run.log_metrics(METRICS)
        seconds = time.perf_counter() - t0
    return {"runs": n, "seconds": seconds, "runs_per_s": n / seconds, "cpu": cpu.result}


def figure_d(store: Store, sizes: Sizes) -> Result:
    """Median milliseconds of a filtered, ordered ``search_runs`` over many runs."""
    populate_s = populate(store, sizes.search_runs)

    def search() -> list[Any]:
        found = store.tracker.search_runs(
            "bench-d", filter=SEARCH_FILTER, order_by=[SEARCH_ORDER], max_results=SEARCH_LIMIT
        )
        assert isinstance(found, list)
        return found

    _check_search(search())  # also the warm-up
    with store.window() as cpu:
        times = elapsed_ms(search, sizes.search_repeats)
    return {
        "runs": sizes.search_runs,
        "repeats": sizes.search_repeats,
        "ms": summarize(times)["median"],
        "ms_all": times,
        "populate_s": populate_s,
        "cpu": cpu.result,
    }


def populate(store: Store, n: int) -> float:
    """Insert ``n`` finished runs with 10 params and 10 metrics each, straight into the store."""
    runs = store.tracker.runs
    t0 = time.perf_counter()
    experiment = runs.get_or_create_experiment("bench-d")
    rng = random.Random(0)
    now = int(time.time() * 1000)
    batch = WriteBatch()
    for i in range(n):
        run_id = uuid.uuid4().hex
        runs.create_run(NewRun(run_id, experiment.id, f"r{i}", now))
        batch.metrics.extend((run_id, key, rng.random(), 0, now) for key in KEYS)
        batch.params.extend((run_id, key, value) for key, value in PARAMS.items())
        batch.ends.append((run_id, RunStatus.FINISHED, now))
    runs.write(batch)
    return time.perf_counter() - t0


def _check_points(store: Store, run_id: str, key: str, expected: int) -> None:
    got = len(store.tracker.runs.metric_history(run_id, key))
    assert got == expected, f"{key}: {got} points stored, {expected} logged"


def _check_search(found: list[Any]) -> None:
    assert 0 < len(found) <= SEARCH_LIMIT, f"search returned {len(found)} runs"
    m1 = [run.metrics["m1"] for run in found]
    assert all(run.metrics["m0"] > 0.5 for run in found), "search: filter not applied"
    assert m1 == sorted(m1, reverse=True), "search: not ordered by metrics.m1 DESC"


CONVEYOR_FIGURES: dict[str, Callable[[Store, Sizes], Result]] = {
    "a": figure_a,
    "b": figure_b,
    "c": figure_c,
    "d": figure_d,
}


def conveyor_rep(backend: str, only: list[str], sizes: Sizes, postgres: str) -> dict[str, Result]:
    """One repetition of the chosen figures, each on a fresh store."""
    out = {}
    for figure in only:
        with conveyor_store(backend, postgres) as store:
            out[figure] = CONVEYOR_FIGURES[figure](store, sizes)
    return out


# --- MLflow ------------------------------------------------------------------------------


def mlflow_rep(python: Path, only: list[str], sizes: Sizes) -> tuple[dict[str, Result], str]:
    """One repetition on MLflow in the peers' venv; returns the figures and MLflow's version."""
    with tempfile.TemporaryDirectory(prefix="mlflow-bench-") as tmp:
        argv = [
            str(python),
            str(HERE / "_mlflow_tracking.py"),
            *("--workdir", tmp, "--only", ",".join(only)),
            *("--log-metric-calls", str(sizes.mlflow_log_metric_calls)),
            *("--batches", str(sizes.mlflow_batches)),
            *("--create-runs", str(sizes.mlflow_create_runs)),
            *("--search-runs", str(sizes.mlflow_search_runs)),
            *("--search-repeats", str(sizes.search_repeats)),
        ]
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"the MLflow side failed ({done.returncode}):\n{done.stderr[-4000:]}")
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    return doc["figures"], doc["mlflow_version"]


# --- summary and table ---------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """How one figure is read, judged and shown."""

    title: str
    value: Callable[[Result], float]
    size: Callable[[Result], str]
    higher_is_better: bool
    target: float
    target_text: str
    min_ratio: float | None = None

    def meets(self, value: float, ratio: float | None) -> bool:
        ok = value >= self.target if self.higher_is_better else value <= self.target
        return ok and (self.min_ratio is None or ratio is None or ratio >= self.min_ratio)

    def ratio(self, conveyor: float, mlflow: float) -> float:
        """Above 1 when conveyor does better."""
        return conveyor / mlflow if self.higher_is_better else mlflow / conveyor


FIGURES = {
    "a": Figure(
        "(a) log_metric loop, calls/s",
        lambda r: r["calls_per_s"],
        lambda r: f"{r['calls']:,} calls",
        True,
        100_000,
        "≥ 100k/s and ≥ 500x MLflow",
        min_ratio=500,
    ),
    "b": Figure(
        "(b) log_metrics, s per 1M points",
        lambda r: 1e6 / r["points_per_s"],
        lambda r: f"{r['points']:,} points",
        False,
        2.0,
        "≤ 2 s",
    ),
    "c": Figure(
        "(c) runs with 10 params + 10 metrics, runs/s",
        lambda r: r["runs_per_s"],
        lambda r: f"{r['runs']:,} runs",
        True,
        1_000,
        "≥ 1,000/s",
    ),
    "d": Figure(
        "(d) search_runs filter+order, ms",
        lambda r: r["ms"],
        lambda r: f"{r['runs']:,} runs",
        False,
        50.0,
        "≤ 50 ms (10k runs)",
    ),
}


def summarize_results(results: dict[str, dict[str, list[Result]]]) -> dict[str, Any]:
    """Per backend and figure: the figure's value and the foreign cores, median [min-max]."""
    return {
        backend: {
            figure: {
                "value": summarize(FIGURES[figure].value(r) for r in reps),
                "foreign_cores": summarize(r["cpu"]["foreign_cores"] for r in reps),
            }
            for figure, reps in figures.items()
        }
        for backend, figures in results.items()
    }


def _num(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e4:
        return f"{v / 1e3:.0f}k"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _spread(s: dict[str, Any]) -> str:
    if not s:
        return "-"
    text = _num(s["median"])
    return text if s["n"] == 1 else f"{text} [{_num(s['min'])}-{_num(s['max'])}]"


def render(doc: dict[str, Any]) -> Table:
    """The comparison table: one row per figure, then the foreign load."""
    summary, results = doc["summary"], doc["results"]
    backends = list(results)
    table = Table(title=f"conveyor vs MLflow tracking ({doc['mode']}, {doc['reps']} reps)")
    for header in ("figure", "target", "conveyor sqlite", "conveyor postgres", "MLflow sqlite"):
        table.add_column(header)
    table.add_column("ratio\nsqlite/MLflow", justify="right")
    table.add_column("target met")
    for key in doc["figures"]:
        fig = FIGURES[key]
        cells = [_cell(summary, results, backend, key) for backend in ALL_BACKENDS]
        ratios = {b: _ratio(summary, b, key) for b in CONVEYOR_BACKENDS if b in backends}
        sqlite_ratio = ratios.get("conveyor-sqlite")
        ratio_text = "-" if sqlite_ratio is None else f"{sqlite_ratio:,.1f}x"
        table.add_row(fig.title, fig.target_text, *cells, ratio_text, _met(summary, key, ratios))
    foreign = [_foreign(doc, b) for b in ALL_BACKENDS]
    table.add_row("foreign cores (other tenants)", "≈ 0", *foreign, "", "")
    return table


def _cell(summary: dict[str, Any], results: dict[str, Any], backend: str, key: str) -> str:
    if backend not in summary or key not in summary[backend]:
        return "skipped"
    size = FIGURES[key].size(results[backend][key][0])
    return f"{_spread(summary[backend][key]['value'])}\n[dim]{size}[/dim]"


def _ratio(summary: dict[str, Any], backend: str, key: str) -> float | None:
    if MLFLOW not in summary or key not in summary[MLFLOW]:
        return None
    mine = summary[backend][key]["value"]["median"]
    theirs = summary[MLFLOW][key]["value"]["median"]
    return FIGURES[key].ratio(mine, theirs)


def _met(summary: dict[str, Any], key: str, ratios: dict[str, float | None]) -> str:
    marks = []
    for backend, ratio in ratios.items():
        ok = FIGURES[key].meets(summary[backend][key]["value"]["median"], ratio)
        mark = "[green]✓[/green]" if ok else "[red]✗[/red]"
        marks.append(f"{mark} {backend.removeprefix('conveyor-')}")
    return "\n".join(marks)


def _foreign(doc: dict[str, Any], backend: str) -> str:
    s = doc["foreign_cores"].get(backend)
    return "skipped" if not s else f"{s['median']:.2f} [{s['min']:.2f}-{s['max']:.2f}]"


def foreign_cores(results: dict[str, dict[str, list[Result]]]) -> dict[str, Any]:
    """Per backend, the foreign cores over every measured window of every figure and rep."""
    return {
        backend: summarize(r["cpu"]["foreign_cores"] for reps in figures.values() for r in reps)
        for backend, figures in results.items()
    }


# --- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--reps", type=int, default=3, help="repetitions per backend (default 3)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for smoke tests")
    ap.add_argument("--skip-mlflow", action="store_true")
    ap.add_argument("--skip-postgres", action="store_true")
    ap.add_argument("--only", default="a,b,c,d", help="figures to run, e.g. a,c")
    ap.add_argument(
        "--postgres-uri",
        default=os.environ.get("CONVEYOR_BENCH_POSTGRES_URI", DEFAULT_POSTGRES),
        help="server and database for conveyor's PostgreSQL backend (a schema per store)",
    )
    ap.add_argument(
        "--out", type=Path, help="JSON file (default: bench/results/tracking-<UTC>.json)"
    )
    args = ap.parse_args(argv)
    args.only = [f.strip() for f in args.only.split(",") if f.strip()]
    unknown = set(args.only) - set(FIGURE_KEYS)
    if unknown or not args.only:
        ap.error(f"--only takes some of {','.join(FIGURE_KEYS)}; got {sorted(unknown)}")
    if args.reps < 1:
        ap.error("--reps must be at least 1")
    return args


def plan(args: argparse.Namespace) -> tuple[list[str], dict[str, str], Path | None]:
    """The backends to run, those skipped (with why), and the MLflow interpreter."""
    backends, skipped = ["conveyor-sqlite"], {}
    why = "--skip-postgres" if args.skip_postgres else postgres_reachable(args.postgres_uri)
    if why is None:
        backends.append("conveyor-postgres")
    else:
        skipped["conveyor-postgres"] = why
    python = None
    if args.skip_mlflow:
        skipped[MLFLOW] = "--skip-mlflow"
    else:
        python = peers_python()
        if not python.exists():
            raise SystemExit(
                f"no MLflow interpreter at {python}: run `python bench/peers.py ensure` "
                "(or set CONVEYOR_PEERS_PYTHON), or pass --skip-mlflow"
            )
        backends.append(MLFLOW)
    for backend, reason in skipped.items():
        console.print(f"[yellow]skipping {backend}: {reason}[/yellow]")
    return backends, skipped, python


def run_all(
    args: argparse.Namespace, sizes: Sizes, backends: list[str], python: Path | None
) -> tuple[dict[str, dict[str, list[Result]]], str | None]:
    """Every repetition; backends take turns within a repetition, so drift hits all alike."""
    results: dict[str, dict[str, list[Result]]] = {b: {f: [] for f in args.only} for b in backends}
    mlflow_version = None
    for rep in range(args.reps):
        for backend in backends:
            console.log(f"rep {rep + 1}/{args.reps}: {backend}")
            if backend == MLFLOW:
                assert python is not None
                figures, mlflow_version = mlflow_rep(python, args.only, sizes)
            else:
                figures = conveyor_rep(backend, args.only, sizes, args.postgres_uri)
            for figure, result in figures.items():
                results[backend][figure].append(result)
    return results, mlflow_version


def _git_head() -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or None


def environment(mlflow_version: str | None) -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "conveyor": version("conveyor-mlops"),
        "git_commit": _git_head(),
        "sqlalchemy": version("sqlalchemy"),
        "mlflow": mlflow_version,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    started = datetime.now(UTC)
    backends, skipped, python = plan(args)
    results, mlflow_version = run_all(args, sizes, backends, python)
    doc = {
        "benchmark": "conveyor_tracking",
        "started_utc": started.isoformat(),
        "finished_utc": datetime.now(UTC).isoformat(),
        "mode": "quick" if args.quick else "full",
        "reps": args.reps,
        "figures": args.only,
        "sizes": asdict(sizes),
        "postgres_uri": args.postgres_uri,
        "skipped": skipped,
        "env": environment(mlflow_version),
        "summary": summarize_results(results),
        "foreign_cores": foreign_cores(results),
        "results": results,
    }
    out = args.out or HERE / "results" / f"tracking-{started:%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    console.print(render(doc))
    console.print(f"raw results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
