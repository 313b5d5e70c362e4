"""One declaration of each warehouse table.

Each `Table` drives the DDL, the flattening, the DataFrame dtypes, Dagster's column schema and the
table reference (docs/tables.md), so a column is named exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import dagster as dg
import pandas as pd

from chat_assets.privacy.catalog import Rule, Treatment, rule_for


class PgType(StrEnum):
    """The Postgres types the warehouse uses, each with the pandas dtype that carries it."""

    BIGINT = "bigint"
    INTEGER = "integer"
    DOUBLE = "double precision"
    BOOLEAN = "boolean"
    TEXT = "text"
    DATE = "date"
    TIMESTAMPTZ = "timestamptz"
    JSONB = "jsonb"

    @property
    def pandas_dtype(self) -> str:
        return _PANDAS_DTYPES[self]


_PANDAS_DTYPES: dict[PgType, str] = {
    PgType.BIGINT: "Int64",
    PgType.INTEGER: "Int32",
    PgType.DOUBLE: "Float64",
    PgType.BOOLEAN: "boolean",
    PgType.TEXT: "str",
    PgType.DATE: "object",
    PgType.TIMESTAMPTZ: "datetime64[us, UTC]",
    PgType.JSONB: "object",
}


TREATED: dict[Treatment, str] = {
    Treatment.PSEUDONYM: "keyed pseudonym (HMAC-SHA256), joinable, not reversible",
    Treatment.HOST_ONLY: "scheme and host only",
    Treatment.COUNT_ONLY: "count only",
    Treatment.DROP: "dropped",
    Treatment.KEEP: "kept",
}


class WriteMode(StrEnum):
    """How a materialization reaches its table."""

    # The partition's rows replace exactly the rows whose time column falls in the window.
    REPLACE_WINDOW = "replace_window"
    # Per chat, the version with the newest updated_at wins, whatever order windows arrive in;
    # its rows replace every row of an older version of that chat.
    NEWEST_WINS = "newest_wins"
    # Recomputed from its facts, per local day, in the transaction of every write that touches
    # that day's facts; a materialization recomputes its own day.
    AGGREGATE = "aggregate"


@dataclass(frozen=True)
class Column:
    """A warehouse column and where its value comes from in a chat.

    `source` is a dotted path into the row's object (the chat, or the list item for a child
    table); `chat:<path>` reads the parent chat, `count:<path>` counts a list, and `position`
    is the item's index in its list.
    """

    name: str
    type: PgType
    description: str
    source: str | None = None
    key: bool = False
    nullable: bool = True
    # The documented values of an enumeration: the only values previews may show.
    values: tuple[str, ...] = ()
    # For an aggregate table: the PostgreSQL expression that computes the column, over the
    # facts' columns (a measure), or over the measures (a column the aggregation calls derived).
    formula: str | None = None
    # For a measure over other facts than the aggregation's own: the name of that table (one of
    # `Aggregation.also`).
    over: str | None = None


# The chat's identity. Landing parses these fields into raw_chats' typed id and updated_at, and
# every table reads them from there, so a chat's rows and its version always agree.
CHAT_ID_FIELD = "id"
VERSION_FIELD = "updated_at"
# raw_chats' other columns, named here once for the SQL that reads them.
RAW_PARTITION = "partition_key"
RAW_PII_KEY = "pii_key"
RAW_PAYLOAD = "payload"

# Partition checks a table may declare beyond the ones every table has.
SLA_EVENT_VALID = "sla_event_valid"
SLA_CONSISTENT = "sla_consistent"
COUNTS_ADD_UP = "counts_add_up"
SERVICE_LEVEL_IN_RANGE = "service_level_in_range"


@dataclass(frozen=True)
class Read:
    """Where a flattened column's value comes from: `Column.source`, parsed."""

    # Dotted path into the chat or the list item; empty for the item's position in its list.
    path: str
    # Read from the chat (for a child table, its parent chat) rather than from the list item.
    on_chat: bool
    # The length of the list at `path`, not its value.
    count: bool = False

    @property
    def position(self) -> bool:
        return not self.path

    @property
    def identity(self) -> bool:
        """The chat's id or version, which come from raw_chats' typed columns."""
        return self.on_chat and self.path in (CHAT_ID_FIELD, VERSION_FIELD)

    @property
    def field(self) -> str:
        """The top-level field of the chat or item that the path starts with."""
        return self.path.split(".")[0]


@dataclass(frozen=True)
class MoreFacts:
    """Another table an aggregate counts beside its own facts, placed on the same days and
    groups: its measures are the columns declared `over` it."""

    table: Table
    # Its timestamptz column whose local date is the row's day.
    day_of: str
    # The aggregate's group columns, in order, as expressions over this table's columns.
    groups: tuple[str, ...]
    # The condition a row meets to be one of these facts.
    where: str = "true"


