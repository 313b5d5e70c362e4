"""The reference flattening: chats in, typed DataFrames out, pure functions driven by the table
declarations.

UJET's payloads drift (numbers as strings, 0/1 for booleans, null objects, placeholder values),
so every value is coerced to its declared type; a value that cannot be becomes NULL and is
counted per column, never silently dropped with its row.

This is the definition of flattening, kept with the tests: production flattens inside
PostgreSQL, with SQL compiled from the same declarations and the same grammar
(`chat_assets.grammar`, `chat_assets.warehouse.flatten_sql`); an equivalence test holds the two
to the same rows and the same failure counts.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd

from chat_assets.grammar import (
    FALSE,
    INT_BOUNDS,
    LARGEST_DOUBLE,
    NUMBER,
    SMALLEST_DOUBLE,
    TIMESTAMP,
    TRUE,
    WHITESPACE,
    parse_instant,
)
from chat_assets.tables import CHAT_ID_FIELD, VERSION_FIELD, Column, PgType, Read, Table

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
        read = table.read(column)
        if read is None:
            raise ValueError(f"{table.name}.{column.name} has no source in the chat")
        data[column.name], failed = coerce(rows.values(read), column)
        if failed:
            failures[column.name] = failed
    return pd.DataFrame(data, columns=table.column_names), failures


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

    def values(self, read: Read) -> list[Any]:
        """The raw values a column reads, one per row."""
        if read.position:
            return [p for n in (self.per_chat or []) for p in range(n)]
        objects = self.chats if read.on_chat else self.items
        values = _identity(objects, read.path) if read.identity else _read(objects, read.path)
        if read.count:
            values = [_count(v) for v in values]
        if not read.on_chat or self.per_chat is None:
            return values
        return [v for v, n in zip(values, self.per_chat, strict=True) for _ in range(n)]


# The chat's id and version are read as landing parsed them into raw_chats' typed columns.
_IDENTITY: dict[str, Callable[[dict[str, Any]], Any]] = {
    CHAT_ID_FIELD: lambda chat: int(chat[CHAT_ID_FIELD]),
    VERSION_FIELD: lambda chat: parse_instant(chat[VERSION_FIELD]),
}


def _identity(chats: Sequence[dict[str, Any]], path: str) -> list[Any]:
    return [_IDENTITY[path](chat) for chat in chats]


def _read(objects: Sequence[dict[str, Any]], path: str) -> list[Any]:
    """`path` (dotted) read from each object; None wherever a step is missing or not an object."""
    first, *rest = path.split(".")
    values = [o.get(first) for o in objects]
    for part in rest:
        values = [v.get(part) if v.__class__ is dict else None for v in values]
    return values


# What a count reads where a list should be: converts to no number, so it is counted as a failure.
_NOT_A_LIST = object()


def _count(value: Any) -> Any:
    return len(value) if isinstance(value, list) else 0 if value is None else _NOT_A_LIST


_NUMBER = re.compile(NUMBER)
_TIMESTAMP = re.compile(TIMESTAMP)


def _decimal(text: str) -> Decimal | None:
    text = text.strip(WHITESPACE)
    return Decimal(text) if _NUMBER.fullmatch(text) else None


def _in_double_range(number: float | Decimal) -> bool:
    return number == 0 or SMALLEST_DOUBLE <= abs(number) <= LARGEST_DOUBLE


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    number = None
    if isinstance(value, float) and math.isfinite(value):
        # the number as its JSON text says it, not as its nearest binary double
        number = Decimal(repr(value))
    elif isinstance(value, str):
        number = _decimal(value)
    if number is not None and number == number.to_integral_value():
        return int(number)
    return None


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        number: float | Decimal = Decimal(value) if isinstance(value, int) else value
    elif isinstance(value, str):
        parsed = _decimal(value)
        if parsed is None:
            return None
        number = parsed
    else:
        return None
    return float(number) if _in_double_range(number) else None


def _to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return None if value not in (0, 1) else bool(value)
    if isinstance(value, str):
        text = value.strip(WHITESPACE).lower()
        return True if text in TRUE else False if text in FALSE else None
    return None


def _to_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    return None if value is None else json_text(value)


def json_text(value: Any) -> str:
    """A JSON value as PostgreSQL prints jsonb: keys by length then bytes, numbers in full."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = format(Decimal(repr(value)), "f")
        return text[1:] if text.startswith("-") and value == 0 else text
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(json_text(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return "{" + ", ".join(f"{json_text(k)}: {json_text(value[k])}" for k in keys) + "}"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _to_timestamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        local = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "").ljust(6, "0")),
        )
    except ValueError:  # a day the month does not have
        return None
    offset = timedelta()
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
        offset = -offset if zone[0] == "-" else offset
    return (pd.Timestamp(local).as_unit("us") - offset).tz_localize("UTC").to_pydatetime()


_CONVERTERS: dict[PgType, Callable[[Any], Any]] = {
    PgType.BIGINT: _to_int,
    PgType.INTEGER: _to_int,
    PgType.DOUBLE: _to_float,
    PgType.BOOLEAN: _to_bool,
    PgType.TEXT: _to_text,
    PgType.TIMESTAMPTZ: _to_timestamp,
}


def coerce(values: list[Any], column: Column) -> tuple[Any, int]:
    """`values` as the column's pandas type; also how many non-null values could not be."""
    kind = column.type
    if kind not in _CONVERTERS:
        raise ValueError(f"no coercion for {kind}")
    convert = _CONVERTERS[kind]
    out = [None if v is None else convert(v) for v in values]
    if kind in INT_BOUNDS:
        bound = INT_BOUNDS[kind]
        out = [v if v is None or -bound <= v < bound else None for v in out]
    failed = sum(1 for v, o in zip(values, out, strict=True) if v is not None and o is None)
    if kind is PgType.TIMESTAMPTZ:
        return pd.array(out, dtype=object).astype(kind.pandas_dtype), failed
    return pd.array(out, dtype=kind.pandas_dtype), failed
