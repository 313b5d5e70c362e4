"""The personal-data catalog: one rule for every field of a UJET chat.

Why one declarative list: the sanitizer, the canary, the docs and the tests must agree on what
each field is and what happens to it, and a reviewer must be able to read every decision in one
place. A field that is not listed here is unknown, and unknown fields never reach the warehouse.

Paths are dotted; `[]` marks the items of a list: `transfers[].from_agent.name`. Rules name leaf
fields. An object or list that is kept as a container (`agent_info`, `transfers`) is not a rule
itself; it is implied by the rules beneath it. A rule may name a whole subtree only when its
treatment is `drop` (the key disappears) or `count_only` (a list is replaced by its length, an
int under the same key, so a count survives while the items do not).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal


class Category(StrEnum):
    """What a value is, whoever it is about."""

    DIRECT_IDENTIFIER = "direct_identifier"  # names a person on its own
    CONTACT = "contact"  # reaches a person: phone number, email
    LINKABLE_ID = "linkable_id"  # a key that links records to each other or to another system
    MEDIA = "media"  # a picture, a video or a link to one
    FREE_TEXT = "free_text"  # text typed by a person, may hold anything
    CONFIGURATION = "configuration"  # set up by the company: menus, enums, statuses, SLA targets
    METRIC = "metric"  # counts, durations, flags and timestamps


class Subject(StrEnum):
    """Whose data it is."""

    CUSTOMER = "customer"
    AGENT = "agent"
    NONE = "none"


class Treatment(StrEnum):
    """What sanitizing does to the value before anything is written."""

    KEEP = "keep"  # as received
    PSEUDONYM = "pseudonym"  # a keyed hash that still joins within its namespace
    DROP = "drop"  # the key is removed
    COUNT_ONLY = "count_only"  # a list becomes its length (an int under the same key)
    HOST_ONLY = "host_only"  # a URL becomes scheme://host[:port]


# Treatments that may name an object or list as a whole (the others apply to leaves).
SUBTREE_TREATMENTS = frozenset({Treatment.DROP, Treatment.COUNT_ONLY})

_PATH = re.compile(r"^[a-z_][a-z0-9_]*(\[\])?(\.[a-z_][a-z0-9_]*(\[\])?)*$")


@dataclass(frozen=True)
class Rule:
    """How one field is classified and treated."""

    path: str
    category: Category
    subject: Subject
    treatment: Treatment
    namespace: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not _PATH.match(self.path):
            raise ValueError(f"rule path {self.path!r} is not dotted names with optional []")
        if (self.treatment is Treatment.PSEUDONYM) != (self.namespace is not None):
            raise ValueError(f"rule {self.path}: a namespace goes with, and only with, pseudonym")


def _rule(
    path: str,
    category: Category,
    treatment: Treatment = Treatment.KEEP,
    subject: Subject = Subject.NONE,
    namespace: str | None = None,
    description: str = "",
) -> Rule:
    return Rule(path, category, subject, treatment, namespace, description)


def _at(prefix: str, fields: Iterable[Rule]) -> tuple[Rule, ...]:
    """One declared object's rules placed under `prefix` (the object appears in several places)."""
    return tuple(replace(f, path=f"{prefix}.{f.path}") for f in fields)


# The agent object: agent_info, transfers[].from_agent and transfers[].to_agent.
AGENT_FIELDS: tuple[Rule, ...] = (
    _rule(
        "id",
        Category.LINKABLE_ID,
        Treatment.PSEUDONYM,
        Subject.AGENT,
        "agent",
        "Agent id; pseudonymised so agents stay countable and joinable, not nameable.",
    ),
    _rule(
        "name",
        Category.DIRECT_IDENTIFIER,
        Treatment.DROP,
        Subject.AGENT,
        description="An employee's full name.",
    ),
    _rule(
        "first_name",
        Category.DIRECT_IDENTIFIER,
        Treatment.DROP,
        Subject.AGENT,
        description="Employee first name.",
    ),
    _rule(
        "last_name",
        Category.DIRECT_IDENTIFIER,
        Treatment.DROP,
        Subject.AGENT,
        description="Employee last name.",
    ),
    _rule(
        "agent_number",
        Category.LINKABLE_ID,
        Treatment.DROP,
        Subject.AGENT,
        description="Employee number (an HR key); the agent id pseudonym already keys agents.",
    ),
    _rule(
        "avatar_url",
        Category.MEDIA,
        Treatment.DROP,
        Subject.AGENT,
        description="Link to the employee's photo; its host answers no question about agents.",
    ),
)

