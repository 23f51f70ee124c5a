r"""The run-search filter language: a tokenizer and parser that turn filter text into a typed AST.

The syntax is MLflow's, extended::

    metrics.auc > 0.8 and (params.lr = '0.1' or not tags.team IN ('ops', 'ml'))

Comparisons join with ``and``/``or``/``not`` and parentheses (``and`` binds
tighter than ``or``). Keys may be quoted with backticks or double quotes
(metrics.`val loss`). Strings use single or double quotes; a quote is escaped by
doubling it or with a backslash, and ``\\`` is one backslash; any other
backslash stays as written, so that ``LIKE '100\%'`` reaches the LIKE escape.
Every error is a `FilterSyntaxError` that points at the offending token.
"""

from __future__ import annotations

import enum
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from conveyor.core.entities import RunStatus
from conveyor.errors import FilterSyntaxError, ValidationError

__all__ = [
    "MAX_FILTER_DEPTH",
    "MAX_FILTER_LENGTH",
    "And",
    "Comparison",
    "Entity",
    "Node",
    "Not",
    "Op",
    "Or",
    "OrderKey",
    "Scalar",
    "Value",
    "parse_filter",
    "parse_order_by",
]

MAX_FILTER_LENGTH = 10_000
MAX_FILTER_DEPTH = 50


class Entity(enum.StrEnum):
    """What a comparison looks at: a run's metrics, params, tags or own attributes."""

    METRICS = "metrics"
    PARAMS = "params"
    TAGS = "tags"
    ATTRIBUTES = "attributes"


class Op(enum.StrEnum):
    """A comparison operator, in canonical spelling (``<>`` reads as ``!=``)."""

    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    LIKE = "LIKE"
    ILIKE = "ILIKE"
    IN = "IN"
    NOT_IN = "NOT IN"
    IS_NULL = "IS NULL"
    IS_NOT_NULL = "IS NOT NULL"


Scalar: TypeAlias = str | int | float
Value: TypeAlias = Scalar | tuple[Scalar, ...] | None


