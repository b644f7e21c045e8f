"""Alembic environment: migrates the connection DatabaseService hands over, or DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from pipeline.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate on the given connection, or open one from the settings."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from pipeline.config import get_settings
    from pipeline.store.engine import prepare_url

    engine = create_engine(prepare_url(get_settings().DATABASE_URL))
    with engine.connect() as conn:
        _run(conn)


run_migrations_online()
