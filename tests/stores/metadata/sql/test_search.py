"""Tests of the run-search SQL: results on SQLite and PostgreSQL against a Python model."""

from __future__ import annotations

import operator
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, create_engine, func, insert, select, text

from conveyor.core.entities import RunStatus
from conveyor.core.filter import (
    And,
    Comparison,
    Entity,
    Node,
    Not,
    Op,
    Or,
    parse_filter,
    parse_order_by,
)
from conveyor.errors import FilterSyntaxError, ValidationError
from conveyor.stores.metadata.sql import schema
from conveyor.stores.metadata.sql.search import MAX_RESULTS_LIMIT, build_search_query

# --- a Python model of the runs and of the search rules -----------------------


@dataclass
class FakeRun:
    id: str
    experiment_id: int
    name: str
    status: str
    start_time: int
    end_time: int | None = None
    parent_run_id: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)  # None is NaN
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def attribute(self, name: str) -> Any:
        return getattr(self, "name" if name == "run_name" else "id" if name == "run_id" else name)


def like_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    parts, chars = [], iter(pattern)
    for char in chars:
        if char == "\\":
            parts.append(re.escape(next(chars, "\\")))
        else:
            parts.append({"%": ".*", "_": "."}.get(char, re.escape(char)))
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


_COMPARE: dict[Op, Callable[[Any, Any], bool]] = {
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.GT: operator.gt,
    Op.GE: operator.ge,
    Op.IN: lambda actual, values: actual in values,
    Op.NOT_IN: lambda actual, values: actual not in values,
    Op.LIKE: lambda actual, pattern: like_regex(pattern, False).fullmatch(actual) is not None,
    Op.ILIKE: lambda actual, pattern: like_regex(pattern, True).fullmatch(actual) is not None,
}


def holds(run: FakeRun, node: Node) -> bool:
    match node:
        case And(items):
            return all(holds(run, item) for item in items)
        case Or(items):
            return any(holds(run, item) for item in items)
        case Not(item):
            return not holds(run, item)
        case Comparison():
            return comparison_holds(run, node)
    raise AssertionError(node)


def comparison_holds(run: FakeRun, node: Comparison) -> bool:
    if node.entity is Entity.ATTRIBUTES:
        actual = run.attribute(node.key)
        present = actual is not None
    else:
        values: dict[str, Any] = getattr(run, node.entity.value)
        present, actual = node.key in values, values.get(node.key)
    if node.op is Op.IS_NULL:
        return not present
    if node.op is Op.IS_NOT_NULL:
        return present
    # A missing key, a NULL attribute and a NaN metric satisfy no comparison.
    return actual is not None and _COMPARE[node.op](actual, node.value)


def sort_value(run: FakeRun, entity: Entity, key: str) -> Any:
    if entity is Entity.ATTRIBUTES:
        return run.attribute(key)
    return getattr(run, entity.value).get(key)


def expected_ids(
    runs: Sequence[FakeRun],
    experiment_ids: Sequence[int] | None,
    filter_text: str | None,
    order_by: Sequence[str],
) -> list[str]:
    node = parse_filter(filter_text or "")
    chosen = [
        run
        for run in runs
        if (experiment_ids is None or run.experiment_id in experiment_ids)
        and (node is None or holds(run, node))
    ]
    # Stable sorts from the least significant key up: tie-breakers first.
    chosen.sort(key=lambda run: run.id)
    chosen.sort(key=lambda run: run.start_time, reverse=True)
    for key in reversed(parse_order_by(order_by)):
        present = [run for run in chosen if sort_value(run, key.entity, key.key) is not None]
        missing = [run for run in chosen if sort_value(run, key.entity, key.key) is None]
        present.sort(key=lambda run: sort_value(run, key.entity, key.key), reverse=key.descending)
        chosen = present + missing
    return [run.id for run in chosen]


# --- fixtures -------------------------------------------------------------------

