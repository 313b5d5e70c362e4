"""Partition windows written and read, and the connection's lock and sessions, against a real
PostgreSQL."""

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from chat_assets.raw_chats import landing_rows
from chat_assets.tables import RAW_CHATS
from chat_assets.warehouse import bookkeeping, windows
from chat_assets.warehouse.connection import WarehouseError, cursor_for
from chat_assets.warehouse.staged_window import WindowStage, copy_text
from chat_assets_tests.windows import landing_frame

DAY = datetime(2026, 1, 5, tzinfo=UTC)
NEXT = DAY + timedelta(days=1)


def chat(chat_id: int, updated_at: datetime, **extra) -> dict:
    stamp = updated_at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return {"id": chat_id, "updated_at": stamp, "status": "finished", **extra}


def write(engine, schema: str, records: list[dict]) -> int:
    frame = landing_frame(records, "UTC", "k1:test")
    return windows.replace_window(engine, schema, RAW_CHATS, frame, DAY, NEXT)


def table_rows(engine, schema: str) -> list[tuple]:
    with engine.connect() as connection:
        return connection.exec_driver_sql(
            f"SELECT partition_key, id, updated_at, payload FROM {schema}.raw_chats ORDER BY id"
        ).fetchall()


def test_replace_window_creates_typed_table_and_is_idempotent(engine, schema):
    frame = landing_frame(
        [chat(1, DAY), chat(2, DAY + timedelta(hours=5), rating=4)], "UTC", "k1:test"
    )
    assert windows.replace_window(engine, schema, RAW_CHATS, frame, DAY, NEXT) == 2
    first = table_rows(engine, schema)
    assert windows.replace_window(engine, schema, RAW_CHATS, frame, DAY, NEXT) == 2
    assert table_rows(engine, schema) == first
    assert first[1][3] == {
        "id": 2,
        "updated_at": "2026-01-05T05:00:00.000Z",
        "status": "finished",
        "rating": 4,
    }
    with engine.connect() as connection:
        types = dict(
            connection.exec_driver_sql(
                "SELECT column_name, data_type FROM information_schema.columns "
                f"WHERE table_schema = '{schema}' AND table_name = 'raw_chats'"
            ).fetchall()
        )
    assert types == {
        "partition_key": "text",
        "id": "bigint",
        "updated_at": "timestamp with time zone",
        "pii_key": "text",
        "payload": "jsonb",
    }


def test_replace_window_touches_only_its_window(engine, schema):
    day_two = landing_frame([chat(3, NEXT + timedelta(hours=1))], "UTC", "k1:test")
    windows.replace_window(engine, schema, RAW_CHATS, day_two, NEXT, NEXT + timedelta(days=1))
    windows.replace_window(
        engine, schema, RAW_CHATS, landing_frame([chat(1, DAY)], "UTC", "k1:test"), DAY, NEXT
    )
    windows.replace_window(
        engine, schema, RAW_CHATS, landing_frame([chat(2, DAY)], "UTC", "k1:test"), DAY, NEXT
    )
    assert [row[1] for row in table_rows(engine, schema)] == [2, 3]


def test_load_window_returns_declared_dtypes(engine, schema):
    frame = landing_frame([chat(1, DAY), chat(2, NEXT)], "UTC", "k1:test")
    windows.replace_window(engine, schema, RAW_CHATS, frame, DAY, NEXT + timedelta(days=1))
    loaded = windows.load_window(engine, schema, RAW_CHATS, DAY, NEXT)
    assert loaded["id"].tolist() == [1]
    assert str(loaded["id"].dtype) == "Int64"
    assert str(loaded["updated_at"].dtype) == "datetime64[us, UTC]"
    assert json.loads(loaded["payload"].iloc[0])["status"] == "finished"  # JSON bytes


def test_load_window_of_a_missing_table_is_empty_with_columns(engine, schema):
    loaded = windows.load_window(engine, schema, RAW_CHATS, DAY, NEXT)
    assert loaded.empty
    assert list(loaded.columns) == RAW_CHATS.column_names


