"""Tests of the run-search filter parser: grammar, quoting, type rules, errors, fuzzing."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.core.entities import RunStatus
from conveyor.core.filter import (
    MAX_FILTER_DEPTH,
    MAX_FILTER_LENGTH,
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
from conveyor.errors import FilterSyntaxError, ValidationError

M, P, T, A = Entity.METRICS, Entity.PARAMS, Entity.TAGS, Entity.ATTRIBUTES


def cmp(entity: Entity, key: str, op: Op, value: object) -> Comparison:
    return Comparison(entity, key, op, value)  # type: ignore[arg-type]


AUC = cmp(M, "auc", Op.GT, 0.8)
LR = cmp(P, "lr", Op.EQ, "0.1")
TEAM = cmp(T, "team", Op.EQ, "ops")


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_filter_is_none(text: str) -> None:
    assert parse_filter(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "metrics.auc > 0.8 or params.lr = '0.1' and tags.team = 'ops'",
            Or((AUC, And((LR, TEAM)))),
        ),
        (
            "metrics.auc > 0.8 and params.lr = '0.1' or tags.team = 'ops'",
            Or((And((AUC, LR)), TEAM)),
        ),
        (
            "(metrics.auc > 0.8 or params.lr = '0.1') and tags.team = 'ops'",
            And((Or((AUC, LR)), TEAM)),
        ),
        ("not metrics.auc > 0.8 and params.lr = '0.1'", And((Not(AUC), LR))),
        ("not (metrics.auc > 0.8 and params.lr = '0.1')", Not(And((AUC, LR)))),
        ("not not metrics.auc > 0.8", Not(Not(AUC))),
        ("((metrics.auc > 0.8))", AUC),
        (
            "metrics.auc > 0.8 and (params.lr = '0.1' and tags.team = 'ops')",
            And((AUC, And((LR, TEAM)))),
        ),
    ],
)
def test_precedence_and_grouping(text: str, expected: Node) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "metrics.auc > 0.8 and params.lr = '0.1' and tags.team = 'ops'",  # the documented example
        "METRICS.auc > 0.8 AND Params.lr = '0.1' aNd TAGS.team = 'ops'",
        "metric.auc>0.8 and param.lr='0.1' and tag.team='ops'",
        "  metrics.auc\n>\t0.8   and params.lr = \"0.1\" and tags.team = 'ops'  ",
    ],
)
def test_keywords_and_prefixes_ignore_case_and_space(text: str) -> None:
    assert parse_filter(text) == And((AUC, LR, TEAM))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.auc = 1", cmp(M, "auc", Op.EQ, 1)),
        ("metrics.auc != 1", cmp(M, "auc", Op.NE, 1)),
        ("metrics.auc <> 1", cmp(M, "auc", Op.NE, 1)),
        ("metrics.auc < 1", cmp(M, "auc", Op.LT, 1)),
        ("metrics.auc <= 1", cmp(M, "auc", Op.LE, 1)),
        ("metrics.auc >= 1", cmp(M, "auc", Op.GE, 1)),
        ("metrics.auc in (1, 2.5)", cmp(M, "auc", Op.IN, (1, 2.5))),
        ("metrics.auc NOT IN (1)", cmp(M, "auc", Op.NOT_IN, (1,))),
        ("metrics.auc is null", cmp(M, "auc", Op.IS_NULL, None)),
        ("metrics.auc IS NOT NULL", cmp(M, "auc", Op.IS_NOT_NULL, None)),
        ("params.opt LIKE 'ad%'", cmp(P, "opt", Op.LIKE, "ad%")),
        ("tags.owner ilike '%Bob%'", cmp(T, "owner", Op.ILIKE, "%Bob%")),
        ("tags.t in ('a', \"b\")", cmp(T, "t", Op.IN, ("a", "b"))),
    ],
)
def test_every_operator(text: str, expected: Comparison) -> None:
    assert parse_filter(text) == expected


_NUMBER_CASES = [
    ("0", 0), ("-3", -3), ("1.5", 1.5), ("-.5", -0.5), ("2.", 2.0), ("1e3", 1000.0),
    ("-2.5E-3", -0.0025), ("9223372036854775807", 2**63 - 1), ("1e300", 1e300),
]  # fmt: skip


@pytest.mark.parametrize(("literal", "value"), _NUMBER_CASES)
def test_numbers(literal: str, value: Scalar) -> None:
    node = parse_filter(f"metrics.m = {literal}")
    assert isinstance(node, Comparison)
    assert node.value == value
    assert type(node.value) is type(value)


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("'plain'", "plain"),
        ("''", ""),
        ("'it''s'", "it's"),
        ("'it\\'s'", "it's"),
        ('"say ""hi"""', 'say "hi"'),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'back\\\\slash'", "back\\slash"),
        ("'100\\%'", "100\\%"),  # an unknown escape stays, for LIKE to read
        ("'a \"b\" `c`'", 'a "b" `c`'),
        ("'ünïcødé ✓'", "ünïcødé ✓"),
        ("'and or not ( ) , ='", "and or not ( ) , ="),
    ],
)
def test_strings_and_escapes(literal: str, value: str) -> None:
    node = parse_filter(f"params.p = {literal}")
    assert node == cmp(P, "p", Op.EQ, value)