@dataclass(frozen=True)
class Interval:
    """An aggregate counted per interval of the local day instead of per day: a fact's interval
    is the one of `CHAT_ASSETS_INTERVAL_MINUTES` minutes, counted from the local midnight of its
    local day, that its instant falls in. The intervals of a day and group add up to the day's
    row of `day_table`."""

    # The timestamptz column holding the interval's start instant (the aggregate's time column).
    start: str
    # The integer column holding the interval's length in minutes.
    minutes: str
    # The same aggregation per local day.
    day_table: Table


@dataclass(frozen=True)
class Aggregation:
    """How an aggregate table is computed from a fact table (and perhaps others, `also`): one
    row per local day (or, with an `interval`, per interval of it) and group that any of them
    has facts on."""

    facts: Table
    # The facts' timestamptz column whose local date (in the partitions' time zone) is the row's
    # day; the aggregate's time column holds that date.
    day_of: str
    # Fact columns, named alike in the aggregate, that make a row with the day.
    group_by: tuple[str, ...]
    # Columns computed from the measures (after them), in the order they may refer to each other.
    derived: tuple[str, ...]
    # The order in which a group's facts are taken when a column keeps the latest value.
    latest_by: tuple[str, ...]
    also: tuple[MoreFacts, ...] = ()
    interval: Interval | None = None

    @property
    def fact_tables(self) -> tuple[Table, ...]:
        """Every table whose rows the aggregate counts, its own facts first."""
        return (self.facts, *(more.table for more in self.also))

    def days_of(self) -> tuple[tuple[Table, str, str], ...]:
        """(fact table, the column whose local date places its rows on a day, the condition its
        rows meet to be facts), for each."""
        return (
            (self.facts, self.day_of, "true"),
            *((m.table, m.day_of, m.where) for m in self.also),
        )

    def latest(self, column: str) -> str:
        """The value of `column` on the group's last fact in `latest_by` order."""
        order = ", ".join(f"{name} DESC" for name in self.latest_by)
        return f"(array_agg({column} ORDER BY {order}))[1]"


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    # The timestamptz column whose value places a row in a daily partition's window.
    time_column: str
    write: WriteMode
    # For a child table, the chat's list whose items become rows (e.g. "transfers").
    items: str | None = None
    # Columns that must identify a row; guarded by checks rather than a constraint, so that a
    # vendor repeating or omitting an id never loses a row.
    unique_by: tuple[str, ...] = ()
    # An enumeration column whose counts summarise a batch in the UI (documented values only).
    summary_by: str | None = None
    # (check name, column): a check that the column holds only its declared `values`.
    valid_values: tuple[tuple[str, str], ...] = ()
    # Names of the checks of `chat_assets.checks.declared` that hold the table's figures together.
    consistency: tuple[str, ...] = ()
    # For an aggregate table (written AGGREGATE): how it is computed from its facts.
    aggregation: Aggregation | None = None

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"table {self.name} declares a column twice")
        # A date time column holds the partition's local day itself.
        if self.column(self.time_column).type not in (PgType.TIMESTAMPTZ, PgType.DATE):
            raise ValueError(f"table {self.name}: time column must be timestamptz or date")
        if (self.aggregation is None) != (self.write is not WriteMode.AGGREGATE):
            raise ValueError(f"table {self.name}: an aggregation is declared for AGGREGATE only")
        for check, name in self.valid_values:
            if not self.column(name).values:
                raise ValueError(f"table {self.name}: {check} needs declared values of {name}")
        interval = self.aggregation.interval if self.aggregation else None
        if interval is not None and self.time_column != interval.start:
            raise ValueError(f"table {self.name}: time column must be its interval's start")
        more = {m.table.name for m in self.aggregation.also} if self.aggregation else set()
        for c in self.columns:
            if c.over is not None and c.over not in more:
                raise ValueError(f"table {self.name}: {c.name} is over facts it does not count")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def key(self) -> list[str]:
        return [c.name for c in self.columns if c.key]

    @property
    def own_id(self) -> str | None:
        """The column holding each row's own UJET id (the chat's, or the list item's), which
        the table-wide uniqueness check looks up; None for an aggregate, and for a list whose
        items have no id (their rows are identified by their values)."""
        if self.aggregation is not None or not self.unique_by:
            return None
        last = self.column(self.unique_by[-1])
        read = self.read(last)
        return last.name if read is not None and read.path == CHAT_ID_FIELD else None

    def read(self, column: Column) -> Read | None:
        """Where the column's value comes from (None for a column without a source)."""
        if not column.source:
            return None
        if column.source == "position":
            return Read("", on_chat=False)
        kind, _, path = column.source.rpartition(":")
        if kind not in ("", "chat", "count"):
            raise ValueError(f"{self.name}.{column.name}: unknown source {column.source!r}")
        return Read(path, on_chat=kind == "chat" or self.items is None, count=kind == "count")

    def catalog_path(self, column: Column) -> str | None:
        """The path of the chat model a column is read from, in the privacy catalog's syntax."""
        read = self.read(column)
        if read is None or read.position:
            return None
        return read.path if read.on_chat else f"{self.items}[].{read.path}"

    def rule(self, column: Column) -> Rule | None:
        """The privacy rule of a column's source (None for columns made by chat_assets)."""
        path = self.catalog_path(column)
        return None if path is None else rule_for(path)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name} has no column {name}")

    def treatment(self, column: Column) -> Treatment:
        """Columns made by chat_assets (keys, counts, positions) hold no personal data."""
        rule = self.rule(column)
        return Treatment.KEEP if rule is None else rule.treatment

    def full_description(self, column: Column) -> str:
        """The column's description with its personal-data treatment, for the UI and COMMENT."""
        rule = self.rule(column)
        if rule is None or rule.treatment is Treatment.KEEP:
            return column.description
        return f"{column.description} Personal data ({rule.subject}): {TREATED[rule.treatment]}."

    def asset_metadata(self, schema: str) -> dict[str, Any]:
        """What Dagster's UI shows of the table: columns (with their treatment) and location."""
        return {
            "dagster/column_schema": self.dagster_schema(),
            "dagster/table_name": f"{schema}.{self.name}",
            "partition_expr": self.time_column,
        }

    def dagster_schema(self) -> dg.TableSchema:
        columns = []
        for c in self.columns:
            rule = self.rule(c)
            tags = {}
            if rule is not None and rule.treatment is not Treatment.KEEP:
                tags = {"personal_data": rule.treatment.value, "subject": rule.subject.value}
            columns.append(
                dg.TableColumn(
                    name=c.name,
                    type=c.type.value,
                    description=self.full_description(c),
                    constraints=dg.TableColumnConstraints(nullable=c.nullable, unique=False),
                    tags=tags,
                )
            )
        return dg.TableSchema(columns=columns)


