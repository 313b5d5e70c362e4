"""The Dagster instance's storage in PostgreSQL, keeping its connections open.

dagster-postgres opens a new connection for every query its run, event and schedule storages
make (SQLAlchemy's NullPool) outside the webserver. A run stores every event it logs, so it
opens a connection, a new server process and a password handshake, for each of them.
`PooledPostgresStorage` is the same storage with each of the three keeping a connection open
per process, checked before it is used.
dagster.yaml selects it (`storage: custom:`) with dagster-postgres' own `postgres_db` config.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import sqlalchemy as sa
from dagster._serdes import ConfigurableClassData
from dagster_postgres.storage import DagsterPostgresStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)

# Per storage and process: connections kept open, and how many more a burst of threads may
# open at once (closed again when handed back).
POOL_SIZE = 1
MAX_OVERFLOW = 4
# Connections older than this are replaced, so none outlives a server-side idle limit.
POOL_RECYCLE_SECONDS = 3600


class PooledPostgresStorage(DagsterPostgresStorage):
    """DagsterPostgresStorage whose storages keep a connection open instead of one per query."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,
    ) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        for storage in (self._run_storage, self._event_log_storage, self._schedule_storage):
            storage._engine.dispose()
            storage._engine = pooled_engine(storage._engine.url, token_provider)

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Any
    ) -> PooledPostgresStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )


def pooled_engine(url: sa.URL, token_provider: Any = None) -> sa.Engine:
    """An AUTOCOMMIT engine on url that keeps POOL_SIZE connections open, pinging each before
    use, so a server restart costs a reconnect rather than a failed query."""
    kwargs: dict[str, Any] = {
        "isolation_level": "AUTOCOMMIT",
        "pool_size": POOL_SIZE,
        "max_overflow": MAX_OVERFLOW,
        "pool_recycle": POOL_RECYCLE_SECONDS,
        "pool_pre_ping": True,
    }
    options = url.query.get("options")
    if options:
        kwargs["connect_args"] = {"options": options}
    engine = create_pg_engine(url.render_as_string(hide_password=False), token_provider, **kwargs)
    # A forked child must not share the parent's open connections: it opens its own.
    alive = weakref.ref(engine)
    os.register_at_fork(after_in_child=lambda: _forget_connections(alive))
    return engine


def _forget_connections(alive: weakref.ref[sa.Engine]) -> None:
    engine = alive()
    if engine is not None:
        engine.dispose(close=False)
