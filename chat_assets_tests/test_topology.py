"""The deployed topology, natively: what docker-compose.yml runs, without Docker.

chat_assets_tests.topology starts it: PostgreSQL over TCP (Dagster's storage and the warehouse in
separate databases), the code location as a gRPC server, dagster-webserver and dagster-daemon on
the repository's production dagster.yaml and workspace.yaml (the daemon looking for backfills
more often). Work goes in through the webserver's GraphQL API and is carried out by
the daemon, as in production; the tests then read Dagster's event log and the warehouse.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
import yaml

from chat_assets.schedules import DAILY_SCHEDULE_NAME, LOOKBACK_SCHEDULE_NAME
from chat_assets.service_levels import CATCH_UP_SENSOR_NAME
from chat_assets.settings import DEFAULT_REQUESTS_PER_SECOND
from chat_assets_tests.topology import (
    LAUNCH_BACKFILL,
    LOCATION,
    REPOSITORY,
    ROOT,
    RUNS_BY_TAG,
    TIMEZONE,
    VENV_BIN,
    Deployment,
    Process,
    check_partitions,
    code_server_command,
    free_port,
    landed,
    launch_job_backfill,
    launch_run,
    production_workspace,
    shared_deployment,
    start,
    tags,
    wait_for,
    wait_until_serving,
    webserver_command,
)

pytestmark = pytest.mark.topology


SCHEDULE_STATE = """
query Schedule($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) {
    __typename
    ... on Schedule {
      cronSchedule
      executionTimezone
      scheduleState { status ticks(limit: 5) { status timestamp runIds } }
    }
  }
}
"""

DAEMONS = """
{
  instance {
    daemonHealth { allDaemonStatuses { daemonType required healthy } }
  }
}
"""


@pytest.fixture(scope="session")
def deployment() -> Iterator[Deployment]:
    with shared_deployment() as running:
        yield running


def test_every_daemon_is_healthy(deployment):
    def healthy() -> bool:
        statuses = deployment.graphql(DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return all(status["healthy"] for status in statuses if status["required"])

    wait_for(healthy, 60, "every required daemon to report healthy", every=1)


def test_schedules_are_deployed_with_their_defaults(deployment):
    def state(name: str) -> dict[str, Any]:
        selector = {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "scheduleName": name,
        }
        return deployment.graphql(SCHEDULE_STATE, selector=selector)["scheduleOrError"]

    daily, lookback = state(DAILY_SCHEDULE_NAME), state(LOOKBACK_SCHEDULE_NAME)
    assert (daily["cronSchedule"], daily["executionTimezone"]) == ("30 0 * * *", TIMEZONE)
    assert daily["scheduleState"]["status"] == "RUNNING"
    assert lookback["scheduleState"]["status"] == "STOPPED"


def test_daemon_fires_the_missed_daily_tick(deployment):
    """The daemon evaluates the deployed schedule and runs the day that closed before the tick."""
    assert deployment.missed_tick is not None
    expected_day = (deployment.missed_tick.date() - timedelta(days=1)).isoformat()

    def scheduled_run() -> dict[str, Any] | None:
        runs = deployment.graphql(
            RUNS_BY_TAG, key="dagster/schedule_name", value=DAILY_SCHEDULE_NAME
        )["runsOrError"]["results"]
        return next((run for run in runs if tags(run)["dagster/partition"] == expected_day), None)

    try:
        run = wait_for(scheduled_run, 90, f"a scheduled run for {expected_day}", every=1)
    except TimeoutError as error:
        raise AssertionError(f"{error}\n{deployment.logs()}") from None
    deployment.wait_for_run(run["runId"])
    raw, flattened = landed(deployment, expected_day)
    assert raw > 0
    assert flattened == raw


def test_run_launched_through_graphql_lands_rows(deployment):
    day = deployment.day(1)
    run = deployment.wait_for_run(launch_run(deployment, day))
    assert tags(run)["dagster/partition"] == day
    assert {step["stepKey"] for step in run["stepStats"]} == {
        "raw_chats",
        "chat_tables",
        "queue_service_levels",
        "queue_intervals",
    }
    raw, flattened = landed(deployment, day)
    assert raw > 0
    assert flattened == raw


def requested_day(request: Any) -> str:
    """The day a chats request reads: its window ends at updated_at[to] (a crowded second's
    page ends one second after it), so the second before that lies in the window."""
    to = datetime.fromisoformat(request.query["updated_at[to]"].replace("Z", "+00:00"))
    return (to - timedelta(seconds=1)).astimezone(ZoneInfo(TIMEZONE)).date().isoformat()


# Two waves of the four runs at once: runs queue, overlap, and share the account's budget.
BACKFILL_DAYS = 8
# raw_chats 5; each flattened table 3, but chat_offer_events 2 (no id to look up table-wide);
# chat_queue_durations 2 more; chats and chat_participants no_erased_subject;
# current_key_version on the 5 tables that hold pseudonyms; queue_service_levels 5;
# queue_intervals 6 (adds_up_to_day too).
MART_CHECKS = 5 + 6
CHECKS_PER_DAY = 5 + 9 * 3 + 2 + 2 + 2 + 5 + MART_CHECKS


def test_a_backfill_completes_with_checks_per_day_and_shared_fetches(deployment):
    """8 days backfilled through the daemon, one run per day, up to 4 at once: every run
    succeeds, every day has its own check results, and the runs' fetches share the account's
    budget request by request: several days' requests in flight at once, each request still an
    interval after the one before it (their turns in the warehouse), no 429."""
    days = [deployment.day(10 + offset) for offset in range(BACKFILL_DAYS)]
    assert deployment.ujet is not None
    before = len(deployment.ujet.requests)
    # A demo day is one request. Each slowed by 2 s, it is still in flight while the next runs
    # start (one every couple of seconds) and send theirs.
    deployment.ujet.inject("slow", count=BACKFILL_DAYS, seconds=2)
    backfill = launch_job_backfill(deployment, days)

    def all_runs() -> list[dict[str, Any]] | None:
        runs = deployment.graphql(RUNS_BY_TAG, key="dagster/backfill", value=backfill)
        found = runs["runsOrError"]["results"]
        return found if len(found) == BACKFILL_DAYS else None

    # The backfill daemon looks for new backfills every few seconds (30 in production).
    runs = wait_for(all_runs, 120, f"the backfill's {BACKFILL_DAYS} runs", every=2)
    finished = [deployment.wait_for_run(run["runId"], timeout=600) for run in runs]
    assert sorted(tags(run)["dagster/partition"] for run in finished) == days
    spans = sorted(
        (
            min(step["startTime"] for step in run["stepStats"]),
            max(step["endTime"] for step in run["stepStats"]),
        )
        for run in finished
    )
    assert any(end > start for (_, end), (start, _) in itertools.pairwise(spans)), (
        "no two runs ran at once, so their fetches could not have overlapped"
    )
    assert deployment.ujet.pending_faults() == 0
    # The backfill's requests: on a deployment just started, the daily schedule's run of the
    # day that just closed may fetch meanwhile too.
    answered = sorted(
        (
            r
            for r in deployment.ujet.requests[before:]
            if r.path.endswith("/chats") and requested_day(r) in days
        ),
        key=lambda r: r.time,
    )
    assert {requested_day(r) for r in answered if r.status == 200} == set(days)
    assert all(r.status == 200 for r in answered)
    gaps = [b.time - a.time for a, b in itertools.pairwise(answered)]
    assert min(gaps) >= 1 / DEFAULT_REQUESTS_PER_SECOND  # the account's pace, across runs
    assert any(gap < 2 for gap in gaps), "no day's request was sent while another was in flight"
    checked = check_partitions(deployment, [run["runId"] for run in finished])
    assert set(checked) == set(days)
    assert all(len(names) == CHECKS_PER_DAY for names in checked.values()), checked
    for day in days:
        raw, flattened = landed(deployment, day)
        assert raw > 0
        assert flattened == raw


def test_the_catch_up_sensor_brings_every_changed_service_day_up_to_date(deployment):
    """The backfill's later days changed earlier service days after those were materialized;
    the daemon's catch-up sensor (on by default) runs each such day again, until no day of the
    partitions is left marked, and those runs' checks pass with their day."""
    sensor_runs = {"key": "dagster/sensor_name", "value": CATCH_UP_SENSOR_NAME}

    def marked() -> list[str]:
        engine = deployment.warehouse()
        try:
            with engine.connect() as connection:
                return [
                    day.isoformat()
                    for (day,) in connection.exec_driver_sql(
                        "SELECT day FROM ujet._days_to_refresh WHERE day >= %(start)s",
                        {"start": deployment.start_date},
                    )
                ]
        finally:
            engine.dispose()

    def settled() -> list[dict[str, Any]] | None:
        runs = deployment.graphql(RUNS_BY_TAG, **sensor_runs)["runsOrError"]["results"]
        busy = [run for run in runs if run["status"] not in ("SUCCESS", "FAILURE", "CANCELED")]
        return runs if runs and not busy and not marked() else None

    # Several days are marked, each a run of its own, 4 at a time: on a loaded machine a run
    # takes half a minute, so the wait ends as soon as they settle, not at a fixed time.
    try:
        runs = wait_for(settled, 900, "the catch-up sensor to clear every marked day", every=3)
    except TimeoutError as error:
        runs = deployment.graphql(RUNS_BY_TAG, **sensor_runs)["runsOrError"]["results"]
        seen = sorted((tags(run).get("dagster/run_key", "?"), run["status"]) for run in runs)
        raise AssertionError(
            f"{error}; still marked: {marked()}; the sensor's runs: {seen}\n{deployment.logs()}"
        ) from None
    assert {run["status"] for run in runs} == {"SUCCESS"}
    days = {tags(run)["dagster/partition"] for run in runs}
    checked = check_partitions(deployment, [run["runId"] for run in runs])
    assert set(checked) == days
    assert all(len(names) == MART_CHECKS for names in checked.values()), checked
    # Stopped as an operator would in the UI (Automation), so that the daemon stays quiet
    # for the tests that follow.
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": REPOSITORY,
        "sensorName": CATCH_UP_SENSOR_NAME,
    }
    state = deployment.graphql(SENSOR_STATE, selector=selector)["sensorOrError"]["sensorState"]
    assert state["status"] == "RUNNING"
    stopped = deployment.graphql(STOP_SENSOR, id=state["id"])["stopSensor"]
    assert stopped["instigationState"]["status"] == "STOPPED", stopped


