"""One repetition of the tracking figures on MLflow (run in the peers' venv; prints JSON).

Started by `bench_tracking.py` with the peers' interpreter; every figure gets a
fresh SQLite file under ``--workdir``. The shapes match conveyor's side:

  a  ``mlflow.log_metric`` loop (synchronous, so durable on return)      -> calls/s
  b  ``MlflowClient.log_batch`` of 1,000 points (10 keys x 100 steps)    -> points/s
  c  runs with 10 params and 10 metrics (start, log_params, log_metrics, end) -> runs/s
  d  ``mlflow.search_runs`` with a metric filter and a metric order       -> ms
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _measure import CpuWindow, elapsed_ms

for _name in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
    os.environ.setdefault(_name, "true")

import mlflow  # noqa: E402  (after the telemetry switches)
from mlflow.entities import Metric, Param  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

KEYS = [f"m{k}" for k in range(10)]
PARAMS = {f"p{k}": f"value-{k}" for k in range(10)}
METRICS = {key: 0.1 * k for k, key in enumerate(KEYS)}
SEARCH_FILTER = "metrics.m0 > 0.5"
SEARCH_ORDER = "metrics.m1 DESC"
SEARCH_LIMIT = 100


def fresh_store(workdir: Path, figure: str) -> tuple[MlflowClient, str]:
    """Point MLflow at a new SQLite file and create an experiment (schema migration)."""
    uri = f"sqlite:///{workdir / f'mlflow-{figure}.db'}"
    mlflow.set_tracking_uri(uri)
    experiment_id = mlflow.create_experiment(f"bench-{figure}")
    mlflow.set_experiment(experiment_id=experiment_id)
    return MlflowClient(uri), experiment_id


def figure_a(client: MlflowClient, _exp: str, n: int) -> dict[str, Any]:
    with mlflow.start_run() as run, CpuWindow() as cpu:
        t0 = time.perf_counter()
        for i in range(n):
            mlflow.log_metric("loss", i * 0.5, step=i)
        seconds = time.perf_counter() - t0
    assert len(client.get_metric_history(run.info.run_id, "loss")) == n
    return {"calls": n, "seconds": seconds, "calls_per_s": n / seconds, "cpu": cpu.result}


def figure_b(client: MlflowClient, _exp: str, n_batches: int) -> dict[str, Any]:
    ts = int(time.time() * 1000)
    batches = [
        [Metric(KEYS[j % 10], float(j), ts, b * 100 + j // 10) for j in range(1000)]
        for b in range(n_batches)
    ]
    with mlflow.start_run() as run, CpuWindow() as cpu:
        t0 = time.perf_counter()
        for batch in batches:
            client.log_batch(run.info.run_id, metrics=batch)
        seconds = time.perf_counter() - t0
    points = n_batches * 1000
    assert len(client.get_metric_history(run.info.run_id, "m0")) == points // 10
    return {
        "points": points,
        "seconds": seconds,
        "points_per_s": points / seconds,
        "cpu": cpu.result,
    }


def figure_c(_client: MlflowClient, _exp: str, n: int) -> dict[str, Any]:
    with CpuWindow() as cpu:
        t0 = time.perf_counter()
        for _ in range(n):
            with mlflow.start_run():
                mlflow.log_params(PARAMS)
                mlflow.log_metrics(METRICS)
        seconds = time.perf_counter() - t0
    return {"runs": n, "seconds": seconds, "runs_per_s": n / seconds, "cpu": cpu.result}


def figure_d(client: MlflowClient, exp: str, args: argparse.Namespace) -> dict[str, Any]:
    populate_s = populate(client, exp, args.search_runs)

    def search() -> None:
        found = mlflow.search_runs(
            experiment_ids=[exp],
            filter_string=SEARCH_FILTER,
            order_by=[SEARCH_ORDER],
            max_results=SEARCH_LIMIT,
        )
        assert 0 < len(found) <= SEARCH_LIMIT, len(found)

    def client_search() -> None:
        client.search_runs([exp], SEARCH_FILTER, order_by=[SEARCH_ORDER], max_results=SEARCH_LIMIT)

    search()  # warm-up
    client_search()
    with CpuWindow() as cpu:
        times = elapsed_ms(search, args.search_repeats)
    client_times = elapsed_ms(client_search, args.search_repeats)
    return {
        "runs": args.search_runs,
        "repeats": args.search_repeats,
        "ms": statistics.median(times),
        "ms_all": times,
        "client_ms": statistics.median(client_times),
        "populate_s": populate_s,
        "cpu": cpu.result,
    }


def populate(client: MlflowClient, exp: str, n: int) -> float:
    """Create ``n`` finished runs with 10 params and 10 metrics each, as fast as MLflow allows."""
    rng = random.Random(0)
    params = [Param(k, v) for k, v in PARAMS.items()]
    ts = int(time.time() * 1000)
    t0 = time.perf_counter()
    for i in range(n):
        run_id = client.create_run(exp, run_name=f"r{i}").info.run_id
        metrics = [Metric(key, rng.random(), ts, 0) for key in KEYS]
        client.log_batch(run_id, metrics=metrics, params=params)
        client.set_terminated(run_id)
    return time.perf_counter() - t0


FIGURES = {
    "a": lambda c, e, a: figure_a(c, e, a.log_metric_calls),
    "b": lambda c, e, a: figure_b(c, e, a.batches),
    "c": lambda c, e, a: figure_c(c, e, a.create_runs),
    "d": figure_d,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--only", default="a,b,c,d")
    ap.add_argument("--log-metric-calls", type=int, default=2000)
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--create-runs", type=int, default=200)
    ap.add_argument("--search-runs", type=int, default=1000)
    ap.add_argument("--search-repeats", type=int, default=20)
    args = ap.parse_args()
    out: dict[str, Any] = {"mlflow_version": mlflow.__version__, "figures": {}}
    for figure in args.only.split(","):
        client, exp = fresh_store(args.workdir, figure)
        out["figures"][figure] = FIGURES[figure](client, exp, args)
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
