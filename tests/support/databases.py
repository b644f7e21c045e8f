"""Migrated test databases, fast: the schema is migrated once per session and copied into each test's.

Running the Alembic migrations costs about 0.25 s on SQLite and 0.7 s on PostgreSQL, and hundreds of tests
want a migrated, empty database. So each dialect is migrated once, into a template, by the real
`DatabaseService.create_tables()`, and a test's database is a copy of that template:

- SQLite: the template file is copied to the test's path (before any connection opens it).
- PostgreSQL: the template schema is dumped once (`pg_dump`, tables, sequences, seed rows and the Alembic
  stamp) and the dump is replayed into the test's fresh schema. The first replay is dumped again and
  compared with the template's dump (line for line, but for the form PostgreSQL prints a partial index's
  predicate in); if they differ, or pg_dump is missing or older than the server, every test migrates with
  Alembic as before.

On PostgreSQL even a replay costs a CREATE SCHEMA, 700 lines of DDL and a DROP SCHEMA per test, so a test
that asks for the `db` fixture gets a migrated schema from a pool (`PostgresPool`) instead: after the test
its rows are deleted and the template's seed rows and sequence values restored, provided its structure is
still the template's (tables, columns, constraints, indexes, triggers, functions); a schema a test altered
is dropped.

Tests of the migrations themselves call `create_tables()` on an empty database (the `database_url`
fixture without `db`), which these copies never replace.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from benchmarks.harness.postgres import PG_URL, libpq_url, postgres_schema, postgres_unavailable, schema_url
from pipeline.config import Settings
from pipeline.database import DatabaseService
from tests.support.settings import make_settings, simulator_settings

# Set by .ci/run: a PostgreSQL case fails, rather than skips, when no server answers.
REQUIRE_PG = os.environ.get("REQUIRE_POSTGRES") == "1"

_TEMPLATES = tempfile.TemporaryDirectory(prefix="pipeline-test-templates-")
_SCHEMA_TOKEN = "@schema@"
# Pooled schemas that hold an untouched copy of the template: `migrated()` has nothing to do for them.
_PRISTINE: set[str] = set()


def require_postgres() -> None:
    """Skip the test when no PostgreSQL server answers (fail it under REQUIRE_POSTGRES=1)."""
    reason = postgres_unavailable()
    if reason:
        if REQUIRE_PG:
            pytest.fail(reason)
        pytest.skip(reason)


def migrated(settings: Settings) -> DatabaseService:
    """A service on `settings.DATABASE_URL` holding the newest schema and the seed coins.

    The database must be new (a SQLite path with no file yet, or an empty PostgreSQL schema); anything
    else is migrated with `create_tables()`, which is what a copy of the template stands for.
    """
    url = settings.DATABASE_URL
    schema = _search_path(url)
    if schema is not None and schema in _PRISTINE:  # a pooled copy of the template, untouched yet
        _PRISTINE.discard(schema)
        return DatabaseService(settings=settings)
    if not _copy_template(url):
        service = DatabaseService(settings=settings)
        service.create_tables()
        return service
    return DatabaseService(settings=settings)


@contextmanager
def migrated_database(settings: Settings) -> Iterator[DatabaseService]:
    """`migrated(settings)`, disposed on exit."""
    service = migrated(settings)
    try:
        yield service
    finally:
        service.dispose()


@contextmanager
def simulated_database(
    database_url: str, sim: object, **overrides: object
) -> Iterator[tuple[Settings, DatabaseService]]:
    """Settings pointing both APIs at a simulator, and a migrated database, disposed on exit."""
    settings = simulator_settings(database_url, sim, **overrides)
    with migrated_database(settings) as service:
        yield settings, service


# ------------------------------------------------------------------------------------------------ copies


def _copy_template(url: str) -> bool:
    """Copy the template into the new database at `url`; False when it must be migrated instead."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        target = Path(parsed.database or "")
        if not parsed.database or parsed.database == ":memory:" or target.exists():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_sqlite_template(), target)
        return True
    if parsed.get_backend_name() == "postgresql":
        schema = _search_path(url)
        script = _postgres_script() if schema else None
        if script is None or not _schema_is_empty(url, schema):
            return False
        _replay(url, script, schema)
        return True
    return False


