"""``conveyor init NAME``: a new project with settings, the training pipeline and its tests."""

from __future__ import annotations

from pathlib import Path

import typer

from conveyor.cli import context

TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "project"
FILES = (
    "conveyor.yaml",
    "README.md",
    "pipelines/training.py",
    "tests/conftest.py",
    "tests/test_features.py",
    "tests/test_model.py",
    "tests/test_data_contracts.py",
    "tests/test_training.py",
)
# The CI providers `--ci` knows: each maps template files to where they go in the project.
CI_FILES = {
    "github": {
        "workflows/ci.yml": ".github/workflows/ci.yml",
        "workflows/cd.yml": ".github/workflows/cd.yml",
    },
}


def init(
    name: str = typer.Argument(..., help="The project's folder (created) and experiment name."),
    data: bool = typer.Option(
        True, "--data/--no-data", help="Land January-February 2013 flights under data/."
    ),
    ci: str | None = typer.Option(
        None,
        "--ci",
        help="Write CI workflows for this provider (github): tests on every push, "
        "CD checks on every new model version.",
    ),
) -> None:
    """Create a project: conveyor.yaml, pipelines/training.py, tests/, and its data.

    Example: conveyor init flights --ci github && cd flights && conveyor ci
    """
    from conveyor.errors import ValidationError

    root = Path(name)
    if not root.name or root.name.startswith(".") or "/" in name.strip("/"):
        raise ValidationError("name", "must be a plain folder name such as 'flights'")
    if ci is not None and ci not in CI_FILES:
        raise ValidationError("--ci", f"must be one of {', '.join(CI_FILES)}, got {ci!r}")
    if root.exists() and any(root.iterdir()):
        raise ValidationError("name", f"{root} exists and is not empty; choose a new name")
    files = {rel: rel for rel in FILES} | (CI_FILES[ci] if ci else {})
    for source, rel in files.items():
        _write(root, source, rel)
    written = list(files.values())
    if data:
        _land(root / "data")
        written += ["data/", "schema.yaml"]
    con = context.console()
    con.print(f"created [bold]{root}[/]: " + ", ".join(written))
    con.print(
        f"next: [bold]cd {root} && conveyor ci && conveyor run pipelines/training.py:training[/]"
    )


def _write(root: Path, source: str, rel: str) -> None:
    import platform

    from conveyor import __version__

    target = root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    text = (TEMPLATE / source).read_text(encoding="utf-8")
    if rel.endswith((".yaml", ".yml", ".md")):
        python = ".".join(platform.python_version_tuple()[:2])
        text = text.replace("{name}", root.name).replace("{python}", python)
        text = text.replace("{conveyor_version}", __version__)
    target.write_text(text, encoding="utf-8")


def _land(folder: Path) -> None:
    """Land two months of flights and freeze the schema they meet as schema.yaml."""
    import pandas as pd

    from conveyor import lifecycle as lc

    folder.mkdir(parents=True, exist_ok=True)
    months = []
    for month in (1, 2):
        frame = lc.load_flights(months=[month])
        frame.to_parquet(folder / f"flights-2013-{month:02d}.parquet", index=False)
        months.append(frame)
    _, schema = lc.analyze(pd.concat(months, ignore_index=True))
    schema.save(folder.parent / "schema.yaml")
