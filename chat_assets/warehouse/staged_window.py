"""A window's rows staged on local disk while they arrive, for the IO manager to land at once.

A day's fetch takes as long as UJET's request budget says; the warehouse must not hold a
transaction open meanwhile (an open transaction holds back VACUUM for everyone sharing the
server). So rows leave the process's memory page by page into a file, in PostgreSQL's COPY text
format, and the window is replaced from it in one short transaction at the end
(`windows.land_staged`). The file lives in the system's temporary folder (TMPDIR) and is
removed once landed or abandoned.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import orjson

from chat_assets.tables import Table

# COPY's text format escapes these four; each is looked for first, since most text holds none
# and a search costs far less than a rewrite.
_ESCAPES = (("\\", "\\\\"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))


def _json(value: dict[str, Any] | list[Any]) -> str:
    """Compact JSON, written in C; what orjson refuses (an integer beyond 64 bits, which a page
    of the API may hold, or a dict key that is no string) is written by the standard library,
    digit for digit. A float too large for a double (`1e400` in a page) is written as null, as
    the pages' NaN and Infinity are read: JSON and PostgreSQL's jsonb have no infinity."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def copy_text(value: Any) -> str:
    """One value as a COPY text field: NULL as \\N, JSON for dicts and lists, escaped text."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (dict, list)):
        text = _json(value)
    elif isinstance(value, (datetime, date)):
        text = value.isoformat()
    else:
        text = str(value)
    for char, escaped in _ESCAPES:
        if char in text:
            text = text.replace(char, escaped)
    return text


@dataclass(frozen=True)
class StagedWindow:
    """An asset's output for a window whose rows were staged while they arrived: the IO manager
    replaces the window with them in one transaction. Rows may repeat `one_row_per` and lie
    outside the window: per value of those columns, the row with the newest time column is
    kept, if inside the window."""

    path: Path
    rows: int
    one_row_per: tuple[str, ...]


class WindowStage:
    """Writes a window's rows (tuples in the table's declared column order) to a staging file;
    `staged()` names it for the IO manager. Leaving the block removes the file."""

    def __init__(self, table: Table, one_row_per: tuple[str, ...]) -> None:
        self._table = table
        self._one_row_per = one_row_per
        handle, name = tempfile.mkstemp(prefix=f"chat_assets_{table.name}_", suffix=".copy")
        self._path = Path(name)
        self._file: BinaryIO = os.fdopen(handle, "wb")
        self._rows = 0

    def write(self, rows: Iterable[tuple[Any, ...]]) -> None:
        lines = ["\t".join(map(copy_text, row)) + "\n" for row in rows]
        self._rows += len(lines)
        self._file.write("".join(lines).encode("utf-8"))

    def staged(self) -> StagedWindow:
        """The rows written so far, flushed to the file."""
        self._file.flush()
        return StagedWindow(self._path, self._rows, self._one_row_per)

    def __enter__(self) -> WindowStage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._file.close()
        self._path.unlink(missing_ok=True)