@cache
def _sqlite_template() -> Path:
    path = Path(_TEMPLATES.name) / "template.db"
    service = DatabaseService(settings=make_settings(f"sqlite:///{path}"))
    service.create_tables()
    service.dispose()
    leftovers = [p for p in path.parent.iterdir() if p != path]
    assert not leftovers, f"the SQLite template is not self-contained: {leftovers}"
    return path


def _search_path(url: str) -> str | None:
    """The schema a test URL points at (`options=-csearch_path=SCHEMA`), if any."""
    options = make_url(url).query.get("options")
    if isinstance(options, str) and options.startswith("-csearch_path="):
        return options.removeprefix("-csearch_path=")
    return None


@cache
def _postgres_script() -> str | None:
    """The template schema as a replayable SQL script (schema name as a token), or None if unusable."""
    if shutil.which("pg_dump") is None:
        return None
    try:
        with postgres_schema(PG_URL, prefix="tpl") as url:
            schema = _search_path(url)
            assert schema is not None
            service = DatabaseService(settings=make_settings(url))
            service.create_tables()
            service.dispose()
            script = _dump(schema).replace(schema, _SCHEMA_TOKEN)
        # Check once that a replay is the template: its own dump must be the same script.
        with postgres_schema(PG_URL, prefix="chk") as url:
            probe = _search_path(url)
            assert probe is not None
            _replay(url, script, probe)
            if not _same_schema(script, _dump(probe).replace(probe, _SCHEMA_TOKEN)):
                return None
    except (OSError, subprocess.CalledProcessError, psycopg.Error):
        return None
    return script


def _same_schema(template: str, replayed: str) -> bool:
    """The two dumps are line for line the same, except that PostgreSQL may print the predicate of a
    partial index it parsed back in another (equivalent) form: `x::text = ANY ((ARRAY['a'::varchar])::
    text[])` comes back as `x::text = ANY (ARRAY[('a'::varchar)::text])`. Such a line must still name the
    same index, table and columns, and its predicate the same literals."""
    ours, theirs = template.splitlines(), replayed.splitlines()
    if len(ours) != len(theirs):
        return False
    for mine, other in zip(ours, theirs, strict=True):
        if mine == other:
            continue
        if not (mine.startswith("CREATE") and " INDEX " in mine and " WHERE " in mine and " WHERE " in other):
            return False
        head, predicate = mine.split(" WHERE ", 1)
        other_head, other_predicate = other.split(" WHERE ", 1)
        if head != other_head or _literals(predicate) != _literals(other_predicate):
            return False
    return True


def _literals(predicate: str) -> list[str]:
    """The column a predicate starts from and the quoted literals it compares it with."""
    return re.findall(r"^\(\((\w+)\)", predicate) + re.findall(r"'[^']*'", predicate)


def _dump(schema: str) -> str:
    """pg_dump of one schema: DDL and rows as INSERTs, without owners, grants, psql meta-commands
    (`\\restrict`) or the schema's own CREATE (the test's schema exists already)."""
    done = subprocess.run(
        ["pg_dump", "--dbname", libpq_url(PG_URL), "--schema", schema, "--no-owner", "--no-privileges",
         "--no-comments", "--inserts"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if not line.startswith(("\\", "CREATE SCHEMA"))]
    return "\n".join(lines)


def _schema_is_empty(url: str, schema: str) -> bool:
    with psycopg.connect(libpq_url(url)) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = %s",
            (schema,),
        ).fetchone()
    return found is not None and found[0] == 0