_NAMES = ["alpha", "Alpha", "beta", "gamma-1", "100%", "a_b", "aXb", "x\\y", "ümlaut"]
_PARAM_VALUES = ["0.1", "0.01", "adam", "Adam", "sgd", "100%", "a_b", "aXb", "it's", 'say "hi"']
_PARAM_VALUES += ["back\\slash", "", "ünï", "a*b", "a?b", "[x]", "trail\\"]
_TAG_VALUES = ["ops", "OPS", "ml", "research", "Ops team", "x' OR '1'='1"]
_METRIC_VALUES = [0.0, 0.5, 0.8, 0.9, 1.0, -2.5, 1e10, 0.123456789, None]


def make_runs(seed: int = 7, count: int = 80) -> list[FakeRun]:
    rng = random.Random(seed)
    runs: list[FakeRun] = []
    for index in range(count):
        status = rng.choice(list(RunStatus)).value
        start = 1000 + 10 * rng.randint(0, 15)  # repeats, so the tie-breakers matter
        run = FakeRun(
            id=f"run{index:03d}",
            experiment_id=rng.choice([1, 1, 2, 3]),
            name=rng.choice(_NAMES),
            status=status,
            start_time=start,
            end_time=None if status == "RUNNING" else start + rng.randint(1, 500),
            parent_run_id=rng.choice([None, None, *[r.id for r in runs[-3:]]]),
        )
        for key in ["auc", "loss", "val loss", "acc"]:
            if rng.random() < 0.7:
                run.metrics[key] = rng.choice(_METRIC_VALUES)
        for key in ["lr", "opt", "note"]:
            if rng.random() < 0.7:
                run.params[key] = rng.choice(_PARAM_VALUES)
        if index < len(_PARAM_VALUES):  # every odd value at least once
            run.params["opt"] = _PARAM_VALUES[index]
        for key in ["team", "mlflow.user"]:
            if rng.random() < 0.7:
                run.tags[key] = rng.choice(_TAG_VALUES)
        runs.append(run)
    return runs


def insert_runs(conn: Connection, runs: Sequence[FakeRun]) -> None:
    experiments = sorted({run.experiment_id for run in runs})
    existing = set(conn.scalars(select(schema.experiments.c.id)))
    new = [{"id": e, "name": f"exp{e}", "created_at": 0} for e in experiments if e not in existing]
    if new:
        conn.execute(insert(schema.experiments), new)
    conn.execute(insert(schema.runs), [_run_row(run) for run in runs])
    rows = [(schema.latest_metrics, "metrics"), (schema.params, "params"), (schema.tags, "tags")]
    for table, attribute in rows:
        values = [
            {"run_id": run.id, "key": key, "value": value, "step": 0, "timestamp": 0}
            if table is schema.latest_metrics
            else {"run_id": run.id, "key": key, "value": value}
            for run in runs
            for key, value in getattr(run, attribute).items()
        ]
        if values:
            conn.execute(insert(table), values)


def _run_row(run: FakeRun) -> dict[str, Any]:
    return {name: value for name, value in asdict(run).items() if not isinstance(value, dict)}


RUNS = make_runs()


@pytest.fixture(scope="module")
def populated(module_sql_engine: Engine) -> Engine:
    with module_sql_engine.begin() as conn:
        insert_runs(conn, RUNS)
    return module_sql_engine


def search(
    engine: Engine,
    filter_text: str | None = None,
    order_by: Sequence[str] | None = None,
    experiment_ids: Sequence[int] | None = None,
    max_results: int = 1000,
    offset: int = 0,
) -> list[str]:
    query = build_search_query(experiment_ids, filter_text, order_by, max_results, offset)
    with engine.connect() as conn:
        return list(conn.scalars(query))


# --- results against the model ---------------------------------------------------

