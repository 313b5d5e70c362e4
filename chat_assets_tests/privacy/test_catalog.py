"""The catalog must decide every field the vendor and the demo send, once, and nothing else."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chat_assets.privacy.catalog import (
    AGENT_FIELDS,
    CATALOG,
    INDEX,
    Category,
    Rule,
    RuleIndex,
    Subject,
    Treatment,
    join_path,
    rule_for,
)
from chat_assets_demo import demo_data
from chat_assets_tests.support import DATA

DAY = datetime(2024, 3, 5, tzinfo=UTC)
AGENT_PREFIXES = ("agent_info", "transfers[].from_agent", "transfers[].to_agent")


def leaf_paths(value: Any, prefix: str) -> Iterator[str]:
    """Leaf paths of a value; an empty list or object, and null, yield their own path."""
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from leaf_paths(child, join_path(prefix, str(key)))
    elif isinstance(value, list) and value:
        for item in value:
            yield from leaf_paths(item, f"{prefix}[]")
    elif prefix:
        yield prefix


def model_paths(record: dict[str, Any]) -> set[str]:
    """All leaf paths of a record in the catalog's syntax, so that nothing can hide."""
    return set(leaf_paths(record, ""))


def _sources() -> dict[str, list[dict[str, Any]]]:
    return {
        "vendor_model": json.loads((DATA / "vendor_model.json").read_text()),
        "vendor_sample": json.loads((DATA / "vendor_sample.json").read_text()),
        "demo_day": demo_data.chats_updated_between(DAY, DAY + timedelta(days=1, microseconds=-1)),
    }


@pytest.fixture(scope="module")
def source_paths() -> dict[str, set[str]]:
    return {
        name: set().union(*(model_paths(r) for r in records))
        for name, records in _sources().items()
    }


def _matching_rules(path: str) -> list[Rule]:
    """Rules that decide `path`: its own, or any rule naming a subtree above it."""
    return [
        r
        for r in CATALOG
        if path == r.path or path.startswith(r.path + ".") or path.startswith(r.path + "[]")
    ]


def test_every_path_of_model_sample_and_demo_is_decided_exactly_once(
    source_paths: dict[str, set[str]],
) -> None:
    assert source_paths["demo_day"] >= {"agent_info.name", "participants[].user_id", "photos"}
    for name, paths in source_paths.items():
        for path in sorted(paths):
            rules = _matching_rules(path)
            if rules:
                assert len(rules) == 1, f"{name}: {path} decided by {[r.path for r in rules]}"
                assert rule_for(path) == rules[0]
            else:
                # A null object or an empty list: covered by the rules beneath it.
                assert INDEX.container(path) is not None, f"{name}: {path} is not in the catalog"


def test_every_rule_names_a_real_field(source_paths: dict[str, set[str]]) -> None:
    seen = set().union(*source_paths.values())
    unused = [r.path for r in CATALOG if not any(r in _matching_rules(p) for p in seen)]
    assert unused == []


def test_one_agent_rule_set_at_each_agent_prefix() -> None:
    expected = {(f.path, f.treatment, f.namespace, f.category) for f in AGENT_FIELDS}
    for prefix in AGENT_PREFIXES:
        found = {
            (r.path.removeprefix(prefix + "."), r.treatment, r.namespace, r.category)
            for r in CATALOG
            if r.path.startswith(prefix + ".")
        }
        assert found == expected, prefix
    assert rule_for("transfers[].to_agent.name").treatment is Treatment.DROP
    assert rule_for("agent_info.id").namespace == "agent"


def test_ids_of_one_person_share_a_namespace_so_they_join() -> None:
    namespaces: dict[str, set[str]] = {}
    for rule in CATALOG:
        if rule.namespace is not None:
            namespaces.setdefault(rule.namespace, set()).add(rule.path)
    assert namespaces["end_user"] == {"end_user.id", "participants[].end_user_id"}
    assert namespaces["agent"] == {
        "agent_info.id",
        "transfers[].from_agent.id",
        "transfers[].to_agent.id",
        "handle_durations[].agent_id",
        "queue_durations[].agent_id",
        "participants[].user_id",
    }
    assert namespaces["crm_contact"] == {"end_user.out_contact_id"}
    assert namespaces["crm_ticket"] == {"out_ticket_id"}
    assert {r.subject for r in CATALOG if r.namespace == "agent"} == {Subject.AGENT}


def test_identifying_and_media_fields_are_never_kept() -> None:
    risky = {Category.DIRECT_IDENTIFIER, Category.CONTACT, Category.MEDIA, Category.FREE_TEXT}
    kept = [r.path for r in CATALOG if r.category in risky and r.treatment is Treatment.KEEP]
    assert kept == []
    personal_ids = [
        r.path
        for r in CATALOG
        if r.category is Category.LINKABLE_ID
        and r.subject is not Subject.NONE
        and r.treatment is Treatment.KEEP
    ]
    assert personal_ids == []
    assert rule_for("end_user.identifier").treatment is Treatment.DROP
    assert rule_for("photos[].url").treatment is Treatment.HOST_ONLY
    assert rule_for("out_ticket_url").treatment is Treatment.HOST_ONLY


def test_unknown_and_container_paths_have_no_rule() -> None:
    assert rule_for("end_user.email") is None
    assert rule_for("agent_info") is None
    assert INDEX.container("agent_info") == "object"
    assert INDEX.container("transfers") == "list"
    assert INDEX.container("transfers[]") == "object"
    assert INDEX.container("status") is None


def test_model_paths_keeps_nulls_and_empty_containers_visible() -> None:
    record = {
        "id": 1,
        "agent_info": None,
        "end_user": {},
        "photos": [],
        "transfers": [{"to_agent": None, "from_agent": {"id": 4}}, None],
        "tags": ["a", "b"],
    }
    assert model_paths(record) == {
        "id",
        "agent_info",
        "end_user",
        "photos",
        "transfers[].to_agent",
        "transfers[].from_agent.id",
        "transfers[]",
        "tags[]",
    }
    assert model_paths({}) == set()


def _leaf(path: str, treatment: Treatment = Treatment.KEEP) -> Rule:
    namespace = "n" if treatment is Treatment.PSEUDONYM else None
    return Rule(path, Category.METRIC, Subject.NONE, treatment, namespace)


def test_the_index_refuses_ambiguous_rule_sets() -> None:
    with pytest.raises(ValueError, match="twice"):
        RuleIndex([_leaf("a"), _leaf("a")])
    with pytest.raises(ValueError, match="rules beneath it"):
        RuleIndex([_leaf("photos", Treatment.COUNT_ONLY), _leaf("photos[].url")])
    with pytest.raises(ValueError, match="both as an object and a list"):
        RuleIndex([_leaf("a.b"), _leaf("a[].c")])
    with pytest.raises(ValueError, match="namespace"):
        Rule("a", Category.LINKABLE_ID, Subject.AGENT, Treatment.PSEUDONYM)
    with pytest.raises(ValueError, match="namespace"):
        Rule("a", Category.METRIC, Subject.NONE, Treatment.KEEP, namespace="x")
    with pytest.raises(ValueError, match="dotted"):
        _leaf("a..b")


def test_a_subtree_rule_decides_everything_beneath_it() -> None:
    index = RuleIndex([_leaf("photos", Treatment.COUNT_ONLY), _leaf("id")])
    rule = index.rule_for("photos[].url")
    assert rule is not None and rule.path == "photos"
    assert index.rule_for("photosx") is None
    assert index.container("photos") is None
