"""Request turns: one UJET account's request starts spaced across every process fetching from it.

Each process paces its own threads (`chat_assets.ujet.pacer`). Runs in other processes (a
backfill's days, the daily run beside them) share the account's budget through the warehouse
they all reach: one row per account holds when its last request started, read and written under
an advisory lock that is held only while one request is being sent. The connection is in
autocommit mode and the lock is its session's, so no transaction stays open, and a process that
dies lets go of the lock with its connection.

Older fetches go first. Taking turns evenly would keep the days of a backfill in step: they
would end their fetches together and flatten together while the budget sat idle. So each fetch
holds a second advisory lock while it runs, keyed by the second it began, and a fetch given the
turn while an older one waits for it hands the turn over and queues again. A younger fetch
still takes every turn the older ones leave (when all their requests are on their way), so the
budget stays in use, and the older fetch ends first, to flatten while the next ones fetch.
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
# Fetches are keyed by the second they began, counted from here (an int4 lasts beyond 2090).
_FETCH_EPOCH = "2024-01-01T00:00:00Z"


def _lock_key(*parts: str) -> int:
    """An int4 advisory lock key for these parts."""
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


# Whether a fetch of the account older than this connection's waits for the turn: an ungranted
# turn lock of a session that holds an older fetch lock (older by the second it began, then by
# its server process id).
_OLDER_WAITING = """
SELECT EXISTS (
    SELECT FROM pg_locks AS turn JOIN pg_locks AS began ON began.pid = turn.pid
    WHERE turn.locktype = 'advisory' AND NOT turn.granted AND turn.objsubid = 2
      AND turn.classid = %(turn_class)s::int4::oid AND turn.objid = %(turn_object)s::int4::oid
      AND began.locktype = 'advisory' AND began.granted AND began.objsubid = 2
      AND began.classid = %(fetch_class)s::int4::oid
      AND (began.objid, began.pid) < (%(began)s::int4::oid, pg_backend_pid())
)
"""


class WarehouseTurns:
    """`chat_assets.ujet.pacer.SharedTurns` for one account, kept in the warehouse."""

    def __init__(self, cursor: Any, schema: str, account: str, fetch_lock: tuple[int, int]) -> None:
        self._cursor = cursor  # a psycopg cursor of a connection in autocommit mode
        self._account = account
        self._key = (_TURN_LOCK, _lock_key(account))
        self._older = {
            "turn_class": self._key[0],
            "turn_object": self._key[1],
            "fetch_class": fetch_lock[0],
            "began": fetch_lock[1],
        }
        self._table = qualified_name(schema, REQUEST_STARTS_TABLE)
        self._held = threading.Lock()  # one thread of the process at a time holds the turn

    def _run(self, statement: str, *values: Any) -> Any:
        self._cursor.execute(sql.SQL(statement).format(table=self._table), values)
        return self._cursor.fetchone() if self._cursor.description else None

    def begin(self, interval: float) -> None:
        self._held.acquire()
        locked = False
        try:
            free = self._run("SELECT pg_try_advisory_lock(%s, %s)", *self._key)[0]
            if not free:
                self._run("SELECT pg_advisory_lock(%s, %s)", *self._key)
            locked = True
            # An older fetch is looked for once the turn is due: whoever waited for the lock
            # or for the spacing may have been joined meanwhile by an older fetch's request,
            # whose lane queues only as its own turn ends. A turn free and due at once had
            # nobody waiting (a waiter is given the turn as it is let go), so it skips
            # reading pg_locks, which is not free.
            while True:
                waited = self._spaced(interval) or not free
                if not waited or not self._older_waiting():
                    break
                # Let the older fetch have this turn (it is granted the lock at once, and the
                # spacing is already kept), and wait for the next.
                self._run("SELECT pg_advisory_unlock(%s, %s)", *self._key)
                locked = False
                self._run("SELECT pg_advisory_lock(%s, %s)", *self._key)
                locked = True
                free = False
        except BaseException:
            try:
                if locked:  # the turn is not kept by a caller that will never end it
                    self._run("SELECT pg_advisory_unlock(%s, %s)", *self._key)
            finally:
                self._held.release()
            raise

    def _spaced(self, interval: float) -> bool:
        """Wait until `interval` has passed since the account's last request started; whether
        that took a wait."""
        row = self._run(
            "SELECT extract(epoch FROM clock_timestamp() - last_start) FROM {table}"
            " WHERE account = %s",
            self._account,
        )
        if row is None or row[0] >= interval:
            return False
        time.sleep(interval - float(row[0]))
        return True

    def _older_waiting(self) -> bool:
        return bool(self._cursor.execute(_OLDER_WAITING, self._older).fetchone()[0])

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
            began = cursor.execute(
                "SELECT extract(epoch FROM clock_timestamp() - %s::timestamptz)::int4",
                (_FETCH_EPOCH,),
            ).fetchone()[0]
            fetch_lock = (_lock_key("fetch", account), began)
            # Shared: fetches that began in the same second hold it side by side.
            cursor.execute("SELECT pg_advisory_lock_shared(%s, %s)", fetch_lock)
            try:
                yield WarehouseTurns(cursor, schema, account, fetch_lock)
            finally:
                # The connection goes back to the engine's pool, holding its session's locks.
                cursor.execute("SELECT pg_advisory_unlock_shared(%s, %s)", fetch_lock)
        finally:
            cursor.close()