# Among them: NaN and missing metrics, NOT over missing keys and NULL attributes,
# LIKE case and escapes (and GLOB's own wildcards, literal here), a trailing lone
# backslash, a float bound on an integer column (PostgreSQL must not round it).
FILTERS = [
    None, "", "metrics.auc > 0.8", "metrics.auc >= 0.8", "metrics.auc = 1", "metrics.auc != 0.5",
    "metrics.auc <> 0.5", "metrics.auc < 0", "metrics.auc <= 1e10", "metrics.auc in (0.5, 1, 1e10)",
    "metrics.auc not in (0.5, 1)", "metrics.auc is null", "metrics.auc is not null",
    "not metrics.auc > 0.8", "not metrics.auc is null", "metrics.`val loss` < 0.9",
    'metrics."val loss" > -3', "metrics.missing > 0", "metrics.missing is null",
    "params.lr = '0.1'", "params.lr != '0.1'", "not params.lr = '0.1'",
    "params.lr in ('0.1', '0.01')", "params.lr not in ('0.1', '0.01')", "params.opt like 'a%'",
    "params.opt like 'A%'", "params.opt ilike 'A%'", "params.opt like 'a_b'",
    "params.opt like 'a\\_b'", "params.opt like '100\\%'", "params.opt like '%\\\\%'",
    "params.opt like 'a*b'", "params.opt like 'a?b'", "params.opt like '[x]'",
    "params.opt like '%\\\\'", "params.opt like '%'", "params.opt = ''", "params.opt = 'it''s'",
    'params.opt = \'say "hi"\'', "params.opt = 'back\\\\slash'", "params.opt = 'ünï'",
    "params.opt is null", "params.note is not null and params.opt is null", "tags.team = 'ops'",
    "tags.team ilike 'OPS'", "tags.team ilike '%team'", "tags.team like 'ops'",
    "tags.`mlflow.user` = 'ml'", "tags.mlflow.user = 'ml'", "tags.team = 'x'' OR ''1''=''1'",
    "attributes.status = 'RUNNING'", "attributes.status != 'running'",
    "attributes.status in ('FAILED', 'KILLED')", "attributes.status not in ('FAILED', 'KILLED')",
    "attributes.status like 'F%'", "attributes.run_name = 'alpha'", "attributes.name like 'a%'",
    "attributes.name ilike 'a%'", "attributes.name like '%\\\\%'", "attributes.run_id = 'run005'",
    "attributes.id in ('run001', 'run002', 'nope')", "attributes.start_time > 1050",
    "attributes.start_time > 1049.5", "attributes.start_time <= 1049.9",
    "attributes.start_time <= 1070 and attributes.start_time >= 1030", "attributes.end_time > 1200",
    "not attributes.end_time > 1200", "attributes.end_time is null",
    "attributes.parent_run_id is not null", "attributes.parent_run_id = 'run001'",
    "not attributes.parent_run_id = 'run001'", "attributes.experiment_id = 2",
    "attributes.experiment_id = 99999999999", "attributes.experiment_id in (1, 3)",
    "metrics.auc > 0.5 and params.lr = '0.1' or tags.team = 'ops'",
    "metrics.auc > 0.5 and (params.lr = '0.1' or tags.team = 'ops')",
    "not (metrics.auc > 0.5 or metrics.loss < 0.5) and attributes.status = 'FINISHED'",
    "(metrics.auc is null or metrics.auc<.9) and not (params.opt like 'a%' and tags.team is null)",
]  # fmt: skip


@pytest.mark.parametrize("filter_text", FILTERS)
def test_filter_matches_the_model(populated: Engine, filter_text: str | None) -> None:
    assert search(populated, filter_text) == expected_ids(RUNS, None, filter_text, [])


def test_the_model_is_not_trivial() -> None:
    # Each filter should tell runs apart, or its test proves little.
    trivial = [f for f in FILTERS[2:] if len(expected_ids(RUNS, None, f, [])) in (0, len(RUNS))]
    assert set(trivial) <= {
        "metrics.missing > 0",
        "metrics.missing is null",
        "attributes.experiment_id = 99999999999",
    }


