"""`SqlModelStore`: the model registry's records on SQLite or PostgreSQL through SQLAlchemy Core.

Every write that allocates a version number or moves an alias first locks the
model's row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE``
already holds the database's write lock), so such writes to one model are
serial across threads and processes, and each reads the true current state.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, Insert, Row, delete, insert, select, update

from conveyor.core.entities import SourceVersion
from conveyor.core.registry import (
    AliasAction,
    AliasEvent,
    Environment,
    ModelVersion,
    RegisteredModel,
    Signature,
)
from conveyor.errors import NotFoundError
from conveyor.stores.metadata.models import ModelStore, NewModelVersion
from conveyor.stores.metadata.sql import schema as t
from conveyor.stores.metadata.sql.engine import SqlEngines, create_engines, upsert
from conveyor.stores.metadata.sql.migrate import ensure_schema

__all__ = ["SqlModelStore"]

T = TypeVar("T")
_LISTED = 50  # how many names a NotFoundError lists


def _now_ms() -> int:
    return int(time.time() * 1000)


def _dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


class SqlModelStore(ModelStore):
    """Registered models, versions, tags, aliases and alias events in one SQL database.

    Args:
        url: ``sqlite:///path/conveyor.db``, ``sqlite://`` (in memory) or ``postgresql://…``;
            the same database as the tracking records.
        migrate: bring the schema to the current revision on open (the default).
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self._db: SqlEngines = create_engines(url)
        self.migrated = ensure_schema(self._db) if migrate else False

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._db.dialect

    # -- models and versions -----------------------------------------------
    def create_version(self, new: NewModelVersion) -> ModelVersion:
        """Record the next version of ``new.name``; its number is allocated under the lock."""
        number = self._write(lambda conn: _insert_version(conn, new, _now_ms()))
        return self.get_version(new.name, number)

    def list_models(self) -> list[RegisteredModel]:
        """Every registered model, by name."""
        with self._db.read() as conn:
            return _models(conn, None)

    def get_model(self, name: str) -> RegisteredModel:
        """One model with its tags and aliases."""
        with self._db.read() as conn:
            found = _models(conn, t.models.c.name == name)
            if not found:
                raise _no_model(conn, name)
            return found[0]

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of a model, oldest first."""
        with self._db.read() as conn:
            model = _model(conn, name)
            return _versions(conn, t.model_versions.c.model_id == model.id)

    def get_version(self, name: str, version: int) -> ModelVersion:
        """One version of a model."""
        v = t.model_versions.c
        with self._db.read() as conn:
            model = _model(conn, name)
            found = _versions(conn, (v.model_id == model.id) & (v.version == version))
            if not found:
                raise _no_version(model, version)
            return found[0]

    def latest_version(self, name: str) -> ModelVersion:
        """The newest version of a model."""
        with self._db.read() as conn:
            model = _model(conn, name)
        return self.get_version(name, model.latest_version)

    # -- tags and descriptions ---------------------------------------------
    def set_model_tag(self, name: str, key: str, value: str) -> None:
        """Set (or replace) a tag of a model."""

        def apply(conn: Connection) -> None:
            row = {"model_id": _model(conn, name).id, "key": key, "value": value}
            upsert(conn, t.model_tags, [row], ["model_id", "key"], update=["value"])

        self._write(apply)

    def delete_model_tag(self, name: str, key: str) -> None:
        """Remove a tag of a model, if it has it."""
        c = t.model_tags.c

        def apply(conn: Connection) -> None:
            model_id = _model(conn, name).id
            conn.execute(delete(t.model_tags).where(c.model_id == model_id, c.key == key))

        self._write(apply)

    def set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        """Set (or replace) a tag of a version."""

        def apply(conn: Connection) -> None:
            version_id = _version_id(conn, _model(conn, name), version)
            row = {"version_id": version_id, "key": key, "value": value}
            upsert(conn, t.version_tags, [row], ["version_id", "key"], update=["value"])

        self._write(apply)

    def set_description(self, name: str, description: str | None, version: int | None) -> None:
        """Set the description of a model, or of one of its versions."""

        def apply(conn: Connection) -> None:
            model = _model(conn, name)
            if version is None:
                where = t.models.c.id == model.id
                conn.execute(update(t.models).where(where).values(description=description))
                return
            version_id = _version_id(conn, model, version)
            where = t.model_versions.c.id == version_id
            conn.execute(update(t.model_versions).where(where).values(description=description))

        self._write(apply)

    # -- aliases -----------------------------------------------------------
    def get_alias(self, name: str, alias: str) -> ModelVersion:
        """The version an alias points at."""
        with self._db.read() as conn:
            model = _model(conn, name)
            version = _alias_version(conn, model.id, alias)
            if version is None:
                raise _no_alias(conn, model, alias)
        return self.get_version(name, version)

    def set_alias(
        self, name: str, alias: str, version: int, actor: str, reason: str | None
    ) -> AliasEvent:
        """Point ``alias`` at ``version`` and record the move, in one transaction."""
        move = _Move(alias, version, AliasAction.SET, actor, reason)
        return self._write(lambda conn: move.apply(conn, _lock_model(conn, name)))

    def delete_alias(self, name: str, alias: str, actor: str, reason: str | None) -> AliasEvent:
        """Remove an alias and record that, in one transaction."""
        move = _Move(alias, None, AliasAction.DELETE, actor, reason)
        return self._write(lambda conn: move.apply(conn, _lock_model(conn, name)))

    def rollback_alias(self, name: str, alias: str, actor: str, reason: str | None) -> AliasEvent:
        """Move an alias back to where it was before its last event, in one transaction."""

        def apply(conn: Connection) -> AliasEvent:
            model = _lock_model(conn, name)
            e = t.alias_events.c
            last = conn.execute(
                select(e.from_version)
                .where(e.model_id == model.id, e.alias == alias)
                .order_by(e.id.desc())
                .limit(1)
            ).first()
            if last is None:
                raise _no_alias(conn, model, alias, "has never been set, so cannot be rolled back")
            move = _Move(alias, last.from_version, AliasAction.ROLLBACK, actor, reason)
            return move.apply(conn, model)

        return self._write(apply)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Every alias event of a model (or of one alias), oldest first."""
        e = t.alias_events.c
        with self._db.read() as conn:
            model = _model(conn, name)
            query = select(t.alias_events).where(e.model_id == model.id).order_by(e.id)
            if alias is not None:
                query = query.where(e.alias == alias)
            return [_event(name, row) for row in conn.execute(query)]

    # -- housekeeping ------------------------------------------------------
    def referenced_digests(self) -> set[str]:
        """Every manifest, package file and profile a version points at."""
        v = t.model_versions.c
        with self._db.read() as conn:
            found = {r[0] for r in conn.execute(select(t.model_files.c.sha256).distinct())}
            found |= {r[0] for r in conn.execute(select(v.manifest_sha256).distinct())}
            profiles = select(v.profile_sha256).where(v.profile_sha256.is_not(None)).distinct()
            found |= {r[0] for r in conn.execute(profiles)}
        return found

    def close(self) -> None:
        """Dispose of the engines' connection pools."""
        self._db.dispose()

    def _write(self, fn: Callable[[Connection], T]) -> T:
        def attempt() -> T:
            with self._db.write() as conn:
                return fn(conn)

        return self._db.retrying(attempt)


