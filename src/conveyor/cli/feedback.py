"""``conveyor feedback MODEL --file labels.parquet``: labels for captured requests, by id.

The same records as the server's ``POST /v2/models/{m}/feedback``, written straight
to the artifact store's capture log (``feedback/<model>/``) in chunks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from conveyor.cli import context

if TYPE_CHECKING:
    import pyarrow as pa

_CHUNK_ROWS = 50_000


def feedback(
    model: str = typer.Argument(..., help="The served model's name."),
    file: Path = typer.Option(..., "--file", help="Labels as Parquet (.parquet) or CSV (.csv)."),
    id_column: str = typer.Option("request_id", "--id-column", help="The request id column."),
    label_column: str = typer.Option("label", "--label-column", help="The label column."),
    row_column: str | None = typer.Option(
        None, "--row-column", help="Each label's row within its request (default: 0)."
    ),
) -> None:
    """Attach labels to served requests by request id, for quality monitoring.

    Example: conveyor feedback flights --file labels.csv --label-column late
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from conveyor.stores.backends import open_artifact_store
    from conveyor.stores.capture import write_feedback

    batches, total = _batches(file)
    store = open_artifact_store(context.settings().artifact_uri).byte_store
    written = files = 0
    progress = Progress(
        TextColumn("feedback"), BarColumn(), MofNCompleteColumn(), console=context.console()
    )
    with progress:
        task = progress.add_task("labels", total=total)
        for start, batch in batches:
            ids, labels, rows = _columns(batch, id_column, label_column, row_column, file)
            try:
                key = write_feedback(store, model, ids, labels, rows)
            except Exception as exc:
                _at_row(exc, start)
                raise
            written += len(ids)
            files += key is not None
            progress.advance(task, len(ids))
    context.console().print(
        f"[green]{written}[/] labels for [bold]{model}[/] written in {files} file(s) "
        f"from {file.name}"
    )


def _batches(file: Path) -> tuple[Any, int]:
    """``(first row, record batch)`` pairs of ``file`` and its row count."""
    from conveyor.errors import ValidationError

    if not file.is_file():
        raise ValidationError("--file", f"{file} does not exist or is not a file")
    suffix = file.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(file)
            return _numbered(parquet.iter_batches(_CHUNK_ROWS)), parquet.metadata.num_rows
        if suffix == ".csv":
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(file)
            return _numbered(iter(table.to_batches(_CHUNK_ROWS))), table.num_rows
    except Exception as exc:
        raise ValidationError("--file", f"{file.name} could not be read: {exc}") from exc
    raise ValidationError("--file", f"must end in .parquet or .csv, got {file.name}")


def _numbered(batches: Any) -> Any:
    start = 0
    for batch in batches:
        yield start, batch
        start += batch.num_rows


def _columns(
    batch: pa.RecordBatch, id_column: str, label_column: str, row_column: str | None, file: Path
) -> tuple[list[str], list[Any], list[int] | None]:
    from conveyor.errors import ValidationError

    names = batch.schema.names
    for option, name in (("--id-column", id_column), ("--label-column", label_column)):
        if name not in names:
            raise ValidationError(
                option, f"{file.name} has no column {name!r}; columns: {', '.join(names)}"
            )
    if row_column is not None and row_column not in names:
        raise ValidationError("--row-column", f"{file.name} has no column {row_column!r}")
    ids = [None if v is None else str(v) for v in batch.column(id_column).to_pylist()]
    labels = batch.column(label_column).to_pylist()
    rows = None if row_column is None else batch.column(row_column).to_pylist()
    return ids, labels, rows  # type: ignore[return-value]


def _at_row(exc: Exception, start: int) -> None:
    """Point a validation error's ``(at i)`` at the file's row, not the chunk's."""
    import re

    from conveyor.errors import ValidationError

    if isinstance(exc, ValidationError):
        rule = re.sub(r"\(at (\d+)\)", lambda m: f"(row {start + int(m.group(1)) + 1})", exc.rule)
        raise ValidationError(exc.field, rule) from exc