# A menu as an object: the top-level menu_path and transfers[].from_menu / to_menu.
MENU_FIELDS: tuple[Rule, ...] = (
    _rule("items_count", Category.CONFIGURATION, description="Items in the menu."),
    _rule("name", Category.CONFIGURATION, description="Menu name, set up by the company."),
    _rule("materialized_path", Category.CONFIGURATION, description="Menu ids along the path."),
)

# A virtual agent (a bot configured by the company, not a person).
VIRTUAL_AGENT_FIELDS: tuple[Rule, ...] = (
    _rule("id", Category.CONFIGURATION, description="Virtual agent id: a bot, not a person."),
    _rule("name", Category.CONFIGURATION, description="Virtual agent name, set up by the company."),
)


def _segment(prefix: str, *, agent: bool = True, times: bool = True) -> tuple[Rule, ...]:
    """Fields shared by the duration lists: id, queue, language, times and the agent."""
    rules = [
        _rule(
            f"{prefix}.id", Category.LINKABLE_ID, description="Segment id (repeats across chats)."
        ),
        _rule(f"{prefix}.menu_path_id", Category.CONFIGURATION, description="Queue (menu) id."),
        _rule(
            f"{prefix}.menu_path", Category.CONFIGURATION, description="Queue path, e.g. Support/X."
        ),
        _rule(f"{prefix}.lang", Category.CONFIGURATION, description="Language of the queue."),
    ]
    if times:
        rules.append(
            _rule(f"{prefix}.started_at", Category.METRIC, description="Start of the segment.")
        )
        rules.append(
            _rule(f"{prefix}.ended_at", Category.METRIC, description="End of the segment.")
        )
    if agent:
        rules.append(
            _rule(
                f"{prefix}.agent_id",
                Category.LINKABLE_ID,
                Treatment.PSEUDONYM,
                Subject.AGENT,
                "agent",
                "Agent of the segment; same namespace as agent_info.id so segments join.",
            )
        )
    return tuple(rules)


def _metrics(prefix: str, *names: str) -> tuple[Rule, ...]:
    return tuple(_rule(f"{prefix}{n}", Category.METRIC) for n in names)


def _settings(prefix: str, *names: str) -> tuple[Rule, ...]:
    return tuple(_rule(f"{prefix}{n}", Category.CONFIGURATION) for n in names)


_RESPONSES = ("response_count", "response_time_total", "response_time_max", "response_time_avg")

