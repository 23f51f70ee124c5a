"""The main job (``make demo``): the flights year as one closed loop, replayed fast.

1. Train on January-February 2013 (the project template's pipeline), deliver the
   model through ``staging`` (the CD checks) to ``production`` (an approval,
   recorded as the demo operator's own).
2. Serve March to December as live requests to a real server on 127.0.0.1 that
   captures what it answers; each month's true outcomes arrive afterwards as
   delayed labels (feedback by request id).
3. After each month the monitor compares the month's traffic with the model's
   reference (drift) and scores it against the labels (quality); its alerts ask
   for retraining. The agent answers them: it retrains on the months that have
   landed, the gate compares the challenger with the champion, delivery runs the
   checks, and a canary sends part of next month's traffic to the challenger
   before it is promoted or rolled back.

It prints a month-by-month timeline and writes an HTML report with the plots.
Everything lives in a fresh project under ``.conveyor/loop/``; look at it
afterwards with the commands printed at the end.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "src" / "conveyor" / "templates" / "project"
PROJECT = ROOT / ".conveyor" / "loop"
MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
ROWS_PER_MONTH = 3000  # flights replayed as requests per month
ROWS_PER_REQUEST = 20
console = Console()

CONFIG = """\
# The flights project's loop: what to watch, when to retrain, how to deliver.
metadata_uri: sqlite:///.conveyor/conveyor.db
artifact_uri: .conveyor/artifacts
experiment: flights

monitors:
  - name: flights-production
    model: flights
    alias: production
    window: 30d
    task: classification
    drift: {share: 0.5}
    quality: {roc_auc: {min: 0.66}}
    min_rows: 500
    sinks: [{retrain: {pipeline: training}}]

triggers:
  - name: retrain-on-alert
    pipeline: pipelines/training.py:training
    alert: {monitor: flights-production, rule: quality}
    max_concurrent: 1

deployments:
  flights:
    stages: [staging, production]
    production: {approval: required, approvers: [demo-operator]}
    resources: {cpu: 2, memory_mb: 1024}   # LightGBM predicts on 2 threads
    slo: {p50_ms: 100, p99_ms: 1000, error_rate: 0.0}
    load: {requests: 100, concurrency: 4}
    quality: {roc_auc: {min: 0.62}}
    gate: {against: production, metric: roc_auc, max_drop: 0.02}
    canary: {share: 0.3, requests: 30, max_error_rate_delta: 0.01, max_latency_ratio: 3.0,
             min_quality_delta: -0.03}