# -- writing ---------------------------------------------------------------


def _insert_version(conn: Connection, new: NewModelVersion, now: int) -> int:
    row = {"name": new.name, "latest_version": 0, "created_at": now, "updated_at": now}
    upsert(conn, t.models, [row], ["name"])  # created by its first version, race-free
    model = _lock_model(conn, new.name)
    number = int(model.latest_version) + 1
    conn.execute(
        update(t.models)
        .where(t.models.c.id == model.id)
        .values(latest_version=number, updated_at=now)
    )
    version_id = _insert_returning_id(
        conn, insert(t.model_versions).values(_version_row(new, model.id, number, now))
    )
    files = [{"version_id": version_id, "path": p, "sha256": s} for p, s in new.files.items()]
    tags = [{"version_id": version_id, "key": k, "value": v} for k, v in new.tags.items()]
    if files:
        conn.execute(insert(t.model_files), files)
    if tags:
        conn.execute(insert(t.version_tags), tags)
    return number


def _insert_returning_id(conn: Connection, statement: Insert) -> int:
    key = conn.execute(statement).inserted_primary_key
    assert key is not None
    return int(key[0])


def _version_row(new: NewModelVersion, model_id: int, number: int, now: int) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "version": number,
        "format": new.format,
        "created_at": now,
        "manifest_sha256": new.manifest_sha256,
        "trusted": new.trusted,
        "run_id": new.run_id,
        "description": new.description,
        "git_sha": new.source.git_sha,
        "diff_hash": new.source.diff_hash,
        "signature": _dumps(new.signature.to_dict()),
        "environment": _dumps(new.environment.to_dict()),
        "metrics": _dumps(dict(new.metrics)),
        "data_digests": _dumps(dict(new.data_digests)),
        "profile_sha256": new.profile_sha256,
    }


