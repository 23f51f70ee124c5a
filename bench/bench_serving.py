"""Serving benchmark: ``conveyor serve`` beside ``mlflow models serve`` and a FastAPI floor.

    python bench/bench_serving.py [--rounds 3] [--reps 1] [--duration 5] [--concurrency 1,8,32]
                                  [--rows 1,100] [--skip-mlflow] [--quick] [--out FILE]
                                  [--conveyor-args=--no-capture]

Same model, same payloads, same load generator for every server: the peers' own
scripts in ``shared/peers`` (``CONVEYOR_PEERS_DIR``) run as they are, in the peers'
venv (``bench/peers.py``, ``CONVEYOR_PEERS_PYTHON``):

1. ``train_models.py`` trains the GradientBoostingClassifier (20 float features),
   logs it to MLflow, dumps it with joblib and writes ``payload_{1,100}.json``
   (``{"inputs": [[...20 floats...]]}``).
2. This script loads that joblib (our own file) in conveyor's venv and registers it
   in a temporary project (SQLite + file store), alias ``production``. The input
   example is a frame of 20 named float columns: with a numpy example (a tensor
   signature) conveyor's ``/invocations`` refuses the 2-D ``inputs`` list.
3. ``bench_serving.py --server mlflow|fastapi|cmd`` starts each server (one worker),
   checks one response, and loads it with ``wrk -t1 -cC`` (``wrk_post.lua``).
   conveyor runs as ``env CONVEYOR_METADATA_URI=.. CONVEYOR_ARTIFACT_URI=..
   <venv>/bin/conveyor serve bench@production`` on ``/invocations``.

Each round runs every server once, in turn (``--rounds``, default 1): the box is
shared, so a ratio is taken between servers of the same round (minutes apart, not
tens of minutes), and the table shows medians over rounds (of the cells, and of
the per-round ratios). ``cpu us/req`` is the CPU time of the server and wrk per
request (from the peers' ``CpuMonitor``), which other tenants' load disturbs far
less than req/s; ``foreign`` is the cores other tenants used meanwhile. Memory is
the server's RSS after load (one worker). The in-process floor is the estimator's
``predict`` and conveyor's own `Predictor` (ONNX / native array / native frame).

Defaults: 1 rep x 5 s per cell after a 2 s warm-up. MLflow runs with its defaults
(per-request access log); conveyor runs as ``conveyor serve`` does (uvicorn, info
log); the FastAPI reference runs with the access log off — a floor, not a product.
Server and load generator share the machine. Raw JSON goes to
``bench/results/serving-<UTC timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from peers import peers_python
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = Path(os.environ.get("CONVEYOR_PEERS_DIR", ROOT.parent / "shared" / "peers"))
MODEL = "gbc"
NAME = "bench"
SERVERS = ("conveyor", "mlflow", "fastapi")


# The peers' bench_serving.py reads ``common.PEERS_HOME`` but only does
# ``from common import ...``, so run as a file it stops with a NameError. It is run
# unchanged through runpy, with the ``common`` module handed in as a global.
SHIM = (
    "import runpy, sys; sys.path.insert(0, sys.argv[1]); import common; "
    "sys.argv = sys.argv[2:]; "
    "runpy.run_path(sys.argv[0], init_globals={'common': common}, run_name='__main__')"
)


def run_peer(python: Path, script: str, args: list[str], env: dict[str, str]) -> None:
    argv = [str(python), "-c", SHIM, str(PEERS), str(PEERS / script), *args]
    print("+", shlex.join(argv), file=sys.stderr, flush=True)
    # their stdout (JSON dumps) goes to stderr, so that stdout holds only the tables
    subprocess.run(argv, check=True, env=env, cwd=str(PEERS), stdout=sys.stderr)


def register(workdir: Path, project: Path) -> dict[str, str]:
    """Register the peers' joblib GBC in a temp project; return the env that points at it."""
    import joblib
    import numpy as np
    import pandas as pd

    from conveyor.registry import Registry
    from conveyor.stores.backends import open_artifact_store, open_model_store

    meta_uri = f"sqlite:///{project / 'conveyor.db'}"
    art_uri = str(project / "artifacts")
    est = joblib.load(workdir / "models" / f"{MODEL}.joblib")  # our own file, just trained
    rows = json.loads((workdir / "payload_100.json").read_text())["inputs"][:5]
    # A numpy example gives a tensor signature, and conveyor's /invocations refuses a
    # 2-D ``inputs`` list against it ("each row of inputs must hold 0 values"). So the
    # example is a frame with 20 named float columns, and the estimator is told those
    # names (metadata only: same trees, same predictions, no feature-name warning).
    names = [f"f{i}" for i in range(len(rows[0]))]
    example = pd.DataFrame(np.asarray(rows, dtype="float64"), columns=names)
    est.feature_names_in_ = np.asarray(names, dtype=object)
    registry = Registry(open_model_store(meta_uri), open_artifact_store(art_uri))
    version = registry.register_model(NAME, est, input_example=example)
    registry.set_alias(NAME, "production", version.version, reason="serving benchmark")
    return {"CONVEYOR_METADATA_URI": meta_uri, "CONVEYOR_ARTIFACT_URI": art_uri}


