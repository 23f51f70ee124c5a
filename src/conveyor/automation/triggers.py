"""Triggers: when to run a pipeline (a schedule, new data, a monitor's alert, or a person).

The ``triggers:`` list of ``conveyor.yaml`` is parsed by `parse_triggers`; each
trigger is evaluated by `due` against its watermark (the state its last
successful run left), giving a `Firing` with the reason in words or None::

    triggers:
      - name: new-data
        pipeline: pipelines/training.py:training
        data: {path: ".conveyor/data/flights-2013-*.parquet"}
        params: {data: ".conveyor/data/flights-2013-*.parquet"}
        cooldown: 10m

Evaluating looks only at file names and times (``stat``), one SQL value, or the
alerts after a cursor, so an idle agent costs next to nothing.
"""

from __future__ import annotations

import glob
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.automation.cron import Cron, parse_cron
from conveyor.errors import ConfigError

if TYPE_CHECKING:
    from conveyor.core.loop import Alert
    from conveyor.stores.metadata.loop import LoopStore

__all__ = [
    "KINDS",
    "Firing",
    "TriggerConfig",
    "describe_next",
    "due",
    "initial_state",
    "parse_duration",
    "parse_triggers",
]

KINDS: tuple[str, ...] = ("schedule", "data", "alert", "manual")
_KEYS = {
    "name",
    "pipeline",
    "schedule",
    "data",
    "alert",
    "params",
    "cooldown",
    "max_concurrent",
    "attempts",
    "backoff",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")


@dataclass(frozen=True, slots=True)
class TriggerConfig:
    """One declared trigger.

    Attributes:
        name: unique among the triggers; names its events, lease and watermark.
        pipeline: the pipeline it runs, ``path/to/file.py:name`` or ``module:name``.
        kind: ``schedule``, ``data``, ``alert`` or ``manual`` (no source: only by hand).
        schedule: the cron expression of a schedule trigger.
        data_path: the glob of a data trigger watching files (relative to ``base_dir``).
        data_sql: the query of a data trigger watching a database (its first value).
        data_uri: the database the query runs on.
        alert_monitor: the monitor whose alerts fire an alert trigger.
        alert_rule: fire on any alert of this rule; without it, only on alerts whose
            payload asks for retraining (``{"retrain": {...}}``).
        params: the pipeline's parameters.
        cooldown_s: the least time between two runs it starts.
        max_concurrent: the most runs of its pipeline at once (across triggers and agents).
        attempts: how many times a failing run is tried before an alert is raised.
        backoff_s: the wait before the first retry; it doubles with each retry.
        base_dir: the folder relative data paths start from.
    """

    name: str
    pipeline: str
    kind: str = "manual"
    schedule: Cron | None = None
    data_path: str | None = None
    data_sql: str | None = None
    data_uri: str | None = None
    alert_monitor: str | None = None
    alert_rule: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    cooldown_s: float = 0.0
    max_concurrent: int = 1
    attempts: int = 3
    backoff_s: float = 30.0
    base_dir: Path | None = None

    @property
    def pipeline_name(self) -> str:
        """The pipeline's own name: the part of ``pipeline`` after the colon."""
        return self.pipeline.rpartition(":")[2]

    @property
    def watermark_key(self) -> str:
        """The loop-state key of its watermark."""
        return f"trigger:{self.name}:watermark"

    @property
    def lease_name(self) -> str:
        """The lease an agent holds while it evaluates and runs this trigger."""
        return f"trigger:{self.name}"

    def glob_pattern(self) -> str:
        """The data glob, made absolute against ``base_dir``."""
        assert self.data_path is not None
        path = Path(self.data_path)
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return str(path)


@dataclass(frozen=True, slots=True)
class Firing:
    """A trigger that is due: why, and the watermark to store once its run succeeded."""

    trigger: str
    kind: str
    reason: str
    watermark: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


# --- parsing ------------------------------------------------------------------


def parse_triggers(section: Any, *, base_dir: Path | None = None) -> list[TriggerConfig]:
    """Parse and validate the ``triggers:`` section of ``conveyor.yaml``.

    Args:
        section: the section as YAML gives it (a list of mappings), or None.
        base_dir: the project folder, that relative data paths start from.

    Raises:
        ConfigError: naming the key (``triggers[1].cooldown``) and the rule it breaks.
    """
    if section is None:
        return []
    if not isinstance(section, list):
        raise ConfigError(f"triggers: must be a list of triggers, got {type(section).__name__}")
    triggers = [_parse_one(item, f"triggers[{i}]", base_dir) for i, item in enumerate(section)]
    seen: set[str] = set()
    for i, trigger in enumerate(triggers):
        if trigger.name in seen:
            raise ConfigError(f"triggers[{i}].name: {trigger.name!r} is declared twice")
        seen.add(trigger.name)
    return triggers


def _parse_one(item: Any, where: str, base_dir: Path | None) -> TriggerConfig:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: must be a mapping, got {type(item).__name__}")
    unknown = sorted(set(map(str, item)) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {_known()}")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{where}.name: must be letters, digits, '.', '_' or '-' (at most 128), got {name!r}"
        )
    pipeline = item.get("pipeline")
    if not isinstance(pipeline, str) or not pipeline.rpartition(":")[0]:
        raise ConfigError(
            f"{where}.pipeline: must be path/to/file.py:name or module:name, got {pipeline!r}"
        )
    sources = [k for k in ("schedule", "data", "alert") if item.get(k) is not None]
    if len(sources) > 1:
        both = " and ".join(sources)
        raise ConfigError(f"{where}: give one of schedule, data or alert, not {both}")
    params = item.get("params") or {}
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise ConfigError(f"{where}.params: must be a mapping of parameter names to values")
    values: dict[str, Any] = {
        "name": name,
        "pipeline": pipeline,
        "kind": "manual",
        "params": dict(params),
        "cooldown_s": _duration_or_zero(item.get("cooldown"), f"{where}.cooldown"),
        "max_concurrent": _positive_int(item.get("max_concurrent", 1), f"{where}.max_concurrent"),
        "attempts": _positive_int(item.get("attempts", 3), f"{where}.attempts"),
        "backoff_s": _duration_or_zero(item.get("backoff", "30s"), f"{where}.backoff"),
        "base_dir": base_dir,
    }
    if sources:
        values.update(_SOURCES[sources[0]](item[sources[0]], f"{where}.{sources[0]}"))
    return TriggerConfig(**values)


def _schedule(value: Any, where: str) -> dict[str, Any]:
    return {"kind": "schedule", "schedule": parse_cron(value, where)}


def _data(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be {{path: GLOB}} or {{sql: QUERY, uri: DATABASE}}")
    unknown = sorted(set(map(str, value)) - {"path", "sql", "uri"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: path, sql, uri")
    path, sql, uri = value.get("path"), value.get("sql"), value.get("uri")
    if (path is None) == (sql is None):
        raise ConfigError(f"{where}: give either path (a glob of files) or sql (with uri)")
    if path is not None:
        if uri is not None:
            raise ConfigError(f"{where}.uri: only goes with sql, not with path")
        return {"kind": "data", "data_path": _text(path, f"{where}.path")}
    return {
        "kind": "data",
        "data_sql": _text(sql, f"{where}.sql"),
        "data_uri": _text(uri, f"{where}.uri"),
    }


def _alert(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be {{monitor: NAME}} (and optionally rule: RULE)")
    unknown = sorted(set(map(str, value)) - {"monitor", "rule"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: monitor, rule")
    rule = value.get("rule")
    return {
        "kind": "alert",
        "alert_monitor": _text(value.get("monitor"), f"{where}.monitor"),
        "alert_rule": None if rule is None else _text(rule, f"{where}.rule"),
    }


_SOURCES = {"schedule": _schedule, "data": _data, "alert": _alert}


def _known() -> str:
    return ", ".join(sorted(_KEYS))


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be a non-empty string, got {value!r}")
    return value.strip()


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: must be a whole number of at least 1, got {value!r}")
    return value


def _duration_or_zero(value: Any, where: str) -> float:
    return 0.0 if value is None else parse_duration(value, where)


def parse_duration(value: Any, field: str = "duration") -> float:
    """Seconds from ``30`` (seconds), ``"30s"``, ``"10m"``, ``"2h"``, ``"1d"`` or ``"1h30m"``.

    Raises:
        ConfigError: not a non-negative number or such a text (naming ``field``).
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0 or value != value:
            raise ConfigError(f"{field}: must not be negative, got {value!r}")
        return float(value)
    text = value.strip().lower() if isinstance(value, str) else ""
    if text.replace(".", "", 1).isdigit():
        return float(text)
    parts = _DURATION.findall(text)
    if not text or "".join(f"{n}{u}" for n, u in parts) != text.replace(" ", ""):
        raise ConfigError(
            f"{field}: must be a duration like 30s, 10m, 2h, 1d or 1h30m, got {value!r}"
        )
    return sum(float(n) * _UNITS[u] for n, u in parts)


# --- evaluation -----------------------------------------------------------------


def initial_state(trigger: TriggerConfig, now: datetime) -> str | None:
    """The watermark a trigger starts from when it has none, or None to start from nothing.

    A schedule starts from the moment it is first seen (it fires at the next
    matching minute, not for every one before); data and alerts start from
    nothing, so data already there and alerts already raised fire once.
    """
    return _iso(now) if trigger.kind == "schedule" else None


def due(
    trigger: TriggerConfig,
    state: str | None,
    now: datetime,
    *,
    loop_store: LoopStore | None = None,
) -> Firing | None:
    """Whether ``trigger`` should fire now, given its watermark ``state``.

    Args:
        trigger: the trigger.
        state: its stored watermark (None when it has none).
        now: the time of this evaluation (UTC).
        loop_store: where alert triggers read alerts (required for them).

    Returns:
        A `Firing` with the reason in words and the watermark to store once the run
        succeeded, or None when nothing is new (always None for manual triggers).
    """
    if trigger.kind == "schedule":
        return _due_schedule(trigger, state, now)
    if trigger.kind == "data" and trigger.data_path is not None:
        return _due_files(trigger, state)
    if trigger.kind == "data":
        return _due_sql(trigger, state)
    if trigger.kind == "alert":
        if loop_store is None:
            raise ConfigError(f"trigger {trigger.name!r}: alert triggers need the loop store")
        return _due_alert(trigger, state, loop_store)
    return None


def describe_next(trigger: TriggerConfig, state: str | None, now: datetime) -> str:
    """When the trigger fires next, in words (for ``conveyor triggers list``)."""
    if trigger.kind == "schedule" and trigger.schedule is not None:
        since = _parse_iso(state) if state else now
        after = max(since, now) if state is None else since
        return _iso(trigger.schedule.next_after(after))
    if trigger.kind == "data" and trigger.data_path is not None:
        return f"when files matching {trigger.data_path} change"
    if trigger.kind == "data":
        return "when the query's value changes"
    if trigger.kind == "alert":
        return f"on an alert of {trigger.alert_monitor}"
    return "by hand (conveyor trigger)"


def _due_schedule(trigger: TriggerConfig, state: str | None, now: datetime) -> Firing | None:
    assert trigger.schedule is not None
    since = _parse_iso(state) if state else now
    slot = trigger.schedule.latest_at_or_before(now, since)
    if slot is None:
        return None
    return Firing(
        trigger.name,
        "schedule",
        f"cron {trigger.schedule.expression} at {_iso(slot)}",
        watermark=_iso(slot),
        detail={"slot": _iso(slot)},
    )


def _due_files(trigger: TriggerConfig, state: str | None) -> Firing | None:
    seen = json.loads(state) if state else {}
    mark = int(seen.get("mtime_ns", -1))
    names = set(seen.get("names", []))
    files = _stat_files(trigger.glob_pattern())
    if not files:
        return None
    new = sorted(p for p, m in files.items() if p not in names or m > mark)
    if not new:
        return None
    shown = ", ".join(Path(p).name for p in new[:3]) + ("…" if len(new) > 3 else "")
    noun = "file" if len(new) == 1 else "files"
    watermark = {"mtime_ns": max(files.values()), "names": sorted(files)}
    return Firing(
        trigger.name,
        "data",
        f"{len(new)} new {noun}: {shown}",
        watermark=json.dumps(watermark, separators=(",", ":")),
        detail={"new_files": [Path(p).name for p in new[:100]], "files": len(files)},
    )


def _stat_files(pattern: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for path in glob.glob(pattern):
        try:
            stat = Path(path).stat()
        except OSError:  # removed between the listing and the stat
            continue
        found[path] = stat.st_mtime_ns
    return found


_ENGINES: dict[str, Any] = {}
_ENGINES_LOCK = threading.Lock()


def _due_sql(trigger: TriggerConfig, state: str | None) -> Firing | None:
    assert trigger.data_sql is not None
    assert trigger.data_uri is not None
    value = _query_value(trigger.data_uri, trigger.data_sql, trigger.name)
    if value is None or value == state:
        return None
    before = "nothing" if state is None else state
    return Firing(
        trigger.name,
        "data",
        f"query value changed: {before} → {value}",
        watermark=value,
        detail={"value": value, "previous": state},
    )


def _query_value(uri: str, sql: str, name: str) -> str | None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    with _ENGINES_LOCK:
        engine = _ENGINES.get(uri)
        if engine is None:
            engine = _ENGINES[uri] = create_engine(uri, pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            value = conn.execute(text(sql)).scalar()
    except SQLAlchemyError as exc:
        why = f"{type(exc).__name__}: {exc}"
        raise ConfigError(f"trigger {name!r}: data.sql failed: {why}") from exc
    return None if value is None else str(value)


def _due_alert(trigger: TriggerConfig, state: str | None, store: LoopStore) -> Firing | None:
    cursor = int(state) if state else 0
    matched: list[Alert] = []
    last = cursor
    while True:
        page = store.list_alerts(since_id=last, source=trigger.alert_monitor, limit=500)
        matched.extend(a for a in page if _asks(trigger, a))
        if page:
            last = page[-1].id
        if len(page) < 500:
            break
    if not matched:
        return None
    first = matched[-1]
    more = f" (+{len(matched) - 1} more)" if len(matched) > 1 else ""
    return Firing(
        trigger.name,
        "alert",
        f"alert {first.id}: {first.message}{more}",
        watermark=str(last),
        detail={"alerts": [a.id for a in matched[-100:]]},
    )


def _asks(trigger: TriggerConfig, alert: Alert) -> bool:
    if trigger.alert_rule is not None:
        return alert.rule == trigger.alert_rule
    retrain = alert.payload.get("retrain")
    if not isinstance(retrain, dict):
        return False
    wanted = retrain.get("pipeline")
    return wanted is None or wanted in (trigger.pipeline, trigger.pipeline_name, trigger.name)


def _iso(when: datetime) -> str:
    at = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> datetime:
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at
