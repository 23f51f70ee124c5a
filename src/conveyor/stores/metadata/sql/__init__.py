"""One SQLAlchemy implementation of the metadata store for SQLite and PostgreSQL."""
