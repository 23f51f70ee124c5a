"""Parsing the ``triggers:`` section and evaluating each kind of trigger against its watermark."""

import json
import os
from datetime import UTC, datetime

import pytest

from conveyor.automation.triggers import (
    describe_next,
    due,
    initial_state,
    parse_duration,
    parse_triggers,
)
from conveyor.core.loop import NewAlert
from conveyor.errors import ConfigError
from conveyor.stores.backends import open_loop_store

TRAINING = "pipelines/training.py:training"


def one(**fields):
    return parse_triggers([{"name": "t", "pipeline": TRAINING, **fields}])[0]


def test_the_documented_example_parses(tmp_path):
    section = [
        {"name": "nightly", "pipeline": TRAINING, "schedule": "0 2 * * *"},
        {
            "name": "new-data",
            "pipeline": TRAINING,
            "data": {"path": ".conveyor/data/flights-2013-*.parquet"},
            "params": {"data": ".conveyor/data/flights-2013-*.parquet"},
            "cooldown": "10m",
            "max_concurrent": 1,
        },
        {"name": "on-drift", "pipeline": TRAINING, "alert": {"monitor": "flights-production"}},
        {"name": "by-hand", "pipeline": TRAINING},
        {"name": "rows", "pipeline": TRAINING, "data": {"sql": "SELECT 1", "uri": "sqlite://"}},
    ]
    nightly, new_data, on_drift, by_hand, rows = parse_triggers(section, base_dir=tmp_path)
    assert nightly.kind == "schedule"
    assert nightly.schedule is not None
    assert nightly.schedule.expression == "0 2 * * *"
    assert new_data.kind == "data"
    assert new_data.cooldown_s == 600
    assert new_data.params == {"data": ".conveyor/data/flights-2013-*.parquet"}
    assert new_data.glob_pattern() == str(tmp_path / ".conveyor/data/flights-2013-*.parquet")
    assert on_drift.kind == "alert"
    assert on_drift.alert_monitor == "flights-production"
    assert on_drift.alert_rule is None
    assert by_hand.kind == "manual"
    assert (rows.data_sql, rows.data_uri) == ("SELECT 1", "sqlite://")
    assert nightly.pipeline_name == "training"
    assert (nightly.attempts, nightly.backoff_s, nightly.max_concurrent) == (3, 30.0, 1)
    assert parse_triggers(None) == []


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"name": "x"}, "triggers: must be a list"),
        (["x"], "triggers[0]: must be a mapping"),
        ([{"name": "bad name!", "pipeline": TRAINING}], "triggers[0].name: must be letters"),
        ([{"name": "a", "pipeline": "training"}], "triggers[0].pipeline: must be path"),
        ([{"name": "a", "pipeline": TRAINING, "shedule": "x"}], "unknown key(s) shedule"),
        (
            [{"name": "a", "pipeline": TRAINING, "schedule": "@daily", "alert": {"monitor": "m"}}],
            "give one of schedule, data or alert, not schedule and alert",
        ),
        ([{"name": "a", "pipeline": TRAINING, "schedule": "0 25 * * *"}], "triggers[0].schedule"),
        ([{"name": "a", "pipeline": TRAINING, "data": "x"}], "triggers[0].data: must be"),
        ([{"name": "a", "pipeline": TRAINING, "data": {}}], "give either path"),
        ([{"name": "a", "pipeline": TRAINING, "data": {"sql": "s"}}], "triggers[0].data.uri"),
        (
            [{"name": "a", "pipeline": TRAINING, "data": {"path": "x", "uri": "sqlite://"}}],
            "data.uri: only goes with sql",
        ),
        ([{"name": "a", "pipeline": TRAINING, "alert": {}}], "triggers[0].alert.monitor"),
        (
            [{"name": "a", "pipeline": TRAINING, "alert": {"monitor": "m", "level": 1}}],
            "unknown key(s) level",
        ),
        ([{"name": "a", "pipeline": TRAINING, "cooldown": "soon"}], "triggers[0].cooldown"),
        ([{"name": "a", "pipeline": TRAINING, "max_concurrent": 0}], "max_concurrent: must be"),
        ([{"name": "a", "pipeline": TRAINING, "attempts": "3"}], "triggers[0].attempts"),
        ([{"name": "a", "pipeline": TRAINING, "params": [1]}], "triggers[0].params"),
        (
            [{"name": "a", "pipeline": TRAINING}, {"name": "a", "pipeline": TRAINING}],
            "triggers[1].name: 'a' is declared twice",
        ),
    ],
)
def test_bad_sections_name_the_key_and_the_rule(section, message):
    with pytest.raises(ConfigError) as info:
        parse_triggers(section)
    assert message in str(info.value)


def test_durations():
    assert parse_duration("30s") == 30
    assert parse_duration("10m") == 600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("2d") == 172800
    assert parse_duration(45) == 45
    assert parse_duration("2.5") == 2.5
    for bad in ("-1", "ten", "10x", "", True, -3):
        with pytest.raises(ConfigError, match="cooldown"):
            parse_duration(bad, "cooldown")


# --- evaluation ---------------------------------------------------------------------------


