"""Key rotation: every stored pseudonym re-keyed under the current key, nothing fetched again.

A rotation adds a key (see `pseudonyms`: the pseudonym under keys k1, k2 is the k1 pseudonym
put through HMAC under k2), so a stored value is re-keyed from itself: in every stored version
of raw_chats, chats UJET no longer serves included, in every flattened row and on the
suppression list, in one transaction. A fetch under the new chain then computes exactly the
re-keyed values, so joins and erasures hold across the rotation, and no stored value can be
computed any more by someone who holds only an older key.

Which key made a value: a raw version records the fingerprint of its chain (`pii_key`), a
flattened row and a list entry carry the version prefix (`k1:`) in each pseudonym. A version or
fingerprint the configured chain does not know refuses the rotation before anything changes:
re-keying it would give values no fetch ever computes. The transaction ends by counting what
is still under another key, and rolls back unless it is nothing (`stale`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dagster as dg
import sqlalchemy as sa
from psycopg import sql

from chat_assets.privacy import bookkeeping, ledger, suppression
from chat_assets.privacy.catalog import CATALOG, Rule, Treatment
from chat_assets.privacy.lookup import pseudonym_columns
from chat_assets.privacy.pseudonyms import Pseudonymizer, UnknownKeyVersion
from chat_assets.privacy.stored_keys import under_other_key, unknown_keys
from chat_assets.privacy.suppression import SUPPRESSION_TABLE
from chat_assets.settings import KeyNames
from chat_assets.tables import (
    CHAT_ID_FIELD,
    DERIVED_TABLES,
    RAW_CHATS,
    RAW_PARTITION,
    RAW_PAYLOAD,
    RAW_PII_KEY,
    Table,
)
from chat_assets.warehouse.connection import cursor_for
from chat_assets.warehouse.sql_parts import qualified

CURRENT_KEY_VERSION = "current_key_version"
EXAMPLES = 5
# Stored versions re-keyed per round trip: a few megabytes of payloads.
BATCH = 2_000

# Every field the catalog turns into a pseudonym, customers' and agents'.
PSEUDONYM_RULES: tuple[Rule, ...] = tuple(
    rule for rule in CATALOG if rule.treatment is Treatment.PSEUDONYM
)

# The flattened tables and their pseudonym columns.
KEYED_COLUMNS: dict[Table, list[str]] = {
    table: columns
    for table in DERIVED_TABLES
    if (columns := pseudonym_columns(table, PSEUDONYM_RULES))
}


class RotationRefused(RuntimeError):
    """The rotation cannot be done as configured; nothing changed. Names versions and
    fingerprints, never a key or a pseudonym."""


@dataclass(frozen=True)
class Outcome:
    """What a rotation did (or, dry, would do): rows re-keyed per table."""

    version: str
    dry_run: bool
    rows: dict[str, int]

    def report(self) -> str:
        verb = "would be re-keyed" if self.dry_run else "re-keyed"
        head = f"rotation to key version {self.version}" + (
            " (dry run: nothing was changed)" if self.dry_run else ""
        )
        width = max(map(len, self.rows), default=0)
        lines = [f"  {name:<{width}}  {n:>9} rows {verb}" for name, n in self.rows.items()]
        return "\n".join([head, *lines])


def rotate(
    engine: sa.Engine,
    schema: str,
    pseudonymizer: Pseudonymizer,
    *,
    ref: str | None,
    dry: bool,
    names: KeyNames | None = None,
) -> Outcome:
    """Re-key everything stored under an older key of the chain, in one transaction (rolled
    back when `dry`), and record the rotation in the ledger (counts only). `names`: where the
    keys are configured, for a refusal to name."""
    if dry and not bookkeeping.landed(engine, schema):
        return Outcome(pseudonymizer.version, dry, {})
    return bookkeeping.in_one_transaction(
        engine,
        schema,
        lambda cursor: _rotate(cursor, schema, pseudonymizer, ref, dry, names or KeyNames()),
        dry=dry,
    )


def _rotate(
    cursor: Any,
    schema: str,
    pseudonymizer: Pseudonymizer,
    ref: str | None,
    dry: bool,
    names: KeyNames,
) -> Outcome:
    # Landings, applies, erasures and retention runs wait until this commits (each takes
    # raw_chats first), and this waits for them: nothing lands under a half-rotated warehouse.
    cursor.execute(
        sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(qualified(schema, RAW_CHATS))
    )
    suppression.ensure(cursor, schema)
    ledger.ensure(cursor, schema)
    _refuse_unknown_fingerprints(cursor, schema, pseudonymizer, names)
    rows = {RAW_CHATS.name: _rekey_raw(cursor, schema, pseudonymizer)}
    _map_stored(cursor, schema, pseudonymizer)
    for table, columns in KEYED_COLUMNS.items():
        rows[table.name] = _rekey_columns(cursor, schema, table, columns, pseudonymizer.version)
    rows[SUPPRESSION_TABLE] = _rekey_suppression(cursor, schema)
    if left := {name: n for name, n in stale(cursor, schema, pseudonymizer).items() if n}:
        raise RotationRefused(
            f"rows still under another key after re-keying ({left}); rolled back, nothing changed"
        )
    if not dry:
        ledger.append(
            cursor, schema, "rotate", ref=ref, key_version=pseudonymizer.version, counts=rows
        )
    return Outcome(pseudonymizer.version, dry, rows)


def _refuse_unknown_fingerprints(
    cursor: Any, schema: str, pseudonymizer: Pseudonymizer, names: KeyNames
) -> None:
    """Every stored version was made under a prefix of the configured chain; this is also what
    proves the previous keys are the ones that made them."""
    if unknown := unknown_keys(cursor, schema, pseudonymizer.fingerprints):
        raise RotationRefused(
            f"raw_chats holds rows made under keys that are not configured (fingerprint: rows "
            f"{unknown}; configured: {', '.join(pseudonymizer.fingerprints)}): list the keys "
            f"that made them in {names.previous_label}, oldest first; nothing changed"
        )


def _mapped(value: Any, parts: list[str], change: Callable[[str], str]) -> tuple[Any, int]:
    """`value` with every text at the path changed (a new object where anything changed), and
    how many were."""
    if not isinstance(value, dict):
        return value, 0
    head, rest = parts[0], parts[1:]
    name = head.removesuffix("[]")
    child = value.get(name)
    if head.endswith("[]"):
        if not isinstance(child, list):
            return value, 0
        items = [_mapped(item, rest, change) if rest else _changed(item, change) for item in child]
        n = sum(k for _, k in items)
        return ({**value, name: [item for item, _ in items]}, n) if n else (value, 0)
    new, n = _mapped(child, rest, change) if rest else _changed(child, change)
    return ({**value, name: new}, n) if n else (value, 0)


def _changed(value: Any, change: Callable[[str], str]) -> tuple[Any, int]:
    if not isinstance(value, str):
        return value, 0
    new = change(value)
    return new, int(new != value)


def rekeyed(record: dict[str, Any], rekey: Callable[[str], str]) -> dict[str, Any]:
    """A sanitized chat with every pseudonym of the catalog re-keyed."""
    for rule in PSEUDONYM_RULES:
        record, _ = _mapped(record, rule.path.split("."), rekey)
    return record


def _rekeyer(pseudonymizer: Pseudonymizer) -> Callable[[str], str]:
    """`pseudonymizer.rekey`, remembered (a pseudonym recurs in many chats), refusing unknown
    versions without naming the value."""
    memo: dict[str, str] = {}

    def rekey(value: str) -> str:
        if (new := memo.get(value)) is None:
            try:
                new = memo[value] = pseudonymizer.rekey(value)
            except UnknownKeyVersion as error:
                raise RotationRefused(f"{error}; nothing changed") from None
        return new

    return rekey


def _rekey_raw(cursor: Any, schema: str, pseudonymizer: Pseudonymizer) -> int:
    """Every stored version under an older key, its payload re-keyed and its fingerprint the
    current one, batch by batch through a temporary table; rows changed."""
    rekey = _rekeyer(pseudonymizer)
    buffer = sql.Identifier("_rekeyed_raw_chats")
    cursor.execute(
        sql.SQL(
            "CREATE TEMP TABLE {} (partition_key text, id bigint, payload jsonb) ON COMMIT DROP"
        ).format(buffer)
    )
    target = qualified(schema, RAW_CHATS)
    update = sql.SQL(
        "UPDATE {t} AS r SET {payload} = b.payload, {pii_key} = %s FROM {b} AS b"
        " WHERE r.{partition} = b.partition_key AND r.{id} = b.id"
    ).format(
        t=target,
        b=buffer,
        payload=sql.Identifier(RAW_PAYLOAD),
        pii_key=sql.Identifier(RAW_PII_KEY),
        partition=sql.Identifier(RAW_PARTITION),
        id=sql.Identifier(CHAT_ID_FIELD),
    )
    changed = 0
    with cursor.connection.cursor(name="chat_assets_rekey") as stored:
        stored.execute(
            sql.SQL("SELECT {}, {}, {} FROM {} WHERE {}").format(
                sql.Identifier(RAW_PARTITION),
                sql.Identifier(CHAT_ID_FIELD),
                sql.Identifier(RAW_PAYLOAD),
                target,
                under_other_key(pseudonymizer.fingerprint),
            )
        )
        while batch := stored.fetchmany(BATCH):
            with cursor.copy(sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(buffer)) as copy:
                copy.set_types(["text", "bigint", "jsonb"])
                for partition, chat_id, payload in batch:
                    copy.write_row((partition, chat_id, rekeyed(payload, rekey)))
            cursor.execute(update, (pseudonymizer.fingerprint,))
            changed += cursor.rowcount
            cursor.execute(sql.SQL("TRUNCATE {}").format(buffer))
    return changed


_MAP = sql.Identifier("_rekeyed_pseudonyms")


def _not_current(column: sql.Composable, version: str) -> sql.Composed:
    """SQL: the pseudonym in `column` is present and not under `version`."""
    return sql.SQL("({0} IS NOT NULL AND left({0}, {1}) <> {2})").format(
        column, sql.Literal(len(version) + 1), sql.Literal(f"{version}:")
    )


def _map_stored(cursor: Any, schema: str, pseudonymizer: Pseudonymizer) -> None:
    """A temporary map from every distinct pseudonym under an older key, in the flattened
    tables and on the suppression list, to its re-keyed value."""
    version = pseudonymizer.version
    sources = [
        sql.SQL("SELECT {0} FROM {1} WHERE {2}").format(
            sql.Identifier(column),
            qualified(schema, table),
            _not_current(sql.Identifier(column), version),
        )
        for table, columns in KEYED_COLUMNS.items()
        for column in columns
    ]
    sources.append(
        sql.SQL("SELECT pseudonym FROM {} WHERE {}").format(
            bookkeeping.qualified(schema, SUPPRESSION_TABLE),
            _not_current(sql.Identifier("pseudonym"), version),
        )
    )
    old = [row[0] for row in cursor.execute(sql.SQL(" UNION ").join(sources))]
    rekey = _rekeyer(pseudonymizer)
    cursor.execute(
        sql.SQL(
            "CREATE TEMP TABLE {} (old text PRIMARY KEY, new text NOT NULL) ON COMMIT DROP"
        ).format(_MAP)
    )
    with cursor.copy(sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(_MAP)) as copy:
        copy.set_types(["text", "text"])
        for value in old:
            copy.write_row((value, rekey(value)))
    cursor.execute(sql.SQL("ANALYZE {}").format(_MAP))


def _rekey_columns(cursor: Any, schema: str, table: Table, columns: list[str], version: str) -> int:
    """The table's pseudonym columns through the map, in one pass; rows changed."""
    cursor.execute(
        sql.SQL("UPDATE {} AS t SET {} WHERE {}").format(
            qualified(schema, table),
            sql.SQL(", ").join(
                sql.SQL(
                    "{0} = coalesce((SELECT m.new FROM {1} AS m WHERE m.old = t.{0}), t.{0})"
                ).format(sql.Identifier(c), _MAP)
                for c in columns
            ),
            sql.SQL(" OR ").join(_not_current(sql.Identifier(c), version) for c in columns),
        )
    )
    return cursor.rowcount


