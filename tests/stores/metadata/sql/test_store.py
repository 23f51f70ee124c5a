import pytest

from conveyor.errors import ConfigError, ValidationError
from conveyor.stores.metadata.base import NewRun
from conveyor.stores.metadata.sql.store import SqlMetadataStore
from conveyor.testing.metadata_contract import MetadataStoreContract


class TestSqliteFile(MetadataStoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        s = SqlMetadataStore(f"sqlite:///{tmp_path / 'conveyor.db'}")
        yield s
        s.close()


class TestSqliteMemory(MetadataStoreContract):
    @pytest.fixture
    def store(self):
        s = SqlMetadataStore("sqlite://")
        yield s
        s.close()


@pytest.mark.postgres
class TestPostgres(MetadataStoreContract):
    @pytest.fixture
    def store(self, postgres_url):
        s = SqlMetadataStore(postgres_url)
        yield s
        s.close()


def test_unsupported_database_is_named(tmp_path):
    with pytest.raises(ConfigError, match="unsupported database 'mysql'"):
        SqlMetadataStore("mysql://root@localhost/db")


def test_not_a_url():
    with pytest.raises(ConfigError, match="not a database URL"):
        SqlMetadataStore("::::")


def test_duplicate_run_id_is_a_validation_error(tmp_path):
    store = SqlMetadataStore(f"sqlite:///{tmp_path / 'c.db'}")
    exp = store.get_or_create_experiment("e")
    run = NewRun(id="f" * 32, experiment_id=exp.id, name="a", start_time=1)
    store.create_run(run)
    with pytest.raises(ValidationError, match="exists"):
        store.create_run(run)
    assert store.get_run(run.id).name == "a"  # nothing stored is lost


def test_experiment_name_rules(tmp_path):
    store = SqlMetadataStore(f"sqlite:///{tmp_path / 'c.db'}")
    with pytest.raises(ValidationError, match="experiment"):
        store.get_or_create_experiment("")
    with pytest.raises(ValidationError, match="experiment"):
        store.get_or_create_experiment("x" * 300)


def test_sqlite_runs_in_wal_mode(tmp_path):
    path = tmp_path / "c.db"
    SqlMetadataStore(f"sqlite:///{path}").close()
    import sqlite3

    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_search_loads_params_metrics_and_tags(tmp_path):
    from conveyor.stores.metadata.base import WriteBatch

    store = SqlMetadataStore(f"sqlite:///{tmp_path / 'c.db'}")
    exp = store.get_or_create_experiment("e")
    run = NewRun(id="a" * 32, experiment_id=exp.id, name="a", start_time=1, tags={"t": "1"})
    store.create_run(run)
    store.write(WriteBatch(metrics=[(run.id, "m", 1.5, 0, 1)], params=[(run.id, "p", "x")]))
    [found] = store.search_runs([exp.id], "tags.t = '1'")
    assert (found.params, found.metrics, found.tags) == ({"p": "x"}, {"m": 1.5}, {"t": "1"})
    assert found.metric_history("m")[0].value == 1.5