CATALOG: tuple[Rule, ...] = (
    # The chat itself.
    _rule(
        "id", Category.LINKABLE_ID, description="UJET chat id: the chat's own key, names no one."
    ),
    *_settings("", "lang", "chat_type", "status", "finish_reason", "fail_reason", "offer_type"),
    _rule(
        "sub_status",
        Category.CONFIGURATION,
        description="Vendor status text; kept, and scanned for echoed personal data by detect.",
    ),
    *_metrics(
        "",
        "created_at",
        "assigned_at",
        "ends_at",
        "updated_at",
        "first_msg_sent_at",
        "last_msg_sent_at",
        "wait_duration",
        "queue_duration",
        "chat_duration",
        "message_count",
        "average_response_time",
        "longest_response_time",
    ),
    _rule(
        "verified",
        Category.METRIC,
        subject=Subject.CUSTOMER,
        description="A yes/no flag names no one.",
    ),
    _rule(
        "rating", Category.METRIC, subject=Subject.CUSTOMER, description="1-5 score; names no one."
    ),
    _rule(
        "has_feedback",
        Category.METRIC,
        subject=Subject.CUSTOMER,
        description="A flag; names no one.",
    ),
    # Keys and links into the company's CRM, which holds the customer's personal data.
    _rule(
        "out_ticket_id",
        Category.LINKABLE_ID,
        Treatment.PSEUDONYM,
        Subject.CUSTOMER,
        "crm_ticket",
        "CRM ticket key; pseudonymised so chats of one ticket still group.",
    ),
    _rule(
        "out_ticket_url",
        Category.LINKABLE_ID,
        Treatment.HOST_ONLY,
        Subject.CUSTOMER,
        description="CRM ticket link; the host says which CRM, the path would reopen the ticket.",
    ),
    # Menus: company configuration.
    *_settings(
        "selected_menu.",
        "id",
        "name",
        "parent_id",
        "position",
        "deleted",
        "hidden",
        "menu_type",
    ),
    _rule(
        "selected_menu.output_msg",
        Category.CONFIGURATION,
        description="Prompt text the company wrote for the menu, the same for every chat.",
    ),
    *_at("menu_path", MENU_FIELDS),
    # The agent who holds the chat.
    *_at("agent_info", AGENT_FIELDS),
    # The customer.
    _rule(
        "end_user.id",
        Category.LINKABLE_ID,
        Treatment.PSEUDONYM,
        Subject.CUSTOMER,
        "end_user",
        "Customer id; pseudonymised, joins with participants[].end_user_id.",
    ),
    _rule(
        "end_user.identifier",
        Category.DIRECT_IDENTIFIER,
        Treatment.DROP,
        Subject.CUSTOMER,
        description="Phone number, email or name of the customer; joins use end_user.id.",
    ),
    _rule(
        "end_user.out_contact_id",
        Category.LINKABLE_ID,
        Treatment.PSEUDONYM,
        Subject.CUSTOMER,
        "crm_contact",
        "CRM contact key; pseudonymised so a customer's chats group without opening the CRM.",
    ),
    # Customer uploads behind (often signed) links.
    _rule("photos[].id", Category.LINKABLE_ID, description="Upload id, meaningless outside UJET."),
    _rule("photos[].photo_type", Category.CONFIGURATION, description="photo or screenshot."),
    _rule(
        "photos[].url",
        Category.MEDIA,
        Treatment.HOST_ONLY,
        Subject.CUSTOMER,
        description="Signed link to the customer's picture: a bearer credential; host only.",
    ),
    _rule("videos[].id", Category.LINKABLE_ID, description="Upload id, meaningless outside UJET."),
    _rule(
        "videos[].url",
        Category.MEDIA,
        Treatment.HOST_ONLY,
        Subject.CUSTOMER,
        description="Signed link to the customer's video: a bearer credential; host only.",
    ),
    # Transfers between agents and queues.
    _rule(
        "transfers[].id", Category.LINKABLE_ID, description="Transfer id (repeats across chats)."
    ),
    *_settings("transfers[].", "status", "fail_reason"),
    _rule("transfers[].created_at", Category.METRIC),
    *_at("transfers[].from_menu", MENU_FIELDS),
    *_at("transfers[].to_menu", MENU_FIELDS),
    *_at("transfers[].from_agent", AGENT_FIELDS),
    *_at("transfers[].to_agent", AGENT_FIELDS),
    # Agent handling segments.
    *_segment("handle_durations[]"),
    *_metrics(
        "handle_durations[].",
        "acw_duration",
        "chat_duration",
        "wait_duration",
        "transfer",
        "assigned_connection_duration",
        *_RESPONSES,
    ),
    _rule("handle_durations[].transfer_id", Category.LINKABLE_ID, description="The transfer's id."),
    _rule("handle_durations[].event", Category.CONFIGURATION, description="How the segment ended."),
    # Queue segments with their SLA outcome.
    *_segment("queue_durations[]"),
    *_metrics("queue_durations[].", "queue_duration", "transfer", "transfer_cold"),
    _rule("queue_durations[].transfer_id", Category.LINKABLE_ID, description="The transfer's id."),
    *_settings(
        "queue_durations[].",
        "event",
        "service_level_event",
        "service_level_abandon_time_threshold",
        "service_level_target_percent",
        "service_level_target_time",
    ),
    # Who took part: the customer and agents, each by a pseudonymous id.
    _rule("participants[].id", Category.LINKABLE_ID, description="Participant record id."),
    _rule(
        "participants[].call_id", Category.LINKABLE_ID, description="Call id, meaningless alone."
    ),
    _rule(
        "participants[].user_id",
        Category.LINKABLE_ID,
        Treatment.PSEUDONYM,
        Subject.AGENT,
        "agent",
        "The agent user (same id as agent_info.id), so participants join to agents.",
    ),
    _rule(
        "participants[].end_user_id",
        Category.LINKABLE_ID,
        Treatment.PSEUDONYM,
        Subject.CUSTOMER,
        "end_user",
        "The customer; same namespace as end_user.id so the two join.",
    ),
    *_settings("participants[].", "type", "status", "fail_reason"),
    *_metrics("participants[].", "call_duration", "hold_duration", "connected_at", "ended_at"),
    # The customer's side of the conversation, as figures.
    _rule("consumer_handle_durations[].id", Category.LINKABLE_ID, description="Segment id."),
    *_metrics(
        "consumer_handle_durations[].",
        "chat_duration",
        "message_count",
        "started_at",
        "ended_at",
        *_RESPONSES,
    ),
    *_segment("consumer_event_durations[]", agent=False),
    *_settings("consumer_event_durations[].", "type", "event"),
    _rule("consumer_event_durations[].duration", Category.METRIC),
    # Virtual agents (bots).
    *_at("virtual_agent", VIRTUAL_AGENT_FIELDS),
    *_segment("virtual_agent_deflected_escalations[]", agent=False, times=False),
    *_settings("virtual_agent_deflected_escalations[].", "deflection", "escalation_reason"),
    _rule("virtual_agent_deflected_escalations[].escalated_at", Category.METRIC),
    *_at("virtual_agent_deflected_escalations[].virtual_agent", VIRTUAL_AGENT_FIELDS),
    *_segment("virtual_agent_handle_durations[]", agent=False),
    *_settings("virtual_agent_handle_durations[].", "escalation_reason", "initiated_by"),
    *_metrics(
        "virtual_agent_handle_durations[].",
        "chat_duration",
        "fallback_response_count",
        "transfer",
        *_RESPONSES,
    ),
    _rule(
        "virtual_agent_handle_durations[].transfer_id",
        Category.LINKABLE_ID,
        description="The transfer's id.",
    ),
    *_at("virtual_agent_handle_durations[].virtual_agent", VIRTUAL_AGENT_FIELDS),
    # How the chat was offered to agents.
    _rule("offer_events[].casting_time", Category.METRIC, description="When the offer went out."),
    _rule("offer_events[].group", Category.CONFIGURATION, description="Agent group offered to."),
)

