"""The capture log: what a server answered, as Parquet files by time window, and labels later.

Serving writes one file per flush under ``capture/<model>/``; each row is one
answered row of a request:

| column | type | meaning |
|---|---|---|
| ``request_id`` | string | the request's id (``X-Request-ID`` or generated), shared by its rows |
| ``row`` | int32 | the row's position in its request |
| ``timestamp`` | int64 | when the request arrived, epoch milliseconds (UTC) |
| ``model`` | string | the served model's name |
| ``version`` | int64 | the version that answered |
| ``route`` | string | ``primary``, ``canary`` or ``shadow`` |
| ``latency_ms`` | float64 | the request's time in the server |
| ``status`` | int16 | the HTTP status answered |
| ``in.<feature>`` | any | each input column, as validated |
| ``out.<name>`` | any | each output (``out.prediction``, ``out.probability``…) |

A file's name carries the first and last timestamp it holds
(``<first>-<last>-<id>.parquet``, 13-digit milliseconds), so a reader opens
only the files that overlap its window. Feedback (ground truth that arrives
later) lives under ``feedback/<model>/`` with ``request_id``, ``row``, ``label``
and ``timestamp``; the newest label of a (request, row) wins.

Files are written whole through the byte store (temporary name, then rename),
so a reader never sees half a file.
"""

from __future__ import annotations

import io
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from conveyor.errors import ValidationError

if TYPE_CHECKING:
    import pyarrow as pa

    from conveyor.stores.artifacts.base import ByteStore

__all__ = [
    "CAPTURE_COLUMNS",
    "FEEDBACK_COLUMNS",
    "INPUT_PREFIX",
    "OUTPUT_PREFIX",
    "capture_keys",
    "inputs_of",
    "join_feedback",
    "outputs_of",
    "read_capture",
    "read_feedback",
    "write_capture",
    "write_feedback",
]

INPUT_PREFIX = "in."
OUTPUT_PREFIX = "out."
CAPTURE_COLUMNS = (
    "request_id",
    "row",
    "timestamp",
    "model",
    "version",
    "route",
    "latency_ms",
    "status",
)
FEEDBACK_COLUMNS = ("request_id", "row", "label", "timestamp")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_FILE = re.compile(r"(\d{13})-(\d{13})-[0-9a-f]{12}\.parquet$")


def _check_model(model: str) -> None:
    if not isinstance(model, str) or not _MODEL_NAME.match(model):
        raise ValidationError(
            "model",
            "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit, "
            f"got {model!r}",
        )


def _key(kind: str, model: str, first: int, last: int) -> str:
    return f"{kind}/{model}/{first:013d}-{last:013d}-{uuid.uuid4().hex[:12]}.parquet"


_WRITE_BATCH = 65_536


def _put_table(store: ByteStore, key: str, table: pa.Table) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Dictionary-encode only text: trying it on float columns (most inputs) costs two
    # thirds of the write and makes the file larger.
    text = [
        f.name
        for f in table.schema
        if pa.types.is_string(f.type)
        or pa.types.is_large_string(f.type)
        or pa.types.is_dictionary(f.type)
    ]
    # LZ4 (LZ4_RAW in the file) and statistics for the timestamp only: half the CPU of
    # zstd with every column's statistics, for files 6% larger. A server writes these
    # while it answers requests; readers pick files by the time window in their names.
    stats = [name for name in ("timestamp",) if name in table.column_names]
    table = _required_where_full(table)
    # Parquet opens the file at the path itself: no Python call (and no retaking of the
    # GIL from a server's request thread) for each page it writes. Values go to the
    # encoder 64k at a time, not 1,024: a third less CPU for a 50,000-row file (pages
    # still close at about 1 MB, plus at most one batch).
    store.put_path(
        key,
        lambda path: pq.write_table(
            table,
            path,
            compression="lz4",
            use_dictionary=text,
            write_statistics=stats or False,
            write_batch_size=_WRITE_BATCH,
        ),
    )


def _required_where_full(table: pa.Table) -> pa.Table:
    """Columns without nulls marked required: Parquet then writes no definition levels.

    That is two fifths of the encoding work for the numeric inputs; readers get the
    columns back as nullable (`_read_tables`), whatever each file says.
    """
    import pyarrow as pa

    fields = [
        field.with_nullable(False) if field.nullable and column.null_count == 0 else field
        for field, column in zip(table.schema, table.columns, strict=True)
    ]
    if fields == list(table.schema):  # the server's tables come marked already
        return table
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