RAW_CHATS = Table(
    name="raw_chats",
    description="Each chat UJET served in a day window (newest version per window), sanitized.",
    columns=(
        Column(
            RAW_PARTITION,
            PgType.TEXT,
            "Daily partition (YYYY-MM-DD) that fetched it.",
            key=True,
            nullable=False,
        ),
        Column(CHAT_ID_FIELD, PgType.BIGINT, "UJET chat id.", key=True, nullable=False),
        Column(
            VERSION_FIELD, PgType.TIMESTAMPTZ, "When UJET last changed the chat.", nullable=False
        ),
        Column(
            RAW_PII_KEY,
            PgType.TEXT,
            "Fingerprint of the pseudonym key that sanitized the payload (never the key).",
            nullable=False,
        ),
        Column(
            RAW_PAYLOAD,
            PgType.JSONB,
            "The chat as received, sanitized (loads into pandas as UTF-8 JSON bytes).",
            nullable=False,
        ),
    ),
    time_column=VERSION_FIELD,
    write=WriteMode.REPLACE_WINDOW,
)


def _col(name: str, type_: PgType, description: str, source: str | None = None, **kw: Any):
    return Column(name, type_, description, source=source or name, **kw)


def _menu(prefix: str, path: str, what: str) -> tuple[Column, ...]:
    return (
        _col(
            f"{prefix}_items_count",
            PgType.INTEGER,
            f"{what}: items in the menu.",
            f"{path}.items_count",
        ),
        _col(f"{prefix}_name", PgType.TEXT, f"{what}: menu name.", f"{path}.name"),
        _col(
            f"{prefix}_materialized_path",
            PgType.TEXT,
            f"{what}: ids of the menu path.",
            f"{path}.materialized_path",
        ),
    )


def _child_head(what: str, with_id: bool) -> tuple[Column, ...]:
    """The columns every list's table starts with: its chat, the item's place in the list, the
    item's own id (when its items have one) and the chat version."""
    own_id = _col(
        "id", PgType.BIGINT, f"UJET {what} id; unique per chat, repeated across chats by UJET."
    )
    return (
        _col(
            "chat_id",
            PgType.BIGINT,
            "The chat this row belongs to.",
            "chat:id",
            key=True,
            nullable=False,
        ),
        _col(
            "position",
            PgType.INTEGER,
            f"Index of the {what} in the chat's list.",
            "position",
            key=True,
            nullable=False,
        ),
        *((own_id,) if with_id else ()),
        _col(
            "chat_updated_at",
            PgType.TIMESTAMPTZ,
            "updated_at of the chat version this row is from.",
            "chat:updated_at",
            nullable=False,
        ),
    )


def _list_table(
    name: str,
    description: str,
    items: str,
    what: str,
    columns: tuple[Column, ...],
    *,
    unique_by: tuple[str, ...] = ("chat_id", "id"),
    **checks: Any,
) -> Table:
    """A list of the chat as a table: one row per item of the chat's newest version, keyed by
    the chat and the item's position (UJET repeats item ids across chats, and omits them in
    places), written newest-wins with the chat. Without an id, `unique_by` names the values
    that identify an item."""
    return Table(
        name=name,
        description=description,
        columns=(*_child_head(what, with_id="id" in unique_by), *columns),
        time_column="chat_updated_at",
        write=WriteMode.NEWEST_WINS,
        items=items,
        unique_by=unique_by,
        **checks,
    )