def predict_floor(workdir: Path) -> dict[str, float]:
    """In-process ``est.predict`` per call (us), 1 and 100 rows: the floor under any server."""
    import joblib
    import numpy as np

    est = joblib.load(workdir / "models" / f"{MODEL}.joblib")
    rows = np.asarray(json.loads((workdir / "payload_100.json").read_text())["inputs"])
    out = {}
    for n in (1, 100):
        x = rows[:n]
        out[f"rows_{n}_us"] = _best_us(lambda x=x: est.predict(x))
    return out


def _best_us(fn: Any, k: int = 200) -> float:
    for _ in range(50):  # warm-up
        fn()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        best = min(best, (time.perf_counter() - t0) / k * 1e6)
    return best


def predictor_floor(workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    """conveyor's `Predictor` in process, per mode (us per call), 1 and 100 rows."""
    import numpy as np

    from conveyor.registry import Registry
    from conveyor.serving.fastpath import Predictor
    from conveyor.stores.backends import open_artifact_store, open_model_store

    registry = Registry(
        open_model_store(env["CONVEYOR_METADATA_URI"]),
        open_artifact_store(env["CONVEYOR_ARTIFACT_URI"]),
    )
    loaded = registry.load_model(f"{NAME}@production")
    rows = np.asarray(json.loads((workdir / "payload_100.json").read_text())["inputs"])
    out: dict[str, Any] = {}
    for label, onnx in (("onnx", True), ("array", False)):
        predictor = Predictor(loaded, onnx=onnx)
        if predictor.mode != label:
            out[label] = f"not used ({predictor.mode})"
            continue
        for n in (1, 100):
            x = rows[:n]
            out[f"{label}_rows_{n}_us"] = _best_us(lambda x=x, p=predictor: p.predict([x], False))
    predictor = Predictor(loaded, onnx=False)
    predictor.mode = "frame"  # the native model on a DataFrame, as registered
    for n in (1, 100):
        x = rows[:n]
        out[f"frame_rows_{n}_us"] = _best_us(lambda x=x: predictor.predict([x], False))
    return out


def check_by_hand(env: dict[str, str], workdir: Path, project: Path, extra: list[str]) -> str:
    """Start conveyor once, POST the 1-row payload, return the answer (fails loudly)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    exe = Path(sys.executable).parent / "conveyor"
    log = open(project / "check.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(exe),
            "serve",
            f"{NAME}@production",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *extra,
        ],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        body = (workdir / "payload_1.json").read_bytes()
        deadline = time.monotonic() + 60
        while True:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/invocations",
                    data=body,
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.read().decode()
            except urllib.error.HTTPError as exc:
                raise SystemExit(f"conveyor refused the peers' payload: {exc.read()!r}") from exc
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"conveyor serve did not come up: {(project / 'check.log').read_text()}"
                    ) from None
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def bench_server(
    server: str, python: Path, a: argparse.Namespace, env: dict[str, str], conv_env: dict[str, str]
) -> dict[str, Any]:
    out = Path(env["PEERS_HOME"]) / f"serve_{server}_{time.monotonic_ns()}.json"
    args = [
        "--model",
        MODEL,
        "--rows",
        a.rows,
        "--conc",
        a.concurrency,
        "--reps",
        str(a.reps),
        "--duration",
        str(a.duration),
        "--warmup",
        str(a.warmup),
        "--out",
        str(out),
    ]
    if server == "conveyor":
        exe = Path(sys.executable).parent / "conveyor"
        pre = " ".join(f"{k}={shlex.quote(v)}" for k, v in conv_env.items())
        cmd = f"env {pre} {exe} serve {NAME}@production --host 127.0.0.1 --port {{port}}"
        if a.conveyor_args:
            cmd += " " + a.conveyor_args
        args = [
            "--server",
            "cmd",
            "--label",
            "conveyor",
            "--path",
            "/invocations",
            "--server-cmd",
            cmd,
            "--ready-url",
            "http://127.0.0.1:{port}/ping",
            *args,
        ]
    else:
        args = ["--server", server, *args]
    run_peer(python, "bench_serving.py", args, env)
    return json.loads(out.read_text())


Rounds = list[dict[str, dict[str, Any] | None]]  # per round: server -> the peers' result


def one_cell(result: dict[str, Any] | None, rows: int, conc: int) -> dict[str, float] | None:
    """One server's cell of one round: req/s, p50, p99, CPU us per request, foreign cores."""
    if not result:
        return None
    for c in result["cells"]:
        if c["rows"] == rows and c["concurrency"] == conc:
            rps = c["rps"].get("median", float("nan"))
            ours = c.get("ours_cores", {}).get("median")
            return {
                "rps": rps,
                "p50": c["p50_ms"].get("median", float("nan")),
                "p99": c["p99_ms"].get("median", float("nan")),
                "cpu_us": ours / rps * 1e6 if ours and rps else float("nan"),
                "foreign": c.get("foreign_cores", {}).get("median", float("nan")),
                "errors": c["errors"],
            }
    return None


def cell_of(rounds: Rounds, server: str, rows: int, conc: int) -> dict[str, float] | None:
    """The cell's medians over rounds (errors summed)."""
    cells = [c for r in rounds if (c := one_cell(r.get(server), rows, conc)) is not None]
    if not cells:
        return None
    out = {k: statistics.median(c[k] for c in cells) for k in cells[0] if k != "errors"}
    out["errors"] = sum(c["errors"] for c in cells)
    return out


def ratio_of(rounds: Rounds, key: str, server: str, rows: int, conc: int) -> float | None:
    """The median over rounds of conveyor's ``key`` divided by ``server``'s in that round."""
    ratios = []
    for r in rounds:
        mine, theirs = one_cell(r.get("conveyor"), rows, conc), one_cell(r.get(server), rows, conc)
        if mine and theirs and theirs[key]:
            ratios.append(mine[key] / theirs[key])
    return statistics.median(ratios) if ratios else None


def memory_of(rounds: Rounds, server: str) -> float | None:
    """The server's RSS after load (MB), median over rounds."""
    values = []
    for r in rounds:
        result = r.get(server) or {}
        if result.get("rss_mb_after_load") is not None:
            values.append(float(result["rss_mb_after_load"]))
    return statistics.median(values) if values else None


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None or x != x else format(x, spec)


def targets(rounds: Rounds, concs: list[int]) -> list[tuple[str, str, Any]]:
    """The issue's targets: (what, measured as the median per-round ratio, met?)."""
    out: list[tuple[str, str, Any]] = []

    def add(what: str, r: float | None, ok: Any) -> None:
        out.append((what, f"{fmt(r)}x", None if r is None else ok(r)))

    if 1 in concs:
        add(
            "1 row, c=1: p50 <= 0.5x MLflow",
            ratio_of(rounds, "p50", "mlflow", 1, 1),
            lambda r: r <= 0.5,
        )
        add(
            "1 row, c=1: p50 <= FastAPI's",
            ratio_of(rounds, "p50", "fastapi", 1, 1),
            lambda r: r <= 1,
        )
    if 32 in concs:
        add(
            "1 row, c=32: req/s >= 5x MLflow",
            ratio_of(rounds, "rps", "mlflow", 1, 32),
            lambda r: r >= 5,
        )
    for conc in concs:
        r = ratio_of(rounds, "rps", "mlflow", 100, conc)
        if r is not None:
            add(f"100 rows, c={conc}: req/s >= 5x MLflow", r, lambda r: r >= 5)
    mine, theirs = memory_of(rounds, "conveyor"), memory_of(rounds, "mlflow")
    if mine is not None and theirs is not None:
        add("memory per worker <= MLflow's", mine / theirs, lambda r: r <= 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=1, help="every server once per round, in turn")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--duration", type=int, default=5, help="seconds per cell and rep")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per cell")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--rows", default="1,100")
    ap.add_argument("--skip-mlflow", action="store_true")
    ap.add_argument("--skip-fastapi", action="store_true")
    ap.add_argument(
        "--conveyor-args", default="", help="extra `conveyor serve` options: =--no-capture"
    )
    ap.add_argument("--quick", action="store_true", help="2 s cells, 1 s warm-up, c=1,32")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    if a.quick:
        a.duration, a.warmup, a.reps, a.concurrency = 2, 1, 1, "1,32"
    if not (PEERS / "bench_serving.py").is_file():
        raise SystemExit(f"no peers' scripts at {PEERS} (set CONVEYOR_PEERS_DIR)")
    python = peers_python()
    if not python.exists():
        raise SystemExit(f"no peers' python at {python} (run bench/peers.py ensure)")
    concs = [int(x) for x in a.concurrency.split(",")]
    rows = [int(x) for x in a.rows.split(",")]

    with tempfile.TemporaryDirectory(prefix="conveyor-serving-") as tmp:
        home = Path(tmp)
        workdir = home / "work" / "serving"
        env = {**os.environ, "PEERS_HOME": str(home)}
        run_peer(python, "train_models.py", ["--workdir", str(workdir)], env)
        project = home / "conveyor"
        project.mkdir()
        conv_env = register(workdir, project)
        sample = check_by_hand(conv_env, workdir, project, shlex.split(a.conveyor_args))
        print(f"conveyor answers the peers' 1-row payload: {sample.strip()}", file=sys.stderr)
        floor = predict_floor(workdir)
        ours = predictor_floor(workdir, conv_env)
        servers = [
            s
            for s in SERVERS
            if not (s == "mlflow" and a.skip_mlflow) and not (s == "fastapi" and a.skip_fastapi)
        ]
        rounds: Rounds = []
        for i in range(a.rounds):
            print(f"round {i + 1} of {a.rounds}", file=sys.stderr, flush=True)
            rounds.append({s: bench_server(s, python, a, env, conv_env) for s in servers})

    console = Console(width=170)
    title = (
        f"Serving, model {MODEL}, wrk -t1, {a.rounds} round(s) x {a.reps} x {a.duration} s "
        "per cell (medians over rounds; ratios: median of per-round ratios)"
    )
    table = Table(title=title)
    for col in ("rows", "conc", "server", "req/s", "p50 ms", "p99 ms", "cpu us/req", "foreign"):
        table.add_column(col, justify="right")
    table.add_column("err", justify="right")
    table.add_column("conv/MLflow rps, p50", justify="right")
    table.add_column("conv/FastAPI rps, p50", justify="right")
    for n in rows:
        for c in concs:
            for server in servers:
                cell = cell_of(rounds, server, n, c)
                if cell is None:
                    continue
                vs = ["", ""]
                if server == "conveyor":
                    for i, peer in enumerate(("mlflow", "fastapi")):
                        if peer in servers:
                            vs[i] = (
                                f"{fmt(ratio_of(rounds, 'rps', peer, n, c))}x, "
                                f"{fmt(ratio_of(rounds, 'p50', peer, n, c))}x"
                            )
                table.add_row(
                    str(n),
                    str(c),
                    server,
                    fmt(cell["rps"], ".0f"),
                    fmt(cell["p50"]),
                    fmt(cell["p99"]),
                    fmt(cell["cpu_us"], ".0f"),
                    fmt(cell["foreign"], ".2f"),
                    str(int(cell["errors"])),
                    *vs,
                )
            table.add_section()
    console.print(table)
    memory = ", ".join(f"{s} {fmt(memory_of(rounds, s), '.0f')} MB" for s in servers)
    console.print(f"RSS per worker after load: {memory}")
    console.print(
        f"in-process est.predict floor: 1 row {floor['rows_1_us']:.0f} us, "
        f"100 rows {floor['rows_100_us']:.0f} us"
    )
    console.print(
        "conveyor Predictor in process (us per call): "
        + ", ".join(f"{k} {v:.0f}" if isinstance(v, float) else f"{k} {v}" for k, v in ours.items())
    )
    goals = Table(title="Targets (issue)")
    for col in ("target", "measured", "status"):
        goals.add_column(col)
    verdicts = targets(rounds, concs)
    for what, measured, met in verdicts:
        status = "n/a" if met is None else ("met" if met else "NOT met")
        goals.add_row(what, measured, status)
    console.print(goals)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = a.out or HERE / "results" / f"serving-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "serving",
        "when": stamp,
        "params": {k: str(v) for k, v in vars(a).items()},
        "peers_python": str(python),
        "predict_floor_us": floor,
        "predictor_floor_us": ours,
        "rounds": rounds,
        "targets": [{"target": w, "measured": m, "met": t} for w, m, t in verdicts],
    }
    out.write_text(json.dumps(record, indent=2, default=str))
    console.print(f"raw: {out}")


if __name__ == "__main__":
    main()
