"""The one Alembic migration tree for every SQL backend."""