def _segment(what: str) -> tuple[Column, ...]:
    """Fields shared by queue and handle duration segments."""
    return (
        _col("agent_id", PgType.TEXT, f"Agent of the {what}."),
        _col("menu_path_id", PgType.BIGINT, "Queue (menu) of the segment."),
        _col("menu_path", PgType.TEXT, "Queue path as text, e.g. Support/Billing."),
        _col("lang", PgType.TEXT, "Language of the queue."),
        _col("transfer", PgType.BOOLEAN, "Whether the segment came from a transfer."),
        _col("transfer_id", PgType.BIGINT, "The transfer that started the segment."),
        _col("started_at", PgType.TIMESTAMPTZ, f"Start of the {what}."),
        _col("ended_at", PgType.TIMESTAMPTZ, f"End of the {what}."),
        _col("event", PgType.TEXT, "How the segment ended."),
    )


def _responses(whose: str) -> tuple[Column, ...]:
    """Response figures of a segment, as UJET sends them."""
    return (
        _col("response_count", PgType.INTEGER, f"Responses by {whose}."),
        _col("response_time_total", PgType.DOUBLE, "Sum of response times, seconds."),
        _col("response_time_max", PgType.DOUBLE, "Longest response time, seconds."),
        _col("response_time_avg", PgType.DOUBLE, "Average response time, seconds."),
    )


def _queue_of(what: str) -> tuple[Column, ...]:
    return (
        _col("menu_path_id", PgType.BIGINT, f"Queue (menu) of the {what}."),
        _col("menu_path", PgType.TEXT, "Queue path as text, e.g. Support/Billing."),
        _col("lang", PgType.TEXT, "Language of the queue."),
    )


def _bot(what: str) -> tuple[Column, ...]:
    return (
        _col(
            "virtual_agent_id",
            PgType.BIGINT,
            f"Virtual agent (bot) of the {what}.",
            "virtual_agent.id",
        ),
        _col("virtual_agent_name", PgType.TEXT, "Virtual agent name.", "virtual_agent.name"),
    )


CHATS = Table(
    name="chats",
    description="One row per chat: the newest version UJET served, flattened.",
    columns=(
        _col("id", PgType.BIGINT, "UJET chat id.", key=True, nullable=False),
        _col("updated_at", PgType.TIMESTAMPTZ, "When UJET last changed the chat.", nullable=False),
        _col("created_at", PgType.TIMESTAMPTZ, "When the chat was created."),
        _col("assigned_at", PgType.TIMESTAMPTZ, "When an agent was assigned."),
        _col("ends_at", PgType.TIMESTAMPTZ, "When the chat ended."),
        _col("first_msg_sent_at", PgType.TIMESTAMPTZ, "First message sent."),
        _col("last_msg_sent_at", PgType.TIMESTAMPTZ, "Last message sent."),
        _col("lang", PgType.TEXT, "Language of the chat."),
        _col("chat_type", PgType.TEXT, "Channel, e.g. Messaging Inbound (Web Chat)."),
        _col(
            "status",
            PgType.TEXT,
            "queued, assigned, finished, canceled, failed or no_response.",
            values=("queued", "assigned", "finished", "canceled", "failed", "no_response"),
        ),
        _col("sub_status", PgType.TEXT, "Finer status, e.g. Disconnected by end user."),
        _col("finish_reason", PgType.TEXT, "Why the chat finished."),
        _col("fail_reason", PgType.TEXT, "nothing, unknown, no_response or expired."),
        _col("queue_duration", PgType.INTEGER, "Seconds in queue."),
        _col("wait_duration", PgType.INTEGER, "Deprecated by UJET: same as queue_duration."),
        _col("chat_duration", PgType.INTEGER, "Seconds of conversation."),
        _col("message_count", PgType.INTEGER, "Messages in the chat."),
        _col("average_response_time", PgType.DOUBLE, "Average agent response time, seconds."),
        _col("longest_response_time", PgType.DOUBLE, "Longest agent response time, seconds."),
        _col("verified", PgType.BOOLEAN, "Whether the end user was verified."),
        _col("rating", PgType.DOUBLE, "Customer rating 1-5."),
        _col("has_feedback", PgType.BOOLEAN, "Whether the customer left feedback."),
        _col("out_ticket_id", PgType.TEXT, "CRM ticket."),
        _col("out_ticket_url", PgType.TEXT, "CRM that holds the ticket."),
        _col("offer_type", PgType.TEXT, "How the chat was offered to agents."),
        _col("selected_menu_id", PgType.BIGINT, "Selected menu id.", "selected_menu.id"),
        _col("selected_menu_name", PgType.TEXT, "Selected menu name.", "selected_menu.name"),
        _col("selected_menu_parent_id", PgType.BIGINT, "Parent menu.", "selected_menu.parent_id"),
        _col("selected_menu_position", PgType.INTEGER, "Menu position.", "selected_menu.position"),
        _col("selected_menu_deleted", PgType.BOOLEAN, "Menu deleted.", "selected_menu.deleted"),
        _col(
            "selected_menu_hidden",
            PgType.TEXT,
            "Menu hidden flag as UJET sends it.",
            "selected_menu.hidden",
        ),
        _col(
            "selected_menu_menu_type",
            PgType.TEXT,
            "Menu type, e.g. ivr_menu.",
            "selected_menu.menu_type",
        ),
        _col("selected_menu_output_msg", PgType.TEXT, "Menu message.", "selected_menu.output_msg"),
        *_menu("menu_path", "menu_path", "Menu path"),
        _col("agent_id", PgType.TEXT, "Assigned agent.", "agent_info.id"),
        _col("end_user_id", PgType.TEXT, "End user (customer).", "end_user.id"),
        _col(
            "end_user_out_contact_id",
            PgType.TEXT,
            "Customer's CRM contact.",
            "end_user.out_contact_id",
        ),
        _col("virtual_agent_id", PgType.BIGINT, "Virtual agent id.", "virtual_agent.id"),
        _col("virtual_agent_name", PgType.TEXT, "Virtual agent name.", "virtual_agent.name"),
        _col("photo_count", PgType.INTEGER, "Photos the customer shared.", "count:photos"),
        _col("video_count", PgType.INTEGER, "Videos the customer shared.", "count:videos"),
    ),
    time_column="updated_at",
    write=WriteMode.NEWEST_WINS,
    unique_by=("id",),
    summary_by="status",
)

