"""The agent's idle cost: CPU time of ``conveyor agent`` with 20 triggers declared and none due.

    python bench/bench_agent.py [--duration 60] [--interval 30s] [--passes 200]

Builds a project in a temporary folder with 20 triggers (8 watching folders of
12 files each, 6 cron schedules, 4 monitor alerts, 2 manual), runs one
``conveyor agent --once`` so every data trigger has its watermark, then starts
``conveyor agent --interval …`` as a real process, lets it start and make its
first pass, and reads its user + system CPU time from ``/proc/PID/stat`` over
``--duration`` seconds. The target (issue 7): at most 1% of a core.

It also times ``Agent.run_once`` in this process (``--passes`` idle passes over
the same 20 triggers) to give the cost of one pass, so the cost of any other
interval can be read off: cost per pass / interval.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PIPELINE = """
from conveyor.core.pipeline import pipeline
from conveyor.core.step import step


@step
def count(n: int) -> int:
    return n


@pipeline
def training(n: int = 1):
    count(n)
"""


def make_project(root: Path) -> None:
    """A project with 20 triggers over a tiny pipeline, and the data they watch."""
    (root / "pipelines").mkdir()
    (root / "pipelines" / "training.py").write_text(PIPELINE)
    lines = ["triggers:"]
    target = "pipelines/training.py:training"
    for i in range(8):
        folder = root / "data" / f"source{i}"
        folder.mkdir(parents=True)
        for month in range(1, 13):
            (folder / f"part-2013-{month:02d}.parquet").write_bytes(b"x" * 1024)
        lines += [
            f"  - name: data-{i}",
            f"    pipeline: {target}",
            f'    data: {{path: "data/source{i}/part-*.parquet"}}',
            "    cooldown: 10m",
        ]
    for i in range(6):
        lines += [
            f"  - name: nightly-{i}",
            f"    pipeline: {target}",
            f'    schedule: "{i} 3 * * *"',
        ]
    for i in range(4):
        lines += [
            f"  - name: drift-{i}",
            f"    pipeline: {target}",
            f"    alert: {{monitor: m{i}}}",
        ]
    for i in range(2):
        lines += [f"  - name: manual-{i}", f"    pipeline: {target}"]
    (root / "conveyor.yaml").write_text("\n".join(lines) + "\n")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its reaped children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def measure_process(root: Path, duration: float, interval: str) -> tuple[float, float]:
    """CPU seconds used by a running ``conveyor agent`` over ``duration`` wall seconds."""
    cmd = [sys.executable, "-m", "conveyor", "agent", "--interval", interval]
    log = (root / "agent.log").open("w")
    proc = subprocess.Popen(cmd, cwd=root, env=environment(), stdout=log, stderr=log)
    try:
        time.sleep(8)  # start-up and the first pass are not idle time
        if proc.poll() is not None:
            raise SystemExit(f"the agent exited: {(root / 'agent.log').read_text()[-2000:]}")
        before, started = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(duration)
        used, wall = cpu_seconds(proc.pid) - before, time.monotonic() - started
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    return used, wall


def measure_passes(root: Path, passes: int) -> float:
    """CPU seconds of one idle `Agent.run_once` over the project's triggers, in this process."""
    os.chdir(root)
    from conveyor.automation import Agent, parse_triggers
    from conveyor.settings import load_settings
    from conveyor.stores.backends import open_loop_store

    settings = load_settings(root)
    triggers = parse_triggers(settings.extra["triggers"], base_dir=root)
    store = open_loop_store(settings.metadata_uri)

    def never(trigger: object, params: object) -> str:
        raise AssertionError("nothing should be due")

    agent = Agent(triggers, loop_store=store, run_pipeline=never)
    agent.run_once()  # warm
    start = time.process_time()
    for _ in range(passes):
        assert agent.run_once() == []
    return (time.process_time() - start) / passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--interval", default="30s")
    parser.add_argument("--passes", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        root = Path(tmp)
        make_project(root)
        once = [sys.executable, "-m", "conveyor", "agent", "--once", "--no-deliver"]
        subprocess.run(once, cwd=root, env=environment(), check=True, capture_output=True)
        per_pass = measure_passes(root, args.passes)
        print(f"one idle pass over 20 triggers: {per_pass * 1000:.2f} ms CPU (in-process)")
        used, wall = measure_process(root, args.duration, args.interval)
        share = 100 * used / wall
        print(
            f"conveyor agent --interval {args.interval}, 20 triggers, idle for {wall:.0f}s: "
            f"{used:.2f}s CPU = {share:.2f}% of a core (target <= 1%)"
        )
        for seconds in (5, 10, 30):
            print(
                f"  at --interval {seconds}s a pass costs {100 * per_pass / seconds:.3f}% of a core"
            )


if __name__ == "__main__":
    main()
