"""The sandbox of the infra and load checks: one version served by a separate, limited process.

The process gets a private copy of the version (a temporary SQLite registry and a
folder holding only the package's files), so it reads nothing of the real stores
and needs no network: it is started in a new, empty network namespace
(``unshare --net``, where the system allows it) and answers over a Unix socket,
which a network namespace does not hide. Its address space is capped
(``RLIMIT_AS``) and its CPU time too (``RLIMIT_CPU``, a runaway guard), it must
answer health within a time limit, every request has a timeout, and it is
stopped when the checks end (or when the process that started it dies:
``PR_SET_PDEATHSIG``). Whether the network was in fact isolated is recorded in the
evidence (``network_isolated``), since an unprivileged user may not unshare.

Run as ``python -m conveyor.delivery.sandbox --db URI --artifacts DIR --ref NAME/N
--uds PATH``: it serves the app of `conveyor.serving.create_app`, as ``conveyor
serve`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from conveyor.errors import StateError

if TYPE_CHECKING:
    from conveyor.core.registry import ModelVersion
    from conveyor.delivery.policy import SandboxSpec
    from conveyor.registry import Registry

__all__ = ["Answer", "Sandbox", "UnixHTTPConnection", "network_isolation_available", "run_sync"]

T = TypeVar("T")
CPU_LIMIT_S = 300  # CPU seconds a sandboxed server may use in all (RLIMIT_CPU)


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


class UnixHTTPConnection:
    """One kept-alive HTTP/1.1 connection over a Unix socket (asyncio; no client library).

    Args:
        path: the socket.
        timeout: seconds for one request and its answer.
    """

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> UnixHTTPConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    async def request(self, method: str, path: str, body: bytes | None = None) -> Answer:
        """Send one request and read its answer (reconnecting if the server closed).

        Raises:
            OSError: the socket cannot be reached or the answer is malformed.
            TimeoutError: no answer within the timeout.
        """
        return await asyncio.wait_for(self._request(method, path, body), self.timeout)

    async def _request(self, method: str, path: str, body: bytes | None) -> Answer:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_unix_connection(self.path)
        assert self._reader is not None
        data = body or b""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: sandbox\r\nContent-Length: {len(data)}\r\n"
            "Content-Type: application/json\r\n\r\n"
        )
        self._writer.write(head.encode() + data)
        await self._writer.drain()
        status_line = await self._reader.readline()
        if not status_line:
            await self.close()
            raise ConnectionError("the server closed the connection")
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ConnectionError(f"malformed status line {status_line!r}")
        headers: dict[str, str] = {}
        while (line := await self._reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            payload = await self._reader.readexactly(int(headers["content-length"]))
        else:
            payload = await self._reader.read()
            await self.close()
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Answer(int(parts[1]), headers, payload)


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end from synchronous code, even under a running event loop.

    Inside a loop (a notebook, an async caller) it runs on a loop of its own in a
    helper thread, since ``asyncio.run`` refuses to nest.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="conveyor-sandbox") as pool:
        return pool.submit(asyncio.run, coroutine).result()


@functools.lru_cache(maxsize=1)
def network_isolation_available() -> bool:
    """Whether ``unshare --net`` works here (it needs root or user namespaces)."""
    tool = shutil.which("unshare")
    if tool is None:
        return False
    try:
        probe = [tool, "--net", "true"]
        done = subprocess.run(probe, capture_output=True, timeout=10)  # noqa: S603 (fixed argv)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _copy_version(registry: Registry, version: ModelVersion, folder: Path) -> tuple[str, str]:
    """A private registry in ``folder`` holding ``version`` alone; returns (db URI, ref)."""
    from conveyor.stores.backends import open_artifact_store
    from conveyor.stores.metadata.models import NewModelVersion
    from conveyor.stores.metadata.sql.models import SqlModelStore

    artifacts = open_artifact_store(str(folder / "artifacts"))
    for sha in dict.fromkeys(version.files.values()):
        artifacts.put_bytes(registry.artifacts.get_bytes(sha))
    uri = f"sqlite:///{folder / 'conveyor.db'}"
    store = SqlModelStore(uri)
    try:
        copy = store.create_version(
            NewModelVersion(
                name=version.name,
                format=version.format,
                manifest_sha256=version.manifest_sha256,
                signature=version.signature,
                environment=version.environment,
                files=dict(version.files),
                trusted=version.trusted,
            )
        )
    finally:
        store.close()
    return uri, copy.ref


def _limit(memory_bytes: int, cpu_seconds: int) -> None:  # runs in the child, before exec
    import resource
    import signal

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    # A runaway guard: the kernel ends a server that burns this much CPU.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    if sys.platform == "linux":  # the server ends with us if we die (it is kept across exec)
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG


class Sandbox:
    """One version served by a separate process under limits, for as long as it is open.

    Use it as a context manager; `client` talks to the server over its Unix socket.

    Args:
        registry: where the version's package files are read from.
        version: the version to serve.
        spec: the memory limit, start-up time limit and network mode.
    """

    def __init__(self, registry: Registry, version: ModelVersion, spec: SandboxSpec) -> None:
        self.registry = registry
        self.version = version
        self.spec = spec
        self.network_isolated = False
        self.startup_s: float | None = None
        self.sandbox_ref = ""
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def socket_path(self) -> str:
        """The Unix socket the server listens on."""
        assert self._folder is not None
        return str(Path(self._folder.name) / "server.sock")

    @property
    def pid(self) -> int:
        """The server process's id."""
        assert self._proc is not None
        return self._proc.pid

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Copy the version, start the server and wait until it answers health.

        Raises:
            StateError: the server exited, or did not answer within the time limit;
                the message holds the end of its log.
        """
        self._folder = tempfile.TemporaryDirectory(prefix="conveyor-sandbox-")
        folder = Path(self._folder.name)
        started = time.monotonic()
        db_uri, self.sandbox_ref = _copy_version(self.registry, self.version, folder)
        command = [
            sys.executable,
            "-m",
            "conveyor.delivery.sandbox",
            "--db",
            db_uri,
            "--artifacts",
            str(folder / "artifacts"),
            "--ref",
            self.sandbox_ref,
            "--uds",
            self.socket_path,
        ]
        if self.spec.network == "isolated" and network_isolation_available():
            command = [str(shutil.which("unshare")), "--net", "--", *command]
            self.network_isolated = True
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        self._log = (folder / "server.log").open("w+b")
        limit = int(self.spec.memory_mb * 1024 * 1024)
        cpu = int(max(CPU_LIMIT_S, 4 * self.spec.timeout_s))
        self._proc = subprocess.Popen(  # noqa: S603 (our own module, arguments we built)
            command,
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=functools.partial(_limit, limit, cpu),
            start_new_session=True,
        )
        self._wait_ready(started)
        self.startup_s = time.monotonic() - started

    def _wait_ready(self, started: float) -> None:
        deadline = started + self.spec.timeout_s
        while True:
            if self.exit_code() is not None:
                raise StateError(
                    f"the sandboxed server of {self.version.ref} exited with code "
                    f"{self.exit_code()} before it was ready: {self.log_tail()}"
                )
            if os.path.exists(self.socket_path):
                try:
                    if self.call("GET", "/v2/health/ready", timeout=2.0).status == 200:
                        return
                except (OSError, TimeoutError):
                    pass
            if time.monotonic() > deadline:
                raise StateError(
                    f"the sandboxed server of {self.version.ref} did not answer health within "
                    f"{self.spec.timeout_s:g} s: {self.log_tail()}"
                )
            time.sleep(0.05)

    def exit_code(self) -> int | None:
        """The server's exit code, or None while it runs."""
        return None if self._proc is None else self._proc.poll()

    def log_tail(self, limit: int = 1500) -> str:
        """The end of the server's output (for the evidence of a failure)."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        text = bytes(self._log.read()).decode("utf-8", "replace").strip()
        return text[-limit:] if text else "(no output)"

    def connection(self, timeout: float = 30.0) -> UnixHTTPConnection:
        """A new connection to the server (for use inside an event loop)."""
        return UnixHTTPConnection(self.socket_path, timeout)

    def call(
        self, method: str, path: str, body: bytes | None = None, timeout: float = 30.0
    ) -> Answer:
        """One request to the server, from synchronous code."""

        async def once() -> Answer:
            async with self.connection(timeout) as conn:
                return await conn.request(method, path, body)

        return run_sync(once())

    def memory_mb(self) -> float | None:
        """The server's peak resident memory so far (``VmHWM``), in MiB; None if unknown."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return None

    def cpu_seconds(self) -> float | None:
        """CPU time the server used so far, in seconds; None if unknown.

        The nanosecond run time of each of its threads (``schedstat``) where the
        kernel keeps it: the clock-tick counters of ``stat`` move in 10 ms steps, too
        coarse for a load test that lasts a few tens of milliseconds.
        """
        total = 0
        try:
            for task in Path(f"/proc/{self.pid}/task").iterdir():
                with contextlib.suppress(FileNotFoundError):  # a thread that just ended
                    total += int((task / "schedstat").read_text().split()[0])
            return total / 1e9
        except (OSError, ValueError, IndexError):
            pass
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def evidence(self) -> dict[str, Any]:
        """What the sandbox was: its limits, isolation and start-up time."""
        return {
            "sandbox_ref": self.sandbox_ref,
            "network_isolated": self.network_isolated,
            "network": self.spec.network,
            "memory_limit_mb": self.spec.memory_mb,
            "timeout_s": self.spec.timeout_s,
            "startup_s": None if self.startup_s is None else round(self.startup_s, 3),
            "transport": "unix socket",
        }

    def stop(self) -> None:
        """Stop the server (terminate, then kill) and remove the private copy."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None


def main(argv: list[str] | None = None) -> None:
    """Serve one version of a private registry over a Unix socket (the sandbox's process)."""
    parser = argparse.ArgumentParser(prog="python -m conveyor.delivery.sandbox")
    parser.add_argument("--db", required=True)
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--ref", required=True)
    parser.add_argument("--uds", required=True)
    args = parser.parse_args(argv)
    import uvicorn

    from conveyor.registry import Registry
    from conveyor.serving import create_app
    from conveyor.stores.backends import open_artifact_store, open_model_store

    registry = Registry(open_model_store(args.db), open_artifact_store(args.artifacts))
    app = create_app(registry, [args.ref])
    uvicorn.run(app, uds=args.uds, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
