"""The behaviour every artifact `ByteStore` must show, as a pytest class any backend can run.

Subclass `ArtifactStoreContract` in a ``Test…`` class and override the
``byte_store`` fixture to return a fresh, empty store::

    class TestMyStore(ArtifactStoreContract):
        @pytest.fixture
        def byte_store(self, tmp_path):
            return MyByteStore(tmp_path)

The suite checks the byte level directly and the content-addressing layer on
top of it, since that layer relies on the byte level's promises.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from conveyor.errors import ArtifactCorruptedError, NotFoundError
from conveyor.stores.artifacts.base import ByteStore
from conveyor.stores.artifacts.content import ContentAddressedStore

__all__ = ["ArtifactStoreContract"]


def _cas_key(sha256: str) -> str:
    return f"cas/{sha256[:2]}/{sha256}"


def _sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1024 * 1024):
            hasher.update(chunk)
    return hasher.hexdigest()


class ArtifactStoreContract:
    """Contract tests for a `ByteStore`; override the ``byte_store`` fixture."""

    large_file_size: int = 20 * 1024 * 1024

    @pytest.fixture
    def byte_store(self) -> ByteStore:
        """A fresh, empty store of the backend under test; subclasses must override this."""
        raise NotImplementedError("override the byte_store fixture to return a fresh ByteStore")

    @pytest.fixture
    def cas(self, byte_store: ByteStore) -> ContentAddressedStore:
        """The content-addressing layer over the store under test."""
        return ContentAddressedStore(byte_store)

    # --- byte level ---------------------------------------------------------

    def test_put_bytes_round_trip(self, byte_store: ByteStore) -> None:
        """Bytes come back exactly as stored, including empty and non-UTF-8 ones."""
        payloads = {"a/empty": b"", "a/binary": bytes(range(256)), "b/text": "é✓".encode()}
        for key, data in payloads.items():
            byte_store.put_bytes(key, data)
        for key, data in payloads.items():
            assert byte_store.get_bytes(key) == data

    def test_put_file_get_file_round_trip(self, byte_store: ByteStore, tmp_path: Path) -> None:
        """A file put from disk is streamed back to disk byte for byte."""
        source = tmp_path / "source.bin"
        source.write_bytes(os.urandom(100_000))
        byte_store.put_file("files/one", source)
        target = tmp_path / "target.bin"
        byte_store.get_file("files/one", target)
        assert target.read_bytes() == source.read_bytes()

    def test_put_overwrites_the_whole_object(self, byte_store: ByteStore) -> None:
        """A second put replaces the first entirely and leaves a single key."""
        byte_store.put_bytes("k", b"a much longer first version")
        byte_store.put_bytes("k", b"short")
        assert byte_store.get_bytes("k") == b"short"
        assert list(byte_store.list_keys()) == ["k"]

    def test_no_temporaries_are_listed(self, byte_store: ByteStore, tmp_path: Path) -> None:
        """After puts of both kinds, the listing holds exactly the committed keys."""
        source = tmp_path / "f"
        source.write_bytes(b"file")
        byte_store.put_bytes("x/1", b"one")
        byte_store.put_file("x/2", source)
        byte_store.put_bytes("x/1", b"again")
        assert list(byte_store.list_keys()) == ["x/1", "x/2"]

    def test_missing_key_is_not_found(self, byte_store: ByteStore, tmp_path: Path) -> None:
        """Reading a key that holds nothing raises NotFoundError, and exists says False."""
        assert not byte_store.exists("missing/key")
        with pytest.raises(NotFoundError):
            byte_store.get_bytes("missing/key")
        with pytest.raises(NotFoundError):
            byte_store.get_file("missing/key", tmp_path / "out")

    def test_delete_is_idempotent(self, byte_store: ByteStore) -> None:
        """Deleting removes the object; deleting again, or a key never stored, is fine."""
        byte_store.put_bytes("gone", b"x")
        assert byte_store.exists("gone")
        byte_store.delete("gone")
        byte_store.delete("gone")
        byte_store.delete("never/stored")
        assert not byte_store.exists("gone")
        assert list(byte_store.list_keys()) == []

    def test_list_keys_by_prefix(self, byte_store: ByteStore) -> None:
        """Prefixes are plain string prefixes of keys; results are sorted."""
        for key in ("b/1", "a/2", "a/1", "ab/3", "c"):
            byte_store.put_bytes(key, key.encode())
        assert list(byte_store.list_keys()) == ["a/1", "a/2", "ab/3", "b/1", "c"]
        assert list(byte_store.list_keys("a/")) == ["a/1", "a/2"]
        assert list(byte_store.list_keys("a")) == ["a/1", "a/2", "ab/3"]
        assert list(byte_store.list_keys("zzz/")) == []

    # --- content-addressing layer -------------------------------------------

    def test_cas_round_trip_and_dedupe(self, cas: ContentAddressedStore, tmp_path: Path) -> None:
        """The same content put twice, as bytes or as a file, is stored once."""
        first = cas.put_bytes(b"same content")
        source = tmp_path / "same.txt"
        source.write_bytes(b"same content")
        assert cas.put_bytes(b"same content") == first
        assert cas.put_file(source) == first
        assert first.sha256 == hashlib.sha256(b"same content").hexdigest()
        assert first.size == len(b"same content")
        assert list(cas.iter_digests()) == [first.sha256]
        assert list(cas.byte_store.list_keys()) == [_cas_key(first.sha256)]
        assert cas.get_bytes(first.sha256) == b"same content"

    def test_cas_missing_digest_is_not_found(
        self, cas: ContentAddressedStore, tmp_path: Path
    ) -> None:
        """An unknown digest raises NotFoundError naming it; no file is left behind."""
        digest = hashlib.sha256(b"never stored").hexdigest()
        assert not cas.exists(digest)
        with pytest.raises(NotFoundError, match=digest):
            cas.get_bytes(digest)
        with pytest.raises(NotFoundError, match=digest):
            cas.download(digest, tmp_path / "downloads" / "file")
        assert list((tmp_path / "downloads").iterdir()) == []

    def test_cas_detects_corrupted_bytes(
        self, byte_store: ByteStore, cas: ContentAddressedStore, tmp_path: Path
    ) -> None:
        """Bytes changed under a digest are refused on read, naming the digest."""
        digest = cas.put_bytes(b"original")
        byte_store.put_bytes(_cas_key(digest.sha256), b"tampered")
        with pytest.raises(ArtifactCorruptedError, match=digest.sha256):
            cas.get_bytes(digest.sha256)
        downloads = tmp_path / "downloads"
        with pytest.raises(ArtifactCorruptedError, match=digest.sha256):
            cas.download(digest.sha256, downloads / "restored.bin")
        assert list(downloads.iterdir()) == []

    def test_cas_download_never_leaves_partial_dest(
        self, byte_store: ByteStore, cas: ContentAddressedStore, tmp_path: Path
    ) -> None:
        """A failed download keeps the old dest intact; a good one replaces it whole."""
        good = cas.put_bytes(b"new content")
        bad = cas.put_bytes(b"to be tampered")
        byte_store.put_bytes(_cas_key(bad.sha256), b"tampered")
        dest = tmp_path / "downloads" / "model.bin"
        dest.parent.mkdir()
        dest.write_bytes(b"old content")
        with pytest.raises(ArtifactCorruptedError):
            cas.download(bad.sha256, dest)
        assert dest.read_bytes() == b"old content"
        cas.download(good.sha256, dest)
        assert dest.read_bytes() == b"new content"
        assert [p.name for p in dest.parent.iterdir()] == ["model.bin"]

    def test_cas_streams_large_files(self, cas: ContentAddressedStore, tmp_path: Path) -> None:
        """A large file goes in and comes out whole, with the right digest and size."""
        source = tmp_path / "large.bin"
        with source.open("wb") as stream:
            for _ in range(self.large_file_size // (1024 * 1024)):
                stream.write(os.urandom(1024 * 1024))
        digest = cas.put_file(source)
        assert digest.sha256 == _sha256_of(source)
        assert digest.size == source.stat().st_size
        dest = tmp_path / "copy" / "large.bin"
        cas.download(digest.sha256, dest)
        assert _sha256_of(dest) == digest.sha256

    def test_cas_delete(self, cas: ContentAddressedStore) -> None:
        """Deleted content is gone; deleting it again is not an error."""
        digest = cas.put_bytes(b"short-lived")
        cas.delete(digest.sha256)
        cas.delete(digest.sha256)
        assert not cas.exists(digest.sha256)
        assert list(cas.iter_digests()) == []

    def test_stat_gives_size_and_time(self, byte_store: ByteStore) -> None:
        before = time.time() - 5
        byte_store.put_bytes("cas/stat/x", b"12345")
        size, mtime = byte_store.stat("cas/stat/x")
        assert size == 5
        assert mtime is None or mtime >= before
        with pytest.raises(NotFoundError):
            byte_store.stat("cas/stat/missing")

    def test_cas_unreferenced_spares_kept_and_young(self, cas: ContentAddressedStore) -> None:
        kept = cas.put_bytes(b"kept")
        orphan = cas.put_bytes(b"orphan")
        assert cas.unreferenced({kept.sha256}, min_age_seconds=3600) == []
        assert cas.unreferenced({kept.sha256}, min_age_seconds=0) == [orphan]
