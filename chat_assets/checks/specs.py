"""Which checks each asset has: their names, and the specs Dagster shows before any run.

Check names are constants so schedules, tests and the UI agree on them; the names of the checks
a table declares itself (documented values, consistency) are in `chat_assets.tables`.
"""

from __future__ import annotations

import dagster as dg

from chat_assets.tables import (
    COUNTS_ADD_UP,
    RAW_CHATS,
    SERVICE_LEVEL_IN_RANGE,
    SLA_CONSISTENT,
    Table,
)

UNIQUE_IN_PARTITION = "unique_ids_in_partition"
UNIQUE_TABLE_WIDE = "unique_ids_table_wide"
COMPLETE_WINDOW = "complete_window"
NO_UNKNOWN_FIELDS = "no_unknown_fields"
PII_KEY_UNCHANGED = "pii_key_unchanged"
NO_PERSONAL_TEXT = "no_personal_text"
RECONCILED = "reconciled_with_facts"
ADDS_UP_TO_DAY = "adds_up_to_day"

# What each consistency check a table may declare holds true.
CONSISTENCY_DESCRIPTIONS: dict[str, str] = {
    SLA_CONSISTENT: "SLA outcome agrees with queue time and target; sane figures.",
    COUNTS_ADD_UP: (
        "in_sla + not_in_sla + excluded + unclassified = offered = answered + not_answered, "
        "abandoned + short_abandoned <= not_answered, and rated_4_or_5 <= rated_chats."
    ),
    SERVICE_LEVEL_IN_RANGE: (
        "service_level is within [0, 1] and equals in_sla / (in_sla + not_in_sla)."
    ),
}


def check_specs(table: Table, partitions: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    key = dg.AssetKey(table.name)
    chat, item = table.unique_by[0], table.unique_by[-1]
    wide = (
        "chat ids are unique."
        if len(table.unique_by) == 1
        else f"({chat}, {item}) is unique and no {item} belongs to two chats."
    )
    specs = [
        dg.AssetCheckSpec(
            UNIQUE_IN_PARTITION,
            asset=key,
            partitions_def=partitions,
            description=f"{', '.join(table.unique_by)} identify one row within the partition.",
        ),
    ]
    if table.own_id is not None:
        specs.append(
            dg.AssetCheckSpec(
                UNIQUE_TABLE_WIDE,
                asset=key,
                partitions_def=partitions,
                description="Across the whole table, in one SQL query: " + wide,
            )
        )
    if table.aggregation is not None:
        specs.append(
            dg.AssetCheckSpec(
                RECONCILED,
                asset=key,
                partitions_def=partitions,
                description="The partition's rows equal a fresh aggregation of "
                + " and ".join(facts.name for facts in table.aggregation.fact_tables)
                + ", in one SQL query.",
            )
        )
    if table.aggregation is not None and table.aggregation.interval is not None:
        day_table = table.aggregation.interval.day_table.name
        specs.append(
            dg.AssetCheckSpec(
                ADDS_UP_TO_DAY,
                asset=key,
                partitions_def=partitions,
                description=f"Per queue, the day's intervals add up to its row of {day_table}: "
                "each count is their sum, max_queue_seconds their maximum, in one SQL query.",
            )
        )
    specs.append(
        dg.AssetCheckSpec(
            NO_PERSONAL_TEXT,
            asset=key,
            partitions_def=partitions,
            blocking=True,
            description="No email, phone number or link in the partition's stored text of "
            "columns declared non-personal.",
        )
    )
    for name, column in table.valid_values:
        values = ", ".join(table.column(column).values)
        specs.append(
            dg.AssetCheckSpec(
                name,
                asset=key,
                partitions_def=partitions,
                description=f"{column} is one of the documented values: {values}.",
            )
        )
    specs += [
        dg.AssetCheckSpec(
            name,
            asset=key,
            partitions_def=partitions,
            description=CONSISTENCY_DESCRIPTIONS[name],
        )
        for name in table.consistency
    ]
    return specs


def raw_check_specs(partitions: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    def spec(name: str, description: str) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(
            name, asset=RAW_CHATS.name, partitions_def=partitions, description=description
        )

    return [
        spec(
            COMPLETE_WINDOW,
            "Every chat of UJET's total for the window arrived (a short window is read twice) "
            "and none was left out for want of a usable id or updated_at.",
        ),
        spec(NO_UNKNOWN_FIELDS, "UJET sent no field the privacy catalog does not know."),
        spec(PII_KEY_UNCHANGED, "Every stored payload was pseudonymised with the current key."),
        dg.AssetCheckSpec(
            NO_PERSONAL_TEXT,
            asset=RAW_CHATS.name,
            partitions_def=partitions,
            blocking=True,
            description="No email or phone number in the partition's stored payloads.",
        ),
    ]
