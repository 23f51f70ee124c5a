"""Fixtures shared by the automation tests: a loop store on a real SQLite file, a data folder."""

from __future__ import annotations

import pytest

from conveyor.stores.backends import open_loop_store


@pytest.fixture
def store(tmp_path):
    s = open_loop_store(f"sqlite:///{tmp_path / 'c.db'}")
    yield s
    s.close()


@pytest.fixture
def data(tmp_path):
    """A folder with one landed file, ``m-01.parquet``."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "m-01.parquet").write_bytes(b"x")
    return folder
