"""Request turns: one UJET account's request starts spaced across every process fetching from it.

Each process paces its own threads (`chat_assets.ujet.pacer`). Runs in other processes (a
backfill's days, the daily run beside them) share the account's budget through the warehouse
they all reach: one row per account holds when its last request started, read and written under
an advisory lock that is held only while one request is being sent. The connection is in
autocommit mode and the lock is its session's, so no transaction stays open, and a process that
dies lets go of the lock with its connection.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from psycopg import sql

from chat_assets.warehouse.bookkeeping import REQUEST_STARTS_TABLE, ensure_bookkeeping
from chat_assets.warehouse.connection import cursor_for
from chat_assets.warehouse.ddl import DDL_LOCK, ensure_schema
from chat_assets.warehouse.sql_parts import qualified_name

# First key of the advisory locks that hand out one account's turns.
_TURN_LOCK = 7_317_004


class WarehouseTurns:
    """`chat_assets.ujet.pacer.SharedTurns` for one account, kept in the warehouse."""

    def __init__(self, cursor: Any, schema: str, account: str) -> None:
        self._cursor = cursor  # a psycopg cursor of a connection in autocommit mode
        self._account = account
        digest = hashlib.blake2b(account.encode(), digest_size=4).digest()
        self._key = (_TURN_LOCK, int.from_bytes(digest, "big", signed=True))
        self._table = qualified_name(schema, REQUEST_STARTS_TABLE)
        self._held = threading.Lock()  # one thread of the process at a time holds the turn

    def _run(self, statement: str, *values: Any) -> Any:
        self._cursor.execute(sql.SQL(statement).format(table=self._table), values)
        return self._cursor.fetchone() if self._cursor.description else None

    def begin(self, interval: float) -> None:
        self._held.acquire()
        try:
            self._run("SELECT pg_advisory_lock(%s, %s)", *self._key)
            row = self._run(
                "SELECT extract(epoch FROM clock_timestamp() - last_start) FROM {table}"
                " WHERE account = %s",
                self._account,
            )
            if row is not None and row[0] < interval:
                time.sleep(interval - float(row[0]))
        except BaseException:
            self._held.release()
            raise

    def end(self) -> None:
        try:
            self._run(
                "INSERT INTO {table} (account, last_start) VALUES (%s, clock_timestamp())"
                " ON CONFLICT (account) DO UPDATE SET last_start = EXCLUDED.last_start",
                self._account,
            )
            self._run("SELECT pg_advisory_unlock(%s, %s)", *self._key)
        finally:
            self._held.release()


@contextmanager
def request_turns(engine: sa.Engine, schema: str, account: str) -> Iterator[WarehouseTurns]:
    """The account's turns for the block, on a connection of their own."""
    with cursor_for(engine, transaction=True) as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
        ensure_schema(cursor, schema)
        ensure_bookkeeping(cursor, schema, REQUEST_STARTS_TABLE)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            yield WarehouseTurns(cursor, schema, account)
        finally:
            cursor.close()
