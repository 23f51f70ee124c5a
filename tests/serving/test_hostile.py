"""Hostile input: a 1 GiB body, nesting, wrong types, huge strings, NaN, pickles, bad models."""

from __future__ import annotations

import pickle
import socket
import sqlite3
import threading
import time

import numpy as np
import pytest
import requests

from conveyor.errors import StateError


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _stream_gib(url: str, path: str, chunked: bool) -> tuple[int, float]:
    """Stream a 1 GiB body to ``path``; returns the status line's code and the seconds to it."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    total = 1 << 30
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"{framing}\r\n\r\n"
    )
    sock.sendall(head.encode())
    chunk = b"[" * (1 << 20)
    piece = (b"%x\r\n" % len(chunk)) + chunk + b"\r\n" if chunked else chunk
    stop = threading.Event()

    def send() -> None:
        try:
            for _ in range(total // len(chunk)):
                if stop.is_set():
                    return
                sock.sendall(piece)
        except OSError:
            return

    started = time.perf_counter()
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    sock.settimeout(10)
    answer = b""
    while b"\r\n" not in answer:
        data = sock.recv(4096)
        if not data:
            break
        answer += data
    seconds = time.perf_counter() - started
    stop.set()
    sock.close()
    sender.join(10)
    return int(answer.split(b" ")[1]), seconds


@pytest.mark.parametrize("chunked", [False, True])
def test_a_gib_body_gets_413_within_a_second_without_memory_growth(served, chunked):
    before = _rss_bytes()
    status, seconds = _stream_gib(served.url, "/invocations", chunked)
    assert status == 413
    assert seconds < 1.0
    assert _rss_bytes() - before < 50 * 1024 * 1024
    assert requests.get(f"{served.url}/ping", timeout=5).status_code == 200


class _Marker:
    """Unpickling this creates a file: proof that a payload was (never) unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_hostile_corpus_is_4xx_never_5xx(served, tmp_path):
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(_Marker(str(marker)))
    deep = b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    cases = [
        ("/invocations", deep, "application/json"),
        ("/v2/models/cancer/infer", b'{"inputs": ' + b"[" * 3000 + b"]" * 3000 + b"}", None),
        ("/invocations", payload, "application/octet-stream"),
        ("/invocations", payload, "application/python-pickle"),
        ("/invocations", payload, "application/json"),
        ("/v2/models/cancer/infer", payload, "application/json"),
        ("/v1/models/cancer:predict", payload, "application/json"),
        ("/invocations", payload, "text/csv"),
        ("/invocations", b"{}", "multipart/form-data; boundary=x"),
        ("/invocations", b"a=1", "application/x-www-form-urlencoded"),
        ("/v2/models/cancer/infer", b"{}", "text/csv"),
        ("/invocations", b'{"instances": [{"mean radius": "' + b"9" * 90_000 + b'"}]}', None),
        ("/invocations", b'{"dataframe_records": [{"size": "' + b"x" * 90_000 + b'"}]}', None),
        ("/invocations", b'{"instances": [[NaN, 1, 2, "small"]]}', None),
        ("/invocations", b'{"instances": [[Infinity, 1, 2, "small"]]}', None),
        ("/invocations", b'{"instances": [[-Infinity, 1, 2, "small"]]}', None),
        ("/invocations", b'{"instances": [[1, 2]]}', None),
        ("/invocations", b'{"instances": [[1, 2, 3, "small", 5]]}', None),
        ("/invocations", b'{"instances": [[1, 2, 3, "small"], [1]]}', None),
        ("/invocations", b'{"inputs": {"mean radius": [1, 2], "size": ["a"]}}', None),
        (
            "/v2/models/cancer/infer",
            b'{"inputs": [{"name": "in", "shape": [2, 4], "datatype": "FP64", "data": [1, 2]}]}',
            None,
        ),
        (
            "/v2/models/cancer/infer",
            b'{"inputs": [{"name": "in", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}',
            None,
        ),
        (
            "/v2/models/cancer/infer",
            b'{"inputs": [{"name": "mean radius", "shape": [1], "datatype": "FP64", '
            b'"data": [NaN]}]}',
            None,
        ),
        ("/v2/models/cancer/infer", b'{"inputs": [], "id": "' + b"i" * 200 + b'"}', None),
        ("/v2/models/cancer/feedback", b'{"request_ids": ["' + b"r" * 500 + b'"]}', None),
        ("/invocations", "\u00ff\u00fe".encode("utf-16"), None),
        ("/invocations", b"", None),
        ("/invocations", b"\x00" * 1000, None),
    ]
    for path, body, kind in cases:
        headers = {"content-type": kind or "application/json"}
        r = requests.post(served.url + path, data=body, headers=headers, timeout=30)
        assert 400 <= r.status_code < 500, (path, body[:40], kind, r.status_code, r.text[:200])
        assert r.json()["error"], (path, body[:40])
    assert not marker.exists()
    r = requests.post(
        f"{served.url}/invocations",
        data=b"{}",
        headers={"content-type": "application/json", "x-request-id": "a" * 10_000},
        timeout=10,
    )
    assert r.status_code in (400, 431)
    metrics = requests.get(f"{served.url}/metrics", timeout=10).text
    assert 'status="5' not in metrics


class Untrusted:
    """A model only pickle holds."""

    def predict(self, X):
        return np.zeros(len(X), dtype=np.int64)


def _untrusted_version(registry, data, tmp_path) -> int:
    X, _ = data
    version = registry.register_model("risky", Untrusted(), X.head(20), trusted=True).version
    with sqlite3.connect(tmp_path / "conveyor.db") as conn:
        conn.execute(
            "UPDATE model_versions SET trusted = 0 WHERE model_id = "
            "(SELECT id FROM models WHERE name = 'risky')"
        )
    return version


def test_an_untrusted_pickle_is_refused_and_the_others_are_served(
    served, registry, data, serve, tmp_path
):
    from conveyor.serving import create_app

    _untrusted_version(registry, data, tmp_path)
    with pytest.raises(StateError, match="trusted=True"):
        create_app(registry, ["risky/1"])
    app = create_app(registry, ["cancer@production", "risky/1"])
    url = serve(app)
    r = requests.post(f"{url}/v2/models/risky/infer", json={"inputs": []}, timeout=10)
    assert r.status_code == 503
    assert "not registered with trusted=True" in r.json()["error"]
    rows = data[0].iloc[:3].to_dict(orient="records")
    r = requests.post(f"{url}/invocations", json={"dataframe_records": rows}, timeout=10)
    assert r.status_code == 200
    assert 'conveyor_model_load_failed{model="risky"' in requests.get(f"{url}/metrics").text


def test_an_alias_moved_to_an_untrusted_pickle_keeps_the_old_version(
    served, registry, data, tmp_path
):
    X, _ = data
    registry.register_model("cancer", Untrusted(), X.head(20), trusted=True)
    with sqlite3.connect(tmp_path / "conveyor.db") as conn:
        conn.execute("UPDATE model_versions SET trusted = 0 WHERE version = 2")
    registry.set_alias("cancer", "production", 2)
    time.sleep(0.6)  # three polls
    body = {"dataframe_records": X.iloc[:2].to_dict(orient="records")}
    r = requests.post(f"{served.url}/invocations", json=body, timeout=10)
    assert r.status_code == 200
    assert r.headers["x-model-version"] == "cancer/1"
