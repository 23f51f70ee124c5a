"""A tracker over real SQLite and file stores in a temporary folder."""

from collections.abc import Iterator

import pytest

from conveyor.stores.backends import open_artifact_store, open_metadata_store
from conveyor.tracking.tracker import Tracker


@pytest.fixture
def tracker(tmp_path) -> Iterator[Tracker]:
    t = Tracker(
        open_metadata_store(f"sqlite:///{tmp_path}/c.db"), open_artifact_store(str(tmp_path / "a"))
    )
    yield t
    t.close()
    t.runs.close()
