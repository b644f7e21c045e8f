"""Schema management: the packaged Alembic migrations, creating or upgrading the tables, checking them.

`create_tables` is the only way tables come to exist (also in tests), so a database is always stamped with
the revision its tables are at; `check_schema` is the read-only counterpart for commands that only read.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect
from sqlalchemy.exc import DBAPIError

from pipeline.errors import DatabaseNotFound, DatabaseUnavailable, SchemaMismatch, SchemaTooNew, SchemaTooOld
from pipeline.models import Base
from pipeline.store.engine import DatabaseCore, first_line, scrub

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent.parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations, optionally bound to a connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def _script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest migration this code knows."""
    head = _script_directory().get_current_head()
    if head is None:  # only a broken install has no migrations at all
        msg = f"no migrations in {MIGRATIONS_DIR}"
        raise RuntimeError(msg)
    return head


def _known_revisions() -> set[str]:
    return {script.revision for script in _script_directory().walk_revisions()}


# Errors of a migration step that finds its work already done: the stamp is older than the tables.
_ALREADY_THERE = ("already exists", "duplicate column")
_PG_DUPLICATE_SQLSTATES = ("42P07", "42701", "42710")  # duplicate table, column, object (index)


def _already_there(error: DBAPIError) -> bool:
    original = error.orig
    if getattr(original, "sqlstate", None) in _PG_DUPLICATE_SQLSTATES:
        return True
    return any(t in str(original).lower() for t in _ALREADY_THERE)


class SchemaMixin(DatabaseCore):
    """Schema creation, upgrade and checks of `DatabaseService`."""

    def create_tables(self) -> None:
        """Create or upgrade the schema to the newest migration (safe on an existing database).

        Creates a new SQLite file and its folder. Refuses (SchemaTooNew) a database migrated by a newer
        crypto-pipeline, and reports (SchemaMismatch) a stamp older than the tables, whose upgrade would
        fail on "table already exists"; the failed upgrade is rolled back as a whole.
        """
        if self.database_file is not None:
            try:
                self.database_file.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # the same cause SQLite reports as "unable to open database file"
                msg = (
                    f"database unavailable: cannot create the folder of {self.database_file} ({exc.strerror})"
                )
                raise DatabaseUnavailable(msg) from None
        try:
            with self.transaction() as conn:
                self._refuse_unknown_revision(MigrationContext.configure(conn).get_current_heads())
                command.upgrade(alembic_config(conn), "head")
        except (DBAPIError, KeyError) as exc:
            # A step that finds its work done ("already exists"), or a rename that finds its old name gone
            # (SQLite's batch mode raises KeyError for the column) on tables that are already at head: the
            # stamp is older than the tables.
            already = isinstance(exc, DBAPIError) and _already_there(exc)
            if not already and not self._tables_at_head():
                raise
            raise self._stamp_mismatch(exc) from None
        logger.debug("database schema is at %s", self.schema_revision())

    def check_schema(self) -> None:
        """For commands that only read: the database exists and is at the newest revision. Creates and
        changes nothing (not even the SQLite file or its folder)."""
        if self.database_file is not None and not self.database_file.exists():
            msg = f"no database at {self.database_file}; run crypto-pipeline init-db"
            raise DatabaseNotFound(msg)
        with self.engine.connect() as conn:
            heads = MigrationContext.configure(conn).get_current_heads()
        self._refuse_unknown_revision(heads)
        head = head_revision()
        if heads == (head,):
            return
        if not heads:
            msg = (
                f"the database at {self.location} has no crypto-pipeline schema yet;"
                " run crypto-pipeline init-db"
            )
        else:
            msg = (
                f"the database at {self.location} is at schema revision {', '.join(heads)}, older than this"
                f" crypto-pipeline ({head}); run crypto-pipeline init-db"
            )
        raise SchemaTooOld(msg)

    def _refuse_unknown_revision(self, heads: tuple[str, ...]) -> None:
        unknown = [h for h in heads if h not in _known_revisions()]
        if unknown:
            msg = (
                f"the database at {self.location} is at schema revision {', '.join(unknown)}, newer than this"
                f" crypto-pipeline knows (newest {head_revision()}); upgrade crypto-pipeline"
            )
            raise SchemaTooNew(msg)

    def _tables_at_head(self) -> bool:
        """Whether the tables are those of the newest migration, whatever the stamp says."""
        with self.engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return tables >= set(Base.metadata.tables) and not compare_metadata(context, Base.metadata)

    def _stamp_mismatch(self, error: DBAPIError | KeyError) -> SchemaMismatch:
        """Explain an upgrade that found its tables already there, and how to fix the stamp."""
        head = head_revision()
        with self.engine.connect() as conn:
            stamp = MigrationContext.configure(conn).get_current_revision()
        at_head = self._tables_at_head()
        cause = error.orig if isinstance(error, DBAPIError) else None
        said = f"revision {stamp}" if stamp else "no revision"
        head_text = (
            f"the schema stamp (alembic_version: {said}) does not match the tables of {self.location}"
            f" ({first_line(cause or error)})"
        )
        if at_head:
            fix = (
                f"the tables are already at {head}, so set the stamp:"
                f" UPDATE alembic_version SET version_num = '{head}'"
            )
            if stamp is None:
                fix = f"the tables are already at {head}: INSERT INTO alembic_version VALUES ('{head}')"
        else:
            fix = "restore a backup, or set alembic_version to the revision the tables are at"
        return SchemaMismatch(scrub(f"{head_text}; {fix}", self.engine.url))

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at, or None when it was never migrated."""
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
