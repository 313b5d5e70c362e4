"""Chats in, typed DataFrames out: pure functions driven by the table declarations.

UJET's payloads drift (numbers as strings, 0/1 for booleans, null objects, placeholder values),
so every value is coerced to its declared type; a value that cannot be becomes NULL and is
counted per column, never silently dropped with its row.
"""

from __future__ import annotations

import gc
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from chat_assets.tables import Column, PgType, Table

VERSION_TIME_DTYPE = "datetime64[us, UTC]"


@dataclass
class Flattened:
    """One table's rows for a batch of chats, and the chat versions they stand for."""

    table: Table
    rows: pd.DataFrame
    # (chat_id, updated_at) of every chat in the batch, including chats with no rows here, so a
    # newer version with an empty list still replaces an older one's rows.
    versions: pd.DataFrame
    # Non-null source values that could not become the declared type, per column.
    coercion_failures: dict[str, int] = field(default_factory=dict)


def newest_versions(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per chat id: the newest `updated_at` (ties: the later record)."""
    kept: dict[Any, tuple[pd.Timestamp, dict[str, Any]]] = {}
    for record in records:
        stamp = pd.Timestamp(record["updated_at"])
        previous = kept.get(record["id"])
        if previous is None or stamp >= previous[0]:
            kept[record["id"]] = (stamp, record)
    return [record for _, record in kept.values()]


def flatten(records: Sequence[dict[str, Any]], table: Table) -> Flattened:
    """The table's rows for `records` (one version per chat: see `newest_versions`)."""
    chats = newest_versions(records)
    rows, failures = table_rows(chats, table)
    versions = pd.DataFrame(
        {
            "chat_id": pd.array([int(c["id"]) for c in chats], dtype="Int64"),
            "updated_at": pd.to_datetime(
                [c["updated_at"] for c in chats], utc=True, format="ISO8601"
            ).astype(VERSION_TIME_DTYPE),
        }
    )
    return Flattened(table, rows, versions, failures)


def table_rows(
    chats: Sequence[dict[str, Any]], table: Table
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The table's typed rows for chats already reduced to one version each."""
    rows = _RowObjects.of(chats, table.items)
    failures: dict[str, int] = {}
    if rows.malformed_lists:
        failures[str(table.items)] = rows.malformed_lists
    data = {}
    for column in table.columns:
        data[column.name], failed = coerce(rows.values(column.source or column.name), column)
        if failed:
            failures[column.name] = failed
    return pd.DataFrame(data, columns=table.column_names), failures


def flatten_raw(
    raw: pd.DataFrame, tables: Sequence[Table], chunk_size: int = 5_000
) -> list[Flattened]:
    """Every table's rows from a raw_chats frame, parsing each payload once, chunk by chunk.

    A range of partitions can hold several versions of a chat: the newest `updated_at` wins
    (ties: the later row). Payloads may be JSON text or parsed objects. Parsed chats live only
    for their chunk, so memory stays near the size of the output.
    """
    newest = raw.sort_values("updated_at", kind="stable").drop_duplicates("id", keep="last")
    versions = pd.DataFrame(
        {
            "chat_id": newest["id"].astype("Int64").to_numpy(),
            "updated_at": newest["updated_at"].astype(VERSION_TIME_DTYPE).to_numpy(),
        }
    )
    parts: dict[str, list[pd.DataFrame]] = {t.name: [] for t in tables}
    failures: dict[str, dict[str, int]] = {t.name: {} for t in tables}
    payloads = newest["payload"].tolist()
    with _collection_paused():
        for offset in range(0, len(payloads), chunk_size):
            chats = [
                json.loads(p) if isinstance(p, str | bytes) else p
                for p in payloads[offset : offset + chunk_size]
            ]
            for table in tables:
                rows, failed = table_rows(chats, table)
                parts[table.name].append(rows)
                for column, n in failed.items():
                    failures[table.name][column] = failures[table.name].get(column, 0) + n
            del chats
    return [
        Flattened(table, _concat(parts[table.name], table), versions, failures[table.name])
        for table in tables
    ]


def _concat(frames: list[pd.DataFrame], table: Table) -> pd.DataFrame:
    if not frames:
        return table_rows([], table)[0]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


@contextmanager
def _collection_paused() -> Iterator[None]:
    """Parsing builds millions of small objects; repeated cyclic GC passes over them cost more
    than the parse. Nothing here makes reference cycles, so pause the collector meanwhile."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class _RowObjects:
    """The objects a table's rows come from: the chats themselves, or the items of one list."""

    chats: Sequence[dict[str, Any]]
    items: list[dict[str, Any]]
    # For a child table, how many rows each chat gives (None: one row per chat).
    per_chat: list[int] | None
    malformed_lists: int = 0

    @classmethod
    def of(cls, chats: Sequence[dict[str, Any]], list_path: str | None) -> _RowObjects:
        if list_path is None:
            return cls(chats, list(chats), None)
        items: list[dict[str, Any]] = []
        per_chat: list[int] = []
        malformed = 0
        for chat in chats:
            children = chat.get(list_path)
            if not isinstance(children, list):
                malformed += children is not None
                children = []
            items.extend(c if isinstance(c, dict) else {} for c in children)
            per_chat.append(len(children))
        return cls(chats, items, per_chat, malformed)

    def values(self, source: str) -> list[Any]:
        """The raw values of a column source (see `Column`), one per row."""
        if source == "position":
            return [p for n in (self.per_chat or []) for p in range(n)]
        kind, _, path = source.rpartition(":")
        if kind == "chat":
            values = _read(self.chats, path)
            if self.per_chat is None:
                return values
            return [v for v, n in zip(values, self.per_chat, strict=True) for _ in range(n)]
        if kind == "count":
            return [_count(v) for v in _read(self.items, path)]
        if kind:
            raise ValueError(f"unknown column source {source!r}")
        return _read(self.items, path)


def _read(objects: Sequence[dict[str, Any]], path: str) -> list[Any]:
    """`path` (dotted) read from each object; None wherever a step is missing or not an object."""
    first, *rest = path.split(".")
    values = [o.get(first) for o in objects]
    for part in rest:
        values = [v.get(part) if v.__class__ is dict else None for v in values]
    return values


def _count(value: Any) -> int | None:
    return len(value) if isinstance(value, list) else (0 if value is None else None)


_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}


_INTEGER = re.compile(r"-?[0-9]+")


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text):
            return int(text)
        number = _to_float(text)
        return _to_int(number) if number is not None else None
    return None


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _to_bool(value: Any) -> bool | None:
    if isinstance(value, int | float):
        return None if value not in (0, 1) else bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        return True if text in _TRUE else False if text in _FALSE else None
    return None


