"""Per-step log capture: what a step prints and logs, kept apart for each step, thread-safely.

While a pipeline runs, ``sys.stdout``/``sys.stderr`` are wrapped by proxies and
a handler sits on the root logger; both append to the buffer of the step
running in the current thread (a context variable) and pass everything on
to the original streams. Output from threads a step starts itself is not
attributed to it. If logging was never configured (no root handler), the root
level is lowered to INFO for the run so that ``logger.info`` in a step is
captured, and warnings are still printed to stderr as Python would.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = ["capturing", "step_log"]

_buffer: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "conveyor_step_log", default=None
)
_lock = threading.Lock()
_users = 0
_saved: dict[str, Any] = {}


class _StreamProxy:
    """A text stream that copies writes into the current step's buffer."""

    def __init__(self, original: TextIO) -> None:
        self._original = original

    def write(self, text: str) -> int:
        buffer = _buffer.get()
        if buffer is not None:
            buffer.append(text)
        return self._original.write(text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


class _StepLogHandler(logging.Handler):
    """Formats records into the current step's buffer; optionally echoes warnings."""

    def __init__(self, echo_warnings: bool) -> None:
        super().__init__(logging.NOTSET)
        self.echo_warnings = echo_warnings
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        buffer = _buffer.get()
        try:
            line = self.format(record) + "\n"
        except Exception:  # a bad log call must not fail the step
            self.handleError(record)
            return
        if buffer is not None:
            buffer.append(line)
        if self.echo_warnings and record.levelno >= logging.WARNING:
            stream = _saved.get("stderr") or sys.__stderr__
            if stream is not None:
                stream.write(record.getMessage() + "\n")


@contextlib.contextmanager
def capturing() -> Iterator[None]:
    """Install the proxies and the handler for the duration (re-entrant across threads)."""
    _install()
    try:
        yield
    finally:
        _uninstall()


def _install() -> None:
    global _users
    with _lock:
        _users += 1
        if _users > 1:
            return
        root = logging.getLogger()
        unconfigured = not root.handlers
        handler = _StepLogHandler(echo_warnings=unconfigured)
        _saved.update(stdout=sys.stdout, stderr=sys.stderr, level=root.level, handler=handler)
        if unconfigured and root.level > logging.INFO:
            root.setLevel(logging.INFO)
        root.addHandler(handler)
        sys.stdout = _StreamProxy(sys.stdout)
        sys.stderr = _StreamProxy(sys.stderr)


def _uninstall() -> None:
    global _users
    with _lock:
        _users -= 1
        if _users > 0:
            return
        root = logging.getLogger()
        root.removeHandler(_saved["handler"])
        root.setLevel(_saved["level"])
        # Put back only our own proxies: someone may have replaced them meanwhile.
        if isinstance(sys.stdout, _StreamProxy):
            sys.stdout = _saved["stdout"]
        if isinstance(sys.stderr, _StreamProxy):
            sys.stderr = _saved["stderr"]
        _saved.clear()


@contextlib.contextmanager
def step_log() -> Iterator[list[str]]:
    """Collect this thread's output into a fresh buffer for the duration; yields the buffer."""
    buffer: list[str] = []
    token = _buffer.set(buffer)
    try:
        yield buffer
    finally:
        _buffer.reset(token)