SENSOR_STATE = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor { sensorState { id status } }
  }
}
"""

STOP_SENSOR = """
mutation Stop($id: String!) {
  stopSensor(id: $id) {
    __typename
    ... on StopSensorMutationResult { instigationState { status } }
    ... on PythonError { message }
  }
}
"""


ASSET_KEYS = [
    "raw_chats",
    "chats",
    "chat_transfers",
    "chat_queue_durations",
    "chat_handle_durations",
    "chat_participants",
    "chat_consumer_handle_durations",
    "chat_consumer_event_durations",
    "chat_offer_events",
    "chat_virtual_agent_handle_durations",
    "chat_virtual_agent_deflected_escalations",
    "queue_service_levels",
    "queue_intervals",
]


@pytest.mark.parametrize("shape", ["asset_selection", "partitions_by_assets"])
def test_an_asset_backfill_from_the_ui_records_checks_per_day(deployment, shape):
    """The asset graph's "Materialize all..." and the asset list's "Materialize selected" over a
    range of days launch an asset backfill (not the job's partition set): each day still runs
    alone, tagged with its partition, and every check result is stored with its day."""
    first = 42 if shape == "asset_selection" else 46
    days = [deployment.day(first + offset) for offset in range(3)]
    if shape == "asset_selection":
        params: dict[str, Any] = {
            "assetSelection": [{"path": [key]} for key in ASSET_KEYS],
            "partitionNames": days,
        }
    else:
        params = {
            "partitionsByAssets": [
                {
                    "assetKey": {"path": [key]},
                    "partitions": {"range": {"start": days[0], "end": days[-1]}},
                }
                for key in ASSET_KEYS
            ]
        }
    result = deployment.graphql(LAUNCH_BACKFILL, backfillParams=params)["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result

    def all_runs() -> list[dict[str, Any]] | None:
        runs = deployment.graphql(RUNS_BY_TAG, key="dagster/backfill", value=result["backfillId"])
        found = runs["runsOrError"]["results"]
        return found if len(found) == len(days) else None

    runs = wait_for(all_runs, 180, f"the asset backfill's {len(days)} runs", every=2)
    finished = [deployment.wait_for_run(run["runId"], timeout=600) for run in runs]
    assert sorted(tags(run).get("dagster/partition", "") for run in finished) == days
    checked = check_partitions(deployment, [run["runId"] for run in finished])
    assert set(checked) == set(days), checked.keys()
    assert all(len(names) == CHECKS_PER_DAY for names in checked.values()), checked


LOAD_ERROR = """
{
  workspaceOrError {
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError {
          __typename
          ... on PythonError { message stack errorChain { error { message } } }
        }
      }
    }
  }
}
"""


def without_settings(tmp_path: Path) -> dict[str, str]:
    """An environment with no chat_assets setting at all, on a throwaway instance: the
    production location refuses to load (no warehouse named)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("UJET_", "CHAT_ASSETS_", "DAGSTER_"))
    }
    return env | {"DAGSTER_HOME": str(home)}


