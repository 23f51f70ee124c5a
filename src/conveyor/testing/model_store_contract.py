"""A contract every model-registry backend passes: subclass it and override ``model_store``.

class TestMyModelStore(ModelStoreContract):
    @pytest.fixture
    def model_store(self, tmp_path):
        yield MyModelStore(...)
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Iterator

import pytest

from conveyor.core.entities import SourceVersion
from conveyor.core.registry import AliasAction, ColumnSpec, Environment, Signature
from conveyor.errors import NotFoundError
from conveyor.stores.metadata.models import ModelStore, NewModelVersion

__all__ = ["ModelStoreContract", "new_model_version"]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_model_version(name: str, seed: str = "m", **fields: object) -> NewModelVersion:
    """A version record whose package digests are derived from ``seed`` (no bytes needed)."""
    base: dict[str, object] = {
        "name": name,
        "format": "skops",
        "manifest_sha256": _sha(f"{seed}/manifest"),
        "signature": Signature("dataframe", (ColumnSpec("x", "float64"),)),
        "environment": Environment("3.11.9", {"scikit-learn": "1.5.0"}),
        "files": {"model.skops": _sha(f"{seed}/model"), "signature.json": _sha(f"{seed}/sig")},
    }
    base.update(fields)
    return NewModelVersion(**base)  # type: ignore[arg-type]


class ModelStoreContract:
    """The behaviour the registry relies on from any `ModelStore`."""

    @pytest.fixture
    def model_store(self) -> Iterator[ModelStore]:
        """A fresh, empty store; override this."""
        raise NotImplementedError("override the `model_store` fixture")

    # -- versions ----------------------------------------------------------
    def test_versions_are_numbered_from_one_per_model(self, model_store: ModelStore) -> None:
        numbers = [model_store.create_version(new_model_version("a")).version for _ in range(3)]
        assert numbers == [1, 2, 3]
        assert model_store.create_version(new_model_version("b")).version == 1
        assert [m.name for m in model_store.list_models()] == ["a", "b"]
        assert model_store.get_model("a").latest_version == 3
        assert model_store.latest_version("a").version == 3

    def test_a_version_reads_back_every_field(self, model_store: ModelStore) -> None:
        new = new_model_version(
            "flights",
            trusted=True,
            run_id="r" * 32,
            description="first",
            tags={"team": "ops"},
            metrics={"auc": 0.91, "loss": float("nan")},
            source=SourceVersion("abc", "def"),
            data_digests={"train": _sha("train")},
            signature=Signature("tensor", dtype="float32", shape=(None, 4)),
        )
        got = model_store.create_version(new)
        assert got == model_store.get_version("flights", 1)
        assert (got.name, got.version, got.format, got.trusted) == ("flights", 1, "skops", True)
        assert (got.run_id, got.description, dict(got.tags)) == (new.run_id, "first", new.tags)
        assert got.metrics["auc"] == 0.91
        assert got.metrics["loss"] != got.metrics["loss"]
        assert (got.source, got.signature, got.environment) == (
            new.source,
            new.signature,
            new.environment,
        )
        assert (dict(got.files), got.manifest_sha256) == (new.files, new.manifest_sha256)
        assert dict(got.data_digests) == new.data_digests
        assert got.created_at > 0

    def test_unknown_model_lists_the_models_that_exist(self, model_store: ModelStore) -> None:
        model_store.create_version(new_model_version("churn"))
        model_store.create_version(new_model_version("flights"))
        for call in (
            lambda: model_store.get_model("nope"),
            lambda: model_store.list_versions("nope"),
            lambda: model_store.get_version("nope", 1),
            lambda: model_store.get_alias("nope", "production"),
        ):
            with pytest.raises(NotFoundError, match="churn, flights"):
                call()

    def test_unknown_version_lists_the_versions(self, model_store: ModelStore) -> None:
        for _ in range(2):
            model_store.create_version(new_model_version("m"))
        with pytest.raises(NotFoundError, match="no version 7; its versions: 1 to 2"):
            model_store.get_version("m", 7)

    # -- tags and descriptions ---------------------------------------------
    def test_tags_and_descriptions_change_but_the_package_does_not(
        self, model_store: ModelStore
    ) -> None:
        first = model_store.create_version(new_model_version("m"))
        model_store.set_model_tag("m", "owner", "ana")
        model_store.set_model_tag("m", "owner", "bo")
        model_store.set_model_tag("m", "gone", "x")
        model_store.delete_model_tag("m", "gone")
        model_store.set_version_tag("m", 1, "validated", "yes")
        model_store.set_description("m", "predicts delays", None)
        model_store.set_description("m", "baseline", 1)
        model = model_store.get_model("m")
        assert (dict(model.tags), model.description) == ({"owner": "bo"}, "predicts delays")
        version = model_store.get_version("m", 1)
        assert (dict(version.tags), version.description) == ({"validated": "yes"}, "baseline")
        assert version.manifest_sha256 == first.manifest_sha256

    # -- aliases -----------------------------------------------------------
    def test_alias_moves_are_audited(self, model_store: ModelStore) -> None:
        for _ in range(3):
            model_store.create_version(new_model_version("m"))
        first = model_store.set_alias("m", "production", 1, "ana", "first release")
        second = model_store.set_alias("m", "production", 3, "bo", "better auc")
        assert model_store.get_alias("m", "production").version == 3
        assert model_store.get_model("m").aliases == {"production": 3}
        assert (first.from_version, first.to_version, first.actor) == (None, 1, "ana")
        assert (second.from_version, second.to_version, second.reason) == (1, 3, "better auc")
        assert second.action is AliasAction.SET
        assert second.created_at >= first.created_at
        assert model_store.alias_history("m") == [first, second]

    def test_an_alias_never_points_at_a_missing_version(self, model_store: ModelStore) -> None:
        model_store.create_version(new_model_version("m"))
        model_store.set_alias("m", "staging", 1, "ana", None)
        with pytest.raises(NotFoundError, match="its versions: 1"):
            model_store.set_alias("m", "staging", 9, "ana", None)
        assert model_store.get_alias("m", "staging").version == 1
        assert len(model_store.alias_history("m")) == 1

    def test_unknown_alias_lists_aliases_and_versions(self, model_store: ModelStore) -> None:
        for _ in range(2):
            model_store.create_version(new_model_version("m"))
        model_store.set_alias("m", "staging", 2, "ana", None)
        with pytest.raises(NotFoundError, match=r"its aliases: staging -> 2; its versions: 1 to 2"):
            model_store.get_alias("m", "production")

    def test_delete_and_rollback(self, model_store: ModelStore) -> None:
        for _ in range(2):
            model_store.create_version(new_model_version("m"))
        model_store.set_alias("m", "production", 1, "ana", None)
        model_store.set_alias("m", "production", 2, "ana", None)
        back = model_store.rollback_alias("m", "production", "bo", "v2 regressed")
        assert (back.action, back.from_version, back.to_version) == ("rollback", 2, 1)
        assert model_store.get_alias("m", "production").version == 1
        model_store.rollback_alias("m", "production", "bo", "undo the rollback")
        assert model_store.get_alias("m", "production").version == 2
        gone = model_store.delete_alias("m", "production", "ana", "retired")
        assert (gone.action, gone.from_version, gone.to_version) == ("delete", 2, None)
        with pytest.raises(NotFoundError):
            model_store.get_alias("m", "production")
        model_store.rollback_alias("m", "production", "ana", "restore")
        assert model_store.get_alias("m", "production").version == 2
        actions = [e.action.value for e in model_store.alias_history("m", "production")]
        assert actions == ["set", "set", "rollback", "rollback", "delete", "rollback"]

    def test_rolling_back_a_creation_deletes_the_alias(self, model_store: ModelStore) -> None:
        model_store.create_version(new_model_version("m"))
        model_store.set_alias("m", "challenger", 1, "ana", None)
        event = model_store.rollback_alias("m", "challenger", "ana", "mistake")
        assert (event.from_version, event.to_version) == (1, None)
        assert model_store.get_model("m").aliases == {}

    def test_rollback_without_history_is_not_found(self, model_store: ModelStore) -> None:
        model_store.create_version(new_model_version("m"))
        with pytest.raises(NotFoundError, match="never been set"):
            model_store.rollback_alias("m", "production", "ana", None)
        with pytest.raises(NotFoundError, match="'production'"):
            model_store.delete_alias("m", "production", "ana", None)

    def test_aliases_belong_to_one_model(self, model_store: ModelStore) -> None:
        model_store.create_version(new_model_version("a"))
        model_store.create_version(new_model_version("b"))
        model_store.create_version(new_model_version("b"))
        model_store.set_alias("a", "production", 1, "ana", None)
        model_store.set_alias("b", "production", 2, "ana", None)
        assert model_store.get_alias("a", "production").name == "a"
        assert model_store.get_alias("b", "production").version == 2
        assert len(model_store.alias_history("a")) == 1

    # -- concurrency -------------------------------------------------------
    def test_concurrent_registrations_get_distinct_numbers(self, model_store: ModelStore) -> None:
        numbers: list[int] = []
        errors: list[BaseException] = []

        def register(i: int) -> None:
            try:
                numbers.append(model_store.create_version(new_model_version("m", str(i))).version)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=register, args=(i,)) for i in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert sorted(numbers) == list(range(1, 51))

    def test_concurrent_alias_moves_record_the_true_from_version(
        self, model_store: ModelStore
    ) -> None:
        for _ in range(4):
            model_store.create_version(new_model_version("m"))

        def move(i: int) -> None:
            model_store.set_alias("m", "production", i % 4 + 1, f"actor{i}", None)

        threads = [threading.Thread(target=move, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        events = model_store.alias_history("m", "production")
        assert len(events) == 20
        assert events[0].from_version is None
        for before, after in itertools.pairwise(events):
            assert after.from_version == before.to_version
        assert model_store.get_alias("m", "production").version == events[-1].to_version

    # -- housekeeping ------------------------------------------------------
    def test_referenced_digests_keep_every_package_file(self, model_store: ModelStore) -> None:
        new = new_model_version("m", profile_sha256=_sha("profile"))
        model_store.create_version(new)
        expected = {new.manifest_sha256, *new.files.values(), _sha("profile")}
        assert model_store.referenced_digests() == expected
