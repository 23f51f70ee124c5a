"""Alert rules, and sinks against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conveyor.core.loop import NewAlert
from conveyor.errors import ConfigError
from conveyor.monitoring.alerts import (
    Findings,
    LogSink,
    RetrainSink,
    WebhookSink,
    apply_rules,
    dispatch,
    parse_sinks,
)
from conveyor.monitoring.config import parse_monitors
from conveyor.monitoring.results import ColumnDrift, DriftReport
from conveyor.stores.backends import open_loop_store


class Hook:
    """A webhook target: records what it received; /moved redirects, /broken answers 500."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                hook.received.append((self.path, json.loads(body)))
                if self.path == "/moved":
                    self.send_response(307)
                    self.send_header("location", "/elsewhere")
                elif self.path == "/broken":
                    self.send_response(500)
                else:
                    self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.close()


@pytest.fixture
def loop(tmp_path: Path):
    store = open_loop_store(f"sqlite:///{tmp_path / 'loop.db'}")
    yield store
    store.close()


def webhook(url: str) -> WebhookSink:
    (sink,) = parse_sinks([{"webhook": {"url": url, "allow_hosts": ["127.0.0.1"]}}])
    assert isinstance(sink, WebhookSink)
    return sink


ALERT = NewAlert("m", "drift_share", "warning", "50% drifted", model="flights", version=3)


# --- sinks --------------------------------------------------------------------------------


def test_sinks_parse():
    log, hook_, retrain = parse_sinks(
        [
            "log",
            {
                "webhook": {
                    "url": "https://hooks.example.com/x",
                    "allow_hosts": ["hooks.example.com"],
                }
            },
            {"retrain": {"pipeline": "training", "rules": ["quality"]}},
        ]
    )
    assert isinstance(log, LogSink)
    assert isinstance(hook_, WebhookSink)
    assert hook_.timeout_s == 2.0
    assert isinstance(retrain, RetrainSink)
    assert retrain.rules == ("quality",)


@pytest.mark.parametrize(
    ("sinks", "message"),
    [
        ("log", "sinks: must be a list"),
        (["pager"], "sinks[0]: unknown sink 'pager'"),
        (
            [{"webhook": {"url": "http://evil.example.com/x", "allow_hosts": ["127.0.0.1"]}}],
            "host 'evil.example.com' is not in allow_hosts",
        ),
        ([{"webhook": {"url": "http://127.0.0.1/x"}}], "allow_hosts: must be a non-empty list"),
        ([{"webhook": {"url": "ftp://127.0.0.1/x", "allow_hosts": ["127.0.0.1"]}}], "http://"),
        ([{"webhook": {"allow_hosts": ["127.0.0.1"]}}], "webhook.url: is required"),
        (
            [{"webhook": {"url": "http://127.0.0.1", "allow_hosts": ["127.0.0.1"], "retry": 1}}],
            "webhook.retry: unknown key",
        ),
        (
            [
                {
                    "webhook": {
                        "url": "http://127.0.0.1",
                        "allow_hosts": ["127.0.0.1"],
                        "timeout_s": 99,
                    }
                }
            ],
            "timeout_s: must be in (0, 30]",
        ),
        ([{"retrain": {}}], "retrain.pipeline: is required"),
        ([{"retrain": {"pipeline": "t", "rules": ["latency2"]}}], "unknown rule 'latency2'"),
    ],
)
def test_bad_sinks_are_refused_at_parse(sinks, message):
    with pytest.raises(ConfigError) as err:
        parse_sinks(sinks)
    assert message in str(err.value)


def test_a_host_off_the_allowlist_is_refused_in_the_monitor_config():
    spec = {
        "name": "m",
        "model": "f",
        "sinks": [{"webhook": {"url": "http://10.0.0.1:80/", "allow_hosts": ["127.0.0.1"]}}],
    }
    with pytest.raises(ConfigError, match=r"monitors\[0\] \(m\)\.sinks\[0\]\.webhook\.url: host"):
        parse_monitors([spec])


def test_an_allowed_webhook_receives_the_alert_as_json(hook, loop):
    stored, failures = dispatch([ALERT], [webhook(hook.url("/hook"))], loop)
    assert failures == []
    ((path, body),) = hook.received
    assert path == "/hook"
    assert body["alert"]["id"] == stored[0].id
    assert (body["alert"]["rule"], body["alert"]["version"]) == ("drift_share", 3)
    assert body["alert"]["state"] == "open"


