from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conveyor.errors import ConfigError
from conveyor.stores.artifacts.content import ContentAddressedStore
from conveyor.stores.backends import open_artifact_store


def round_trips(store: ContentAddressedStore) -> bool:
    digest = store.put_bytes(b"payload")
    return store.get_bytes(digest.sha256) == b"payload"


def test_a_relative_plain_path_opens_a_local_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_artifact_store("artifacts")
    assert isinstance(store, ContentAddressedStore)
    assert store.uri == f"file://{tmp_path.resolve()}/artifacts"
    assert round_trips(store)
    assert any((tmp_path / "artifacts" / "cas").rglob("*"))


@pytest.mark.parametrize("form", ["{path}", "file://{path}"])
def test_absolute_paths_and_file_uris_open_local_stores(form: str, tmp_path: Path) -> None:
    store = open_artifact_store(form.format(path=tmp_path / "store"))
    assert store.uri == f"file://{tmp_path}/store"
    assert round_trips(store)


def test_memory_uris_open_memory_stores() -> None:
    root = f"backends-{uuid.uuid4().hex}"
    store = open_artifact_store(f"memory://{root}")
    assert store.uri == f"memory:///{root}"
    assert round_trips(store)


def test_s3_uris_open_s3_stores_with_storage_options(s3_bucket: str, s3_endpoint_url: str) -> None:
    store = open_artifact_store(f"s3://{s3_bucket}/artifacts", endpoint_url=s3_endpoint_url)
    assert store.uri == f"s3://{s3_bucket}/artifacts"
    assert round_trips(store)


@pytest.mark.parametrize("uri", ["gs://bucket/x", "azure://c/x", "simplecache::s3://b/x"])
def test_unknown_schemes_list_the_supported_ones(uri: str) -> None:
    with pytest.raises(ConfigError, match=r"file://, memory://, s3:// or a plain path"):
        open_artifact_store(uri)


def test_an_empty_uri_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="empty"):
        open_artifact_store("")


def test_importing_the_table_loads_no_backend() -> None:
    script = (
        "import sys\n"
        "import conveyor.stores.backends\n"
        "loaded = {'fsspec', 's3fs', 'conveyor.stores.artifacts.fsspec_store'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