@pytest.mark.parametrize(
    ("identifier", "entity", "key"),
    [
        ("metrics.val_loss", M, "val_loss"),
        ("metrics.a.b-c/d", M, "a.b-c/d"),
        ("metrics.`val loss`", M, "val loss"),
        ('metrics."val loss"', M, "val loss"),
        ("metrics.`it``s`", M, "it`s"),
        ("metrics.`a\\`b`", M, "a`b"),
        ("metrics.`and`", M, "and"),
        ("metrics.and", M, "and"),
        ("metrics.7", M, "7"),
    ],
)
def test_keys_bare_and_quoted(identifier: str, entity: Entity, key: str) -> None:
    assert parse_filter(f"{identifier} > 1") == cmp(entity, key, Op.GT, 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("attributes.status = 'FINISHED'", cmp(A, "status", Op.EQ, "FINISHED")),
        ("attribute.status = 'failed'", cmp(A, "status", Op.EQ, "FAILED")),
        (
            "attributes.status in ('running', 'KILLED')",
            cmp(A, "status", Op.IN, ("RUNNING", "KILLED")),
        ),
        ("attributes.status like 'FIN%'", cmp(A, "status", Op.LIKE, "FIN%")),
        ("attributes.run_name = 'x'", cmp(A, "run_name", Op.EQ, "x")),
        ("attributes.name = 'x'", cmp(A, "run_name", Op.EQ, "x")),
        ("attributes.id = 'abc'", cmp(A, "run_id", Op.EQ, "abc")),
        ("attributes.RUN_ID != 'abc'", cmp(A, "run_id", Op.NE, "abc")),
        ("attributes.parent_run_id is null", cmp(A, "parent_run_id", Op.IS_NULL, None)),
        ("attributes.start_time >= 1700000000000", cmp(A, "start_time", Op.GE, 1700000000000)),
        ("attributes.end_time is not null", cmp(A, "end_time", Op.IS_NOT_NULL, None)),
        ("attributes.experiment_id in (1, 2)", cmp(A, "experiment_id", Op.IN, (1, 2))),
    ],
)
def test_attributes(text: str, expected: Comparison) -> None:
    assert parse_filter(text) == expected


def test_positions_are_recorded_but_not_compared() -> None:
    node = parse_filter("metrics.a > 1 and  tags.b = 'x'")
    assert isinstance(node, And)
    assert [item.position for item in node.items if isinstance(item, Comparison)] == [0, 19]
    assert Comparison(M, "a", Op.GT, 1, position=5) == Comparison(M, "a", Op.GT, 1, position=0)