def _nullable(table: pa.Table) -> pa.Table:
    """Every column nullable and dictionary-encoded text as plain text, whatever the file says.

    The server writes required columns (`_required_where_full`) and dictionary-encoded
    text (`conveyor.serving.capture`); files written either way read back alike.
    """
    import pyarrow as pa

    def plain(field: pa.Field) -> pa.Field:
        kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        return pa.field(field.name, kind, nullable=True, metadata=field.metadata)

    fields = [plain(field) for field in table.schema]
    if fields == list(table.schema):
        return table
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


def write_capture(store: ByteStore, model: str, table: pa.Table) -> str | None:
    """Write captured rows as one Parquet file; returns its key (None for no rows).

    Args:
        store: the artifact store's byte store.
        model: the served model's name.
        table: rows with at least the columns of `CAPTURE_COLUMNS`.

    Raises:
        ValidationError: a required column is missing or the model name is not valid.
    """
    _check_model(model)
    missing = [c for c in CAPTURE_COLUMNS if c not in table.column_names]
    if missing:
        raise ValidationError("capture", f"rows must have the columns {', '.join(missing)}")
    if table.num_rows == 0:
        return None
    import pyarrow.compute as pc

    stamps = table.column("timestamp")
    first, last = int(pc.min(stamps).as_py()), int(pc.max(stamps).as_py())
    key = _key("capture", model, first, last)
    _put_table(store, key, table)
    return key


def capture_keys(
    store: ByteStore,
    model: str,
    start_ms: int | None = None,
    end_ms: int | None = None,
    kind: str = "capture",
) -> list[str]:
    """The files of ``model`` that may hold rows in ``[start_ms, end_ms)``, oldest first."""
    _check_model(model)
    found: list[tuple[int, str]] = []
    for key in store.list_keys(f"{kind}/{model}/"):
        match = _FILE.search(key)
        if match is None:
            continue
        first, last = int(match.group(1)), int(match.group(2))
        if end_ms is not None and first >= end_ms:
            continue
        if start_ms is not None and last < start_ms:
            continue
        found.append((first, key))
    return [key for _, key in sorted(found)]


def _read_tables(store: ByteStore, keys: Sequence[str]) -> Iterator[pa.Table]:
    import pyarrow.parquet as pq

    for key in keys:
        yield _nullable(pq.read_table(io.BytesIO(store.get_bytes(key))))


def _window(table: pa.Table, start_ms: int | None, end_ms: int | None) -> pa.Table:
    import pyarrow.compute as pc

    mask = None
    stamps = table.column("timestamp")
    if start_ms is not None:
        mask = pc.greater_equal(stamps, start_ms)
    if end_ms is not None:
        below = pc.less(stamps, end_ms)
        mask = below if mask is None else pc.and_(mask, below)
    return table if mask is None else table.filter(mask)


def read_capture(
    store: ByteStore,
    model: str,
    start_ms: int | None = None,
    end_ms: int | None = None,
    route: str | None = None,
) -> pa.Table:
    """Every captured row of ``model`` with ``start_ms <= timestamp < end_ms``, by time.

    Files written with different input columns are unified (missing columns are null).
    ``route`` keeps only ``primary``, ``canary`` or ``shadow`` rows.
    """
    import pyarrow as pa

    tables = [
        _window(t, start_ms, end_ms)
        for t in _read_tables(store, capture_keys(store, model, start_ms, end_ms))
    ]
    tables = [t for t in tables if t.num_rows]
    if not tables:
        types = _capture_types()
        return pa.table({c: pa.array([], type=types[c]()) for c in CAPTURE_COLUMNS})
    table = pa.concat_tables(tables, promote_options="permissive")
    if route is not None:
        import pyarrow.compute as pc

        table = table.filter(pc.equal(table.column("route"), route))
    return table.sort_by([("timestamp", "ascending"), ("row", "ascending")])


def _capture_types() -> dict[str, Any]:
    import pyarrow as pa

    return {
        "request_id": pa.string,
        "row": pa.int32,
        "timestamp": pa.int64,
        "model": pa.string,
        "version": pa.int64,
        "route": pa.string,
        "latency_ms": pa.float64,
        "status": pa.int16,
    }