CHAT_TRANSFERS = _list_table(
    "chat_transfers",
    "Transfers of each chat (newest chat version), one row per transfers[] item.",
    "transfers",
    "transfer",
    (
        _col("status", PgType.TEXT, "Transfer status, e.g. transferring."),
        _col("fail_reason", PgType.TEXT, "Why the transfer failed."),
        _col("created_at", PgType.TIMESTAMPTZ, "When the transfer started."),
        _col("from_agent_id", PgType.TEXT, "Agent who transferred.", "from_agent.id"),
        _col("to_agent_id", PgType.TEXT, "Agent who received.", "to_agent.id"),
        *_menu("from_menu", "from_menu", "Queue transferred from"),
        *_menu("to_menu", "to_menu", "Queue transferred to"),
    ),
)

CHAT_QUEUE_DURATIONS = _list_table(
    "chat_queue_durations",
    "Time each chat spent in queue per segment, with its SLA outcome.",
    "queue_durations",
    "queue segment",
    (
        _col("queue_duration", PgType.INTEGER, "Seconds in queue."),
        *_segment("queue segment"),
        _col("transfer_cold", PgType.BOOLEAN, "Whether the transfer was cold."),
        _col(
            "service_level_event",
            PgType.TEXT,
            "in_sla, not_in_sla or excluded; null while the segment waits.",
            values=("in_sla", "not_in_sla", "excluded"),
        ),
        _col("service_level_target_time", PgType.INTEGER, "SLA target answer time, seconds."),
        _col("service_level_target_percent", PgType.DOUBLE, "SLA target share, percent."),
        _col(
            "service_level_abandon_time_threshold",
            PgType.INTEGER,
            "Abandons faster than this are excluded, seconds.",
        ),
    ),
    summary_by="service_level_event",
    valid_values=((SLA_EVENT_VALID, "service_level_event"),),
    consistency=(SLA_CONSISTENT,),
)

CHAT_HANDLE_DURATIONS = _list_table(
    "chat_handle_durations",
    "Agent handling time of each chat per segment, with response figures.",
    "handle_durations",
    "handle segment",
    (
        _col("chat_duration", PgType.INTEGER, "Seconds the agent handled the chat."),
        _col("acw_duration", PgType.INTEGER, "After-chat work, seconds."),
        _col("wait_duration", PgType.INTEGER, "Seconds waited in the segment."),
        *_segment("handle segment"),
        *_responses("the agent"),
        _col("assigned_connection_duration", PgType.INTEGER, "Seconds connected while assigned."),
    ),
)


CHAT_PARTICIPANTS = _list_table(
    "chat_participants",
    "Who took part in each chat: the end user and the agents, by pseudonym.",
    "participants",
    "participant record",
    (
        _col("type", PgType.TEXT, "Kind of participant, e.g. end_user or agent."),
        _col("status", PgType.TEXT, "The participant's state, e.g. waiting, connected, finished."),
        _col("call_id", PgType.BIGINT, "Call the participant joined by, if any."),
        _col("user_id", PgType.TEXT, "The agent (same pseudonym as chats.agent_id)."),
        _col("end_user_id", PgType.TEXT, "The customer (same pseudonym as chats.end_user_id)."),
        _col("call_duration", PgType.INTEGER, "Seconds the participant was connected."),
        _col("hold_duration", PgType.INTEGER, "Seconds on hold."),
        _col("connected_at", PgType.TIMESTAMPTZ, "When the participant joined."),
        _col("ended_at", PgType.TIMESTAMPTZ, "When the participant left."),
        _col("fail_reason", PgType.TEXT, "Why joining failed, e.g. nothing."),
    ),
)