class _Move:
    """One alias move (set, delete or rollback) and its audit event, inside a transaction."""

    def __init__(
        self,
        alias: str,
        to_version: int | None,
        action: AliasAction,
        actor: str,
        reason: str | None,
    ) -> None:
        self.alias = alias
        self.to_version = to_version
        self.action = action
        self.actor = actor
        self.reason = reason

    def apply(self, conn: Connection, model: Row[Any]) -> AliasEvent:
        """Move the alias of the locked ``model`` and record the event."""
        now = _now_ms()
        current = _alias_version(conn, model.id, self.alias)
        if self.to_version is None:
            self._remove(conn, model, current)
        else:
            version_id = _version_id(conn, model, self.to_version)
            row = {"model_id": model.id, "alias": self.alias}
            row |= {"version_id": version_id, "updated_at": now}
            upsert(conn, t.aliases, [row], ["model_id", "alias"], ["version_id", "updated_at"])
        where = t.models.c.id == model.id
        conn.execute(update(t.models).where(where).values(updated_at=now))
        event = {
            "model_id": model.id,
            "alias": self.alias,
            "action": self.action.value,
            "from_version": current,
            "to_version": self.to_version,
            "actor": self.actor,
            "reason": self.reason,
            "created_at": now,
        }
        event_id = _insert_returning_id(conn, insert(t.alias_events).values(event))
        return _event(model.name, {**event, "id": event_id})

    def _remove(self, conn: Connection, model: Row[Any], current: int | None) -> None:
        if current is None:
            raise _no_alias(conn, model, self.alias)
        a = t.aliases.c
        conn.execute(delete(t.aliases).where(a.model_id == model.id, a.alias == self.alias))


# -- reading ---------------------------------------------------------------


def _model(conn: Connection, name: str) -> Row[Any]:
    row = conn.execute(select(t.models).where(t.models.c.name == name)).first()
    if row is None:
        raise _no_model(conn, name)
    return row


def _lock_model(conn: Connection, name: str) -> Row[Any]:
    query = select(t.models).where(t.models.c.name == name).with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise _no_model(conn, name)
    return row


def _version_id(conn: Connection, model: Row[Any], version: int) -> int:
    v = t.model_versions.c
    found = conn.execute(
        select(v.id).where(v.model_id == model.id, v.version == version)
    ).scalar_one_or_none()
    if found is None:
        raise _no_version(model, version)
    return int(found)


def _alias_version(conn: Connection, model_id: int, alias: str) -> int | None:
    a, v = t.aliases.c, t.model_versions.c
    query = (
        select(v.version)
        .join_from(t.aliases, t.model_versions, a.version_id == v.id)
        .where(a.model_id == model_id, a.alias == alias)
    )
    found = conn.execute(query).scalar_one_or_none()
    return None if found is None else int(found)


def _aliases(conn: Connection, model_ids: list[int]) -> dict[int, dict[str, int]]:
    a, v = t.aliases.c, t.model_versions.c
    query = (
        select(a.model_id, a.alias, v.version)
        .join_from(t.aliases, t.model_versions, a.version_id == v.id)
        .where(a.model_id.in_(model_ids))
        .order_by(a.alias)
    )
    out: dict[int, dict[str, int]] = defaultdict(dict)
    for model_id, alias, version in conn.execute(query):
        out[model_id][alias] = int(version)
    return out