ContainerKind = Literal["object", "list"]


def _ancestors(path: str) -> Iterator[tuple[str, ContainerKind]]:
    """Each strict ancestor of a path with what it must hold: `a[].b.c` -> a, a[], a[].b."""
    for match in re.finditer(r"\[\]|\.", path):
        head = path[: match.start()]
        yield head, "list" if match.group() == "[]" else "object"


class RuleIndex:
    """Rules looked up by path; validates that every value has exactly one treatment.

    Why a class: tests and future sources can sanitize with another rule set (e.g. one using
    count_only) through the same code that applies the real catalog.
    """

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self._by_path: dict[str, Rule] = {}
        self._containers: dict[str, ContainerKind] = {}
        for rule in self.rules:
            if rule.path in self._by_path:
                raise ValueError(f"the catalog lists {rule.path} twice")
            self._by_path[rule.path] = rule
            for head, kind in _ancestors(rule.path):
                if self._containers.setdefault(head, kind) != kind:
                    raise ValueError(f"the catalog uses {head} both as an object and a list")
        for path in self._by_path:
            if path in self._containers:
                raise ValueError(
                    f"{path} has rules beneath it: a rule names a leaf, or (drop, count_only) a "
                    "whole subtree, never both"
                )

    def exact(self, path: str) -> Rule | None:
        """The rule that names this very path."""
        return self._by_path.get(path)

    def rule_for(self, path: str) -> Rule | None:
        """The rule that decides this path: its own, or a drop/count_only subtree above it."""
        rule = self._by_path.get(path)
        if rule is not None:
            return rule
        for head, _ in _ancestors(path):
            rule = self._by_path.get(head)
            if rule is not None and rule.treatment in SUBTREE_TREATMENTS:
                return rule
        return None

    def container(self, path: str) -> ContainerKind | None:
        """What the path must hold when rules lie beneath it (object or list), else None."""
        return self._containers.get(path)


INDEX = RuleIndex(CATALOG)


def rule_for(path: str) -> Rule | None:
    """The catalog's rule for a path (exact, or a drop/count_only subtree above it)."""
    return INDEX.rule_for(path)


def join_path(prefix: str, key: str) -> str:
    """The catalog's spelling of a child key under `prefix`."""
    return f"{prefix}.{key}" if prefix else key