CHAT_CONSUMER_HANDLE_DURATIONS = _list_table(
    "chat_consumer_handle_durations",
    "The customer's side of each chat, as figures: messages and response times.",
    "consumer_handle_durations",
    "consumer segment",
    (
        _col("chat_duration", PgType.INTEGER, "Seconds of the segment."),
        _col("message_count", PgType.INTEGER, "Messages the customer sent."),
        *_responses("the customer"),
        _col("started_at", PgType.TIMESTAMPTZ, "Start of the segment."),
        _col("ended_at", PgType.TIMESTAMPTZ, "End of the segment."),
    ),
)

CHAT_CONSUMER_EVENT_DURATIONS = _list_table(
    "chat_consumer_event_durations",
    "Events the customer went through after the conversation, e.g. the CSAT survey.",
    "consumer_event_durations",
    "consumer event",
    (
        _col("type", PgType.TEXT, "Kind of event, e.g. csat (the satisfaction survey)."),
        _col("event", PgType.TEXT, "How it ended, e.g. finished."),
        _col("duration", PgType.INTEGER, "Seconds the event lasted."),
        *_queue_of("event"),
        _col("started_at", PgType.TIMESTAMPTZ, "Start of the event."),
        _col("ended_at", PgType.TIMESTAMPTZ, "End of the event."),
    ),
)

CHAT_OFFER_EVENTS = _list_table(
    "chat_offer_events",
    "Each offer of a chat to a group of agents (several in a cascade), in the order UJET lists "
    "them. Offers have no id: one is identified by its chat, instant and group.",
    "offer_events",
    "offer",
    (
        _col("casting_time", PgType.TIMESTAMPTZ, "When the offer went out."),
        _col("group_name", PgType.TEXT, "Agent group offered to (UJET's field `group`).", "group"),
    ),
    unique_by=("chat_id", "casting_time", "group_name"),
)

CHAT_VIRTUAL_AGENT_HANDLE_DURATIONS = _list_table(
    "chat_virtual_agent_handle_durations",
    "Each session of a virtual agent (bot) with the customer, and how it ended.",
    "virtual_agent_handle_durations",
    "bot session",
    (
        *_bot("session"),
        _col("chat_duration", PgType.INTEGER, "Seconds the bot handled the chat."),
        _col(
            "escalation_reason",
            PgType.TEXT,
            "Why the bot handed over to a queue, e.g. by_end_user_message; NULL if it did not.",
        ),
        *_responses("the bot"),
        _col("fallback_response_count", PgType.INTEGER, "Answers where the bot fell back."),
        _col("initiated_by", PgType.TEXT, "Who started the session, e.g. end_user."),
        *_queue_of("session"),
        _col("transfer", PgType.BOOLEAN, "Whether the session came from a transfer."),
        _col("transfer_id", PgType.BIGINT, "The transfer that started the session."),
        _col("started_at", PgType.TIMESTAMPTZ, "Start of the session."),
        _col("ended_at", PgType.TIMESTAMPTZ, "End of the session."),
    ),
)

CHAT_VIRTUAL_AGENT_DEFLECTED_ESCALATIONS = _list_table(
    "chat_virtual_agent_deflected_escalations",
    "Each escalation from a virtual agent to a queue, with the deflection in force.",
    "virtual_agent_deflected_escalations",
    "escalation",
    (
        _col("deflection", PgType.TEXT, "Deflection in force, e.g. after_hours or none."),
        _col("escalation_reason", PgType.TEXT, "Why the bot escalated, e.g. by_end_user_message."),
        _col("escalated_at", PgType.TIMESTAMPTZ, "When the bot escalated."),
        *_queue_of("escalation"),
        *_bot("escalation"),
    ),
)

DERIVED_TABLES: tuple[Table, ...] = (
    CHATS,
    CHAT_TRANSFERS,
    CHAT_QUEUE_DURATIONS,
    CHAT_HANDLE_DURATIONS,
    CHAT_PARTICIPANTS,
    CHAT_CONSUMER_HANDLE_DURATIONS,
    CHAT_CONSUMER_EVENT_DURATIONS,
    CHAT_OFFER_EVENTS,
    CHAT_VIRTUAL_AGENT_HANDLE_DURATIONS,
    CHAT_VIRTUAL_AGENT_DEFLECTED_ESCALATIONS,
)

_SLA_EVENTS = CHAT_QUEUE_DURATIONS.column("service_level_event").values
# The queue of a chat's own menu_path: the last id of its materialized path (ids from the root
# menu to the queue; UJET sends "3389", the demo "parent/menu"), NULL without one.
CHAT_QUEUE_ID = (
    "CAST(substring(menu_path_materialized_path FROM '(?:^|[^0-9])([0-9]{1,18})$') AS bigint)"
)
# A chat counts towards CSAT once rated 1 to 5 (the API's range for rating; the model's
# placeholder 0 is no rating).
RATED = "rating BETWEEN 1 AND 5"
_QUEUES = Aggregation(
    facts=CHAT_QUEUE_DURATIONS,
    day_of="started_at",
    group_by=("menu_path_id",),
    derived=("service_level", "met_target", "abandon_rate", "rated_4_or_5_share"),
    latest_by=("started_at", "chat_id", "position"),
    also=(MoreFacts(CHATS, day_of="created_at", groups=(CHAT_QUEUE_ID,), where=RATED),),
)
# How a queue segment ended (`event`): the values the service-level counts distinguish.
ANSWERED, ABANDONED = "answered", "abandoned"
_SHORT = "queue_duration < service_level_abandon_time_threshold"


