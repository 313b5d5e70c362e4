"""The privacy code held to exact sets, for the tests: one chat or a whole batch sanitized in
one walk, the raw values sanitizing held back, and exact leaks counted cell by cell.

The product sanitizes a window page by page and keeps only hashes for its canary
(`chat_assets.privacy.sanitize.WindowSanitizer`); nothing in a deployment calls these.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from chat_assets.privacy.catalog import INDEX, RuleIndex
from chat_assets.privacy.detect import watchlist
from chat_assets.privacy.pseudonyms import Pseudonymizer
from chat_assets.privacy.sanitize import SanitizeReport, _Walk


def sanitize(
    record: dict[str, Any], pseudonymizer: Pseudonymizer, index: RuleIndex = INDEX
) -> tuple[dict[str, Any], SanitizeReport]:
    """A new, sanitized copy of one chat (the input is not changed) and what was done."""
    walk = _Walk(index, pseudonymizer)
    return walk.record(record), walk.report


def sanitize_batch(
    records: Iterable[dict[str, Any]], pseudonymizer: Pseudonymizer, index: RuleIndex = INDEX
) -> tuple[list[dict[str, Any]], SanitizeReport]:
    """Sanitize a page or window of chats; one merged report."""
    guarded = sanitize_guarded(records, pseudonymizer, index)
    return guarded.records, guarded.report


@dataclass(frozen=True)
class Guarded:
    """A sanitized batch with what the canary needs: the raw values sanitizing held back, and
    the configuration values it may excuse."""

    records: list[dict[str, Any]]
    report: SanitizeReport
    sensitive: set[str]
    configuration: frozenset[str]


def sanitize_guarded(
    records: Iterable[dict[str, Any]], pseudonymizer: Pseudonymizer, index: RuleIndex = INDEX
) -> Guarded:
    """`sanitize_batch`, plus the raw values it held back (see `sensitive_values`), collected in
    the same walk, and the configuration the canary may allow (see `configuration_values`)."""
    walk = _Walk(index, pseudonymizer)
    clean = [walk.record(r) for r in records]
    configuration = configuration_values(walk.records_configuration, walk.records_held)
    return Guarded(clean, walk.report, set().union(*walk.records_held), configuration)


def configuration_values(
    per_record: list[list[tuple[str, Any, str]]], held_back: list[set[str]]
) -> frozenset[str]:
    """Kept configuration text that may equal a sensitive value without leaking it.

    Configuration is what the catalog calls so (menus, queues, groups, languages), tied to the
    id of the object it names: a text counts only when two or more chats show it at the same
    path with the same id, and at least one of them does not hold that text back as someone's
    data. A name copied from chats' own agents into their menus fails the second test."""
    chats: dict[tuple[str, Any, str], list[int]] = {}
    for number, entries in enumerate(per_record):
        for entry in set(entries):
            chats.setdefault(entry, []).append(number)
    return frozenset(
        text
        for (_, _, text), numbers in chats.items()
        if len(numbers) >= 2 and any(text not in held_back[n] for n in numbers)
    )


def sensitive_values(record: dict[str, Any], index: RuleIndex = INDEX) -> set[str]:
    """The raw values (as stripped text) that sanitizing removes or transforms.

    That is every value of a path not treated as keep, plus everything under unknown or drifted
    paths: what the canary must never find in the warehouse.
    """
    walk = _Walk(index, None)
    walk.record(record)
    return walk.records_held[0]


def _hits(watched: frozenset[str], cells: Iterable[Any]) -> int:
    return sum(1 for cell in cells if isinstance(cell, str) and cell.strip() in watched)


def leak_count(sensitive: Iterable[str], cells: Iterable[Any], allow: Iterable[str] = ()) -> int:
    """How many text cells equal a sensitive value (exact, after stripping)."""
    return _hits(watchlist(sensitive, allow), cells)


def leaked_columns(
    sensitive: Iterable[str],
    frame_columns: Mapping[str, Iterable[Any]],
    allow: Iterable[str] = (),
) -> dict[str, int]:
    """Column -> number of text cells equal to a sensitive value; clean columns are left out.

    Exact equality: a canary looks for a value copied whole into a cell, not for substrings
    (that is what the patterns are for), so "Billing" never trips over "Billing team".
    """
    watched = watchlist(sensitive, allow)
    counts = {name: _hits(watched, cells) for name, cells in frame_columns.items()}
    return {name: n for name, n in counts.items() if n}


def json_strings(document: Any) -> Iterator[str]:
    """Every string (keys too) in a JSON document, so a payload column can be canaried.

    Accepts parsed JSON, or JSON text as bytes (how jsonb payloads load into pandas).
    """
    if isinstance(document, bytes | bytearray | memoryview):
        document = json.loads(bytes(document))
    # A stack rather than recursion: a chat has hundreds of nodes, each a generator otherwise.
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            yield from map(str, node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
