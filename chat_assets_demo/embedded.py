"""An embedded PostgreSQL (the `pgserver` wheel) for running without a database server."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

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
            _forget_dead_holders(pgdata)
            server = pgserver.get_server(pgdata, cleanup_mode=None if keep_running else "stop")
            _servers[pgdata] = server
            url = _psycopg_url(server.get_uri())
            log.info("Embedded PostgreSQL is serving %s", url)
            print(
                f"chat_assets: embedded PostgreSQL at {url} (running until no process uses "
                f'it; psql: psql "host={pgdata} user=postgres dbname=postgres")',
                flush=True,
            )
    return _psycopg_url(server.get_uri())


@contextmanager
def embedded_database(state_dir: Path) -> Iterator[str]:
    """The URL of the embedded server in `state_dir`, for the `with` block: on leaving, this
    process lets go of the server, which stops if no other process holds it. A temporary
    `state_dir` can then be deleted; deleting it under a running server fails."""
    url = embedded_database_url(state_dir)
    try:
        yield url
    finally:
        release(state_dir)


def release(state_dir: Path) -> bool:
    """This process lets go of the embedded server in `state_dir`, which stops if no other
    process holds it; whether it is stopped now."""
    pgdata = (state_dir / "postgres").resolve()
    with _lock:
        server = _servers.pop(pgdata, None)
    if server is not None:
        server.cleanup()
    return not (pgdata / "postmaster.pid").exists()


def _forget_dead_holders(pgdata: Path) -> None:
    """pgserver stops the server when its last holder exits, counting holders by pid in a file;
    a holder killed outright never takes itself off, and the server would never stop again."""
    holders = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(holders.read_text())
    except (OSError, ValueError):
        return
    if isinstance(pids, list):
        alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != pids:
            holders.write_text(json.dumps(alive))


def _psycopg_url(uri: str) -> str:
    """pgserver hands out `postgresql://postgres:@/postgres?host=...`; we speak psycopg 3."""
    rest = uri.split("://", 1)[1].replace("postgres:@", "postgres@", 1)
    return f"postgresql+psycopg://{rest}"