def location_error(url: str, name: str) -> dict[str, Any] | None:
    """The location's load error as the webserver serves it to the UI, once it has one."""
    response = requests.post(f"{url}/graphql", json={"query": LOAD_ERROR}, timeout=10)
    entries = response.json()["data"]["workspaceOrError"]["locationEntries"]
    loaded = {entry["name"]: entry for entry in entries}[name]["locationOrLoadError"]
    return loaded if loaded and loaded["__typename"] == "PythonError" else None


MISSING_WAREHOUSE = (
    "chat_assets: CHAT_ASSETS_DATABASE_URL is not set: point it at the warehouse, e.g. "
    "postgresql+psycopg://loader:password@db.internal:5432/warehouse"
)


def assert_said_plainly(error: dict[str, Any], *logs: Process) -> None:
    """The UI shows the message alone, and each terminal has it with no traceback."""
    assert error["message"].startswith(MISSING_WAREHOUSE), error["message"]
    assert (error["stack"], error["errorChain"]) == ([], []), error
    for process in logs:
        text = process.log.read_text(errors="replace")
        assert MISSING_WAREHOUSE in text, process.tail()
        assert "Traceback" not in text and 'File "' not in text, process.tail(80)


def test_the_code_server_says_a_missing_setting_plainly(tmp_path):
    """As docker-compose runs it: the code server serves the load error, the webserver shows it."""
    grpc_port, web_port = free_port(), free_port()
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(yaml.safe_dump(production_workspace("127.0.0.1", grpc_port)))
    env = without_settings(tmp_path)
    with ExitStack() as stack:
        code_server = start(
            "code_server",
            code_server_command(grpc_port),
            tmp_path,
            env=env,
            cwd=tmp_path,
        )
        stack.callback(code_server.stop)
        wait_until_serving(code_server, grpc_port)
        webserver = start(
            "webserver",
            webserver_command(workspace, web_port),
            tmp_path,
            env=env,
            cwd=tmp_path,
        )
        stack.callback(webserver.stop)
        url = f"http://127.0.0.1:{web_port}"
        error = wait_for(lambda: location_error(url, LOCATION), 90, "the location's load error")
        assert_said_plainly(error, code_server)
        assert "Traceback" not in webserver.log.read_text(errors="replace"), webserver.tail()


def test_dagster_dev_says_a_missing_setting_plainly(tmp_path):
    web_port = free_port()
    env = without_settings(tmp_path)
    with ExitStack() as stack:
        dev = start(
            "dagster_dev",
            [
                str(VENV_BIN / "dagster"),
                "dev",
                "-m",
                "chat_assets.definitions",
                "-d",
                str(ROOT),
                "-h",
                "127.0.0.1",
                "-p",
                str(web_port),
            ],
            tmp_path,
            env=env,
            cwd=tmp_path,
        )
        stack.callback(dev.stop)
        url = f"http://127.0.0.1:{web_port}"
        error = wait_for(
            lambda: location_error(url, "chat_assets.definitions"), 90, "the location's load error"
        )
        assert_said_plainly(error, dev)