def test_a_schedule_starts_from_when_it_is_first_seen_and_fires_once_per_slot():
    trigger = one(schedule="0 2 * * *")
    first_seen = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
    state = initial_state(trigger, first_seen)
    assert state == "2026-03-01T01:00:00Z"
    assert due(trigger, state, datetime(2026, 3, 1, 1, 59, tzinfo=UTC)) is None
    firing = due(trigger, state, datetime(2026, 3, 1, 2, 0, 30, tzinfo=UTC))
    assert firing is not None
    assert firing.reason == "cron 0 2 * * * at 2026-03-01T02:00:00Z"
    assert firing.watermark == "2026-03-01T02:00:00Z"
    assert due(trigger, firing.watermark, datetime(2026, 3, 1, 23, 0, tzinfo=UTC)) is None
    # three days missed: one firing, for the latest slot
    late = due(trigger, firing.watermark, datetime(2026, 3, 4, 12, 0, tzinfo=UTC))
    assert late is not None
    assert late.watermark == "2026-03-04T02:00:00Z"
    assert describe_next(trigger, firing.watermark, first_seen) == "2026-03-02T02:00:00Z"


def test_new_files_fire_once_then_only_new_or_touched_ones(tmp_path):
    trigger = parse_triggers(
        [{"name": "d", "pipeline": TRAINING, "data": {"path": "data/m-*.parquet"}}],
        base_dir=tmp_path,
    )[0]
    now = datetime.now(UTC)
    assert due(trigger, None, now) is None  # no folder, no files: nothing to do
    (tmp_path / "data").mkdir()
    for month in ("01", "02", "03", "04"):
        (tmp_path / "data" / f"m-{month}.parquet").write_bytes(b"x")
    (tmp_path / "data" / "other.csv").write_bytes(b"x")
    firing = due(trigger, None, now)
    assert firing is not None
    assert firing.reason == "4 new files: m-01.parquet, m-02.parquet, m-03.parquet…"
    assert firing.detail["new_files"] == [f"m-0{i}.parquet" for i in range(1, 5)]
    assert due(trigger, firing.watermark, now) is None

    # a file copied with an old time is new by name; a rewritten one by its time
    old = tmp_path / "data" / "m-05.parquet"
    old.write_bytes(b"x")
    os.utime(old, ns=(1_000_000_000, 1_000_000_000))
    again = due(trigger, firing.watermark, now)
    assert again is not None
    assert again.reason == "1 new file: m-05.parquet"
    assert again.watermark is not None
    seen = json.loads(again.watermark)
    assert len(seen["names"]) == 5
    later = seen["mtime_ns"] + 5_000_000_000
    os.utime(tmp_path / "data" / "m-02.parquet", ns=(later, later))
    touched = due(trigger, again.watermark, now)
    assert touched is not None
    assert touched.reason == "1 new file: m-02.parquet"


def test_a_query_fires_when_its_value_changes(tmp_path):
    import sqlite3

    db = tmp_path / "events.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE events (ts TEXT)")
    trigger = one(data={"sql": "SELECT max(ts) FROM events", "uri": f"sqlite:///{db}"})
    now = datetime.now(UTC)
    assert due(trigger, None, now) is None  # max of nothing is NULL
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO events VALUES ('2026-03-01T00:00')")
    firing = due(trigger, None, now)
    assert firing is not None
    assert firing.reason == "query value changed: nothing → 2026-03-01T00:00"
    assert due(trigger, firing.watermark, now) is None
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO events VALUES ('2026-03-02T00:00')")
    moved = due(trigger, firing.watermark, now)
    assert moved is not None
    assert moved.reason == "query value changed: 2026-03-01T00:00 → 2026-03-02T00:00"


def test_a_broken_query_is_a_config_error_naming_the_trigger(tmp_path):
    trigger = one(data={"sql": "SELECT nope FROM nowhere", "uri": f"sqlite:///{tmp_path}/x.db"})
    with pytest.raises(ConfigError, match=r"trigger 't': data\.sql failed"):
        due(trigger, None, datetime.now(UTC))


def test_alerts_asking_for_retraining_fire_after_the_cursor(tmp_path):
    store = open_loop_store(f"sqlite:///{tmp_path / 'c.db'}")
    trigger = one(alert={"monitor": "flights-production"})
    now = datetime.now(UTC)
    ask = {"retrain": {"pipeline": "training"}}
    store.add_alert(NewAlert("flights-production", "drift", "warning", "drift only"))
    store.add_alert(NewAlert("other-monitor", "drift", "warning", "elsewhere", payload=ask))
    other = {"retrain": {"pipeline": "scoring"}}
    store.add_alert(NewAlert("flights-production", "drift", "warning", "not ours", payload=other))
    assert due(trigger, None, now, loop_store=store) is None
    hit = store.add_alert(
        NewAlert("flights-production", "drift", "warning", "drift share 0.42 > 0.3", payload=ask)
    )
    firing = due(trigger, None, now, loop_store=store)
    assert firing is not None
    assert firing.reason == f"alert {hit.id}: drift share 0.42 > 0.3"
    assert firing.watermark == str(hit.id)
    assert due(trigger, firing.watermark, now, loop_store=store) is None

    by_rule = one(alert={"monitor": "flights-production", "rule": "drift"})
    any_drift = due(by_rule, None, now, loop_store=store)
    assert any_drift is not None
    assert any_drift.detail["alerts"] == [1, 3, 4]
    assert any_drift.reason.endswith("(+2 more)")
    store.close()


def test_manual_triggers_are_never_due():
    assert due(one(), None, datetime.now(UTC)) is None
    assert describe_next(one(), None, datetime.now(UTC)) == "by hand (conveyor trigger)"
