"""requests' transport with every request paced where it leaves: once its connection is open,
right before it is written.

Spacing is thus measured on send times: neither a new connection's handshake nor a delay in
writing can shorten the gap to the next request, which is what a strict limiter counts.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from chat_assets.ujet.pacer import RequestPacer


class _PacedRequests:
    """Mixed into a urllib3 connection: waits for the pacer, writes, tells the pacer."""

    pacer: RequestPacer
    sock: Any

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is None:
            self.connect()  # type: ignore[attr-defined]
        self.pacer.wait()
        try:
            super().request(*args, **kwargs)  # type: ignore[misc]
        finally:
            self.pacer.sent()


def _paced_pools(pacer: RequestPacer) -> dict[str, type[HTTPConnectionPool]]:
    """Connection pool classes, per scheme, whose connections all wait for `pacer`. urllib3
    builds connections from a pool's class attribute, so each pacer has classes of its own."""

    class PacedHTTPConnection(_PacedRequests, HTTPConnection):
        pass

    class PacedHTTPSConnection(_PacedRequests, HTTPSConnection):
        pass

    PacedHTTPConnection.pacer = PacedHTTPSConnection.pacer = pacer

    class PacedHTTPConnectionPool(HTTPConnectionPool):
        ConnectionCls = PacedHTTPConnection

    class PacedHTTPSConnectionPool(HTTPSConnectionPool):
        ConnectionCls = PacedHTTPSConnection

    return {"http": PacedHTTPConnectionPool, "https": PacedHTTPSConnectionPool}


class _PacedAdapter(HTTPAdapter):
    def __init__(self, pacer: RequestPacer) -> None:
        self._pools = _paced_pools(pacer)
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools


def paced_session(pacer: RequestPacer) -> requests.Session:
    """A session whose every request, over http or https, waits for `pacer`."""
    session = requests.Session()
    adapter = _PacedAdapter(pacer)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