def _rekey_suppression(cursor: Any, schema: str) -> int:
    """The list's entries through the map. An entry whose re-keyed value is listed already (the
    subject erased again under the new key before the rotation) merges into it: delete wins,
    the wider reach wins, and the later erasure, which covers more past chats, gives the time
    and the ref."""
    listed = bookkeeping.qualified(schema, SUPPRESSION_TABLE)
    cursor.execute(
        sql.SQL(
            "INSERT INTO {l} AS s (pseudonym, mode, also_future, erased_at, request_ref)"
            " SELECT m.new, o.mode, o.also_future, o.erased_at, o.request_ref"
            " FROM {l} AS o JOIN {m} AS m ON m.old = o.pseudonym"
            " ON CONFLICT (pseudonym) DO UPDATE SET"
            " mode = CASE WHEN 'delete' IN (s.mode, EXCLUDED.mode) THEN 'delete' ELSE s.mode END,"
            " also_future = s.also_future OR EXCLUDED.also_future,"
            " request_ref = CASE WHEN EXCLUDED.erased_at > s.erased_at"
            " THEN EXCLUDED.request_ref ELSE s.request_ref END,"
            " erased_at = greatest(s.erased_at, EXCLUDED.erased_at)"
        ).format(l=listed, m=_MAP)
    )
    cursor.execute(
        sql.SQL("DELETE FROM {} AS o USING {} AS m WHERE m.old = o.pseudonym").format(listed, _MAP)
    )
    return cursor.rowcount