def _to_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return None


_INT_BOUNDS = {PgType.BIGINT: 2**63, PgType.INTEGER: 2**31}


def coerce(values: list[Any], column: Column) -> tuple[Any, int]:
    """`values` as the column's pandas type; also how many non-null values could not be."""
    kind = column.type
    if kind in _INT_BOUNDS:
        bound = _INT_BOUNDS[kind]
        out = [v if type(v) is int else None if v is None else _to_int(v) for v in values]
        out = [v if v is None or -bound <= v < bound else None for v in out]
    elif kind is PgType.DOUBLE:
        out = [v if type(v) is float else None if v is None else _to_float(v) for v in values]
        out = [None if v is not None and not math.isfinite(v) else v for v in out]
    elif kind is PgType.BOOLEAN:
        out = [v if type(v) is bool else None if v is None else _to_bool(v) for v in values]
    elif kind is PgType.TEXT:
        out = [v if type(v) is str else None if v is None else _to_text(v) for v in values]
    elif kind is PgType.TIMESTAMPTZ:
        strings = pd.Series([v if isinstance(v, str) else None for v in values], dtype=object)
        stamps = pd.to_datetime(strings, utc=True, format="ISO8601", errors="coerce")
        failed = sum(v is not None for v in values) - int(stamps.notna().sum())
        return stamps.astype(kind.pandas_dtype).array, failed
    else:
        raise ValueError(f"no coercion for {kind}")
    failed = sum(1 for v, o in zip(values, out, strict=True) if v is not None and o is None)
    return pd.array(out, dtype=kind.pandas_dtype), failed
