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
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import numpy as np

from chat_assets.privacy.catalog import (
    INDEX,
    Category,
    ContainerKind,
    Rule,
    RuleIndex,
    Treatment,
    join_path,
)
from chat_assets.privacy.detect import (
    MIN_CANARY_BYTES,
    find_personal,
    redact,
    watchlist,
)
from chat_assets.privacy.pseudonyms import Pseudonymizer

_WEB_SCHEMES = frozenset({"http", "https"})


class _Dropped:
    """Marks a value whose key must disappear (None is a real value: null)."""


_DROP = _Dropped()
_UNSEEN = object()


@dataclass
class SanitizeReport:
    """What sanitizing did, by path and count only: safe to log and to show in Dagster."""

    records: int = 0
    counts: Counter[Treatment] = field(default_factory=Counter)
    unknown_paths: set[str] = field(default_factory=set)
    drifted_paths: set[str] = field(default_factory=set)
    # Keys that are not plain field names (or look like personal data), counted, never shown.
    unnamed_keys: int = 0
    # Kept text in which personal data was replaced by a marker: "path: kind" -> values.
    redacted: Counter[str] = field(default_factory=Counter)

    def update(self, other: SanitizeReport) -> None:
        """Add another batch's report to this one."""
        self.records += other.records
        self.counts.update(other.counts)
        self.unknown_paths |= other.unknown_paths
        self.drifted_paths |= other.drifted_paths
        self.unnamed_keys += other.unnamed_keys
        self.redacted.update(other.redacted)

    def as_metadata(self) -> dict[str, Any]:
        """Plain, JSON-ready figures (sorted paths, counts per treatment)."""
        return {
            "records": self.records,
            "treated": {t.value: self.counts.get(t, 0) for t in Treatment},
            "unknown_paths": sorted(self.unknown_paths)[:MAX_UNKNOWN_PATHS],
            "drifted_paths": sorted(self.drifted_paths),
            "unnamed_keys": self.unnamed_keys,
            "redacted": dict(sorted(self.redacted.items())),
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


class _Step(NamedTuple):
    """What the walk does at a path: the catalog's rule for it, or the container it must be.

    `keep` marks a rule that keeps the value, and `configuration` one that keeps configuration:
    most of a chat's values, read on a path of their own in the walk."""

    path: str
    rule: Rule | None
    kind: ContainerKind | None
    keep: bool
    configuration: bool


# Leaves a kept value passes through as they are (text is checked for personal data first).
_PLAIN = frozenset({int, float, bool, type(None)})


class _Walk:
    """One pass over a record that builds the sanitized copy and notes what it held back.

    Sanitizing and listing sensitive values share this walk so the canary always watches
    exactly the values that sanitizing did not pass through unchanged. The walk also collects
    every text of the sanitized copies, keys included: the cells the canary reads.
    """

    def __init__(self, index: RuleIndex, pseudonymizer: Pseudonymizer | None) -> None:
        self.index = index
        self.pseudonymizer = pseudonymizer
        self.report = SanitizeReport()
        self.held_back: list[Any] = []  # the current record's
        # Per record: what it held back, and its kept configuration as (path, owner id, text).
        self.records_held: list[set[str]] = []
        self.records_configuration: list[list[tuple[str, Any, str]]] = []
        self.cells: set[str] = set()
        self._configuration: list[tuple[str, Any, str]] = []
        # Every chat repeats the same keys and many of the same texts and identifiers: each
        # key's step, each kept text's redaction and each identifier's pseudonym are worked
        # out once per walk.
        self._steps: dict[tuple[str, Any], _Step | None] = {}
        self._item_steps: dict[str, _Step] = {}
        self._redacted: dict[str, tuple[str, list[str]]] = {}
        self._plain_texts: set[str] = set()  # texts redaction leaves as they are
        self._pseudonyms: dict[tuple[str, type, Any], str | None] = {}

    def record(self, record: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(record, dict):
            raise TypeError(f"a chat record is a JSON object, got {type(record).__name__}")
        self.report.records += 1
        self.held_back = []
        self._configuration = []
        clean = self._object(record, "")
        self.records_held.append(_texts(self.held_back))
        self.records_configuration.append(self._configuration)
        return clean

    def _object(self, obj: dict[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        owner = _owner_id(obj)
        steps = self._steps
        cells = self.cells
        plain_texts = self._plain_texts
        kept = 0
        for key, value in obj.items():
            step = steps.get((prefix, key), _UNSEEN)
            if step is _UNSEEN:
                step = steps[(prefix, key)] = self._key_step(prefix, key)
            if step is None:
                # Judged where it is met: a key that is not a plain field name may be data
                # itself (a map keyed by email); dropped, watched, and counted, never shown.
                self.report.unnamed_keys += 1
                self.report.unknown_paths.add(join_path(prefix, "<unnamed key>"))
                self.held_back.append(str(key))
                self.held_back.extend(_leaves(value))
                continue
            if step.keep:
                # The common case, without the calls of the general one below.
                kept += 1
                kind = type(value)
                if kind is str:
                    if value not in plain_texts:
                        value = self._kept(step.rule, value, owner)  # type: ignore[arg-type]
                    elif step.configuration:
                        self._configuration.append((step.path, owner, value))
                    cells.add(value)
                elif kind not in _PLAIN:
                    value = self._leaf(step.rule, value, owner)  # type: ignore[arg-type]
                    if isinstance(value, str):
                        cells.add(value)
                out[key] = value
                continue
            result = self._value(value, step, owner)
            if result is not _DROP:
                out[key] = result
                if isinstance(result, str):
                    cells.add(result)
        if kept:
            self.report.counts[Treatment.KEEP] += kept
        cells.update(out)  # the keys: plain field names, so texts
        return out

    def _key_step(self, prefix: str, key: Any) -> _Step | None:
        """The step of a key under prefix; None for a key that is no plain field name."""
        name = str(key)
        if _FIELD_NAME.match(name) is None or find_personal(name):
            return None
        return self._step(join_path(prefix, name))

    def _step(self, path: str) -> _Step:
        rule = self.index.exact(path)
        keep = rule is not None and rule.treatment is Treatment.KEEP
        configuration = keep and rule.category is Category.CONFIGURATION  # type: ignore[union-attr]
        return _Step(path, rule, self.index.container(path), keep, configuration)

    def _value(self, value: Any, step: _Step, owner: Any = None) -> Any:
        path, rule, kind, _, _ = step
        if rule is not None:
            self.report.counts[rule.treatment] += 1
            return self._leaf(rule, value, owner)
        if kind is None:
            self.report.unknown_paths.add(path)  # every key on it is a plain field name
            self.held_back.extend(_leaves(value))
            return _DROP
        if value is None:
            return None
        if kind == "object" and isinstance(value, dict):
            return self._object(value, path)
        if kind == "list" and isinstance(value, list):
            item = self._item_steps.get(path)
            if item is None:
                item = self._item_steps[path] = self._step(f"{path}[]")
            items = [self._value(each, item) for each in value]
            texts = [each for each in items if isinstance(each, str)]
            self.cells.update(texts)
            return [None if each is _DROP else each for each in items]
        return self._drifted(value, path)

    def _drifted(self, value: Any, path: str) -> None:
        self.report.drifted_paths.add(path)
        self.held_back.extend(_leaves(value))
        return None

    def _leaf(self, rule: Rule, value: Any, owner: Any = None) -> Any:
        """A value under a rule: what the rule's treatment makes of it."""
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
            return self._kept(rule, value, owner)
        self.held_back.append(value)
        if treatment is Treatment.HOST_ONLY:
            return host_only(value)
        if self.pseudonymizer is None or rule.namespace is None:
            return None
        memo = (rule.namespace, type(value), value)
        pseudonym = self._pseudonyms.get(memo, _UNSEEN)
        if pseudonym is _UNSEEN:
            pseudonym = self._pseudonyms[memo] = self.pseudonymizer.pseudonym(rule.namespace, value)
        return pseudonym

    def _kept(self, rule: Rule, value: Any, owner: Any) -> Any:
        """A kept value; kept text has its personal data replaced by typed markers first."""
        if not isinstance(value, str):
            return value
        done = self._redacted.get(value)
        if done is None:
            done = self._redacted[value] = redact(value)
            if not done[1]:
                self._plain_texts.add(value)
        clean, kinds = done
        if kinds:
            self.held_back.append(value)
            for kind in kinds:
                self.report.redacted[f"{rule.path}: {kind}"] += 1
        elif rule.category is Category.CONFIGURATION:
            self._configuration.append((rule.path, owner, clean))
        return clean


# A plain field name, as every key of the vendor's model is.
_FIELD_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
MAX_UNKNOWN_PATHS = 50
# The keys that name the configured object a value belongs to (a menu, a queue).
_OWNER_KEYS = ("id", "menu_path_id")


def _owner_id(obj: dict[str, Any]) -> Any:
    for key in _OWNER_KEYS:
        value = obj.get(key)
        if isinstance(value, int | str) and not isinstance(value, bool):
            return value
    return None


def _cell_text(value: Any) -> str | None:
    """How a raw value would read in a text cell (booleans identify no one)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip() or None


def _texts(values: Iterable[Any]) -> set[str]:
    return {text for text in map(_cell_text, values) if text}


class WindowSanitizer:
    """Sanitizes a window's chats page by page, and keeps for the window's canary only what it
    needs, in a size that does not grow with the chats' text.

    That is 64-bit hashes (Python's own, salted per process) of the watched raw values that
    sanitizing held back, of the sanitized text cells, and of each chat's configuration entries
    (their text as an index into the window's few configuration texts, with whether the chat
    holds it back): about 500 bytes a chat. A collision can only report a leak that is not one.
    """

    def __init__(self, pseudonymizer: Pseudonymizer, index: RuleIndex = INDEX) -> None:
        self.pseudonymizer = pseudonymizer
        self.index = index
        self.report = SanitizeReport()
        self._held = array("q")
        self._cells = array("q")
        # Per chat and watchable configuration entry (path, owner id, text): the entry's hash,
        # and its text's index in `_texts` times two, plus one if that chat does not hold the
        # text back.
        self._entries = array("q")
        self._entry_texts = array("I")
        self._texts: dict[str, int] = {}
        self._codes: dict[str, int] = {}  # a kept text -> its index in `_texts` times two

    def _code(self, kept: str) -> int:
        """Twice the index of a kept configuration text in `_texts`; -1 for one too short
        to be watched."""
        text = kept.strip()
        if len(text.encode()) < MIN_CANARY_BYTES:
            return -1
        return self._texts.setdefault(text, len(self._texts)) << 1

    def page(self, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Sanitized copies of a page's chats, in order."""
        walk = _Walk(self.index, self.pseudonymizer)
        clean = [walk.record(r) for r in records]
        self.report.update(walk.report)
        codes = self._codes
        for held, entries in zip(walk.records_held, walk.records_configuration, strict=True):
            for entry in set(entries):
                code = codes.get(entry[2])
                if code is None:
                    code = codes[entry[2]] = self._code(entry[2])
                if code < 0:
                    continue  # never watched, so never in need of excusing
                self._entries.append(hash(entry))
                self._entry_texts.append(code | (entry[2] not in held))
        self._held.extend(map(hash, watchlist(set().union(*walk.records_held))))
        self._cells.extend(map(hash, watchlist(walk.cells)))
        return clean

    def leaks(self) -> int:
        """How many distinct raw values held back anywhere in the window appear as a whole text
        cell of any sanitized chat, configuration shown by several chats excepted (see
        `_allowed`)."""
        held = np.unique(np.frombuffer(self._held, dtype=np.int64))
        watched = np.setdiff1d(held, self._allowed(held), assume_unique=True)
        cells = np.frombuffer(self._cells, dtype=np.int64)
        return int(np.unique(cells[_members(watched, cells)]).size)

    def _allowed(self, held: np.ndarray) -> np.ndarray:
        """Hashes of the held-back texts that are configuration: shown by two or more chats at
        one path with one owner id, one of which at least does not hold the text back. Only
        entries of held-back texts are grouped; they are few."""
        text_hashes = np.fromiter(map(hash, self._texts), dtype=np.int64, count=len(self._texts))
        codes = np.frombuffer(self._entry_texts, dtype=np.uint32)
        held_texts = np.flatnonzero(_members(held, text_hashes))
        candidates = np.flatnonzero(np.isin(codes >> 1, held_texts))
        entries = np.frombuffer(self._entries, dtype=np.int64)[candidates]
        order = np.argsort(entries, kind="stable")
        entries, codes = entries[order], codes[candidates][order]
        if not entries.size:
            return np.empty(0, dtype=np.int64)
        firsts = np.flatnonzero(np.r_[True, entries[1:] != entries[:-1]])
        chats = np.diff(np.r_[firsts, entries.size])
        shown_freely = np.maximum.reduceat(codes & 1, firsts) > 0
        return text_hashes[codes[firsts] >> 1][(chats >= 2) & shown_freely]


def _members(sorted_keys: np.ndarray, values: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """Which values are among the sorted keys, a chunk at a time so the work space stays small
    whatever the window's size."""
    found = np.zeros(values.size, dtype=bool)
    if not sorted_keys.size:
        return found
    for at in range(0, values.size, chunk):
        part = values[at : at + chunk]
        positions = np.minimum(np.searchsorted(sorted_keys, part), sorted_keys.size - 1)
        found[at : at + chunk] = sorted_keys[positions] == part
    return found
