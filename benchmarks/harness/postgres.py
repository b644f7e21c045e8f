"""The PostgreSQL server of the tests and the reliability report, and throwaway schemas on it.

The server comes from TEST_POSTGRES_URL (default: the local trust-auth server). A scenario gets a fresh
schema (its URL sets the search_path), dropped afterwards, so scenarios never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import psycopg

PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL as libpq (psycopg.connect) takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://")


@cache
def postgres_unavailable(url: str = PG_URL) -> str | None:
    """Why PostgreSQL cannot be used, or None when it answers."""
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return f"no PostgreSQL at {url} ({str(exc).strip().splitlines()[0]}); set TEST_POSTGRES_URL"


def schema_url(base_url: str, schema: str) -> str:
    """The URL of `base_url` whose search_path is `schema`."""
    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}options=-csearch_path%3D{schema}"


@contextmanager
def postgres_schema(base_url: str = PG_URL, prefix: str = "t") -> Iterator[str]:
    """A URL whose search_path is a fresh, empty schema, dropped on exit."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_url(base_url), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema_url(base_url, schema)
    finally:
        with psycopg.connect(libpq_url(base_url), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
