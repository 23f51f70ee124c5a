"""Capture's cost: ``conveyor serve`` with and without ``--capture`` under wrk, and the ratio.

    python bench/bench_capture.py [--duration 5] [--concurrency 1,32] [--rows 1,100]
                                  [--sample 1.0] [--window 1] [--reps 5]

A GradientBoostingClassifier (100 trees, 20 float features, as in bench_serving.py)
is registered in a temporary project; the same ``conveyor serve`` command runs
twice side by side, with ``--no-capture`` and with ``--capture --capture-window W``;
each cell loads them in rounds, back to back (off then on, then on then off…),
with ``wrk -t1 -cC`` POSTing ``/invocations`` bodies of 1 or 100 rows after a
2 s warm-up. The ratio is taken within each round (the pair shares the
machine's load) and its median over rounds is the figure; the throughput
columns show each side's best round. The target (issue 5): capture on costs at most 10% of
throughput, i.e. the ratio ``capture / no capture`` is at least 0.90. The script
also checks that the captured rows reached the capture log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONVEYOR = Path(sys.executable).with_name("conveyor")


def _register(project: Path) -> list[str]:
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier

    from conveyor.registry import Registry
    from conveyor.stores.backends import open_artifact_store, open_model_store

    X, y = make_classification(n_samples=2000, n_features=20, random_state=0)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(20)])
    model = GradientBoostingClassifier(n_estimators=100, random_state=0).fit(frame, y)
    store = open_model_store(f"sqlite:///{project / 'conveyor.db'}")
    registry = Registry(store, open_artifact_store(str(project / "artifacts")))
    registry.register_model("bench", model, frame.head(20))
    registry.set_alias("bench", "production", 1)
    store.close()
    return [
        json.dumps({"dataframe_split": frame.head(n).to_dict(orient="split")}) for n in (1, 100)
    ]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(project: Path, capture: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    env = dict(os.environ)
    env["CONVEYOR_METADATA_URI"] = f"sqlite:///{project / 'conveyor.db'}"
    env["CONVEYOR_ARTIFACT_URI"] = str(project / "artifacts")
    proc = subprocess.Popen(
        [str(CONVEYOR), "serve", "bench@production", "--port", str(port), *capture],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start")


def _wrk(url: str, body: str, connections: int, seconds: float, folder: Path) -> float:
    script = folder / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body)}\n"
    )
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "-s",
            str(script),
            f"{url}/invocations",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{errors.group(1)} failed requests:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(out)
    return float(match.group(1))


def _metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def main() -> None:
    """Run both servers over every cell and print throughput and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--rows", default="1,100")
    parser.add_argument("--sample", type=float, default=1.0)
    parser.add_argument("--window", type=float, default=1.0)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    cells = [(int(r), int(c)) for r in args.rows.split(",") for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        bodies = dict(zip((1, 100), _register(project), strict=True))
        # Both servers stay up; each cell alternates off/on ``--reps`` times, so a busy
        # neighbour on a shared machine weighs on both sides alike. The best of each is kept.
        servers = {
            "off": _serve(project, ["--no-capture"]),
            "on": _serve(
                project,
                [
                    "--capture",
                    "--capture-sample",
                    str(args.sample),
                    "--capture-window",
                    str(args.window),
                ],
            ),
        }
        results: dict[str, dict[tuple[int, int], float]] = {"off": {}, "on": {}}
        ratios: dict[tuple[int, int], list[float]] = {}
        try:
            for rows, conns in cells:
                for label in ("off", "on"):
                    _wrk(servers[label][1], bodies[rows], conns, 2, project)  # warm-up
                for rep in range(args.reps):
                    # Back to back, the order swapped each round: a pair shares the
                    # machine's mood, and neither side always goes first.
                    order = ("off", "on") if rep % 2 == 0 else ("on", "off")
                    rates = {
                        label: _wrk(servers[label][1], bodies[rows], conns, args.duration, project)
                        for label in order
                    }
                    ratios.setdefault((rows, conns), []).append(rates["on"] / rates["off"])
                    for label, rate in rates.items():
                        cell = results[label]
                        cell[(rows, conns)] = max(cell.get((rows, conns), 0.0), rate)
            captured = _metric(servers["on"][1], "conveyor_capture_rows_total")
            dropped = _metric(servers["on"][1], "conveyor_capture_dropped_rows_total")
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(30)
        from conveyor.stores.backends import open_artifact_store
        from conveyor.stores.capture import capture_keys

        files = capture_keys(open_artifact_store(str(project / "artifacts")).byte_store, "bench")
    print(
        f"{'rows':>5} {'conns':>5} {'off req/s':>10} {'on req/s':>10} "
        f"{'on/off, median of rounds':>26} {'[min-max]':>12}"
    )
    worst = 1.0
    for rows, conns in cells:
        off, on = results["off"][(rows, conns)], results["on"][(rows, conns)]
        pairs = ratios[(rows, conns)]
        ratio = statistics.median(pairs)
        worst = min(worst, ratio)
        spread = f"[{min(pairs):.2f}-{max(pairs):.2f}]"
        print(f"{rows:>5} {conns:>5} {off:>10.0f} {on:>10.0f} {ratio:>26.2f} {spread:>12}")
    print(f"captured rows {captured:.0f}, dropped {dropped:.0f}, files {len(files)}")
    verdict = "meets" if worst >= 0.9 else "misses"
    print(
        f"worst median ratio {worst:.2f}: {verdict} the target "
        "(capture costs <= 10%, ratio >= 0.90)"
    )


if __name__ == "__main__":
    main()
