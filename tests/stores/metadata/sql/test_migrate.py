import subprocess
import sys
import textwrap

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from conveyor.errors import MigrationError
from conveyor.stores.metadata.sql.engine import create_engines
from conveyor.stores.metadata.sql.migrate import HEAD, current_revision, ensure_schema
from conveyor.stores.metadata.sql.schema import metadata

URLS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=URLS)
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return request.getfixturevalue("postgres_url")


def test_migrations_create_exactly_the_schema(url):
    engines = create_engines(url)
    assert ensure_schema(engines) is True
    assert ensure_schema(engines) is False
    with engines.writer.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        assert current_revision(conn) == HEAD
    engines.dispose()


def test_unknown_revision_is_refused(tmp_path):
    engines = create_engines(f"sqlite:///{tmp_path / 'm.db'}")
    ensure_schema(engines)
    with engines.write() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(MigrationError, match="9999"):
        ensure_schema(engines)


_CHILD = textwrap.dedent(
    """
    import sys, time
    from conveyor.stores.metadata.sql.engine import create_engines
    from conveyor.stores.metadata.sql.migrate import ensure_schema
    start = float(sys.argv[2])
    while time.time() < start:
        time.sleep(0.001)
    print("MIGRATED" if ensure_schema(create_engines(sys.argv[1])) else "SKIPPED")
    """
)


@pytest.mark.slow
def test_twenty_processes_starting_at_once(url):
    import time

    start = time.time() + 4  # let every interpreter start before they race
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, url, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(20)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results if err]
    outputs = [out.strip() for out, _ in results]
    assert outputs.count("MIGRATED") == 1, outputs
    assert outputs.count("SKIPPED") == 19