def _pairs(conn: Connection, table: Any, owner: str, ids: list[int]) -> dict[int, dict[str, str]]:
    """``{owner id: {key: value}}`` from a two-column child table (tags, files)."""
    key, value = [c for c in table.c if c.name != owner]
    column = table.c[owner]
    out: dict[int, dict[str, str]] = defaultdict(dict)
    for owner_id, k, val in conn.execute(
        select(column, key, value).where(column.in_(ids)).order_by(key)
    ):
        out[owner_id][k] = val
    return out


def _models(conn: Connection, where: ColumnElement[bool] | None) -> list[RegisteredModel]:
    query = select(t.models).order_by(t.models.c.name)
    rows = conn.execute(query if where is None else query.where(where)).all()
    ids = [r.id for r in rows]
    tags = _pairs(conn, t.model_tags, "model_id", ids)
    aliases = _aliases(conn, ids)
    return [
        RegisteredModel(
            name=r.name,
            created_at=r.created_at,
            updated_at=r.updated_at,
            latest_version=r.latest_version,
            description=r.description,
            tags=tags.get(r.id, {}),
            aliases=aliases.get(r.id, {}),
        )
        for r in rows
    ]


def _versions(conn: Connection, where: ColumnElement[bool]) -> list[ModelVersion]:
    v = t.model_versions.c
    query = (
        select(t.model_versions, t.models.c.name)
        .join_from(t.model_versions, t.models, v.model_id == t.models.c.id)
        .where(where)
        .order_by(v.version)
    )
    rows = conn.execute(query).all()
    ids = [r.id for r in rows]
    tags = _pairs(conn, t.version_tags, "version_id", ids)
    files = _pairs(conn, t.model_files, "version_id", ids)
    return [_version(r, tags.get(r.id, {}), files.get(r.id, {})) for r in rows]


def _version(row: Any, tags: Mapping[str, str], files: Mapping[str, str]) -> ModelVersion:
    return ModelVersion(
        name=row.name,
        version=row.version,
        format=row.format,
        created_at=row.created_at,
        manifest_sha256=row.manifest_sha256,
        signature=Signature.from_dict(json.loads(row.signature)),
        environment=Environment.from_dict(json.loads(row.environment)),
        trusted=bool(row.trusted),
        run_id=row.run_id,
        description=row.description,
        tags=tags,
        metrics=json.loads(row.metrics),
        source=SourceVersion(row.git_sha, row.diff_hash),
        data_digests=json.loads(row.data_digests),
        files=files,
        profile_sha256=row.profile_sha256,
    )


def _event(name: str, row: Any) -> AliasEvent:
    data: Mapping[str, Any] = row if isinstance(row, dict) else row._mapping
    return AliasEvent(
        id=int(data["id"]),
        name=name,
        alias=data["alias"],
        action=AliasAction(data["action"]),
        from_version=data["from_version"],
        to_version=data["to_version"],
        actor=data["actor"],
        reason=data["reason"],
        created_at=data["created_at"],
    )


# -- errors that list what exists ------------------------------------------


def _no_model(conn: Connection, name: str) -> NotFoundError:
    names = [r[0] for r in conn.execute(select(t.models.c.name).order_by(t.models.c.name))]
    listing = ", ".join(names[:_LISTED]) + (", …" if len(names) > _LISTED else "")
    return NotFoundError(f"no model named {name!r}; registered models: {listing or 'none yet'}")


def _versions_text(model: Row[Any]) -> str:
    n = int(model.latest_version)
    return "none" if n == 0 else ("1" if n == 1 else f"1 to {n}")


def _no_version(model: Row[Any], version: int) -> NotFoundError:
    return NotFoundError(
        f"model {model.name!r} has no version {version}; its versions: {_versions_text(model)}"
    )


def _no_alias(
    conn: Connection, model: Row[Any], alias: str, why: str = "does not exist"
) -> NotFoundError:
    known = _aliases(conn, [model.id]).get(model.id, {})
    listing = ", ".join(f"{a} -> {v}" for a, v in known.items()) or "none"
    return NotFoundError(
        f"alias {alias!r} of model {model.name!r} {why}; its aliases: {listing}; "
        f"its versions: {_versions_text(model)}"
    )