def test_rows_outside_the_window_are_refused_and_nothing_changes(engine, schema):
    windows.replace_window(
        engine, schema, RAW_CHATS, landing_frame([chat(1, DAY)], "UTC", "k1:test"), DAY, NEXT
    )
    stray = landing_frame([chat(5, DAY), chat(6, NEXT + timedelta(hours=2))], "UTC", "k1:test")
    with pytest.raises(WarehouseError, match="1 rows have updated_at outside"):
        windows.replace_window(engine, schema, RAW_CHATS, stray, DAY, NEXT)
    assert [row[1] for row in table_rows(engine, schema)] == [1]


def test_frames_that_do_not_fit_the_declaration_are_refused(engine, schema):
    frame = landing_frame([chat(1, DAY)], "UTC", "k1:test")
    with pytest.raises(WarehouseError, match="missing: \\['payload'\\]"):
        windows.replace_window(engine, schema, RAW_CHATS, frame.drop(columns="payload"), DAY, NEXT)
    doubled = pd.concat([frame, frame])
    with pytest.raises(WarehouseError, match="repeat the key"):
        windows.replace_window(engine, schema, RAW_CHATS, doubled, DAY, NEXT)


def test_a_refused_write_rolls_back_and_names_the_column_never_the_value(engine, schema):
    write(engine, schema, [chat(1, DAY)])
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f"ALTER TABLE {schema}.raw_chats ADD CONSTRAINT small_ids CHECK (id < 100)"
        )
    secret_id = 987_654_321
    with pytest.raises(WarehouseError) as refused:
        write(engine, schema, [chat(secret_id, DAY, customer="jane@example.com")])
    message = str(refused.value)
    assert "constraint small_ids" in message and "SQLSTATE 23514" in message
    assert str(secret_id) not in message and "jane@example.com" not in message
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    assert [row[1] for row in table_rows(engine, schema)] == [1]


def test_a_staged_landing_keeps_each_chats_newest_version_within_the_window(engine, schema):
    write(engine, schema, [chat(9, DAY + timedelta(hours=1))])  # replaced: not fetched again
    batches = [
        [chat(1, DAY), chat(2, DAY + timedelta(hours=1))],
        [chat(2, DAY + timedelta(hours=3), rating=5), chat(3, NEXT)],  # 3 lies past the end
        [chat(1, DAY + timedelta(hours=2), rating=4), chat(4, NEXT + timedelta(hours=1))],
        # Text that COPY's text format must escape, and a JSON string with a backslash.
        [chat(5, DAY + timedelta(hours=4), sub_status="tab\there\nline \\ back")],
    ]
    with WindowStage(RAW_CHATS, one_row_per=("id",)) as stage:
        for batch in batches:
            stage.write(landing_rows(batch, "UTC", "k1:test"))
        staged = stage.staged()
        written, metadata = windows.land_staged(engine, schema, RAW_CHATS, staged, DAY, NEXT)
    assert not staged.path.exists()  # the stage is removed once its block ends
    assert (written, metadata, staged.rows) == (3, {}, 7)
    rows = table_rows(engine, schema)
    assert [(r[1], r[2], r[3].get("rating")) for r in rows] == [
        (1, DAY + timedelta(hours=2), 4),
        (2, DAY + timedelta(hours=3), 5),
        (5, DAY + timedelta(hours=4), None),
    ]
    assert rows[2][3]["sub_status"] == "tab\there\nline \\ back"
    assert bookkeeping.row_count(engine, schema, RAW_CHATS) == 3