ORDERS = [
    [], ["metrics.auc DESC"], ["metrics.auc"], ["metrics.`val loss` asc", "metrics.acc desc"],
    ["params.opt"], ["params.opt DESC"], ["tags.team desc", "params.lr"],
    ["attributes.start_time ASC"], ["start_time"], ["end_time DESC"], ["end_time"], ["name"],
    ["attributes.status", "metrics.loss DESC"], ["parent_run_id desc"],
    ["metrics.auc DESC", "metrics.auc"],
]  # fmt: skip


@pytest.mark.parametrize("order_by", ORDERS, ids=lambda o: ",".join(o) or "default")
def test_order_matches_the_model(populated: Engine, order_by: list[str]) -> None:
    assert search(populated, None, order_by) == expected_ids(RUNS, None, None, order_by)


@pytest.mark.parametrize(
    ("experiment_ids", "filter_text", "order_by"),
    [
        ([1], None, []),
        ([1, 3], "metrics.auc > 0.5", ["metrics.auc DESC"]),
        ((2,), "params.opt like '%a%'", ["params.opt"]),
        ([], None, []),
        ([42], None, []),
    ],
)
def test_experiments_filter_and_order_together(
    populated: Engine, experiment_ids: list[int], filter_text: str | None, order_by: list[str]
) -> None:
    actual = search(populated, filter_text, order_by, experiment_ids)
    assert actual == expected_ids(RUNS, experiment_ids, filter_text, order_by)


@pytest.mark.parametrize(("max_results", "offset"), [(1, 0), (10, 0), (10, 10), (7, 75), (5, 500)])
def test_paging_slices_the_order(populated: Engine, max_results: int, offset: int) -> None:
    order = ["metrics.auc DESC"]
    expected = expected_ids(RUNS, None, None, order)[offset : offset + max_results]
    assert search(populated, None, order, max_results=max_results, offset=offset) == expected


def test_pages_cover_every_run_once(populated: Engine) -> None:
    pages = [
        search(populated, None, ["params.opt"], max_results=9, offset=o) for o in range(0, 90, 9)
    ]
    seen = [run_id for page in pages for run_id in page]
    assert sorted(seen) == sorted(run.id for run in RUNS)


# --- arguments -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_results", "offset", "field"),
    [
        (0, 0, "max_results"),
        (-1, 0, "max_results"),
        (MAX_RESULTS_LIMIT + 1, 0, "max_results"),
        (True, 0, "max_results"),
        (1.5, 0, "max_results"),
        (10, -1, "offset"),
        (10, "3", "offset"),
        (10, 2**63, "offset"),
    ],
)
def test_page_arguments_are_validated(max_results: Any, offset: Any, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        build_search_query(None, None, None, max_results, offset)
    assert caught.value.field == field


def test_page_limits_are_inclusive() -> None:
    build_search_query(None, None, None, MAX_RESULTS_LIMIT, 0)
    build_search_query(None, None, None, 1, 10**9)


def test_bad_filter_and_order_raise_filter_syntax_error() -> None:
    with pytest.raises(FilterSyntaxError):
        build_search_query(None, "metrics.auc >", None, 10, 0)
    with pytest.raises(FilterSyntaxError):
        build_search_query(None, None, ["metrics.auc sideways"], 10, 0)


# --- injection and binding -------------------------------------------------------

_HOSTILE = ["x' OR '1'='1", "'; DROP TABLE runs; --", '" OR ""="', "x\\' OR 1=1 --", "%", "_"]


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def test_values_and_keys_are_bound_not_spliced(sql_engine: Engine) -> None:
    marker = "zq_marker"
    query = build_search_query(
        [7],
        f"params.`{marker}_key` = '{marker}_value' and metrics.`{marker}_m` > 123456789"
        f" and attributes.name like '{marker}%' and tags.t in ('{marker}_in')",
        [f"metrics.`{marker}_order`"],
        4321,
        8765,
    )
    sql = str(query.compile(sql_engine))
    for secret in (marker, "123456789", "4321", "8765"):
        assert secret not in sql


@pytest.mark.parametrize("hostile", _HOSTILE)
def test_hostile_values_are_literal_strings(sql_engine: Engine, hostile: str) -> None:
    runs = [
        FakeRun("plain", 1, "n", "FINISHED", 1, params={"p": "x"}, tags={"t": "x"}),
        FakeRun("literal", 1, hostile, "FINISHED", 2, params={"p": hostile}, tags={hostile: "y"}),
    ]
    with sql_engine.begin() as conn:
        insert_runs(conn, runs)
    assert search(sql_engine, f"params.p = {_quote(hostile)}") == ["literal"]
    assert search(sql_engine, f"attributes.name = {_quote(hostile)}") == ["literal"]
    key = hostile.replace("`", "``").replace("\\", "\\\\")
    assert search(sql_engine, f"tags.`{key}` = 'y'") == ["literal"]
    assert search(sql_engine, None, [f"tags.`{key}` desc"]) == ["literal", "plain"]
    with sql_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(schema.runs)) == 2
        assert conn.scalar(select(func.count()).select_from(schema.params)) == 2