@dataclass(frozen=True, slots=True)
class Comparison:
    """One ``entity.key op value`` test.

    Attributes:
        entity: what is compared.
        key: the metric, param or tag key, or the canonical attribute name.
        op: the operator.
        value: a scalar; a tuple for ``IN``/``NOT IN``; None for ``IS [NOT] NULL``.
        position: where it starts in the filter text; not part of equality.
    """

    entity: Entity
    key: str
    op: Op
    value: Value
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class And:
    """All of ``items`` hold (two or more)."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """At least one of ``items`` holds (two or more)."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """``item`` does not hold."""

    item: Node


Node: TypeAlias = Comparison | And | Or | Not


@dataclass(frozen=True, slots=True)
class OrderKey:
    """One key of a search order; missing values sort last either way."""

    entity: Entity
    key: str
    descending: bool = False


# Each entity also answers to its singular, as MLflow's shorthands do.
_ENTITIES = {name: entity for entity in Entity for name in (entity.value, entity.value[:-1])}
_ATTRIBUTE_ALIASES = {"name": "run_name", "id": "run_id"}


@dataclass(frozen=True, slots=True)
class _Rule:
    """What a key holds: strings or numbers, and whether it may be absent (NULL)."""

    numeric: bool
    nullable: bool


_ATTRIBUTES = {
    "status": _Rule(numeric=False, nullable=False),
    "run_name": _Rule(numeric=False, nullable=False),
    "run_id": _Rule(numeric=False, nullable=False),
    "parent_run_id": _Rule(numeric=False, nullable=True),
    "start_time": _Rule(numeric=True, nullable=False),
    "end_time": _Rule(numeric=True, nullable=True),
    "experiment_id": _Rule(numeric=True, nullable=False),
}
# A metric, param or tag "is null" when the run does not have the key.
_ENTITY_RULES = {
    Entity.METRICS: _Rule(numeric=True, nullable=True),
    Entity.PARAMS: _Rule(numeric=False, nullable=True),
    Entity.TAGS: _Rule(numeric=False, nullable=True),
}
_KNOWN_ATTRIBUTES = ", ".join(sorted([*_ATTRIBUTES, *_ATTRIBUTE_ALIASES]))
_ORDERING_OPS = frozenset({Op.LT, Op.LE, Op.GT, Op.GE})
_PATTERN_OPS = frozenset({Op.LIKE, Op.ILIKE})
_NULL_OPS = frozenset({Op.IS_NULL, Op.IS_NOT_NULL})
_WORD_OPS = {"like": Op.LIKE, "ilike": Op.ILIKE, "in": Op.IN}
_STATUSES = {status.value for status in RunStatus}
_INT64_MAX = 2**63 - 1

_Kind = enum.Enum("_Kind", "IDENT WORD STRING NUMBER OP LPAREN RPAREN COMMA END")


@dataclass(frozen=True, slots=True)
class _Token:
    """A token; ``value`` is the decoded string, number, lower-cased word or entity."""

    kind: _Kind
    text: str
    pos: int
    value: Scalar = ""
    key: str = ""

    def describe(self) -> str:
        return "the end of the filter" if self.kind is _Kind.END else repr(self.text)


_NUMBER = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_.\-/]+")
_OPERATOR = re.compile(r"<=|>=|!=|<>|=|<|>")
_PUNCTUATION = {"(": _Kind.LPAREN, ")": _Kind.RPAREN, ",": _Kind.COMMA}
# Neither database can store these, so a filter holding one could never match.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class _Lexer:
    """Splits filter text into tokens, raising at the first character that fits none."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0

    def error(self, pos: int, rule: str) -> FilterSyntaxError:
        return FilterSyntaxError(self._text, pos, rule)

    def tokens(self) -> list[_Token]:
        text, found = self._text, []
        while True:
            while self._pos < len(text) and text[self._pos].isspace():
                self._pos += 1
            if self._pos == len(text):
                found.append(_Token(_Kind.END, "", self._pos))
                return found
            found.append(self._token(text[self._pos]))

    def _token(self, char: str) -> _Token:
        start = self._pos
        if char in _PUNCTUATION:
            self._pos += 1
            return _Token(_PUNCTUATION[char], char, start)
        if char in "'\"":
            value = self._quoted(start)
            return _Token(_Kind.STRING, self._text[start : self._pos], start, value)
        if match := _OPERATOR.match(self._text, start):
            return self._take(match, _Kind.OP, "!=" if match[0] == "<>" else match[0])
        if match := _NUMBER.match(self._text, start):
            return self._take(match, _Kind.NUMBER, self._number(match[0], start))
        if match := _WORD.match(self._text, start):
            if match.end() < len(self._text) and self._text[match.end()] == ".":
                return self._identifier(match)
            return self._take(match, _Kind.WORD, match[0].lower())
        raise self.error(start, f"unexpected character {char!r}")

    def _take(self, match: re.Match[str], kind: _Kind, value: Scalar) -> _Token:
        self._pos = match.end()
        return _Token(kind, match[0], match.start(), value)

    def _number(self, text: str, pos: int) -> Scalar:
        # Integers must fit a BIGINT column; floats a double.
        number = float(text) if any(c in text for c in ".eE") else int(text)
        if abs(number) > (_INT64_MAX if isinstance(number, int) else sys.float_info.max):
            raise self.error(pos, f"number {text} is out of range")
        return number

    def _identifier(self, prefix: re.Match[str]) -> _Token:
        start = prefix.start()
        entity = _ENTITIES.get(prefix[0].lower())
        if entity is None:
            raise self.error(
                start, f"unknown entity {prefix[0]!r}; expected metrics, params, tags or attributes"
            )
        self._pos = key_start = prefix.end() + 1
        if self._pos < len(self._text) and self._text[self._pos] in '`"':
            key = self._quoted(self._pos)
        elif match := _BARE_KEY.match(self._text, self._pos):
            key, self._pos = match[0], match.end()
        else:
            raise self.error(key_start, f"expected a key after '{prefix[0]}.'")
        if not key:
            raise self.error(key_start, "a key must not be empty")
        return _Token(_Kind.IDENT, self._text[start : self._pos], start, entity, key)

    def _quoted(self, start: int) -> str:
        text, quote, pos, out = self._text, self._text[start], start + 1, []
        while pos < len(text):
            char = text[pos]
            if char == "\\" and pos + 1 < len(text) and text[pos + 1] in "'\"`\\":
                out.append(text[pos + 1])
                pos += 2
            elif char == quote and text.startswith(quote * 2, pos):
                out.append(quote)
                pos += 2
            elif char == quote:
                self._pos = pos + 1
                return "".join(out)
            else:
                out.append(char)
                pos += 1
        kind = "key" if quote == "`" else "string"
        raise self.error(start, f"unterminated {kind}: no closing {quote}")