def _count_measure(
    name: str, description: str, where: str | None = None, over: str | None = None
) -> Column:
    """An aggregate column counting the group's facts (those matching `where`, when given)."""
    formula = "count(*)" if where is None else f"count(*) FILTER (WHERE {where})"
    return Column(name, PgType.INTEGER, description, formula=formula, nullable=False, over=over)


def rolled_up(table: Table) -> dict[str, str]:
    """The aggregate's columns whose value over a day follows from its intervals' values, with
    the SQL aggregate that gives it: a count is the sum of the counts, a maximum their maximum."""
    return {
        c.name: "sum" if c.formula.startswith("count(*)") else "max"
        for c in table.columns
        if c.formula is not None and c.formula.startswith(("count(*)", "max("))
    }


def _share(name: str, part: str, whole: str, description: str) -> Column:
    """A derived share of counts, NULL when the whole is 0."""
    return Column(
        name,
        PgType.DOUBLE,
        description,
        formula=f"CASE WHEN {whole} > 0 THEN {part}::double precision / ({whole}) END",
    )


def _event_is(value: str) -> str:
    return f"service_level_event = '{value}'"


# The group of both queue marts.
_QUEUE_KEY = Column(
    "menu_path_id",
    PgType.BIGINT,
    "The queue (menu); NULL gathers segments UJET sent without one.",
    key=True,
)


def _queue_measures(period: str) -> tuple[Column, ...]:
    """The queue marts' columns after their key: what is counted of a queue's facts in a
    `period` (day or interval), then the figures derived from the counts."""
    return (
        Column(
            "menu_path",
            PgType.TEXT,
            f"Queue path as text, from the {period}'s last segment.",
            formula=_QUEUES.latest("menu_path"),
        ),
        _count_measure("offered", f"Queue segments that started that {period}."),
        _count_measure(
            "answered", "Segments an agent accepted (event answered).", f"event = '{ANSWERED}'"
        ),
        _count_measure("in_sla", "Segments UJET judged in_sla.", _event_is("in_sla")),
        _count_measure("not_in_sla", "Segments UJET judged not_in_sla.", _event_is("not_in_sla")),
        _count_measure(
            "excluded", "Segments UJET left out of its SLA figures.", _event_is("excluded")
        ),
        _count_measure(
            "unclassified",
            "Segments with no service_level_event, or one UJET does not document.",
            "coalesce(service_level_event NOT IN ("
            + ", ".join(f"'{v}'" for v in _SLA_EVENTS)
            + "), true)",
        ),
        _count_measure(
            "abandoned",
            "Segments the customer left before an agent accepted (event abandoned), short "
            "abandons excluded: queue_duration at or above the segment's "
            "service_level_abandon_time_threshold, or either unknown.",
            f"event = '{ABANDONED}' AND NOT coalesce({_SHORT}, false)",
        ),
        _count_measure(
            "short_abandoned",
            "Abandoned segments under service_level_abandon_time_threshold.",
            f"event = '{ABANDONED}' AND {_SHORT}",
        ),
        _count_measure(
            "not_answered",
            "Segments whose event is not answered: abandons (short too), timeouts, other "
            "outcomes and segments without an event yet.",
            f"event IS DISTINCT FROM '{ANSWERED}'",
        ),
        Column(
            "avg_queue_seconds",
            PgType.DOUBLE,
            "Average queue_duration of every segment, abandons included, seconds (not the "
            "average speed of answer: see asa_seconds).",
            formula="avg(queue_duration)",
        ),
        Column(
            "asa_seconds",
            PgType.DOUBLE,
            "Average speed of answer: mean queue_duration of answered segments, seconds; NULL "
            "without any.",
            formula=f"avg(queue_duration) FILTER (WHERE event = '{ANSWERED}')",
        ),
        Column(
            "max_queue_seconds",
            PgType.INTEGER,
            "Longest queue_duration of the segments, seconds.",
            formula="max(queue_duration)",
        ),
        Column(
            "target_time",
            PgType.INTEGER,
            f"SLA target answer time, seconds, as set on the {period}'s last segment.",
            formula=_QUEUES.latest("service_level_target_time"),
        ),
        Column(
            "target_percent",
            PgType.DOUBLE,
            f"SLA target share, percent, as set on the {period}'s last segment.",
            formula=_QUEUES.latest("service_level_target_percent"),
        ),
        Column(
            "target_settings",
            PgType.INTEGER,
            f"Distinct (target_time, target_percent) settings seen that {period}; above 1 when "
            f"the queue's SLA changed during the {period}.",
            formula="count(DISTINCT (service_level_target_time, service_level_target_percent))",
            nullable=False,
        ),
        _count_measure(
            "rated_chats",
            f"Chats of the queue (their own menu_path) created that {period} and rated 1 to 5.",
            over=CHATS.name,
        ),
        Column(
            "mean_rating",
            PgType.DOUBLE,
            "Mean rating of those chats; NULL without any.",
            formula="avg(rating)",
            over=CHATS.name,
        ),
        _count_measure("rated_4_or_5", "Those chats rated 4 or 5.", "rating >= 4", CHATS.name),
        Column(
            "service_level",
            PgType.DOUBLE,
            "in_sla / (in_sla + not_in_sla); NULL when both are 0.",
            formula="CASE WHEN in_sla + not_in_sla > 0"
            " THEN in_sla::double precision / (in_sla + not_in_sla) END",
        ),
        Column(
            "met_target",
            PgType.BOOLEAN,
            "service_level * 100 >= target_percent (compared as in_sla * 100 >= target_percent "
            "* (in_sla + not_in_sla), without rounding); NULL without either.",
            formula="CASE WHEN in_sla + not_in_sla > 0"
            " THEN in_sla * 100 >= target_percent * (in_sla + not_in_sla) END",
        ),
        _share(
            "abandon_rate",
            "abandoned",
            "answered + abandoned",
            "abandoned / (answered + abandoned), UJET's Abandoned %; NULL when both are 0.",
        ),
        _share(
            "rated_4_or_5_share",
            "rated_4_or_5",
            "rated_chats",
            "rated_4_or_5 / rated_chats, the share of satisfied customers; NULL without ratings.",
        ),
    )


