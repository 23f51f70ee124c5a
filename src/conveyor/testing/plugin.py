"""The pytest plugin for users' ML CI: store fixtures, and a report of which checks each test ran.

Loaded by its ``pytest11`` entry point (``conveyor = "conveyor.testing.plugin"``),
or with ``pytest -p conveyor.testing.plugin``. It gives:

* ``conveyor_store``: a temporary conveyor store (SQLite + artifact folder) that the
  top-level API (`conveyor.run_pipeline`, `conveyor.register_model`…) records into;
* ``conveyor_project``: a temporary project folder with its ``conveyor.yaml`` and
  store, made the current folder;
* ``--conveyor-report PATH``: a JSON file listing every test with its outcome,
  duration and the kinds of check it made (``no_nan``, ``converges``,
  ``pipeline_smoke``, ``matches_schema``, ``property`` for hypothesis tests), which
  ``conveyor ci`` turns into its summary.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conveyor.testing.assertions import recording, temporary_store

if TYPE_CHECKING:
    from conveyor.registry import Registry
    from conveyor.tracking.tracker import Tracker

__all__ = ["ConveyorStore", "conveyor_project", "conveyor_store"]

_CHECKS = "conveyor_checks"


@dataclass(frozen=True)
class ConveyorStore:
    """A temporary store the top-level API points at for one test.

    Attributes:
        root: the folder holding ``conveyor.db`` and ``artifacts/``.
        metadata_uri: the SQLite URI of the metadata store.
        artifact_uri: the artifact folder.
    """

    root: Path
    metadata_uri: str
    artifact_uri: str

    @property
    def tracker(self) -> Tracker:
        """The tracker over this store (what `conveyor.start_run` records into)."""
        from conveyor.fluent import get_tracker

        return get_tracker()

    @property
    def registry(self) -> Registry:
        """The model registry over this store."""
        from conveyor.fluent import get_registry

        return get_registry()


@pytest.fixture
def conveyor_store(tmp_path: Path) -> Iterator[ConveyorStore]:
    """A temporary conveyor store, made the top-level API's store for the test."""
    root = tmp_path / "conveyor-store"
    with temporary_store(root) as settings:
        yield ConveyorStore(root.resolve(), settings.metadata_uri, settings.artifact_uri)


@pytest.fixture
def conveyor_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temporary project (``conveyor.yaml``, ``.conveyor/``), the current folder for the test."""
    root = (tmp_path / "project").resolve()
    root.mkdir()
    (root / "conveyor.yaml").write_text(
        "metadata_uri: sqlite:///.conveyor/conveyor.db\n"
        "artifact_uri: .conveyor/artifacts\n"
        "experiment: test\n",
        encoding="utf-8",
    )
    for name in list(os.environ):
        if name.startswith("CONVEYOR_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(root)
    with temporary_store(root / ".conveyor"):
        yield root


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--conveyor-report``."""
    group = parser.getgroup("conveyor")
    group.addoption(
        "--conveyor-report",
        metavar="PATH",
        default=None,
        help="write each test's outcome and the conveyor checks it made to PATH as JSON",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Start the report, if asked for."""
    path = config.getoption("conveyor_report", None)
    if path is not None:
        config.pluginmanager.register(_Reporter(Path(path)), "conveyor-report")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Record which conveyor helpers the test calls."""
    with recording() as calls:
        try:
            return (yield)
        finally:
            kinds = set(calls)
            if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
                kinds.add("property")
            item.user_properties.append((_CHECKS, sorted(kinds)))


class _Reporter:
    """Each test's outcome, duration and checks, written as JSON when the session ends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tests: dict[str, dict[str, Any]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep each test's outcome: a failure in setup or teardown counts against it."""
        entry = self.tests.setdefault(
            report.nodeid, {"outcome": "passed", "duration_s": 0.0, "checks": [], "message": ""}
        )
        entry["duration_s"] += report.duration
        for key, value in report.user_properties:
            if key == _CHECKS:
                entry["checks"] = [str(v) for v in value]  # type: ignore[attr-defined]
        if report.failed:
            entry["outcome"] = "failed" if report.when == "call" else "error"
            entry["message"] = entry["message"] or _first_line(report)
        elif report.skipped and entry["outcome"] == "passed":
            entry["outcome"] = "skipped"

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write the report."""
        document = {"exit_status": int(exitstatus), "tests": self.tests}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(document, indent=1), encoding="utf-8")


def _first_line(report: pytest.TestReport) -> str:
    text = str(report.longrepr or "")
    for line in text.splitlines():
        if line.startswith("E "):
            return line[1:].strip()[:300]
    return text.strip().splitlines()[-1][:300] if text.strip() else ""