@pytest.mark.parametrize(
    ("text", "position", "rule"),
    [
        ("metrics.auc", 11, "expected an operator after 'metrics.auc'"),
        ("metrics.auc 0.8", 12, "expected an operator after 'metrics.auc'"),
        ("metrics.auc >", 13, "expected a value after '>', got the end of the filter"),
        ("metrics.auc > and", 14, "expected a value after '>'"),
        ("params.x = 'abc", 11, "unterminated string"),
        ('params.x = "abc', 11, "unterminated string"),
        ("params.x = 'it\\'", 11, "unterminated string"),
        ("metrics.`val loss > 1", 8, "unterminated key"),
        ("metrics.`` > 1", 8, "a key must not be empty"),
        ("metrics. > 1", 8, "expected a key after 'metrics.'"),
        (
            "attributes.foo = 'x'",
            11,
            "unknown attribute 'foo'; known: end_time, experiment_id, id,",
        ),
        ("metricz.auc > 1", 0, "unknown entity 'metricz'"),
        ("auc > 1", 0, "expected a comparison such as metrics.auc > 0.8, got 'auc'"),
        ("metrics.a > 1 and", 17, "expected a comparison such as metrics.auc > 0.8, got the end"),
        ("metrics.a > 1 metrics.b > 2", 14, "expected 'and', 'or' or the end"),
        ("metrics.a > 1)", 13, "expected 'and', 'or' or the end, got ')'"),
        ("(metrics.a > 1", 14, "expected ')' for the '(' at position 0"),
        ("()", 1, "expected a comparison"),
        ("metrics.a @ 1", 10, "unexpected character '@'"),
        ("metrics.a = 1;", 13, "unexpected character ';'"),
        ("metrics.a = -", 12, "unexpected character '-'"),
        ("metrics.a = 'x'", 12, "expected a number, got the string 'x'"),
        ("metrics.a in (1, 'x')", 17, "expected a number"),
        ("metrics.a like 'x%'", 10, "'metrics.a' holds numbers; LIKE needs strings"),
        ("metrics.a ilike 'x%'", 10, "ILIKE needs strings"),
        ("params.lr = 0.1", 12, "expected a string: quote the value, as in '0.1'"),
        ("tags.t in ('a', 2)", 16, "quote the value, as in '2'"),
        ("params.lr > '0.1'", 10, "holds strings; use =, !=, LIKE, ILIKE, IN or NOT IN, not >"),
        (
            "attributes.status = 'DONE'",
            20,
            "unknown status 'DONE'; known: FAILED, FINISHED, KILLED",
        ),
        ("attributes.status in ('RUNNING', 'nope')", 33, "unknown status 'nope'"),
        ("attributes.status is null", 18, "'attributes.status' is never null"),
        ("attributes.start_time is not null", 22, "is never null"),
        ("attributes.start_time = '1'", 24, "expected a number"),
        ("attributes.run_id = 1", 20, "quote the value"),
        ("metrics.a in 1", 13, "expected '(' after IN"),
        ("metrics.a in (1 2)", 16, "expected ',' or ')' in the IN list"),
        ("metrics.a in ()", 14, "expected a value after '('"),
        ("metrics.a not like 1", 14, "expected IN after NOT"),
        ("metrics.a is 1", 13, "expected NULL or NOT NULL after IS"),
        ("metrics.a is not 1", 17, "expected NULL after IS NOT"),
        ("metrics.a = 1e400", 12, "number 1e400 is out of range"),
        ("metrics.a = 99999999999999999999", 12, "out of range"),
        ("params.p = 'a\x00b'", 13, "NUL or a lone surrogate"),
        ("params.p = '\ud800'", 12, "NUL or a lone surrogate"),
    ],
)
def test_errors_name_the_rule_and_point_at_the_token(text: str, position: int, rule: str) -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse_filter(text)
    error = caught.value
    assert rule in error.rule
    assert error.position == position
    assert error.text == text
    assert error.field == "filter"
    assert isinstance(error, ValidationError)
    assert f"position {position}" in str(error)