QUEUE_SERVICE_LEVELS = Table(
    name="queue_service_levels",
    description=(
        "Service level per queue and service day (the local day a queue segment started), "
        "aggregated from chat_queue_durations, with the CSAT of the queue's rated chats from "
        "chats, and kept equal to them."
    ),
    columns=(
        Column(
            "service_day",
            PgType.DATE,
            "Local day (CHAT_ASSETS_TIMEZONE) on which the queue segments started.",
            key=True,
            nullable=False,
        ),
        _QUEUE_KEY,
        *_queue_measures("day"),
    ),
    time_column="service_day",
    write=WriteMode.AGGREGATE,
    unique_by=("service_day", "menu_path_id"),
    consistency=(COUNTS_ADD_UP, SERVICE_LEVEL_IN_RANGE),
    aggregation=_QUEUES,
)

QUEUE_INTERVALS = Table(
    name="queue_intervals",
    description=(
        "Service level per queue and interval of the service day (CHAT_ASSETS_INTERVAL_MINUTES, "
        "counted from local midnight), the same counts as queue_service_levels: a day's "
        "intervals add up to its row there."
    ),
    columns=(
        Column(
            "interval_start",
            PgType.TIMESTAMPTZ,
            "Start of the interval: local midnight (CHAT_ASSETS_TIMEZONE) plus a whole number "
            "of intervals; the queue segments started in [interval_start, interval_start + "
            "interval_minutes).",
            key=True,
            nullable=False,
        ),
        Column(
            "interval_minutes",
            PgType.INTEGER,
            "Length of the interval, minutes (CHAT_ASSETS_INTERVAL_MINUTES: 15, 30 or 60).",
            nullable=False,
        ),
        _QUEUE_KEY,
        *_queue_measures("interval"),
    ),
    time_column="interval_start",
    write=WriteMode.AGGREGATE,
    unique_by=("interval_start", "menu_path_id"),
    consistency=(COUNTS_ADD_UP, SERVICE_LEVEL_IN_RANGE),
    aggregation=replace(
        _QUEUES,
        interval=Interval("interval_start", "interval_minutes", day_table=QUEUE_SERVICE_LEVELS),
    ),
)

AGGREGATE_TABLES: tuple[Table, ...] = (QUEUE_SERVICE_LEVELS, QUEUE_INTERVALS)

TABLES: dict[str, Table] = {t.name: t for t in (RAW_CHATS, *DERIVED_TABLES, *AGGREGATE_TABLES)}


def aggregates_of(tables: Sequence[Table]) -> tuple[Table, ...]:
    """The aggregate tables with facts among `tables`."""
    return tuple(
        t
        for t in AGGREGATE_TABLES
        if t.aggregation is not None and any(f in tables for f in t.aggregation.fact_tables)
    )


def typed_frame(
    rows: list[tuple[Any, ...]], table: Table, names: list[str] | None = None
) -> pd.DataFrame:
    """A DataFrame with the declared columns (all, or those named) and their dtypes (also for
    no rows)."""
    names = table.column_names if names is None else names
    # Column by column from Python objects: a frame built from records would pass a bigint
    # column holding NULLs through float64 and round ids above 2**53.
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    return pd.DataFrame(
        {
            name: pd.Series(values, dtype=object).astype(table.column(name).type.pandas_dtype)
            for name, values in zip(names, columns, strict=True)
        },
        columns=names,
    )
