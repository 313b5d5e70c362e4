"""The PostgreSQL a benchmark runs on: the server at --database-url, or an embedded one whose
data lives in a temporary folder for the run."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from chat_assets_demo.embedded import embedded_database


@contextmanager
def database(url: str | None, name: str) -> Iterator[str]:
    """`url`, or the URL of an embedded server (`chat_assets_<name>_...`) while the block runs."""
    if url:
        yield url
        return
    with (
        tempfile.TemporaryDirectory(prefix=f"chat_assets_{name}_") as state,
        embedded_database(Path(state)) as embedded,
    ):
        yield embedded
