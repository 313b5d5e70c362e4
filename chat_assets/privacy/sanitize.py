"""Sanitize chats in memory, right after they arrive and before anything is written.

Why here and not in SQL: once a raw identifier reaches a table, a log, a Dagster metadata entry
or a backup, it cannot be called back. Every later step only ever sees the sanitized record.

Each field is treated as the catalog says. Fields the catalog does not know are dropped (the
vendor may add keys at any time, and an unknown key is untrusted), and the report names their
paths, never their values. Type drift never crashes and never lets data through: a container
where a leaf is expected, or a leaf where a container is expected, becomes null and is reported.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from chat_assets.privacy.catalog import INDEX, Rule, RuleIndex, Treatment, join_path
from chat_assets.privacy.detect import find_personal
from chat_assets.privacy.pseudonyms import Pseudonymizer

_WEB_SCHEMES = frozenset({"http", "https"})


class _Dropped:
    """Marks a value whose key must disappear (None is a real value: null)."""


_DROP = _Dropped()


@dataclass
class SanitizeReport:
    """What sanitizing did, by path and count only: safe to log and to show in Dagster."""

    records: int = 0
    counts: Counter[Treatment] = field(default_factory=Counter)
    unknown_paths: set[str] = field(default_factory=set)
    drifted_paths: set[str] = field(default_factory=set)

    def as_metadata(self) -> dict[str, Any]:
        """Plain, JSON-ready figures (sorted paths, counts per treatment)."""
        return {
            "records": self.records,
            "treated": {t.value: self.counts.get(t, 0) for t in Treatment},
            "unknown_paths": sorted(self.unknown_paths)[:MAX_UNKNOWN_PATHS],
            "drifted_paths": sorted(self.drifted_paths),
        }


def host_only(value: Any) -> str | None:
    """`scheme://host[:port]` of a web URL: no credentials, path, query or fragment.

    Signed links carry their secret in the query and user:password URLs in the netloc, so only
    the part that says which system served the link survives. Anything that is not an http(s)
    URL with a host (placeholders like "true" or "string") becomes None.
    """
    if not isinstance(value, str):
        return None
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _WEB_SCHEMES or not host:
        return None
    netloc = f"[{host}]" if ":" in host else host
    return f"{scheme}://{netloc}" + ("" if port is None else f":{port}")


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for child in value.values():
            yield from _leaves(child)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


class _Walk:
    """One pass over a record that builds the sanitized copy and notes what it held back.

    Sanitizing and listing sensitive values share this walk so the canary always watches
    exactly the values that sanitizing did not pass through unchanged.
    """

    def __init__(self, index: RuleIndex, pseudonymizer: Pseudonymizer | None) -> None:
        self.index = index
        self.pseudonymizer = pseudonymizer
        self.report = SanitizeReport()
        self.held_back: list[Any] = []

    def record(self, record: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(record, dict):
            raise TypeError(f"a chat record is a JSON object, got {type(record).__name__}")
        self.report.records += 1
        return self._object(record, "")

    def _object(self, obj: dict[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in obj.items():
            result = self._value(value, join_path(prefix, str(key)))
            if result is not _DROP:
                out[key] = result
        return out

    def _value(self, value: Any, path: str) -> Any:
        rule = self.index.exact(path)
        if rule is not None:
            self.report.counts[rule.treatment] += 1
            return self._apply(rule, value)
        kind = self.index.container(path)
        if kind is None:
            self.report.unknown_paths.add(reportable_path(path))
            self.held_back.extend(_leaves(value))
            return _DROP
        if value is None:
            return None
        if kind == "object" and isinstance(value, dict):
            return self._object(value, path)
        if kind == "list" and isinstance(value, list):
            items = [self._value(item, f"{path}[]") for item in value]
            return [None if item is _DROP else item for item in items]
        return self._drifted(value, path)

    def _drifted(self, value: Any, path: str) -> None:
        self.report.drifted_paths.add(path)
        self.held_back.extend(_leaves(value))
        return None

    def _apply(self, rule: Rule, value: Any) -> Any:
        treatment = rule.treatment
        if treatment is Treatment.DROP:
            self.held_back.extend(_leaves(value))
            return _DROP
        if treatment is Treatment.COUNT_ONLY:
            self.held_back.extend(_leaves(value))
            if isinstance(value, list):
                return len(value)
            return None if value is None else self._drifted(value, rule.path)
        if isinstance(value, dict | list):
            return self._drifted(value, rule.path)
        if treatment is Treatment.KEEP:
            return value
        self.held_back.append(value)
        if treatment is Treatment.HOST_ONLY:
            return host_only(value)
        if self.pseudonymizer is None or rule.namespace is None:
            return None
        return self.pseudonymizer.pseudonym(rule.namespace, value)


_FIELD_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
MAX_UNKNOWN_PATHS = 50


def reportable_path(path: str) -> str:
    """An unknown field's path, cut where it left the catalog. JSON keys can be data (a map
    keyed by email, by phone number): a last segment that is not a plain field name is not
    shown."""
    head, _, last = path.rpartition(".")
    name = last.removesuffix("[]")
    if not _FIELD_NAME.match(name) or find_personal(name):
        last = "<unnamed key>"
    return f"{head}.{last}" if head else last


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
    clean, report, _ = sanitize_guarded(records, pseudonymizer, index)
    return clean, report


def sanitize_guarded(
    records: Iterable[dict[str, Any]], pseudonymizer: Pseudonymizer, index: RuleIndex = INDEX
) -> tuple[list[dict[str, Any]], SanitizeReport, set[str]]:
    """`sanitize_batch`, plus the raw values it held back (see `sensitive_values`), collected in
    the same walk, for the canary."""
    walk = _Walk(index, pseudonymizer)
    clean = [walk.record(r) for r in records]
    return clean, walk.report, _texts(walk.held_back)


def _as_text(value: Any) -> str | None:
    """How a raw value would read in a text cell (booleans identify no one)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip() or None


def sensitive_values(record: dict[str, Any], index: RuleIndex = INDEX) -> set[str]:
    """The raw values (as stripped text) that sanitizing removes or transforms.

    That is every value of a path not treated as keep, plus everything under unknown or drifted
    paths: what the canary must never find in the warehouse.
    """
    walk = _Walk(index, None)
    walk.record(record)
    return _texts(walk.held_back)


def _texts(values: Iterable[Any]) -> set[str]:
    return {text for text in map(_as_text, values) if text}