"""


@dataclass
class Month:
    """One replayed month: what served it, how it did, what the loop did about it."""

    month: int
    serving: str = ""
    rows: int = 0
    auc: float | None = None
    drift_share: float | None = None
    status: str = ""
    actions: list[str] = field(default_factory=list)


def land(month: int) -> Path:
    """Write a month of flights as a Parquet file in the project, as new data lands."""
    from conveyor import lifecycle as lc

    folder = PROJECT / "data"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"flights-2013-{month:02d}.parquet"
    if not path.exists():
        lc.load_flights(months=[month]).to_parquet(path, index=False)
    return path


def main() -> None:
    started = time.perf_counter()
    if PROJECT.exists():
        shutil.rmtree(PROJECT)
    (PROJECT / "pipelines").mkdir(parents=True)
    shutil.copy(TEMPLATE / "pipelines" / "training.py", PROJECT / "pipelines" / "training.py")
    (PROJECT / "conveyor.yaml").write_text(CONFIG, encoding="utf-8")
    sys.path.insert(0, str(PROJECT / "pipelines"))

    loop = Loop(PROJECT)
    console.rule("[bold]1. train on Jan-Feb 2013 and deliver")
    for month in (1, 2):
        land(month)
    version = loop.train(months=(1, 2), n_trials=6, reason="initial model")
    for line in loop.deliver(version, "initial model, Jan-Feb 2013"):
        console.print(f"  {line}")

    console.rule("[bold]2. serve Mar-Dec as live traffic; monitor; retrain; canary")
    timeline: list[Month] = []
    with loop.serving():
        for month in range(3, 13):
            land(month)
            timeline.append(loop.live_month(month))
    elapsed = time.perf_counter() - started
    print_timeline(timeline, elapsed)
    report = loop.write_report(timeline)
    console.print(f"report: [bold]{report}[/]")
    console.print("look at it with (in .conveyor/loop/):")
    for command in (
        "conveyor models history flights",
        "conveyor alerts list",
        "conveyor triggers history",
        "conveyor monitor history flights-production",
        "conveyor runs list -e flights",
    ):
        console.print(f"  [bold]../../.venv/bin/{command}[/]")


class Loop:
    """The project's stores and the loop's services, wired as the CLI wires them."""

    def __init__(self, project: Path) -> None:
        import conveyor
        from conveyor.automation.triggers import parse_triggers
        from conveyor.delivery import parse_deployments
        from conveyor.monitoring.monitors import parse_monitors
        from conveyor.stores.backends import open_artifact_store, open_loop_store

        self.settings = conveyor.configure(project=project)
        self.registry = conveyor.get_registry()
        self.artifacts = open_artifact_store(self.settings.artifact_uri)
        self.loop_store = open_loop_store(self.settings.metadata_uri)
        extra = self.settings.extra
        self.monitor = parse_monitors(extra["monitors"])[0]
        self.triggers = parse_triggers(extra["triggers"], base_dir=project)
        self.policy = parse_deployments(extra["deployments"])["flights"]
        self.landed: list[int] = [1, 2]
        self.server: Any = None
        self.last_run_id: str | None = None
        self.port = 0

    # -- training and delivery ---------------------------------------------------
    def train(self, months: tuple[int, ...], n_trials: int, reason: str) -> int | None:
        """Run the training pipeline on these months; the version it registered, if any."""
        from training import training  # the project's pipeline

        import conveyor

        # The months to learn from, linked into a folder of their own (no copies).
        folder = PROJECT / "data" / f"train-{months[0]:02d}-{months[-1]:02d}"
        folder.mkdir(exist_ok=True)
        for m in months:
            link = folder / f"flights-2013-{m:02d}.parquet"
            if not link.exists():
                link.hardlink_to(land(m))
        data = str(folder / "flights-2013-*.parquet")
        t0 = time.perf_counter()
        result = conveyor.run_pipeline(
            training, {"data": data, "n_trials": n_trials}, experiment="flights"
        )
        self.last_run_id = result.run_id
        outcome = result.outputs.get("register_model") or {}
        took = time.perf_counter() - t0
        if outcome.get("registered"):
            console.print(
                f"  trained on {_months(months)} in {took:.0f} s ({reason}): "
                f"version {outcome['version']}"
            )
            return int(outcome["version"])
        console.print(
            f"  trained on {_months(months)}: nothing registered: {outcome.get('reasons')}"
        )
        return None

    def deliver(self, version: int | None, reason: str) -> list[str]:
        """Staging through the CD checks, then production on the operator's approval.

        With a version already in production, the approval starts a canary
        (the policy's) instead of moving the alias.
        """
        from conveyor.delivery import approve, deploy

        if version is None:
            return []
        ref = f"flights/{version}"
        said = []
        t0 = time.perf_counter()
        staged = deploy(
            ref, "staging", registry=self.registry, loop_store=self.loop_store,
            policy=self.policy, actor="conveyor-agent", reason=reason,
        )  # fmt: skip
        checks = ", ".join(f"{c.name} {'✓' if c.passed else '✗'}" for c in staged.checks)
        said.append(f"staging: {staged.message} [{checks}; {time.perf_counter() - t0:.1f} s]")
        if not staged.moved:
            return said
        production = deploy(
            ref, "production", registry=self.registry, loop_store=self.loop_store,
            policy=self.policy, actor="conveyor-agent", reason=reason,
        )  # fmt: skip
        if production.pending_approval:
            # The policy wants a person; the demo's operator approves, on the record.
            production = approve(
                ref, "production", registry=self.registry, loop_store=self.loop_store,
                policy=self.policy, actor="demo-operator",
                reason=f"checks passed at staging ({reason})",
            )  # fmt: skip
        said.append(f"production: {production.message}")
        return said

    # -- serving -------------------------------------------------------------------
    @contextmanager
    def serving(self) -> Iterator[None]:
        """A real server on 127.0.0.1 following flights@production and its traffic policy."""
        import socket

        import uvicorn

        from conveyor.serving import create_app
        from conveyor.serving.capture import CaptureWriter

        self.capture = CaptureWriter(self.artifacts.byte_store, window_s=3600.0)
        app = create_app(
            self.registry,
            ["flights@production"],
            poll_seconds=0.2,
            capture=self.capture,
            loop_store=self.loop_store,
            traffic_poll_seconds=0.2,
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        self.server, self.app, self.port = server, app, port
        try:
            yield
        finally:
            server.should_exit = True
            thread.join(10)

    def live_month(self, month: int) -> Month:
        import http.client
        import json

        record = Month(month)
        frame = land_sample(month)
        record.serving = self._serving_versions()
        t0 = int(time.time() * 1000)
        ids: list[str] = []
        client = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            for start in range(0, len(frame), ROWS_PER_REQUEST):
                chunk = frame.iloc[start : start + ROWS_PER_REQUEST]
                rid = f"2013-{month:02d}-{start // ROWS_PER_REQUEST:04d}"
                body = {"dataframe_split": _split(chunk.drop(columns=["late", "time_hour"]))}
                headers = {"Content-Type": "application/json", "X-Request-ID": rid}
                client.request("POST", "/invocations", json.dumps(body), headers)
                answer = client.getresponse()
                text = answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"the server answered {answer.status}: {text[:300]!r}")
                ids.append(rid)
        finally:
            client.close()
        self._flush_capture()
        t1 = int(time.time() * 1000) + 1
        record.rows = len(frame)
        # The month's outcomes arrive after it: delayed labels, joined by request id.
        self._feedback(frame, ids)
        self._evaluate_canary(record)
        result = self._monitor(record, t0, t1)
        self.landed.append(month)
        print_month(record)
        more = self._agent(month, result)
        for action in more:
            console.print(f"    {action}")
        record.actions += more
        return record

    # the hooks below are filled as the services land
    def _serving_versions(self) -> str:
        production = self.registry.get_alias("flights", "production").version
        traffic = self.loop_store.get_traffic("flights", "production")
        if traffic is not None and traffic.canary_version and traffic.canary_share > 0:
            return f"v{production} + v{traffic.canary_version} ({traffic.canary_share:.0%})"
        return f"v{production}"

    def _flush_capture(self) -> None:
        self.capture.flush()

    def _feedback(self, frame: Any, ids: list[str]) -> None:
        from conveyor.stores.capture import write_feedback

        request_ids, rows = [], []
        for i, rid in enumerate(ids):
            n = min(ROWS_PER_REQUEST, len(frame) - i * ROWS_PER_REQUEST)
            request_ids += [rid] * n
            rows += list(range(n))
        write_feedback(
            self.artifacts.byte_store,
            "flights",
            request_ids,
            frame["late"].astype(int).tolist(),
            rows,
        )

    def _evaluate_canary(self, record: Month) -> None:
        from conveyor.delivery import evaluate_canary

        decision = evaluate_canary(
            "flights", alias="production", policy=self.policy, loop_store=self.loop_store,
            byte_store=self.artifacts.byte_store, registry=self.registry,
        )  # fmt: skip
        if decision.action != "none":
            record.actions.append(
                f"canary v{decision.version}: {decision.action} ({'; '.join(decision.reasons)})"
            )

    def _monitor(self, record: Month, t0: int, t1: int) -> Any:
        from conveyor.monitoring.monitors import evaluate_window

        result = evaluate_window(
            self.monitor,
            loop_store=self.loop_store,
            byte_store=self.artifacts.byte_store,
            artifacts=self.artifacts,
            registry=self.registry,
            start_ms=t0,
            end_ms=t1,
        )
        record.auc = result.quality.get("roc_auc")
        record.drift_share = result.evaluation.drift_share
        record.status = result.evaluation.status
        for alert in result.alerts:
            record.actions.append(f"alert: {alert.message}")
        return result

    def _agent(self, month: int, result: Any) -> list[str]:
        """One pass of the agent: an alert asking for retraining starts the pipeline."""
        from conveyor.automation.agent import Agent, RunOutcome

        actions: list[str] = []
        recent = tuple(self.landed[-3:])  # the months that landed most recently

        def run(trigger: Any, params: dict[str, Any]) -> RunOutcome:
            version = self.train(recent, n_trials=3, reason=f"trigger {trigger.name}")
            return RunOutcome(
                self.last_run_id, True, None, () if version is None else (f"flights/{version}",)
            )

        def hand_off(ref: str, trigger: Any) -> str:
            said = self.deliver(int(ref.split("/")[1]), f"trigger {trigger.name}")
            actions.extend(said)
            return "; ".join(said)

        agent = Agent(
            self.triggers, loop_store=self.loop_store, run_pipeline=run, on_new_version=hand_off
        )
        for event in agent.run_once():
            actions.insert(0, f"trigger {event.trigger}: {event.status} ({event.reason})")
        return actions

    def write_report(self, timeline: list[Month]) -> Path:
        return write_report(timeline, PROJECT / "loop-report.html")


def land_sample(month: int) -> Any:
    import pandas as pd

    frame = pd.read_parquet(land(month))
    return (
        frame.sample(min(ROWS_PER_MONTH, len(frame)), random_state=month)
        .sort_values("time_hour")
        .reset_index(drop=True)
    )


def _split(frame: Any) -> dict[str, Any]:
    import numpy as np

    data = frame.astype(object).where(frame.notna(), None)
    return {"columns": list(frame.columns), "data": np.asarray(data).tolist()}


def _months(months: tuple[int, ...]) -> str:
    return "-".join(MONTH_NAMES[m - 1] for m in (months[0], months[-1])) if months else ""


def print_month(m: Month) -> None:
    auc = "—" if m.auc is None else f"{m.auc:.3f}"
    drift = "—" if m.drift_share is None else f"{m.drift_share:.0%}"
    console.print(
        f"[bold]{MONTH_NAMES[m.month - 1]}[/] serving {m.serving}: {m.rows} rows, "
        f"AUC {auc}, drift {drift}, {m.status}"
    )
    for action in m.actions:
        console.print(f"    {action}")


def print_timeline(timeline: list[Month], elapsed: float) -> None:
    table = Table(title=f"the flights year, replayed in {elapsed:.0f} s")
    for column in ("month", "serving", "AUC", "drift share", "status", "actions"):
        table.add_column(column)
    for m in timeline:
        table.add_row(
            MONTH_NAMES[m.month - 1],
            m.serving,
            "—" if m.auc is None else f"{m.auc:.3f}",
            "—" if m.drift_share is None else f"{m.drift_share:.0%}",
            m.status,
            "\n".join(m.actions) or "—",
        )
    console.print(table)


def write_report(timeline: list[Month], path: Path) -> Path:
    """An HTML page with quality and drift by month and the loop's actions."""
    import base64
    import html
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [MONTH_NAMES[m.month - 1] for m in timeline]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    ax1.plot(names, [m.auc if m.auc is not None else float("nan") for m in timeline], "o-")
    ax1.axhline(0.66, color="tab:red", linestyle="--", linewidth=1, label="quality alert (0.66)")
    ax1.legend(loc="lower right", fontsize=8)
    ax1.set_ylabel("ROC AUC (labels)")
    ax1.set_title("quality of what production served")
    ax2.bar(names, [m.drift_share or 0.0 for m in timeline], color="tab:orange")
    ax2.axhline(0.5, color="tab:red", linestyle="--", linewidth=1, label="drift alert (50%)")
    ax2.legend(loc="lower right", fontsize=8)
    ax2.set_ylabel("share of drifted features")
    for i, m in enumerate(timeline):
        ax1.annotate(
            m.serving,
            (i, m.auc or 0.5),
            textcoords="offset points",
            xytext=(0, 6),
            fontsize=7,
            ha="center",
        )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    image = base64.b64encode(buffer.getvalue()).decode()
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{html.escape(m.serving)}</td>"
        f"<td>{'' if m.auc is None else f'{m.auc:.3f}'}</td>"
        f"<td>{'' if m.drift_share is None else f'{m.drift_share:.0%}'}</td>"
        f"<td>{html.escape(m.status)}</td>"
        f"<td>{'<br>'.join(html.escape(a) for a in m.actions)}</td></tr>"
        for n, m in zip(names, timeline, strict=True)
    )
    path.write_text(
        "<!doctype html><meta charset=utf-8><title>conveyor: the flights year</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{border-bottom:1px solid #ddd;"
        "padding:4px 8px;text-align:left;vertical-align:top}</style>"
        "<h1>The flights year, replayed through the loop</h1>"
        f"<img alt='quality and drift by month' src='data:image/png;base64,{image}'>"
        "<table><tr><th>month</th><th>serving</th><th>AUC</th><th>drift share</th>"
        f"<th>status</th><th>actions</th></tr>{rows}</table>",
        encoding="utf-8",
    )
    return path


if __name__ == "__main__":
    main()
