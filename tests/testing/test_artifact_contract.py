"""Runs the shipped artifact store contract against every built-in backend."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from conveyor.stores.artifacts.base import ByteStore
from conveyor.stores.artifacts.fsspec_store import FsspecByteStore
from conveyor.testing.artifact_contract import ArtifactStoreContract


class TestLocalFolderStore(ArtifactStoreContract):
    @pytest.fixture
    def byte_store(self, tmp_path: Path) -> ByteStore:
        return FsspecByteStore(f"file://{tmp_path / 'store'}")


class TestMemoryStore(ArtifactStoreContract):
    @pytest.fixture
    def byte_store(self) -> ByteStore:
        # The memory file system is shared by the whole process.
        return FsspecByteStore(f"memory://contract-{uuid.uuid4().hex}")


class TestS3Store(ArtifactStoreContract):
    @pytest.fixture
    def byte_store(self, s3_bucket: str, s3_endpoint_url: str) -> ByteStore:
        return FsspecByteStore(f"s3://{s3_bucket}/some/prefix", endpoint_url=s3_endpoint_url)