def _tokenize(text: str) -> list[_Token]:
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterSyntaxError(text, MAX_FILTER_LENGTH, f"over {MAX_FILTER_LENGTH} characters")
    if bad := _UNSTORABLE.search(text):
        raise FilterSyntaxError(text, bad.start(), "NUL or a lone surrogate can never match")
    return _Lexer(text).tokens()


class _Parser:
    """Recursive descent over the token list, one method per grammar rule."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._tokens = _tokenize(text)
        self._index = 0
        self._depth = 0

    def error(self, token: _Token, rule: str) -> FilterSyntaxError:
        return FilterSyntaxError(self._text, token.pos, rule)

    def peek(self) -> _Token:
        return self._tokens[self._index]

    def advance(self) -> _Token:
        token = self._tokens[self._index]
        self._index = min(self._index + 1, len(self._tokens) - 1)
        return token

    def at_word(self, *words: str) -> bool:
        token = self.peek()
        return token.kind is _Kind.WORD and token.value in words

    def disjunction(self) -> Node:
        items = [self.conjunction()]
        while self.at_word("or"):
            self.advance()
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conjunction(self) -> Node:
        items = [self.unary()]
        while self.at_word("and"):
            self.advance()
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self) -> Node:
        token = self.peek()
        if not (token.kind is _Kind.LPAREN or self.at_word("not")):
            return self.comparison()
        self._depth += 1
        if self._depth > MAX_FILTER_DEPTH:
            raise self.error(token, f"nested deeper than {MAX_FILTER_DEPTH} levels")
        self.advance()
        node = Not(self.unary()) if token.kind is _Kind.WORD else self.parenthesized(token)
        self._depth -= 1
        return node

    def parenthesized(self, opening: _Token) -> Node:
        node = self.disjunction()
        closing = self.advance()
        if closing.kind is not _Kind.RPAREN:
            rule = f"expected ')' for the '(' at position {opening.pos}, got {closing.describe()}"
            raise self.error(closing, rule)
        return node

    def comparison(self) -> Node:
        ident = self.advance()
        if ident.kind is not _Kind.IDENT:
            example = "a comparison such as metrics.auc > 0.8"
            raise self.error(ident, f"expected {example}, got {ident.describe()}")
        entity, key = _resolve(self._text, ident)
        rule = _ATTRIBUTES[key] if entity is Entity.ATTRIBUTES else _ENTITY_RULES[entity]
        op_token = self.peek()
        op = self.operator(ident)
        _check_operator(self, ident, op_token, op, rule)
        is_status = entity is Entity.ATTRIBUTES and key == "status" and op not in _PATTERN_OPS
        value: Value = None
        if op in (Op.IN, Op.NOT_IN):
            value = tuple(self.convert(token, rule, is_status) for token in self.value_list(op))
        elif op not in _NULL_OPS:
            value = self.convert(self.scalar(op_token.text), rule, is_status)
        return Comparison(entity, key, op, value, ident.pos)

    def operator(self, ident: _Token) -> Op:
        token = self.advance()
        if token.kind is _Kind.OP:
            return Op(str(token.value))
        if token.kind is _Kind.WORD and token.value in _WORD_OPS:
            return _WORD_OPS[str(token.value)]
        if token.kind is _Kind.WORD and token.value == "not":
            return self.follow(Op.NOT_IN, "in", "expected IN after NOT")
        if token.kind is _Kind.WORD and token.value == "is":
            if self.at_word("not"):
                self.advance()
                return self.follow(Op.IS_NOT_NULL, "null", "expected NULL after IS NOT")
            return self.follow(Op.IS_NULL, "null", "expected NULL or NOT NULL after IS")
        raise self.error(token, f"expected an operator after {ident.text!r}")

    def follow(self, op: Op, word: str, rule: str) -> Op:
        token = self.advance()
        if not (token.kind is _Kind.WORD and token.value == word):
            raise self.error(token, f"{rule}, got {token.describe()}")
        return op

    def value_list(self, op: Op) -> list[_Token]:
        opening = self.advance()
        if opening.kind is not _Kind.LPAREN:
            raise self.error(opening, f"expected '(' after {op}, got {opening.describe()}")
        values = [self.scalar("(")]
        while (separator := self.advance()).kind is _Kind.COMMA:
            values.append(self.scalar(","))
        if separator.kind is not _Kind.RPAREN:
            rule = f"expected ',' or ')' in the {op} list, got {separator.describe()}"
            raise self.error(separator, rule)
        return values

    def scalar(self, after: str) -> _Token:
        token = self.advance()
        if token.kind not in (_Kind.STRING, _Kind.NUMBER):
            raise self.error(token, f"expected a value after {after!r}, got {token.describe()}")
        return token

    def convert(self, token: _Token, rule: _Rule, is_status: bool) -> Scalar:
        """Check a value against what the key holds; canonicalize run statuses."""
        if rule.numeric and token.kind is _Kind.STRING:
            raise self.error(token, f"expected a number, got the string {token.text}")
        if not rule.numeric and token.kind is _Kind.NUMBER:
            # MLflow's advice too: params and tags are strings, so numbers must be quoted.
            raise self.error(token, f"expected a string: quote the value, as in '{token.text}'")
        if not is_status:
            return token.value
        status = str(token.value).upper()
        if status not in _STATUSES:
            known = ", ".join(sorted(_STATUSES))
            raise self.error(token, f"unknown status {token.value!r}; known: {known}")
        return status


def _resolve(text: str, ident: _Token) -> tuple[Entity, str]:
    """The entity and canonical key of an identifier; attribute names are checked."""
    entity = Entity(str(ident.value))
    if entity is not Entity.ATTRIBUTES:
        return entity, ident.key
    name = _ATTRIBUTE_ALIASES.get(ident.key.lower(), ident.key.lower())
    if name not in _ATTRIBUTES:
        key_pos = ident.pos + ident.text.find(".") + 1  # a bare order-by name has no dot: -1
        rule = f"unknown attribute {ident.key!r}; known: {_KNOWN_ATTRIBUTES}"
        raise FilterSyntaxError(text, key_pos, rule)
    return entity, name


def _check_operator(parser: _Parser, ident: _Token, op_token: _Token, op: Op, rule: _Rule) -> None:
    """Reject operators that make no sense for what the identifier holds."""
    name = repr(ident.text)
    if op in _NULL_OPS and not rule.nullable:
        raise parser.error(op_token, f"{name} is never null")
    if rule.numeric and op in _PATTERN_OPS:
        raise parser.error(op_token, f"{name} holds numbers; {op} needs strings")
    if not rule.numeric and op in _ORDERING_OPS:
        raise parser.error(
            op_token, f"{name} holds strings; use =, !=, LIKE, ILIKE, IN or NOT IN, not {op}"
        )


def parse_filter(text: str) -> Node | None:
    """Parse a search filter into its AST.

    Args:
        text: the filter, e.g. ``"metrics.auc > 0.8 and params.lr = '0.1'"``.

    Returns:
        The root node, or None when ``text`` is empty or only whitespace.

    Raises:
        FilterSyntaxError: the text does not parse or breaks a type rule; the
            error names the rule and points at the offending token.
    """
    parser = _Parser(text)
    if parser.peek().kind is _Kind.END:
        return None
    node = parser.disjunction()
    if (end := parser.peek()).kind is not _Kind.END:
        raise parser.error(end, f"expected 'and', 'or' or the end, got {end.describe()}")
    return node


def parse_order_by(items: Sequence[str]) -> list[OrderKey]:
    """Parse ``order_by`` items: ``"metrics.auc DESC"``, ``"params.lr"``, ``"start_time ASC"``.

    Args:
        items: the order keys, most significant first; a bare name is an
            attribute; the direction (ASC or DESC, any case) defaults to ascending.

    Returns:
        One `OrderKey` per item.

    Raises:
        ValidationError: ``items`` is a single string rather than a list.
        FilterSyntaxError: an item does not parse; it is the error's ``text``.
    """
    if isinstance(items, str):
        raise ValidationError("order_by", "must be a list of strings, not one string")
    return [_parse_order_key(item) for item in items]


def _parse_order_key(text: str) -> OrderKey:
    parser = _Parser(text)
    token = parser.advance()
    if token.kind is _Kind.WORD:
        # A bare name is an attribute.
        token = _Token(_Kind.IDENT, token.text, token.pos, Entity.ATTRIBUTES, token.text)
    elif token.kind is not _Kind.IDENT:
        raise parser.error(token, f"expected a key such as metrics.auc, got {token.describe()}")
    entity, key = _resolve(text, token)
    descending = False
    if parser.at_word("asc", "desc"):
        descending = parser.advance().value == "desc"
    if (end := parser.peek()).kind is not _Kind.END:
        raise parser.error(end, f"expected ASC, DESC or the end, got {end.describe()}")
    return OrderKey(entity, key, descending)
