from __future__ import annotations

import dataclasses
import hashlib
import os
import uuid
from pathlib import Path

import pytest

from conveyor.errors import (
    ArtifactCorruptedError,
    NotFoundError,
    UnsafePathError,
    ValidationError,
)
from conveyor.stores.artifacts.content import (
    ContentAddressedStore,
    Digest,
    collect_upload,
    guess_media_type,
)
from conveyor.stores.artifacts.fsspec_store import FsspecByteStore

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.fixture
def cas(tmp_path: Path) -> ContentAddressedStore:
    return ContentAddressedStore(FsspecByteStore(str(tmp_path / "store")))


def test_digest_is_a_frozen_value() -> None:
    digest = Digest(ABC_SHA256, 3)
    assert digest == Digest(ABC_SHA256, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        digest.size = 4  # type: ignore[misc]


def test_objects_are_sharded_by_the_first_two_hex_digits(cas: ContentAddressedStore) -> None:
    assert cas.put_bytes(b"abc") == Digest(ABC_SHA256, 3)
    assert list(cas.byte_store.list_keys()) == [f"cas/ba/{ABC_SHA256}"]
    assert cas.uri == cas.byte_store.uri


def test_put_file_streams_and_matches_put_bytes(cas: ContentAddressedStore, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    source = tmp_path / "data.bin"
    source.write_bytes(data)
    assert cas.put_file(source) == Digest(hashlib.sha256(data).hexdigest(), len(data))


def test_put_file_skips_the_upload_when_the_digest_is_stored(
    cas: ContentAddressedStore, tmp_path: Path
) -> None:
    # Existing objects are trusted on write and checked on read: a tampered copy
    # is not silently repaired by the dedupe, it is reported when read.
    cas.byte_store.put_bytes(f"cas/ba/{ABC_SHA256}", b"tampered")
    source = tmp_path / "abc.txt"
    source.write_bytes(b"abc")
    assert cas.put_file(source).sha256 == ABC_SHA256
    with pytest.raises(ArtifactCorruptedError):
        cas.get_bytes(ABC_SHA256)


def test_putting_a_missing_file_is_not_found(cas: ContentAddressedStore, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"missing\.bin"):
        cas.put_file(tmp_path / "missing.bin")


class GrowsWhileUploading(FsspecByteStore):
    """A real local store whose source file is appended to mid-upload, as by another process."""

    def put_file(self, key: str, local_path: Path) -> None:
        super().put_file(key, local_path)
        with local_path.open("ab") as stream:
            stream.write(b" and more")


def test_a_file_changed_during_the_upload_is_refused_and_removed(tmp_path: Path) -> None:
    cas = ContentAddressedStore(GrowsWhileUploading(str(tmp_path / "store")))
    source = tmp_path / "log.txt"
    source.write_bytes(b"abc")
    with pytest.raises(ValidationError, match="changed while it was being stored"):
        cas.put_file(source)
    assert not cas.exists(ABC_SHA256)


@pytest.mark.parametrize(
    "sha256", ["", "abc", ABC_SHA256.upper(), ABC_SHA256[:-1] + "g", "../" + ABC_SHA256[3:]]
)
def test_malformed_digests_are_refused(
    sha256: str, cas: ContentAddressedStore, tmp_path: Path
) -> None:
    for call in (cas.get_bytes, cas.exists, cas.delete):
        with pytest.raises(ValidationError, match="64 lowercase hexadecimal"):
            call(sha256)
    with pytest.raises(ValidationError):
        cas.download(sha256, tmp_path / "out")


def test_download_creates_missing_parent_folders(
    cas: ContentAddressedStore, tmp_path: Path
) -> None:
    digest = cas.put_bytes(b"abc")
    dest = tmp_path / "deep" / "er" / "abc.txt"
    cas.download(digest.sha256, dest)
    assert dest.read_bytes() == b"abc"


def test_iter_digests_skips_stray_keys(cas: ContentAddressedStore) -> None:
    digest = cas.put_bytes(b"abc")
    cas.byte_store.put_bytes("cas/zz/not-a-digest", b"x")
    cas.byte_store.put_bytes(f"cas/00/{ABC_SHA256}", b"wrong shard")
    cas.byte_store.put_bytes("elsewhere/file", b"x")
    assert list(cas.iter_digests()) == [digest.sha256]


def test_the_store_is_final() -> None:
    assert ContentAddressedStore.__final__  # type: ignore[attr-defined]


# --- collect_upload -----------------------------------------------------------


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_a_single_file_is_uploaded_under_its_name(tmp_path: Path) -> None:
    file = make_tree(tmp_path, {"model.onnx": b"m"}) / "model.onnx"
    assert collect_upload(file) == [(file, "model.onnx")]


def test_a_folder_gives_every_file_sorted_by_relative_path(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "run", {"b.txt": b"", "a/z.txt": b"", "a/b/c.txt": b""})
    assert collect_upload(folder) == [
        (folder / "a" / "b" / "c.txt", "a/b/c.txt"),
        (folder / "a" / "z.txt", "a/z.txt"),
        (folder / "b.txt", "b.txt"),
    ]


def test_links_inside_the_folder_are_followed_as_content(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "run", {"data/x.csv": b"1,2"})
    (folder / "latest.csv").symlink_to(folder / "data" / "x.csv")
    (folder / "alias").symlink_to(folder / "data")
    assert [rel for _, rel in collect_upload(folder)] == ["alias/x.csv", "data/x.csv", "latest.csv"]


@pytest.mark.parametrize("target", ["secret.txt", "secrets"])
def test_a_link_out_of_the_folder_is_rejected_and_nothing_uploaded(
    target: str, tmp_path: Path, cas: ContentAddressedStore
) -> None:
    make_tree(tmp_path, {"secret.txt": b"password", "secrets/key": b"k"})
    folder = make_tree(tmp_path / "run", {"a.txt": b"a", "sub/b.txt": b"b"})
    (folder / "sub" / "leak").symlink_to(tmp_path / target)

    def upload() -> None:
        for path, _ in collect_upload(folder):
            cas.put_file(path)

    with pytest.raises(UnsafePathError, match="outside the folder") as caught:
        upload()
    assert caught.value.path == "sub/leak"
    assert list(cas.iter_digests()) == []


def test_a_link_looping_back_into_the_folder_is_rejected(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "run", {"sub/a.txt": b"a"})
    (folder / "sub" / "loop").symlink_to(folder)
    with pytest.raises(UnsafePathError, match="loops back"):
        collect_upload(folder)


def test_a_broken_link_is_not_found(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "run", {"a.txt": b"a"})
    (folder / "gone").symlink_to(folder / "deleted.txt")
    with pytest.raises(NotFoundError, match="broken symbolic link"):
        collect_upload(folder)


def test_a_missing_path_is_not_found_and_named(tmp_path: Path) -> None:
    missing = tmp_path / f"missing-{uuid.uuid4().hex}"
    with pytest.raises(NotFoundError, match=missing.name):
        collect_upload(missing)


def test_special_files_are_skipped(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "run", {"a.txt": b"a"})
    os.mkfifo(folder / "pipe")
    assert [rel for _, rel in collect_upload(folder)] == ["a.txt"]


def test_names_breaking_artifact_path_rules_are_rejected(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "run", {"back\\slash.txt": b"x"})
    with pytest.raises(UnsafePathError, match="backslash"):
        collect_upload(folder)


# --- guess_media_type ---------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("plots/roc.png", "image/png"),
        ("metrics.json", "application/json"),
        ("data.csv", "text/csv"),
        ("data.csv.gz", "application/gzip"),
        ("model.onnx", "application/octet-stream"),
        ("Makefile", "application/octet-stream"),
    ],
)
def test_guess_media_type(path: str, media_type: str) -> None:
    assert guess_media_type(path) == media_type