def write_feedback(
    store: ByteStore,
    model: str,
    request_ids: Sequence[str],
    labels: Sequence[Any],
    rows: Sequence[int] | None = None,
    timestamp_ms: int | None = None,
) -> str | None:
    """Attach ground-truth labels to captured rows by request id; returns the file's key.

    Args:
        store: the artifact store's byte store.
        model: the served model's name.
        request_ids: one per label: the request the label belongs to.
        labels: the true outcomes (numbers, booleans or strings; not null).
        rows: each label's row within its request (0 for single-row requests).
        timestamp_ms: when the labels arrived (now by default).

    Raises:
        ValidationError: lengths differ, a request id is empty, a label is null, or a
            row is negative; the message names the field and the position.
    """
    import pyarrow as pa

    _check_model(model)
    n = len(request_ids)
    if len(labels) != n:
        raise ValidationError(
            "labels", f"must have one label per request id ({n}), got {len(labels)}"
        )
    rows = [0] * n if rows is None else list(rows)
    if len(rows) != n:
        raise ValidationError("rows", f"must have one row per request id ({n}), got {len(rows)}")
    for i, rid in enumerate(request_ids):
        if not isinstance(rid, str) or not rid or len(rid) > 128:
            raise ValidationError(
                "request_id", f"must be a non-empty string of at most 128 characters (at {i})"
            )
    for i, row in enumerate(rows):
        if isinstance(row, bool) or not isinstance(row, int) or row < 0:
            raise ValidationError("row", f"must be a non-negative integer, got {row!r} (at {i})")
    try:
        label_array = pa.array(list(labels))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValidationError("label", f"labels must all be of one type: {exc}") from None
    if label_array.null_count:
        first = next(i for i, v in enumerate(label_array.is_null().to_pylist()) if v)
        raise ValidationError("label", f"must not be null (at {first})")
    if n == 0:
        return None
    now = int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms)
    table = pa.table(
        {
            "request_id": pa.array(list(request_ids), pa.string()),
            "row": pa.array(rows, pa.int32()),
            "label": label_array,
            "timestamp": pa.array([now] * n, pa.int64()),
        }
    )
    key = _key("feedback", model, now, now)
    _put_table(store, key, table)
    return key


def read_feedback(
    store: ByteStore, model: str, start_ms: int | None = None, end_ms: int | None = None
) -> pa.Table:
    """Labels of ``model`` that arrived in ``[start_ms, end_ms)``; the newest per (request, row)."""
    import pyarrow as pa

    tables = [
        _window(t, start_ms, end_ms)
        for t in _read_tables(store, capture_keys(store, model, start_ms, end_ms, "feedback"))
    ]
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return pa.table(
            {
                "request_id": pa.array([], pa.string()),
                "row": pa.array([], pa.int32()),
                "label": pa.array([], pa.null()),
                "timestamp": pa.array([], pa.int64()),
            }
        )
    table = pa.concat_tables(tables, promote_options="permissive")
    # Newest wins: sort by time descending and keep the first of each (request, row).
    table = table.sort_by([("timestamp", "descending")])
    table = table.append_column("_i", pa.array(range(table.num_rows), pa.int64()))
    first = table.group_by(["request_id", "row"], use_threads=False).aggregate([("_i", "min")])
    import pyarrow.compute as pc

    keep = pc.is_in(table.column("_i"), value_set=first.column("_i_min"))
    return table.filter(keep).drop_columns(["_i"]).sort_by([("timestamp", "ascending")])


def join_feedback(capture: pa.Table, feedback: pa.Table) -> pa.Table:
    """Captured rows with their labels: adds ``label``, ``label_timestamp`` and ``label_delay_ms``.

    Rows without a label keep a null ``label``; coverage is the share of non-null labels.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    labels = feedback.select(["request_id", "row", "label", "timestamp"]).rename_columns(
        ["request_id", "row", "label", "label_timestamp"]
    )
    if labels.num_rows == 0:
        n = capture.num_rows
        return (
            capture.append_column("label", pa.nulls(n))
            .append_column("label_timestamp", pa.nulls(n, pa.int64()))
            .append_column("label_delay_ms", pa.nulls(n, pa.int64()))
        )
    joined = capture.join(labels, ["request_id", "row"], join_type="left outer", use_threads=False)
    delay = pc.subtract(joined.column("label_timestamp"), joined.column("timestamp"))
    joined = joined.append_column("label_delay_ms", delay)
    return joined.sort_by([("timestamp", "ascending"), ("row", "ascending")])


def inputs_of(table: pa.Table) -> pa.Table:
    """The input columns of captured rows, named as the model's features."""
    names = [c for c in table.column_names if c.startswith(INPUT_PREFIX)]
    return table.select(names).rename_columns([c[len(INPUT_PREFIX) :] for c in names])


def outputs_of(table: pa.Table) -> pa.Table:
    """The output columns of captured rows, without their prefix."""
    names = [c for c in table.column_names if c.startswith(OUTPUT_PREFIX)]
    return table.select(names).rename_columns([c[len(OUTPUT_PREFIX) :] for c in names])