def test_length_limit() -> None:
    clause = "metrics.a > 1 or "
    text = clause * (MAX_FILTER_LENGTH // len(clause)) + "metrics.b > 2"
    assert len(text) > MAX_FILTER_LENGTH
    with pytest.raises(FilterSyntaxError, match="over 10000 characters") as caught:
        parse_filter(text)
    assert caught.value.position == MAX_FILTER_LENGTH


def test_long_flat_filters_are_fine() -> None:
    text = " or ".join(f"metrics.m{i} > {i}" for i in range(400))
    assert len(text) <= MAX_FILTER_LENGTH
    node = parse_filter(text)
    assert isinstance(node, Or)
    assert len(node.items) == 400


@pytest.mark.parametrize(("opening", "closing"), [("(", ")"), ("not ", "")])
def test_depth_limit(opening: str, closing: str) -> None:
    def nested(depth: int) -> str:
        return opening * depth + "metrics.a > 1" + closing * depth

    assert parse_filter(nested(MAX_FILTER_DEPTH)) is not None
    with pytest.raises(FilterSyntaxError, match="nested deeper than 50") as caught:
        parse_filter(nested(MAX_FILTER_DEPTH + 1))
    assert caught.value.position == MAX_FILTER_DEPTH * len(opening)


def test_thousands_of_parentheses_are_a_filter_error_not_recursion() -> None:
    with pytest.raises(FilterSyntaxError):
        parse_filter("(" * (MAX_FILTER_LENGTH - 20) + "metrics.a > 1")


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("metrics.auc DESC", OrderKey(M, "auc", descending=True)),
        ("metrics.auc desc", OrderKey(M, "auc", descending=True)),
        ("params.lr", OrderKey(P, "lr")),
        ("tags.`the team` asc", OrderKey(T, "the team")),
        ("attributes.start_time ASC", OrderKey(A, "start_time")),
        ("start_time", OrderKey(A, "start_time")),
        ("name DESC", OrderKey(A, "run_name", descending=True)),
        ("attribute.id", OrderKey(A, "run_id")),
        ("  end_time  ", OrderKey(A, "end_time")),
    ],
)
def test_order_by(item: str, expected: OrderKey) -> None:
    assert parse_order_by([item]) == [expected]


def test_order_by_keeps_the_sequence() -> None:
    keys = [OrderKey(M, "a"), OrderKey(P, "b", descending=True)]
    assert parse_order_by(["metrics.a", "params.b DESC"]) == keys
    assert parse_order_by([]) == []


@pytest.mark.parametrize(
    ("item", "position", "rule"),
    [
        ("", 0, "expected a key such as metrics.auc, got the end"),
        ("auc", 0, "unknown attribute 'auc'"),
        ("attributes.nope", 11, "unknown attribute 'nope'"),
        ("metrics.auc sideways", 12, "expected ASC, DESC or the end"),
        ("metrics.auc DESC DESC", 17, "expected ASC, DESC or the end"),
        ("metrics.`auc", 8, "unterminated key"),
        ("1", 0, "expected a key"),
    ],
)
def test_order_by_errors(item: str, position: int, rule: str) -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse_order_by([item])
    assert rule in caught.value.rule
    assert caught.value.position == position
    assert caught.value.text == item


def test_order_by_rejects_a_bare_string() -> None:
    with pytest.raises(ValidationError, match="order_by"):
        parse_order_by("metrics.auc")


# --- fuzzing -------------------------------------------------------------------

_PIECES = [
    *"()=<>!,'\"`.-\\ ",
    "and", "or", "not", "in", "is", "null", "like", "ilike", "NOT", "OR",
    "metrics.a", "params.b", "tags.c", "attributes.status", "attributes.start_time",
    "1", "-2.5e3", "'x'", '"y"', "'FINISHED'", "metrics.`k k`",
]  # fmt: skip


def _parse_or_error(text: str) -> Node | FilterSyntaxError | None:
    try:
        return parse_filter(text)
    except FilterSyntaxError as error:
        return error


@given(st.text())
def test_any_text_parses_or_raises_filter_syntax_error(text: str) -> None:
    result = _parse_or_error(text)
    if isinstance(result, FilterSyntaxError):
        assert 0 <= result.position <= len(text)
    else:
        assert result is None or isinstance(result, Comparison | And | Or | Not)


@given(st.lists(st.sampled_from(_PIECES), max_size=30).map(" ".join))
def test_filter_like_text_parses_or_raises_filter_syntax_error(text: str) -> None:
    result = _parse_or_error(text)
    if isinstance(result, FilterSyntaxError):
        assert 0 <= result.position <= len(text)


@given(st.lists(st.text(max_size=20), max_size=3))
def test_any_order_by_parses_or_raises_filter_syntax_error(items: list[str]) -> None:
    try:
        keys = parse_order_by(items)
    except FilterSyntaxError as error:
        keys = [error.text]  # type: ignore[list-item]
    assert len(keys) <= len(items)


# Valid filters are generated as ASTs, rendered as text in varied but equivalent
# spellings, and must parse back to the same AST.

_TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=12)
_KEYS = _TEXT.filter(bool)
_NUMBERS = st.integers(-(2**63) + 1, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
_NUMERIC_OPS = [Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE]
_STRING_OPS = [Op.EQ, Op.NE, Op.LIKE, Op.ILIKE]
_NULL_OPS = [Op.IS_NULL, Op.IS_NOT_NULL]


Strategy = st.SearchStrategy[Any]


def _comparisons(
    entity: Entity, key: Strategy, values: Strategy, ops: list[Op], nullable: bool
) -> st.SearchStrategy[Comparison]:
    def built(ops: Strategy, values: Strategy) -> st.SearchStrategy[Comparison]:
        return st.builds(cmp, st.just(entity), key, ops, values)

    scalar = built(st.sampled_from(ops), values)
    lists = st.lists(values, min_size=1, max_size=3).map(tuple)
    listed = built(st.sampled_from([Op.IN, Op.NOT_IN]), lists)
    null = built(st.sampled_from(_NULL_OPS), st.none())
    return scalar | listed | null if nullable else scalar | listed


_STATUS = st.sampled_from([status.value for status in RunStatus])
_LEAVES = st.one_of(
    _comparisons(M, _KEYS, _NUMBERS, _NUMERIC_OPS, nullable=True),
    _comparisons(P, _KEYS, _TEXT, _STRING_OPS, nullable=True),
    _comparisons(T, _KEYS, _TEXT, _STRING_OPS, nullable=True),
    _comparisons(A, st.sampled_from(["run_name", "run_id"]), _TEXT, _STRING_OPS, nullable=False),
    _comparisons(A, st.just("parent_run_id"), _TEXT, _STRING_OPS, nullable=True),
    _comparisons(A, st.just("status"), _STATUS, [Op.EQ, Op.NE], nullable=False),
    _comparisons(
        A, st.sampled_from(["start_time", "experiment_id"]), _NUMBERS, _NUMERIC_OPS, nullable=False
    ),
    _comparisons(A, st.just("end_time"), _NUMBERS, _NUMERIC_OPS, nullable=True),
)
_NODES = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, min_size=2, max_size=3).map(lambda items: And(tuple(items)))
        | st.lists(inner, min_size=2, max_size=3).map(lambda items: Or(tuple(items)))
        | inner.map(Not)
    ),
    max_leaves=8,
)


Draw = Callable[[st.SearchStrategy[Any]], Any]


def _quote(value: str, quote: str) -> str:
    return quote + value.replace("\\", "\\\\").replace(quote, quote + quote) + quote


def _render(node: Node, draw: Draw) -> str:
    def group(child: Node, parent: type) -> str:
        text = _render(child, draw)
        # And inside Or needs no parentheses: that is what precedence means.
        bare = isinstance(child, Comparison | Not) or (parent is Or and isinstance(child, And))
        return text if bare else f"({text})"

    match node:
        case And(items):
            return f" {draw(st.sampled_from(['and', 'AND', 'And']))} ".join(
                group(i, And) for i in items
            )
        case Or(items):
            return f" {draw(st.sampled_from(['or', 'OR']))} ".join(group(i, Or) for i in items)
        case Not(item):
            return f"{draw(st.sampled_from(['not', 'NOT']))} {group(item, Not)}"
        case Comparison():
            return _render_comparison(node, draw)
    raise AssertionError(node)


def _render_comparison(node: Comparison, draw: Draw) -> str:
    prefix = draw(
        st.sampled_from([node.entity.value, node.entity.value[:-1], node.entity.value.upper()])
    )
    key = node.key
    if re.fullmatch(r"[A-Za-z0-9_.\-/]+", key) is None or draw(st.booleans()):
        key = _quote(key, draw(st.sampled_from(["`", '"'])))
    op = "<>" if node.op is Op.NE and draw(st.booleans()) else str(node.op)
    op = op.lower() if draw(st.booleans()) else op
    space = draw(st.sampled_from([" ", "  ", "\n"]))
    return f"{prefix}.{key}{space}{op}{space}{_render_value(node.value, draw)}".rstrip()


def _render_value(value: object, draw: Draw) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return "(" + ", ".join(_render_value(item, draw) for item in value) + ")"
    if isinstance(value, str):
        return _quote(value, draw(st.sampled_from(["'", '"'])))
    return repr(value)


@given(st.data())
def test_valid_filters_round_trip(data: st.DataObject) -> None:
    node = data.draw(_NODES)
    text = _render(node, data.draw)
    if len(text) <= MAX_FILTER_LENGTH:
        assert parse_filter(text) == node