def stale(cursor: Any, schema: str, pseudonymizer: Pseudonymizer) -> dict[str, int]:
    """Rows still under another key, per table: raw versions by their fingerprint, flattened
    rows and list entries by their pseudonyms' version. Reads every row."""
    version = pseudonymizer.version
    counts = {
        RAW_CHATS.name: cursor.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
                qualified(schema, RAW_CHATS), under_other_key(pseudonymizer.fingerprint)
            )
        ).fetchone()[0]
    }
    for table, columns in KEYED_COLUMNS.items():
        counts[table.name] = cursor.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
                qualified(schema, table),
                sql.SQL(" OR ").join(_not_current(sql.Identifier(c), version) for c in columns),
            )
        ).fetchone()[0]
    counts[SUPPRESSION_TABLE] = cursor.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
            bookkeeping.qualified(schema, SUPPRESSION_TABLE),
            _not_current(sql.Identifier("pseudonym"), version),
        )
    ).fetchone()[0]
    return counts


def current_key_spec(table: Table, partitions: dg.PartitionsDefinition) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        CURRENT_KEY_VERSION,
        asset=table.name,
        partitions_def=partitions,
        description="Every pseudonym of the partition's rows carries the current key version "
        "(CHAT_ASSETS_PII_KEY_VERSION, or the tenant's pii_key_version): none is left under an "
        "older key after a rotation.",
    )


def current_key_version(
    engine: sa.Engine, schema: str, table: Table, start: datetime, end: datetime, version: str
) -> dg.AssetCheckResult:
    """Fails while a row of the partition holds a pseudonym under another key version; names
    chats by id only."""
    columns = KEYED_COLUMNS.get(table, [])
    time = sql.Identifier(table.time_column)
    ids: Iterable[int] = []
    rows = 0
    if columns:
        query = sql.SQL("SELECT {} FROM {} WHERE {} >= %(start)s AND {} < %(end)s AND ({})").format(
            sql.Identifier(table.key[0]),
            qualified(schema, table),
            time,
            time,
            sql.SQL(" OR ").join(_not_current(sql.Identifier(c), version) for c in columns),
        )
        with cursor_for(engine) as cursor:
            found = [row[0] for row in cursor.execute(query, {"start": start, "end": end})]
        rows, ids = len(found), sorted(set(found))[:EXAMPLES]
    return dg.AssetCheckResult(
        check_name=CURRENT_KEY_VERSION,
        asset_key=table.name,
        passed=rows == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "current_key_version": version,
            "rows_under_other_keys": rows,
            "chat_ids": dg.MetadataValue.json(list(ids)),
        },
    )
