"""Compile a run-search filter and order into one SELECT of run ids, with every value bound.

A comparison on a param or tag is a correlated ``EXISTS`` on the table's
primary key; one on a metric is ``runs.id IN (...)`` over ``latest_metrics``,
which can range-scan its (key, value) index. Neither is ever SQL ``NULL`` (nor
is a guarded nullable attribute), so ``NOT`` is plain logic: ``not metrics.auc
> 0.8`` matches runs without an ``auc`` as well as those at or below 0.8. A NaN
metric (a NULL value) never satisfies a numeric comparison. LIKE is
case-sensitive and ILIKE is not, on SQLite and PostgreSQL alike; a backslash
escapes ``%`` and ``_``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any, assert_never

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Float,
    Select,
    Table,
    and_,
    exists,
    literal,
    not_,
    or_,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from conveyor.core.filter import (
    And,
    Comparison,
    Entity,
    Node,
    Not,
    Op,
    Or,
    OrderKey,
    Scalar,
    parse_filter,
    parse_order_by,
)
from conveyor.errors import ValidationError
from conveyor.stores.metadata.sql.schema import latest_metrics, params, runs, tags

__all__ = ["MAX_RESULTS_LIMIT", "build_search_query"]

MAX_RESULTS_LIMIT = 50_000

_TABLES: dict[Entity, Table] = {
    Entity.METRICS: latest_metrics,
    Entity.PARAMS: params,
    Entity.TAGS: tags,
}
_ATTRIBUTE_COLUMNS: dict[str, ColumnElement[Any]] = {
    "status": runs.c.status,
    "run_name": runs.c.name,
    "run_id": runs.c.id,
    "parent_run_id": runs.c.parent_run_id,
    "start_time": runs.c.start_time,
    "end_time": runs.c.end_time,
    "experiment_id": runs.c.experiment_id,
}
_NULLABLE_ATTRIBUTES = frozenset({"parent_run_id", "end_time"})
_BINARY: dict[Op, Callable[[Any, Any], ColumnElement[bool]]] = {
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.GT: operator.gt,
    Op.GE: operator.ge,
}
_LIKE_ESCAPE = "\\"


def build_search_query(
    experiment_ids: Sequence[int] | None,
    filter_text: str | None,
    order_by: Sequence[str] | None,
    max_results: int,
    offset: int,
) -> Select[tuple[str]]:
    """Build the query for the ids of the runs that match, in order, one page of them.

    Args:
        experiment_ids: the experiments to search; None searches all of them and
            an empty sequence matches nothing.
        filter_text: a filter in the language of `conveyor.core.filter`; None or
            blank matches every run.
        order_by: keys such as ``"metrics.auc DESC"``; runs missing a key sort
            last. Ties, and no keys at all, fall back to newest first, then id.
        max_results: the page size, 1 to `MAX_RESULTS_LIMIT`.
        offset: how many matching runs to skip, 0 or more.

    Returns:
        A SELECT of ``runs.id`` in which every value is a bound parameter.

    Raises:
        ValidationError: ``max_results`` or ``offset`` is out of range.
        FilterSyntaxError: the filter or an order key does not parse.
    """
    _check_page(max_results, offset)
    query = select(runs.c.id)
    if experiment_ids is not None:
        query = query.where(runs.c.experiment_id.in_(list(experiment_ids)))
    node = parse_filter(filter_text or "")
    if node is not None:
        query = query.where(_predicate(node))
    query, keys = _order(query, parse_order_by(order_by or ()))
    query = query.order_by(*keys, runs.c.start_time.desc(), runs.c.id)
    return query.limit(max_results).offset(offset)


def _check_page(max_results: int, offset: int) -> None:
    if not _is_int(max_results) or not 1 <= max_results <= MAX_RESULTS_LIMIT:
        raise ValidationError("max_results", f"must be an integer from 1 to {MAX_RESULTS_LIMIT}")
    if not _is_int(offset) or not 0 <= offset < 2**63:
        raise ValidationError("offset", "must be an integer, 0 or more")


def _is_int(value: object) -> bool:
    # bool is an int to Python, but True results per page is a mistake.
    return isinstance(value, int) and not isinstance(value, bool)


def _predicate(node: Node) -> ColumnElement[bool]:
    """The SQL truth of a filter node; never NULL, so NOT is plain negation."""
    match node:
        case And(items):
            return and_(*(_predicate(item) for item in items))
        case Or(items):
            return or_(*(_predicate(item) for item in items))
        case Not(item):
            return not_(_predicate(item))
        case Comparison():
            return _comparison(node)
        case _:
            assert_never(node)


def _comparison(node: Comparison) -> ColumnElement[bool]:
    if node.entity is Entity.ATTRIBUTES:
        return _attribute_comparison(node)
    table = _TABLES[node.entity]
    has_key = [table.c.run_id == runs.c.id, table.c.key == node.key]
    if node.op is Op.IS_NULL:
        return ~exists().where(*has_key)
    if node.op is Op.IS_NOT_NULL:
        return exists().where(*has_key)
    test = _test(table.c.value, node.op, node.value)
    if node.entity is Entity.METRICS:
        # Uncorrelated, so the planner can range-scan ix_latest_metrics_key_value
        # instead of probing every run; run ids are never NULL, so NOT IN stays two-valued.
        return runs.c.id.in_(select(table.c.run_id).where(table.c.key == node.key, test))
    return exists().where(*has_key, test)


def _attribute_comparison(node: Comparison) -> ColumnElement[bool]:
    column = _ATTRIBUTE_COLUMNS[node.key]
    if node.op is Op.IS_NULL:
        return column.is_(None)
    if node.op is Op.IS_NOT_NULL:
        return column.is_not(None)
    test = _test(column, node.op, node.value)
    # Without the guard, NOT over a NULL end_time would be NULL and drop the run.
    return and_(column.is_not(None), test) if node.key in _NULLABLE_ATTRIBUTES else test


def _test(column: ColumnElement[Any], op: Op, value: object) -> ColumnElement[bool]:
    """``column op value`` for every operator but the NULL tests; the value is bound."""
    if op in _BINARY:
        return _BINARY[op](column, _bind(value))
    if op is Op.IN:
        return column.in_([_bind(item) for item in _as_tuple(value)])
    if op is Op.NOT_IN:
        return column.not_in([_bind(item) for item in _as_tuple(value)])
    like, glob = _translate_like(str(value))
    if op is Op.ILIKE:
        return column.ilike(like, escape=_LIKE_ESCAPE)
    if op is Op.LIKE:
        return _CaseSensitiveLike(column, literal(like), literal(glob))
    raise AssertionError(f"no SQL for {op}")


def _bind(value: object) -> object:
    """A bound parameter typed by the value, not the column.

    PostgreSQL casts a bind to the column's type: ``start_time > 1.5`` would
    become ``> 2`` and an id beyond int4 an error, so numbers keep their own type.
    """
    if isinstance(value, float):
        return literal(value, Float())
    if isinstance(value, int):
        return literal(value, BigInteger())
    return value


def _as_tuple(value: object) -> tuple[Scalar, ...]:
    assert isinstance(value, tuple)
    return value


def _translate_like(pattern: str) -> tuple[str, str]:
    r"""A LIKE pattern (backslash escapes) as a normalized LIKE pattern and a GLOB pattern.

    In the LIKE pattern every literal ``%``, ``_`` and ``\\`` is escaped, so
    that a trailing lone backslash (an error to PostgreSQL) stands for itself.
    """
    like: list[str] = []
    glob: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char in "%_":
            like.append(char)
            glob.append("*" if char == "%" else "?")
            continue
        literal_char = next(chars, "\\") if char == "\\" else char
        like.append(_LIKE_ESCAPE + literal_char if literal_char in "%_\\" else literal_char)
        glob.append(f"[{literal_char}]" if literal_char in "*?[" else literal_char)
    return "".join(like), "".join(glob)


class _CaseSensitiveLike(FunctionElement[bool]):
    """``column LIKE pattern``, case-sensitive everywhere.

    SQLite's LIKE ignores ASCII case unless a connection pragma says otherwise,
    so on SQLite the same pattern is matched with GLOB, which respects case.
    The arguments are (column, LIKE pattern, GLOB pattern).
    """

    type = Boolean()
    name = "case_sensitive_like"
    inherit_cache = True
    # A comparison, not a boolean column: SQLite must not get "... = 1" appended.
    _is_implicitly_boolean = True


@compiles(_CaseSensitiveLike)
def _compile_like(element: _CaseSensitiveLike, compiler: SQLCompiler, **kw: Any) -> str:
    column, like, _ = element.clauses.clauses
    return compiler.process(column.like(like, escape=_LIKE_ESCAPE), **kw)


@compiles(_CaseSensitiveLike, "sqlite")
def _compile_glob(element: _CaseSensitiveLike, compiler: SQLCompiler, **kw: Any) -> str:
    column, _, glob = element.clauses.clauses
    return compiler.process(column.op("GLOB")(glob), **kw)


def _order(
    query: Select[tuple[str]], keys: Sequence[OrderKey]
) -> tuple[Select[tuple[str]], list[ColumnElement[Any]]]:
    """Join what the keys need and return their ORDER BY terms, missing values last."""
    terms: list[ColumnElement[Any]] = []
    for index, key in enumerate(keys):
        if key.entity is Entity.ATTRIBUTES:
            column = _ATTRIBUTE_COLUMNS[key.key]
        else:
            # One alias per key: ordering by two metrics needs two rows of the table.
            table = _TABLES[key.entity].alias(f"order_{index}")
            on = and_(table.c.run_id == runs.c.id, table.c.key == key.key)
            query = query.outerjoin(table, on)
            column = table.c.value
        term = column.desc() if key.descending else column.asc()
        terms.append(term.nulls_last())
    return query, terms
