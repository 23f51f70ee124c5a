"""``conveyor ci``: the project's CI, locally: its tests with the conveyor plugin, then contracts.

What ``.github/workflows/ci.yml`` (from ``conveyor init --ci github``) runs on every
push. Settings, all optional, in conveyor.yaml::

    ci:
      tests: tests                      # the test folder
      pytest_args: ["-x"]               # more arguments for pytest
      contracts:                        # data that must meet its frozen schema
        - {data: "data/*.parquet", schema: schema.yaml, strict: false}

Without ``contracts``, ``data/*.parquet`` is checked against ``schema.yaml`` when
the project has both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from conveyor.cli import context

PLUGIN = "conveyor.testing.plugin"
# The kinds of check the plugin reports, as the summary names them, in its order.
KINDS = {
    "property": "feature logic (property-based)",
    "converges": "convergence",
    "no_nan": "no NaN",
    "pipeline_smoke": "pipeline smoke",
    "matches_schema": "data contracts (tests)",
    "": "other tests",
}


@dataclass(frozen=True)
class Contract:
    """Data files that must meet a frozen schema."""

    data: str
    schema: str
    strict: bool = False


@dataclass(frozen=True)
class CiSettings:
    """The ``ci`` section of conveyor.yaml."""

    tests: str = "tests"
    pytest_args: list[str] = field(default_factory=list)
    contracts: list[Contract] | None = None


def ci(
    tests: str | None = typer.Option(None, "--tests", help="The test folder (default tests)."),
    contracts: bool = typer.Option(
        True, "--contracts/--no-contracts", help="Check the data contracts after the tests."
    ),
    keyword: str | None = typer.Option(None, "-k", help="Only tests matching this expression."),
) -> None:
    """Run the project's tests with the conveyor pytest plugin, then its data contracts.

    Feature logic, convergence, no NaN, pipeline smoke, data contracts: a summary
    table, and exit code 1 on any failure. Example: conveyor ci
    """
    settings = context.settings()
    chosen = parse_settings(settings.extra.get("ci"))
    root = settings.project
    folder = root / (tests or chosen.tests)
    failures: list[str] = []
    outcome = _run_tests(root, folder, [*chosen.pytest_args, *(["-k", keyword] if keyword else [])])
    failures += _summarise_tests(outcome, folder)
    if contracts:
        failures += _check_contracts(root, chosen.contracts)
    con = context.console()
    if failures:
        con.print(f"[bold red]ci failed:[/] {'; '.join(failures)}")
        raise typer.Exit(1)
    con.print("[bold green]ci passed[/]")


def parse_settings(data: Any) -> CiSettings:
    """The ``ci`` section, checked.

    Raises:
        ConfigError: naming the key that is unknown or of the wrong kind.
    """
    from conveyor.errors import ConfigError

    if data is None:
        return CiSettings()
    if not isinstance(data, Mapping):
        raise ConfigError("ci: must be a mapping with tests, pytest_args and contracts")
    for key in data:
        if key not in ("tests", "pytest_args", "contracts"):
            raise ConfigError(f"ci.{key}: unknown key; expected tests, pytest_args or contracts")
    tests = data.get("tests", "tests")
    if not isinstance(tests, str) or not tests:
        raise ConfigError(f"ci.tests: must be a folder name, got {tests!r}")
    args = data.get("pytest_args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ConfigError("ci.pytest_args: must be a list of strings")
    found = None
    if "contracts" in data:
        found = [_contract(item, i) for i, item in enumerate(_list(data["contracts"]))]
    return CiSettings(tests, list(args), found)


def _list(value: Any) -> list[Any]:
    from conveyor.errors import ConfigError

    if not isinstance(value, list):
        raise ConfigError("ci.contracts: must be a list of {data, schema} mappings")
    return value


def _contract(item: Any, i: int) -> Contract:
    from conveyor.errors import ConfigError

    where = f"ci.contracts[{i}]"
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: must be a mapping with data and schema")
    for key in item:
        if key not in ("data", "schema", "strict"):
            raise ConfigError(f"{where}.{key}: unknown key; expected data, schema or strict")
    for key in ("data", "schema"):
        if not isinstance(item.get(key), str) or not item[key]:
            raise ConfigError(f"{where}.{key}: required, a path (the data may be a glob)")
    strict = item.get("strict", False)
    if not isinstance(strict, bool):
        raise ConfigError(f"{where}.strict: must be true or false")
    return Contract(item["data"], item["schema"], strict)


# -- tests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _TestOutcome:
    exit_code: int
    tests: dict[str, dict[str, Any]]


def _run_tests(root: Path, folder: Path, extra: list[str]) -> _TestOutcome:
    import json
    import subprocess
    import sys
    import tempfile

    from conveyor.errors import ValidationError

    if not folder.is_dir():
        raise ValidationError("tests", f"no test folder {folder}; write tests or pass --tests")
    with tempfile.TemporaryDirectory(prefix="conveyor-ci-") as scratch:
        report = Path(scratch) / "report.json"
        plugin = [] if _plugin_installed() else ["-p", PLUGIN]
        command = [sys.executable, "-m", "pytest", str(folder), "-q", *plugin]
        command += ["--conveyor-report", str(report), *extra]
        context.console().rule(f"tests: {folder}")
        done = subprocess.run(command, cwd=root, check=False)  # noqa: S603 (our own pytest)
        tests = json.loads(report.read_text())["tests"] if report.is_file() else {}
    return _TestOutcome(done.returncode, tests)


def _plugin_installed() -> bool:
    """Whether pytest loads the plugin by itself (its pytest11 entry point is installed)."""
    from importlib.metadata import entry_points

    return any(ep.value == PLUGIN for ep in entry_points(group="pytest11"))


def _summarise_tests(outcome: _TestOutcome, folder: Path) -> list[str]:
    from rich.table import Table

    rows: dict[str, dict[str, float]] = {}
    for test in outcome.tests.values():
        for kind in test["checks"] or [""]:
            row = rows.setdefault(KINDS.get(kind, kind), {"passed": 0, "failed": 0, "skipped": 0})
            state = "failed" if test["outcome"] in ("failed", "error") else test["outcome"]
            row[state] = row.get(state, 0) + 1
            row["time"] = row.get("time", 0.0) + float(test["duration_s"])
    table = Table(title="tests")
    for column in ("check", "passed", "failed", "skipped", "time"):
        table.add_column(column, justify="left" if column == "check" else "right")
    for label in [*KINDS.values(), *sorted(set(rows) - set(KINDS.values()))]:
        if label in rows:
            row = rows[label]
            count = int(row["failed"])
            table.add_row(
                label,
                str(int(row["passed"])),
                f"[red]{count}[/]" if count else "0",
                str(int(row["skipped"])),
                f"{row.get('time', 0.0):.1f}s",
            )
    context.console().print(table)
    failed = sorted(n for n, t in outcome.tests.items() if t["outcome"] in ("failed", "error"))
    if failed:
        return [f"{len(failed)} test(s) failed: {', '.join(failed[:3])}"]
    if outcome.exit_code == 5 or not outcome.tests:
        return [f"no tests ran in {folder}"]
    if outcome.exit_code != 0:
        return [f"pytest ended with exit code {outcome.exit_code}"]
    return []


# -- data contracts -------------------------------------------------------------------


def _check_contracts(root: Path, contracts: list[Contract] | None) -> list[str]:
    from rich.table import Table

    chosen = contracts
    if chosen is None:
        found = (root / "schema.yaml").is_file() and any((root / "data").glob("*.parquet"))
        chosen = [Contract("data/*.parquet", "schema.yaml")] if found else []
    if not chosen:
        context.console().print("data contracts: none declared (ci.contracts) and no schema.yaml")
        return []
    table = Table(title="data contracts")
    for column in ("data", "schema", "rows", "failing", "warnings", "first problem"):
        table.add_column(
            column, justify="right" if column in ("rows", "failing", "warnings") else "left"
        )
    failures: list[str] = []
    for contract in chosen:
        failures += _check_contract(root, contract, table)
    context.console().print(table)
    return failures


def _check_contract(root: Path, contract: Contract, table: Any) -> list[str]:
    import pandas as pd

    from conveyor.lifecycle._check import check
    from conveyor.lifecycle.schema import Schema

    schema = Schema.load(root / contract.schema)
    files = sorted(root.glob(contract.data))
    if not files:
        table.add_row(contract.data, contract.schema, "0", "-", "-", "[red]no file matches[/]")
        return [f"{contract.data}: no file matches"]
    failures = []
    for path in files:
        report = check(pd.read_parquet(path), schema)
        broken = report.anomalies if contract.strict else report.failures
        first = str(broken[0]) if broken else (str(report.warnings[0]) if report.warnings else "")
        rel = str(path.relative_to(root))
        table.add_row(
            rel,
            contract.schema,
            str(report.rows),
            f"[red]{len(broken)}[/]" if broken else "0",
            str(len(report.warnings)),
            first[:80],
        )
        if broken:
            failures.append(
                f"{rel} breaks {contract.schema} ({broken[0].column}: {broken[0].rule})"
            )
    return failures