def test_a_staged_payload_is_compressed_with_lz4_where_the_server_has_it(engine, schema):
    with engine.connect() as connection:
        methods = connection.exec_driver_sql(
            "SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'"
        ).scalar_one()
    if "lz4" not in methods:
        pytest.skip("this PostgreSQL is built without lz4")
    large = " ".join(f"word{n}" for n in range(2_000))  # far past the size TOAST compresses
    with WindowStage(RAW_CHATS, one_row_per=("id",)) as stage:
        stage.write(landing_rows([chat(1, DAY, sub_status=large)], "UTC", "k1:test"))
        windows.land_staged(engine, schema, RAW_CHATS, stage.staged(), DAY, NEXT)
    with engine.connect() as connection:
        method = connection.exec_driver_sql(
            f'SELECT pg_column_compression(payload) FROM "{schema}".raw_chats'
        ).scalar_one()
    assert method == "lz4"


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("plain", "plain"),
        ("a\\b\tc\nd\re", "a\\\\b\\tc\\nd\\re"),
        ("\\n is not a newline", "\\\\n is not a newline"),
        ({"text": "tab\there \\ back"}, '{"text":"tab\\\\there \\\\\\\\ back"}'),
        (None, "\\N"),
        (True, "t"),
        (12, "12"),
        (
            {"id": 18446744073709551616, "n": [-9223372036854775809, 1.5]},
            '{"id":18446744073709551616,"n":[-9223372036854775809,1.5]}',
        ),
        ({1: "a key that is no string"}, '{"1":"a key that is no string"}'),
        ({"name": "김민준", "none": None}, '{"name":"김민준","none":null}'),
        (json.loads('{"big": 1e400, "small": -1e400}'), '{"big":null,"small":null}'),
    ],
)
def test_a_copy_field_escapes_what_copys_text_format_reads_as_special(value, field):
    assert copy_text(value) == field


def test_a_landing_that_fails_writes_nothing(engine, schema):
    write(engine, schema, [chat(1, DAY)])

    def refuse(cursor) -> tuple[int, dict]:
        raise RuntimeError("the last step failed")

    with WindowStage(RAW_CHATS, one_row_per=("id",)) as stage:
        stage.write(landing_rows([chat(2, DAY)], "UTC", "k1:test"))
        with pytest.raises(RuntimeError):
            windows.land_staged(
                engine, schema, RAW_CHATS, stage.staged(), DAY, NEXT, finally_=refuse
            )
    assert [r[1] for r in table_rows(engine, schema)] == [1]
    assert bookkeeping.row_count(engine, schema, RAW_CHATS) == 1


def test_a_window_loads_in_chunks_with_its_declared_dtypes(engine, schema, monkeypatch):
    write(engine, schema, [chat(n, DAY + timedelta(minutes=n)) for n in range(1, 6)])
    whole = windows.load_window(engine, schema, RAW_CHATS, DAY, NEXT)
    monkeypatch.setattr(windows, "LOAD_CHUNK_ROWS", 2)
    chunked = windows.load_window(engine, schema, RAW_CHATS, DAY, NEXT)
    pd.testing.assert_frame_equal(chunked, whole)
    assert list(chunked["id"]) == [1, 2, 3, 4, 5]
    assert dict(chunked.dtypes) == dict(landing_frame([], "UTC", "k1:test").dtypes)


def estimated_rows(engine, query: str) -> float:
    with engine.connect() as connection:
        plan = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {query}").scalar()
    return plan[0]["Plan"]["Plan Rows"]


def test_the_planner_sees_the_rows_of_a_window_just_landed(engine, schema):
    """A window past the table's statistics looks nearly empty to the planner (and the
    flattening then runs without parallel workers), unless the landing refreshes them."""
    days = [DAY + timedelta(days=n) for n in range(4)]
    for n, day in enumerate(days):
        spread = 2_000 if n == len(days) - 1 else 20
        records = [chat(n * 10_000 + i, day + timedelta(seconds=i * 40)) for i in range(spread)]
        frame = landing_frame(records, "UTC", "k1:test")
        windows.replace_window(engine, schema, RAW_CHATS, frame, day, day + timedelta(days=1))
    last = days[-1]
    estimate = estimated_rows(
        engine,
        f"SELECT * FROM {schema}.raw_chats WHERE updated_at >= '{last.isoformat()}'"
        f" AND updated_at < '{(last + timedelta(days=1)).isoformat()}'",
    )
    assert 1_000 <= estimate <= 4_000


def test_warehouse_sessions_compile_no_queries_just_in_time(engine):
    with engine.connect() as connection:
        default = connection.exec_driver_sql("SHOW jit").scalar()
    with cursor_for(engine) as cursor:
        assert cursor.execute("SHOW jit").fetchone()[0] == "off"
    with cursor_for(engine, transaction=True) as cursor:
        assert cursor.execute("SHOW jit").fetchone()[0] == "off"
    # Only for the warehouse's own transactions: the pooled sessions keep the server's setting.
    for _ in range(3):
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW jit").scalar() == default
