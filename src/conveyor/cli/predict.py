"""``conveyor predict REF --input in.parquet --output out.parquet``: batch inference on a file."""

from __future__ import annotations

from pathlib import Path

import typer

from conveyor.cli import context


def predict(
    ref: str = typer.Argument(..., help="What predicts: name@alias, name/3 or name."),
    input_path: Path = typer.Option(..., "--input", help="The rows, as a Parquet file."),
    output_path: Path = typer.Option(
        ..., "--output", help="Where keys and predictions go (Parquet)."
    ),
    chunk_rows: int = typer.Option(
        65_536, "--chunk-rows", help="Rows read, checked and predicted at a time."
    ),
    key_columns: list[str] | None = typer.Option(
        None,
        "--key-column",
        help="An input column copied to the output (repeat; default: those the model "
        "does not take).",
    ),
) -> None:
    """Predict every row of a Parquet file, checked against the version's signature.

    The first row that breaks the signature stops the run with an error naming the
    column, the rule and the row; no output is written then.

    Example: conveyor predict flights@production --input in.parquet --output out.parquet
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from conveyor.cli.models import registry
    from conveyor.serving.batch import input_rows, predict_file

    total = input_rows(input_path)
    model = registry().load_model(ref)
    console = context.console()
    progress = Progress(
        TextColumn(f"{model.version.ref}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task("rows", total=total)
        result = predict_file(
            model,
            input_path,
            output_path,
            chunk_rows=chunk_rows,
            key_columns=key_columns or None,
            on_chunk=lambda n: progress.advance(task, n),
        )
    rate = result.rows / result.seconds if result.seconds > 0 else 0.0
    keys = ", ".join(result.key_columns) or "none"
    console.print(
        f"[green]{result.rows}[/] rows predicted by [bold]{model.version.ref}[/] in "
        f"{result.chunks} chunk(s), {result.seconds:.2f}s ({rate:,.0f} rows/s) -> "
        f"{result.output} (keys: {keys})"
    )