def _replay(url: str, script: str, schema: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(script.replace(_SCHEMA_TOKEN, schema))


# ------------------------------------------------------------------------------------------------ reuse

# The structure of a schema: what a test could alter that emptying the tables would not restore.
_STRUCTURE = """
WITH ns AS MATERIALIZED (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = %(schema)s),
rels AS MATERIALIZED (
    SELECT c.oid, c.relname, c.relkind, c.relrowsecurity FROM pg_catalog.pg_class c
    WHERE c.relnamespace = (SELECT oid FROM ns)
)
SELECT md5(coalesce(string_agg(item, E'\\n' ORDER BY item), '')) FROM (
    SELECT 'rel ' || relname || ' ' || relkind::text || ' ' || relrowsecurity::text AS item FROM rels
    UNION ALL
    SELECT 'col ' || r.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' '
        || a.attnotnull::text || ' ' || coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), '')
    FROM rels r
    JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    UNION ALL
    SELECT 'con ' || conname || ' ' || pg_catalog.pg_get_constraintdef(oid)
    FROM pg_catalog.pg_constraint WHERE connamespace = (SELECT oid FROM ns)
    UNION ALL
    SELECT 'idx ' || pg_catalog.pg_get_indexdef(r.oid) FROM rels r WHERE r.relkind = 'i'
    UNION ALL
    SELECT 'trg ' || t.tgname FROM rels r JOIN pg_catalog.pg_trigger t ON t.tgrelid = r.oid
    WHERE NOT t.tgisinternal
    UNION ALL
    SELECT 'fn ' || proname || '(' || pg_catalog.pg_get_function_identity_arguments(oid) || ')'
    FROM pg_catalog.pg_proc WHERE pronamespace = (SELECT oid FROM ns)
    UNION ALL
    SELECT 'typ ' || typname FROM pg_catalog.pg_type WHERE typnamespace = (SELECT oid FROM ns)
) AS structure
"""


class PostgresPool:
    """Migrated PostgreSQL schemas, reused from test to test (see the module's docstring)."""

    def __init__(self) -> None:
        self._free: list[tuple[str, str]] = []  # (schema, its structure when it was a fresh copy)
        self._taken: dict[str, str] = {}
        self._conn: psycopg.Connection | None = None  # one warm session: a new one reads the catalogs cold

    def _session(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(libpq_url(PG_URL), autocommit=True)
            self._conn.execute("SET lock_timeout = '5s'")  # a session the test left open: drop instead
            self._conn.execute("SET jit = off")  # churned catalogs' estimates would JIT-compile the check
        return self._conn

    def take(self) -> str | None:
        """The URL of a clean, migrated schema, or None when the template cannot be replayed."""
        script = _postgres_script()
        if script is None:
            return None
        if self._free:
            schema, structure = self._free.pop()
        else:
            schema = f"p_{uuid.uuid4().hex[:12]}"
            conn = self._session()
            conn.execute(f"CREATE SCHEMA {schema}")
            conn.execute(script.replace(_SCHEMA_TOKEN, schema))
            structure = _structure(conn, schema)
        self._taken[schema] = structure
        _PRISTINE.add(schema)
        return schema_url(PG_URL, schema)

    def give_back(self, url: str) -> None:
        """Empty the schema and keep it for the next test, or drop it if the test changed its structure."""
        schema = _search_path(url)
        assert schema is not None
        structure = self._taken.pop(schema)
        _PRISTINE.discard(schema)
        try:
            conn = self._session()
            if _structure(conn, schema) == structure:
                _reset_rows(conn, schema)
                self._free.append((schema, structure))
                return
        except psycopg.Error:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
        _drop_schema(schema)

    def close(self) -> None:
        """Drop every pooled schema (the end of the session)."""
        if self._conn is not None:
            self._conn.close()
        for schema, _ in self._free:
            _drop_schema(schema)
        self._free.clear()


def _structure(conn: psycopg.Connection, schema: str) -> str:
    found = conn.execute(_STRUCTURE, {"schema": schema}).fetchone()
    assert found is not None
    return str(found[0])


def _reset_rows(conn: psycopg.Connection, schema: str) -> None:
    """Every table back to the template's rows (the seed coins, the Alembic stamp) and every sequence to
    its value, in one transaction."""
    tables = [
        row[0]
        for row in conn.execute(
            "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = %s", (schema,)
        )
    ]
    with conn.transaction():
        # Foreign keys are not checked while the rows go (superusers only; otherwise TRUNCATE, slower).
        try:
            with conn.transaction():
                conn.execute("SET LOCAL session_replication_role = replica")
                conn.execute("; ".join(f'DELETE FROM {schema}."{table}"' for table in tables))
        except psycopg.errors.InsufficientPrivilege:
            names = ", ".join(f'{schema}."{table}"' for table in tables)
            conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        conn.execute(_template_rows().replace(_SCHEMA_TOKEN, schema))


@cache
def _template_rows() -> str:
    """The statements of the template's dump that put rows and sequence values in place."""
    script = _postgres_script()
    assert script is not None
    statements = []
    for chunk in script.split(";\n"):
        statement = "\n".join(line for line in chunk.splitlines() if not line.startswith("--")).strip()
        if statement.startswith(("INSERT INTO ", "SELECT pg_catalog.setval(")):
            statements.append(statement)
    return ";\n".join(statements) + ";"


def _drop_schema(schema: str) -> None:
    with psycopg.connect(libpq_url(PG_URL), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