def test_a_redirect_is_not_followed_and_is_recorded(hook, loop):
    stored, failures = dispatch([ALERT], [webhook(hook.url("/moved")), LogSink()], loop)
    assert [p for p, _ in hook.received] == ["/moved"]  # never /elsewhere
    assert len(failures) == 1
    assert "redirect to /elsewhere not followed" in failures[0]
    assert [a.rule for a in stored] == ["drift_share", "sink_failed"]
    assert [a.rule for a in loop.list_alerts()] == ["drift_share", "sink_failed"]


def test_a_failing_or_absent_webhook_never_raises(hook, loop):
    closed = Hook()
    closed.close()  # nothing listens on its port now
    sinks = [webhook(hook.url("/broken")), webhook(closed.url("/x"))]
    stored, failures = dispatch([ALERT], sinks, loop)
    assert "answered HTTP 500" in failures[0]
    assert "Connection refused" in failures[1]
    assert [a.rule for a in stored] == ["drift_share", "sink_failed", "sink_failed"]


def test_the_retrain_sink_marks_alerts_for_the_agent(loop):
    quality = NewAlert("m", "quality", "critical", "auc low", model="f")
    latency = NewAlert("m", "latency", "warning", "slow", model="f")
    stored, _ = dispatch([quality, latency], [RetrainSink(pipeline="training")], loop)
    seen = {a.rule: a.payload for a in loop.list_alerts(since_id=0)}
    assert seen["quality"]["retrain"] == {"pipeline": "training"}
    assert "retrain" not in seen["latency"]  # a slow server is not retrained
    assert loop.list_alerts(since_id=stored[0].id)[0].rule == "latency"


def test_the_log_sink_logs_and_prints(loop, caplog, capsys):
    with caplog.at_level(logging.WARNING, "conveyor.monitoring.alerts"):
        dispatch([NewAlert("m", "quality", "critical", "auc 0.51")], [LogSink()], loop)
    assert caplog.records[0].levelno == logging.ERROR
    assert "auc 0.51" in caplog.records[0].getMessage()
    assert "auc 0.51" in capsys.readouterr().err


# --- rules ---------------------------------------------------------------------------------


def report(statistics: dict[str, float], drifted: set[str]) -> DriftReport:
    columns = [
        ColumnDrift(c, "numeric", "psi", s, None, 0.1, c in drifted) for c, s in statistics.items()
    ]
    return DriftReport.from_columns(columns, mode="sketch", drift_share=0.5)


def monitor(**spec: Any) -> Any:
    return parse_monitors([{"name": "m", "model": "f", "sinks": [], **spec}])[0]


def found(**kw: Any) -> Findings:
    return Findings(monitor="m", model="f", window_start=0, window_end=10, version=2, **kw)


def test_drift_share_fires_at_its_threshold_and_not_below():
    m = monitor(drift={"share": 0.5, "statistics": {"b": {"max": 0.3}}})
    at = apply_rules(m, found(drift=report({"a": 0.5, "b": 0.2}, {"a"})))
    assert [a.rule for a in at] == ["drift_share"]
    assert at[0].payload == {"window_start": 0, "window_end": 10, "share": 0.5, "columns": ["a"]}
    below = apply_rules(m, found(drift=report({"a": 0.5, "b": 0.2, "c": 0.0}, {"a"})))
    assert below == []
    stat = apply_rules(m, found(drift=report({"a": 0.0, "b": 0.31}, set())))
    assert [(a.rule, a.payload["column"]) for a in stat] == [("column_statistic", "b")]


def test_quality_rules_need_enough_labels():
    m = monitor(quality={"roc_auc": {"min": 0.7}}, min_rows=100)
    assert apply_rules(m, found(quality={"roc_auc": 0.6}, labelled=99)) == []
    (alert,) = apply_rules(m, found(quality={"roc_auc": 0.6}, labelled=100))
    assert (alert.rule, alert.severity, alert.version) == ("quality", "critical", 2)
    assert "roc_auc 0.6 below 0.7" in alert.message
    assert apply_rules(m, found(quality={"roc_auc": None}, labelled=500)) == []


def test_serving_rules():
    m = monitor(serving={"p99_ms": 50, "error_rate": 0.01})
    ok = found(serving={"latency_p99_ms": 50.0, "error_rate": 0.01})
    assert apply_rules(m, ok) == []
    bad = apply_rules(m, found(serving={"latency_p99_ms": 51.0, "error_rate": 0.02}))
    assert [a.rule for a in bad] == ["latency", "error_rate"]


def test_errors_become_critical_alerts():
    (alert,) = apply_rules(monitor(), found(errors={"capture_unreadable": "bad file"}))
    assert (alert.rule, alert.severity, alert.message) == (
        "capture_unreadable",
        "critical",
        "bad file",
    )
