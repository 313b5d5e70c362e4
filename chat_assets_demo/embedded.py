"""An embedded PostgreSQL (the `pgserver` wheel) for running without a database server."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_servers: dict[Path, Any] = {}
_lock = threading.Lock()


def embedded_database_url(state_dir: Path, *, keep_running: bool = False) -> str:
    """Start (or join) the embedded server whose data lives in `state_dir/postgres`.

    The server stops when the last process holding it exits, unless `keep_running`.
    """
    import pgserver  # imported late: only the embedded path needs it

    pgdata = (state_dir / "postgres").resolve()
    with _lock:
        server = _servers.get(pgdata)
        if server is None:
            pgdata.parent.mkdir(parents=True, exist_ok=True)
            server = pgserver.get_server(pgdata, cleanup_mode=None if keep_running else "stop")
            _servers[pgdata] = server
            url = _psycopg_url(server.get_uri())
            log.info("Embedded PostgreSQL is serving %s", url)
            print(f"chat_assets: embedded PostgreSQL at {url}", flush=True)
    return _psycopg_url(server.get_uri())


def _psycopg_url(uri: str) -> str:
    """pgserver hands out `postgresql://postgres:@/postgres?host=...`; we speak psycopg 3."""
    rest = uri.split("://", 1)[1].replace("postgres:@", "postgres@", 1)
    return f"postgresql+psycopg://{rest}"
