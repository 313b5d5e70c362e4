"""Reaching the warehouse: pooled engines, cursors, and errors that name where PostgreSQL
refused a write without quoting any value."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import sqlalchemy as sa

_engines: dict[str, sa.Engine] = {}


class WarehouseError(RuntimeError):
    """A frame does not fit its declared table; the message names columns and counts only."""


class WarehouseUnreachable(RuntimeError):
    """The warehouse refused or never answered a connection."""


def engine_for(url: str) -> sa.Engine:
    """One pooled engine per URL per process; a bare postgresql:// URL means psycopg 3."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    engine = _engines.get(url)
    if engine is None:
        engine = sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)
        _engines[url] = engine
    return engine


def check_reachable(engine: sa.Engine, url_from: str = "CHAT_ASSETS_DATABASE_URL") -> None:
    """Connect once, so an unreachable warehouse fails a run before its fetch, not after it.
    The error names the host, port and variable to check (`url_from`), never the URL's
    password."""
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except sa.exc.DBAPIError as exc:
        where = engine.url.host or "a local socket"
        if engine.url.port:
            where += f":{engine.url.port}"
        sqlstate = getattr(exc.orig, "sqlstate", None)
        raise WarehouseUnreachable(
            f"PostgreSQL at {where} (database {engine.url.database or '?'}) could not be "
            f"reached ({type(exc.orig).__name__}, SQLSTATE {sqlstate}): check "
            f"{url_from} (host, port, user, password) and that the server runs"
        ) from None


@contextmanager
def cursor_for(engine: sa.Engine, *, transaction: bool = False) -> Iterator[Any]:
    """A psycopg cursor on a pooled connection (in one transaction when asked), for COPY and
    plain SQL; closed, and the connection returned, when the block ends."""
    with engine.begin() if transaction else engine.connect() as connection:
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            without_jit(cursor)
            yield cursor
        finally:
            cursor.close()


def without_jit(executor: Any) -> None:
    """For the rest of the transaction of `executor` (a psycopg cursor or connection), no JIT
    compilation of queries. The flattening and the checks compile to large expressions over a
    day's rows: where the server has JIT, compiling them cost more than it saved, for the apply
    and for the checks alike."""
    executor.execute("SET LOCAL jit = off")


@contextmanager
def refusals_without_values(name: str) -> Iterator[None]:
    """PostgreSQL quotes row values in its errors (DETAIL: Failing row contains ..., COPY
    context); say which table, column and constraint refused, never what the value was."""
    try:
        yield
    except (psycopg.Error, sa.exc.DBAPIError) as error:
        cause = error.orig if isinstance(error, sa.exc.DBAPIError) else error
        diag = getattr(cause, "diag", None)
        where = ", ".join(
            f"{name} {value}"
            for name, value in (
                ("column", getattr(diag, "column_name", None)),
                ("constraint", getattr(diag, "constraint_name", None)),
            )
            if value
        )
        raise WarehouseError(
            f"{name}: PostgreSQL refused the write ({type(cause).__name__}, SQLSTATE "
            f"{getattr(cause, 'sqlstate', None)}{', ' + where if where else ''}); "
            "the transaction was rolled back and nothing changed"
        ) from None
