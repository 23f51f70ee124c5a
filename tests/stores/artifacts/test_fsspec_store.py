from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conveyor.errors import ConfigError, NotFoundError, StoreError, ValidationError
from conveyor.stores.artifacts.fsspec_store import FsspecByteStore


def memory_uri() -> str:
    # The memory file system is shared by the whole process.
    return f"memory://fsspec-store-{uuid.uuid4().hex}"


def test_a_relative_path_becomes_an_absolute_created_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = FsspecByteStore("artifacts/store")
    assert (tmp_path / "artifacts" / "store").is_dir()
    assert store.uri == f"file://{tmp_path.resolve()}/artifacts/store"
    assert repr(store) == f"FsspecByteStore({store.uri!r})"


def test_a_file_uri_is_a_local_folder(tmp_path: Path) -> None:
    store = FsspecByteStore(f"file://{tmp_path}/nested/root")
    store.put_bytes("a/b", b"data")
    assert (tmp_path / "nested" / "root" / "a" / "b").read_bytes() == b"data"


def test_local_puts_leave_no_temporary_behind(tmp_path: Path) -> None:
    store = FsspecByteStore(str(tmp_path))
    source = tmp_path / "source.bin"
    source.write_bytes(b"file")
    store.put_bytes("k1", b"bytes")
    store.put_file("k2", source)
    assert list((tmp_path / ".tmp").iterdir()) == []


def test_a_failed_local_put_keeps_the_old_object_and_no_temporary(tmp_path: Path) -> None:
    store = FsspecByteStore(str(tmp_path))
    store.put_bytes("k", b"old")
    with pytest.raises(TypeError):
        store.put_bytes("k", "not bytes")  # type: ignore[arg-type]
    assert store.get_bytes("k") == b"old"
    assert list((tmp_path / ".tmp").iterdir()) == []


@pytest.mark.parametrize("where", ["local", "memory"])
def test_a_streamed_put_stores_what_was_written_or_nothing(tmp_path: Path, where: str) -> None:
    store = FsspecByteStore(str(tmp_path) if where == "local" else memory_uri())
    store.put_stream("k", lambda handle: (handle.write(b"ab"), handle.write(b"cd")))
    assert store.get_bytes("k") == b"abcd"

    def broken(handle: object) -> None:
        handle.write(b"half")  # type: ignore[attr-defined]
        raise RuntimeError("the writer failed")

    with pytest.raises(RuntimeError):
        store.put_stream("k", broken)
    assert store.get_bytes("k") == b"abcd"  # the old object, whole
    if where == "local":
        assert list((tmp_path / ".tmp").iterdir()) == []


@pytest.mark.parametrize("where", ["local", "memory"])
def test_a_put_at_a_path_stores_the_file_written_there_or_nothing(
    tmp_path: Path, where: str
) -> None:
    store = FsspecByteStore(str(tmp_path / "store") if where == "local" else memory_uri())
    store.put_path("k", lambda path: Path(path).write_bytes(b"whole"))
    assert store.get_bytes("k") == b"whole"

    def broken(path: str) -> None:
        Path(path).write_bytes(b"half")
        raise RuntimeError("the writer failed")

    with pytest.raises(RuntimeError):
        store.put_path("k", broken)
    with pytest.raises(StoreError, match="'k2'"):
        store.put_path("k2", lambda path: None)  # wrote no file: nothing to store
    assert store.get_bytes("k") == b"whole"  # the old object, whole
    assert not store.exists("k2")
    if where == "local":
        assert list((tmp_path / "store" / ".tmp").iterdir()) == []


def test_temporaries_are_not_listed_even_when_left_by_a_killed_writer(tmp_path: Path) -> None:
    store = FsspecByteStore(str(tmp_path))
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "half-written").write_bytes(b"partial")
    store.put_bytes("k", b"whole")
    assert list(store.list_keys()) == ["k"]


def test_putting_a_missing_local_file_is_not_found(tmp_path: Path) -> None:
    store = FsspecByteStore(memory_uri())
    with pytest.raises(NotFoundError, match="no local file"):
        store.put_file("k", tmp_path / "missing")
    assert not store.exists("k")


@pytest.mark.parametrize("key", ["", "/abs", "../up", "a/../../b", ".tmp/x", ".tmp"])
def test_malformed_keys_are_refused(key: str) -> None:
    store = FsspecByteStore(memory_uri())
    with pytest.raises(ValidationError) as caught:
        store.put_bytes(key, b"x")
    assert caught.value.field == "key"


