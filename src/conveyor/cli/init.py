"""``conveyor init NAME``: a new project with settings, the training pipeline and its tests."""

from __future__ import annotations

from pathlib import Path

import typer

from conveyor.cli import context

TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "project"
FILES = ("conveyor.yaml", "README.md", "pipelines/training.py", "tests/test_training.py")


def init(
    name: str = typer.Argument(..., help="The project's folder (created) and experiment name."),
    data: bool = typer.Option(
        True, "--data/--no-data", help="Land January-February 2013 flights under data/."
    ),
) -> None:
    """Create a project: conveyor.yaml, pipelines/training.py, tests/, and its data.

    Example: conveyor init flights && cd flights && conveyor run pipelines/training.py:training
    """
    from conveyor.errors import ValidationError

    root = Path(name)
    if not root.name or root.name.startswith(".") or "/" in name.strip("/"):
        raise ValidationError("name", "must be a plain folder name such as 'flights'")
    if root.exists() and any(root.iterdir()):
        raise ValidationError("name", f"{root} exists and is not empty; choose a new name")
    for rel in FILES:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        text = (TEMPLATE / rel).read_text(encoding="utf-8")
        if rel.endswith((".yaml", ".md")):
            text = text.replace("{name}", root.name)
        target.write_text(text, encoding="utf-8")
    if data:
        _land(root / "data")
    con = context.console()
    con.print(f"created [bold]{root}[/]: " + ", ".join(FILES) + (", data/" if data else ""))
    con.print(f"next: [bold]cd {root} && conveyor run pipelines/training.py:training[/]")


def _land(folder: Path) -> None:
    from conveyor import lifecycle as lc

    folder.mkdir(parents=True, exist_ok=True)
    for month in (1, 2):
        lc.load_flights(months=[month]).to_parquet(
            folder / f"flights-2013-{month:02d}.parquet", index=False
        )
