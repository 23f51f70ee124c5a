import itertools
import subprocess
import sys
import textwrap
import time

import pytest
from sqlalchemy import text

from conveyor.errors import ConfigError
from conveyor.stores.backends import open_model_store
from conveyor.stores.metadata.sql.engine import create_engines
from conveyor.stores.metadata.sql.migrate import HEAD, current_revision, ensure_schema
from conveyor.stores.metadata.sql.models import SqlModelStore
from conveyor.testing.model_store_contract import ModelStoreContract, new_model_version


class TestSqliteFile(ModelStoreContract):
    @pytest.fixture
    def model_store(self, tmp_path):
        s = SqlModelStore(f"sqlite:///{tmp_path / 'conveyor.db'}")
        yield s
        s.close()


class TestSqliteMemory(ModelStoreContract):
    @pytest.fixture
    def model_store(self):
        s = SqlModelStore("sqlite://")
        yield s
        s.close()


@pytest.mark.postgres
class TestPostgres(ModelStoreContract):
    @pytest.fixture
    def model_store(self, postgres_url):
        s = SqlModelStore(postgres_url)
        yield s
        s.close()


def test_open_model_store_picks_the_sql_store(tmp_path):
    store = open_model_store(f"sqlite:///{tmp_path / 'c.db'}")
    assert isinstance(store, SqlModelStore)
    store.close()
    with pytest.raises(ConfigError, match="sqlite:///"):
        open_model_store("mysql://db")


def test_a_tracking_database_is_upgraded_in_place(tmp_path):
    from alembic import command
    from alembic.config import Config

    from conveyor.stores.metadata.sql.migrate import MIGRATIONS

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engines = create_engines(url)
    with engines.write() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(text("INSERT INTO experiments (name, created_at) VALUES ('kept', 1)"))
    assert ensure_schema(engines) is True
    with engines.read() as conn:
        assert current_revision(conn) == HEAD
        assert conn.execute(text("SELECT name FROM experiments")).scalar_one() == "kept"
    engines.dispose()
    store = SqlModelStore(url)
    assert store.create_version(new_model_version("m")).version == 1
    store.close()


def test_a_missing_model_row_cannot_get_an_alias(tmp_path):
    store = SqlModelStore(f"sqlite:///{tmp_path / 'c.db'}")
    with pytest.raises(KeyError, match="none yet"):
        store.set_alias("ghost", "production", 1, "ana", None)
    store.close()


# --- many processes -------------------------------------------------------------

_REGISTER = textwrap.dedent(
    """
    import sys, time
    from conveyor.stores.metadata.sql.models import SqlModelStore
    from conveyor.testing.model_store_contract import new_model_version
    url, start, worker, count = sys.argv[1], float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    store = SqlModelStore(url)
    while time.time() < start:
        time.sleep(0.001)
    for i in range(count):
        print(store.create_version(new_model_version("m", f"{worker}-{i}")).version)
    """
)

_MOVE = textwrap.dedent(
    """
    import sys, time
    from conveyor.stores.metadata.sql.models import SqlModelStore
    url, start, worker = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    store = SqlModelStore(url)
    while time.time() < start:
        time.sleep(0.001)
    for i in range(5):
        store.set_alias("m", "production", (worker + i) % 4 + 1, f"w{worker}", None)
    """
)


def _race(script: str, url: str, args_per_worker: list[list[str]]) -> list[str]:
    start = time.time() + 4  # let every interpreter start before they race
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, url, str(start), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in args_per_worker
    ]
    results = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results if err]
    return [line for out, _ in results for line in out.split()]


@pytest.mark.slow
def test_fifty_registrations_from_eight_processes(metadata_url):
    SqlModelStore(metadata_url).close()  # migrate once, so the race is about versions
    counts = [7, 7, 6, 6, 6, 6, 6, 6]
    numbers = _race(_REGISTER, metadata_url, [[str(w), str(n)] for w, n in enumerate(counts)])
    assert sorted(int(n) for n in numbers) == list(range(1, 51))
    store = SqlModelStore(metadata_url)
    assert [v.version for v in store.list_versions("m")] == list(range(1, 51))
    assert store.get_model("m").latest_version == 50
    store.close()


@pytest.mark.slow
def test_alias_moves_from_eight_processes_serialize(metadata_url):
    store = SqlModelStore(metadata_url)
    for _ in range(4):
        store.create_version(new_model_version("m"))
    _race(_MOVE, metadata_url, [[str(w)] for w in range(8)])
    events = store.alias_history("m", "production")
    assert len(events) == 40
    assert events[0].from_version is None
    for before, after in itertools.pairwise(events):
        assert after.from_version == before.to_version
    assert store.get_alias("m", "production").version == events[-1].to_version
    store.close()
