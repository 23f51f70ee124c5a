"""A process that logs to a store until it is killed or its time is up (driven by the tests)."""

import json
import os
import sys
import time
from pathlib import Path

from conveyor.stores.backends import open_artifact_store, open_metadata_store
from conveyor.tracking.tracker import Tracker


def crash_target(metadata_uri: str, artifact_uri: str, workdir: str) -> None:
    """Log, flush and say what was acknowledged, forever; the test kills us with SIGKILL."""
    tracker = Tracker(
        open_metadata_store(metadata_uri),
        open_artifact_store(artifact_uri),
        heartbeat_seconds=0.2,
        grace_seconds=1.0,
    )
    run = tracker.start_run("crash")
    print(json.dumps({"run_id": run.id}), flush=True)
    blob = Path(workdir) / "blob.bin"
    step = 0
    while True:
        for _ in range(1000):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
            step += 1
        if step % 5000 == 0:
            blob.write_bytes(os.urandom(2_000_000))  # a large artifact, often cut mid-upload
            run.log_artifact(blob, artifact_path=f"blobs/{step}")
        run.flush()
        print(json.dumps({"acked": step}), flush=True)


def soak(metadata_uri: str, artifact_uri: str, seconds: float) -> None:
    """Create runs and log points until the time is up; print what was logged per run."""
    tracker = Tracker(open_metadata_store(metadata_uri), open_artifact_store(artifact_uri))
    deadline = time.monotonic() + seconds
    logged: dict[str, int] = {}
    while time.monotonic() < deadline:
        with tracker.start_run("soak", tags={"pid": str(os.getpid())}) as run:
            run.log_params({"pid": os.getpid(), "n": len(logged)})
            for step in range(200):
                run.log_metrics({"a": step * 0.5, "b": -step}, step=step)
            run.set_tag("done", "yes")
        logged[run.id] = 400
    tracker.close()
    print(json.dumps(logged), flush=True)


def interrupted(metadata_uri: str, artifact_uri: str) -> None:
    """Log inside ``with start_run`` until Ctrl-C (SIGINT) arrives."""
    tracker = Tracker(open_metadata_store(metadata_uri), open_artifact_store(artifact_uri))
    with tracker.start_run("ctrl-c") as run:
        run.flush()
        print(json.dumps({"run_id": run.id}), flush=True)
        step = 0
        while True:
            run.log_metric("loss", 1.0, step=step)
            step += 1
            time.sleep(0.001)


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "crash":
        crash_target(*args)
    elif mode == "interrupt":
        interrupted(*args)
    else:
        soak(args[0], args[1], float(args[2]))