_FUZZ_TEXT = st.text(
    st.sampled_from(list("aA%_\\'\"`*?[]^-; ")) | st.characters(exclude_categories=["Cs"]),
    max_size=15,
).filter(lambda value: "\x00" not in value)


def _like_escape(value: str) -> str:
    return re.sub(r"([%_\\])", r"\\\1", value)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=_FUZZ_TEXT)
def test_any_string_value_round_trips(sql_engine: Engine, value: str) -> None:
    decoys = {value + "x", "x" + value, value.upper(), value.lower(), value[:-1], "a", ""} - {value}
    runs = [FakeRun("target", 1, "n", "FINISHED", 1, params={"p": value})]
    runs += [
        FakeRun(f"decoy{i}", 1, "n", "FINISHED", 1, params={"p": decoy})
        for i, decoy in enumerate(sorted(decoys))
    ]
    with sql_engine.connect() as conn, conn.begin() as transaction:
        insert_runs(conn, runs)

        def found(filter_text: str) -> set[str]:
            return set(conn.scalars(build_search_query(None, filter_text, None, 100, 0)))

        assert found(f"params.p = {_quote(value)}") == {"target"}
        assert found(f"params.p like {_quote(_like_escape(value))}") == {"target"}
        assert found(f"params.p in ({_quote(value)}, 'zz')") == {"target"}
        if value.isascii():
            same = {run.id for run in runs if run.params["p"].lower() == value.lower()}
            assert found(f"params.p ilike {_quote(_like_escape(value))}") == same
        transaction.rollback()


# --- performance -----------------------------------------------------------------


@pytest.fixture
def big_sqlite(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'big.db'}")
    schema.metadata.create_all(engine)
    rng = random.Random(1)
    runs = [
        FakeRun(
            f"r{i:05d}", 1, "n", "FINISHED", i, metrics={f"m{k}": rng.random() for k in range(10)}
        )
        for i in range(10_000)
    ]
    for run in runs:
        run.params = {f"p{k}": str(k) for k in range(10)}
    with engine.begin() as conn:
        insert_runs(conn, runs)
        conn.execute(text("ANALYZE"))
    yield engine
    engine.dispose()


def test_metric_search_on_ten_thousand_runs_is_fast(big_sqlite: Engine) -> None:
    query = build_search_query([1], "metrics.m3 > 0.8", ["metrics.m3 DESC"], 100, 0)
    with big_sqlite.connect() as conn:
        conn.execute(query).all()  # warm the page cache
        started = time.perf_counter()
        ids = list(conn.scalars(query))
        elapsed = time.perf_counter() - started
        compiled = query.compile(big_sqlite, compile_kwargs={"render_postcompile": True})
        parameters = tuple(compiled.params[name] for name in compiled.positiontup or ())
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        plan = " | ".join(
            row[3] for row in cursor.execute(f"EXPLAIN QUERY PLAN {compiled}", parameters)
        )
    assert len(ids) == 100
    assert elapsed < 2.0, f"{elapsed * 1000:.0f} ms"
    assert "ix_latest_metrics_key_value" in plan, plan
    assert "SCAN latest_metrics" not in plan, plan