def test_malformed_prefixes_are_refused() -> None:
    store = FsspecByteStore(memory_uri())
    with pytest.raises(ValidationError):
        list(store.list_keys("../"))


def test_memory_stores_with_different_roots_are_separate() -> None:
    first, second = FsspecByteStore(memory_uri()), FsspecByteStore(memory_uri())
    first.put_bytes("k", b"1")
    assert list(second.list_keys()) == []
    assert not second.exists("k")


def test_backend_failures_become_store_errors(tmp_path: Path) -> None:
    store = FsspecByteStore(str(tmp_path))
    store.put_bytes("a", b"a file where a folder is needed")
    with pytest.raises(StoreError, match="'a/b'"):
        store.put_bytes("a/b", b"x")
    store.put_bytes("folder/x", b"x")
    with pytest.raises(StoreError):
        store.get_bytes("folder")


@pytest.mark.parametrize("uri", ["gs://bucket/x", "http://example.com/x", "hdfs://nn/x"])
def test_unsupported_schemes_are_config_errors(uri: str) -> None:
    with pytest.raises(ConfigError, match=r"file://, memory://, s3://"):
        FsspecByteStore(uri)


def test_an_s3_uri_must_name_a_bucket() -> None:
    with pytest.raises(ConfigError, match="bucket"):
        FsspecByteStore("s3://")


def test_s3_without_s3fs_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import fail as if s3fs were not installed.
    monkeypatch.setitem(sys.modules, "s3fs", None)
    with pytest.raises(ConfigError, match=r"pip install 'conveyor-mlops\[s3\]'"):
        FsspecByteStore("s3://bucket/prefix")


def test_s3fs_is_imported_only_for_s3_stores(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from conveyor.stores.artifacts.fsspec_store import FsspecByteStore\n"
        f"FsspecByteStore({str(tmp_path)!r}).put_bytes('k', b'x')\n"
        "FsspecByteStore('memory://lazy').put_bytes('k', b'x')\n"
        "assert 's3fs' not in sys.modules, 's3fs was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def s3_store(bucket: str, **options: str) -> FsspecByteStore:
    return FsspecByteStore(f"s3://{bucket}/prefix", **options)


def test_s3_round_trip_with_an_explicit_endpoint(s3_bucket: str, s3_endpoint_url: str) -> None:
    store = s3_store(s3_bucket, endpoint_url=s3_endpoint_url)
    store.put_bytes("cas/ab/k", b"data")
    assert store.uri == f"s3://{s3_bucket}/prefix"
    assert store.get_bytes("cas/ab/k") == b"data"


@pytest.mark.parametrize(
    "variable", ["CONVEYOR_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
)
def test_s3_endpoint_comes_from_the_environment(
    variable: str, s3_bucket: str, s3_endpoint_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, s3_endpoint_url)
    store = s3_store(s3_bucket)
    store.put_bytes("k", b"via environment")
    assert store.get_bytes("k") == b"via environment"


def test_an_explicit_s3_endpoint_wins_over_the_environment(
    s3_bucket: str, s3_endpoint_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    store = s3_store(s3_bucket, endpoint_url=s3_endpoint_url)
    store.put_bytes("k", b"explicit")
    assert store.exists("k")


def test_s3_listing_sees_objects_written_by_others(s3_bucket: str, s3_endpoint_url: str) -> None:
    import boto3

    store = s3_store(s3_bucket, endpoint_url=s3_endpoint_url)
    store.put_bytes("a/1", b"1")
    assert list(store.list_keys("a/")) == ["a/1"]
    client = boto3.client("s3", endpoint_url=s3_endpoint_url)
    try:
        client.put_object(Bucket=s3_bucket, Key="prefix/a/2", Body=b"2")
    finally:
        client.close()
    assert list(store.list_keys("a/")) == ["a/1", "a/2"]
    assert store.exists("a/2")


def test_a_missing_bucket_is_a_store_error(s3_endpoint_url: str) -> None:
    store = s3_store(f"no-such-bucket-{uuid.uuid4().hex[:12]}", endpoint_url=s3_endpoint_url)
    with pytest.raises(StoreError):
        store.put_bytes("k", b"x")
