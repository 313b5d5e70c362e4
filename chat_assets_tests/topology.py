"""The deployed topology, natively, for the topology tests and the benchmarks: what
docker-compose.yml runs, without Docker.

PostgreSQL over TCP (Dagster's storage and the warehouse in separate databases), the code
location as a gRPC server, dagster-webserver and dagster-daemon on the repository's production
dagster.yaml and workspace.yaml, with the UJET emulator as the account. Work goes in through the
webserver's GraphQL API and is carried out by the daemon, as in production; Dagster's event log
and the warehouse can then be read. With tenants named, the code location is the tenants'
(`chat_assets.tenants_location` on a tenants file, as deploy/tenants/docker-compose.yml runs
it), each tenant with an emulator of its own.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock
from zoneinfo import ZoneInfo

import dagster as dg
import requests
import sqlalchemy as sa
import yaml
from dagster._serdes import deserialize_value

from chat_assets.schedules import DAILY_SCHEDULE_NAME, JOB_NAME
from chat_assets.tenants import COMPONENT_TYPE, TENANTS_FILE_ENV
from chat_assets_demo.emulator import UjetEmulator
from chat_assets_tests.support import TEST_PII_KEY

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
LOCATION = "chat_assets"
REPOSITORY = "__repository__"
TIMEZONE = "Asia/Seoul"
PG_USER = "dagster"
BRISK_DAEMON = Path(__file__).with_name("brisk_daemon.py")
BRISK_BACKFILL_SECONDS = 3
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.5) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as error:  # the thing polled is still starting up
            last_error = error
        else:
            if value:
                return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last_error!r})")


@dataclass
class Process:
    """A child process in its own process group, with its output in a log file."""

    name: str
    popen: subprocess.Popen
    log: Path
    stop_signal: int = signal.SIGTERM

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} ({self.log}) ---\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 20) -> None:
        """Ask politely, then kill the whole group (the code server's run workers too)."""
        group = self.popen.pid
        if self.popen.poll() is None:
            self.popen.send_signal(self.stop_signal)
            with suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
        self.popen.wait(5)


def start(
    name: str,
    command: list[str],
    logs: Path,
    env: dict[str, str] | None = None,
    user: str | None = None,
    stop_signal: int = signal.SIGTERM,
    cwd: Path | None = None,
) -> Process:
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            command,
            env=env,
            user=user,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Process(name, popen, log, stop_signal)


def postgres_bin() -> Path:
    """The PostgreSQL binaries the `pgserver` wheel ships."""
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


def postgres_os_user() -> str | None:
    """PostgreSQL refuses to run as root: as pgserver does, run it as a `pgserver` user."""
    if os.geteuid() != 0:
        return None
    from pgserver.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists("pgserver")
    binaries = postgres_bin()
    ensure_prefix_permissions(binaries)
    ensure_folder_permissions(binaries, 0o055)
    ensure_folder_permissions(binaries.parent / "lib", 0o044)
    return "pgserver"


@contextmanager
def postgres_server(base: Path, logs: Path, password: str) -> Iterator[int]:
    """A PostgreSQL listening on 127.0.0.1 only (no Unix socket), with a password; its port."""
    user = postgres_os_user()
    base.mkdir(mode=0o755)
    data = base / "pgdata"
    data.mkdir()
    password_file = base / "pgpass"
    password_file.write_text(password + "\n")
    password_file.chmod(0o644)
    if user:
        entry = pwd.getpwnam(user)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    initdb = subprocess.run(
        [
            str(postgres_bin() / "initdb"),
            "-D",
            str(data),
            "-U",
            PG_USER,
            f"--pwfile={password_file}",
            "--auth-host=scram-sha-256",
            "--auth-local=reject",
            "--encoding=UTF8",
            "--no-sync",
        ],
        capture_output=True,
        text=True,
        user=user,
    )
    password_file.unlink()
    assert initdb.returncode == 0, initdb.stderr
    port = free_port()
    server = start(
        "postgres",
        [
            str(postgres_bin() / "postgres"),
            "-D",
            str(data),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            "",
            "-c",
            "fsync=off",
        ],
        logs,
        user=user,
        stop_signal=signal.SIGINT,  # fast shutdown: disconnects clients instead of waiting
    )
    try:
        url = f"postgresql+psycopg://{PG_USER}:{password}@127.0.0.1:{port}/postgres"
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with wait_for(engine.connect, 30, "PostgreSQL to accept connections") as connection:
                connection.exec_driver_sql("CREATE DATABASE dagster")
                connection.exec_driver_sql("CREATE DATABASE warehouse")
        finally:
            engine.dispose()
        yield port
    finally:
        server.stop()


@dataclass
class Deployment:
    """A running topology and ways to talk to it."""

    base: Path
    url: str
    pg_port: int
    pg_password: str
    home: Path
    workspace: Path
    dagster_env: dict[str, str]
    start_date: date
    processes: list[Process] = field(default_factory=list)
    missed_tick: datetime | None = None
    # The UJET the code location fetches from (its request log counts the API's work).
    ujet: UjetEmulator | None = None
    # With tenants: each tenant's UJET, by tenant name.
    ujets: dict[str, UjetEmulator] = field(default_factory=dict)

    def day(self, offset: int) -> str:
        """A partition key `offset` days after the start date."""
        return (self.start_date + timedelta(days=offset)).isoformat()

    def warehouse(self) -> sa.Engine:
        return sa.create_engine(
            f"postgresql+psycopg://{PG_USER}:{self.pg_password}@127.0.0.1:{self.pg_port}/warehouse"
        )

    def logs(self) -> str:
        return "\n".join(process.tail() for process in self.processes)

    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        response = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=30
        )
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    @contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        """The same Dagster instance the services use (the production dagster.yaml)."""
        with (
            mock.patch.dict(os.environ, self.dagster_env),
            dg.DagsterInstance.from_config(str(self.home)) as instance,
        ):
            yield instance

    def wait_for_run(self, run_id: str, timeout: float = 120) -> dict[str, Any]:
        """Poll the run until it ends; fail with the services' logs unless it succeeded."""

        def ended() -> dict[str, Any] | None:
            run = self.graphql(RUN_QUERY, runId=run_id)["runOrError"]
            return run if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None

        try:
            run = wait_for(ended, timeout, f"run {run_id} to end", every=1)
        except TimeoutError as error:
            raise AssertionError(f"{error}\n{self.logs()}") from None
        assert run["status"] == "SUCCESS", f"run {run_id}: {run['status']}\n{self.logs()}"
        return run


RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      runId
      status
      tags { key value }
      stepStats { stepKey status startTime endTime }
    }
  }
}
"""

RUNS_BY_TAG = """
query Runs($key: String!, $value: String!) {
  runsOrError(filter: {tags: [{key: $key, value: $value}]}) {
    __typename
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""

LAUNCH_RUN = """
mutation Launch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

LAUNCH_BACKFILL = """
mutation Backfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionSetNotFoundError { message }
  }
}
"""

LOCATIONS = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}
"""


def production_workspace(host: str, port: int) -> dict[str, Any]:
    """The repository's workspace.yaml with the gRPC server's address replaced."""
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    for entry in workspace["load_from"]:
        entry["grpc_server"] |= {"host": host, "port": port}
    return workspace


def last_tick(now: datetime, timezone: str, hour: int, minute: int) -> datetime:
    """The latest daily hh:mm in `timezone` at or before `now`."""
    local = now.astimezone(ZoneInfo(timezone))
    tick = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return tick if tick <= local else tick - timedelta(days=1)


def seed_missed_daily_tick(deployment: Deployment) -> datetime:
    """Record that the daily schedule has been on since before its last tick.

    As after a daemon outage over 00:30: the daemon, when it starts, must fire the missed tick
    of the real schedule (cron and time zone as deployed). Without this, the first tick would
    come at the next 00:30, beyond any test's patience.
    """
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.scheduler.instigation import (
        InstigatorState,
        InstigatorStatus,
        ScheduleInstigatorData,
    )
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    tick = last_tick(datetime.now(ZoneInfo("UTC")), TIMEZONE, 0, 30)
    with (
        deployment.instance() as instance,
        WorkspaceProcessContext(
            instance, WorkspaceFileTarget(paths=[str(deployment.workspace)])
        ) as context,
    ):
        location = context.create_request_context().get_code_location(LOCATION)
        schedule = location.get_repository(REPOSITORY).get_schedule(DAILY_SCHEDULE_NAME)
        instance.add_instigator_state(
            InstigatorState(
                schedule.get_remote_origin(),
                InstigatorType.SCHEDULE,
                InstigatorStatus.DECLARED_IN_CODE,
                ScheduleInstigatorData(
                    schedule.cron_schedule, start_timestamp=(tick - timedelta(hours=1)).timestamp()
                ),
            )
        )
    return tick


def code_server_command(port: int, module: str = "chat_assets.definitions") -> list[str]:
    """The code location's gRPC server, as docker-compose's user_code service starts it."""
    return [
        str(VENV_BIN / "dagster"),
        "code-server",
        "start",
        "-m",
        module,
        "--location-name",
        LOCATION,
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]


def webserver_command(workspace: Path, port: int) -> list[str]:
    return [
        str(VENV_BIN / "dagster-webserver"),
        "-w",
        str(workspace),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]


def wait_until_serving(code_server: Process, port: int) -> None:
    """Until the code server answers docker-compose's health check."""
    health = [str(VENV_BIN / "dagster"), "api", "grpc-health-check", "-p", str(port)]

    def serving() -> bool:
        assert code_server.popen.poll() is None, code_server.tail()
        return subprocess.run(health, capture_output=True, timeout=20).returncode == 0

    wait_for(serving, 90, "the code server's gRPC health check", every=1)


def tenant_variables(tenant: str) -> dict[str, str]:
    """The environment variables a tenant's document names, with their values: its own UJET
    credentials and its own pseudonym key."""
    upper = tenant.upper()
    return {
        f"{upper}_UJET_KEY": f"{tenant}-key",
        f"{upper}_UJET_SECRET": f"{tenant}-secret",
        f"{upper}_PII_KEY": hashlib.sha256(f"{tenant}:{TEST_PII_KEY}".encode()).hexdigest(),
    }


def tenant_document(
    tenant: str, base_url: str, start_date: date, requests_per_second: float
) -> dict[str, Any]:
    """A tenant of the tenants file, on its emulator, with its schedules and sensor off: work
    goes in through GraphQL only."""
    upper = tenant.upper()
    return {
        "type": COMPONENT_TYPE,
        "attributes": {
            "tenant": tenant,
            "ujet": {
                "base_url": base_url,
                "company_key_env": f"{upper}_UJET_KEY",
                "company_secret_env": f"{upper}_UJET_SECRET",
                "requests_per_second": requests_per_second,
            },
            "pii_key_env": f"{upper}_PII_KEY",
            "start_date": start_date.isoformat(),
            "timezone": TIMEZONE,
            "schedules": {"daily": False, "lookback": False, "catch_up": False},
        },
    }


@contextmanager
def running_deployment(
    emulator: dict[str, Any] | None = None,
    settings: dict[str, str] | None = None,
    tenants: Sequence[str] = (),
    requests_per_second: float = 5.0,
    brisk: bool = False,
) -> Iterator[Deployment]:
    """Start the topology in dependency order, as docker-compose's depends_on does; the UJET
    emulator and the code location's settings may be given more options.

    `brisk` (the tests') has the daemon look for backfills every BRISK_BACKFILL_SECONDS instead
    of every 30 seconds: the same work, with less waiting for the next look. The benchmarks
    time the production daemon.

    With `tenants` named, the code location serves them from a tenants file instead, each
    tenant paced at `requests_per_second` against an emulator of its own (with the options of
    `emulator`), its variables set as `tenant_variables` gives them.
    """
    base = Path(tempfile.mkdtemp(prefix="chat_assets_topology_"))
    base.chmod(0o755)  # traversable by the PostgreSQL user
    logs = base / "logs"
    logs.mkdir()
    password = secrets.token_hex(12)
    today = datetime.now(ZoneInfo(TIMEZONE)).date()
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, base, ignore_errors=True)
        pg_port = stack.enter_context(postgres_server(base / "postgres", logs, password))
        home = base / "dagster_home"
        home.mkdir()
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        grpc_port, web_port = free_port(), free_port()
        workspace = base / "workspace.yaml"
        workspace.write_text(yaml.safe_dump(production_workspace("127.0.0.1", grpc_port)))
        inherited = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("UJET_", "CHAT_ASSETS_", "DAGSTER_"))
        }
        dagster_env = {
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(pg_port),
            "DAGSTER_PG_USER": PG_USER,
            "DAGSTER_PG_PASSWORD": password,
            "DAGSTER_PG_DB": "dagster",
            "DAGSTER_COMPUTE_LOGS_DIR": str(home / "compute_logs"),
        }
        start_date = today - timedelta(days=60)
        warehouse_url = f"postgresql+psycopg://{PG_USER}:{password}@127.0.0.1:{pg_port}/warehouse"
        ujet: UjetEmulator | None = None
        ujets: dict[str, UjetEmulator] = {}
        if tenants:
            module = "chat_assets.tenants_location"
            ujets = {
                tenant: stack.enter_context(
                    UjetEmulator(
                        company_key=f"{tenant}-key",
                        company_secret=f"{tenant}-secret",
                        **(emulator or {}),
                    )
                )
                for tenant in tenants
            }
            tenants_file = base / "tenants.yaml"
            tenants_file.write_text(
                yaml.safe_dump_all(
                    tenant_document(tenant, api.base_url, start_date, requests_per_second)
                    for tenant, api in ujets.items()
                )
            )
            location_env = {
                TENANTS_FILE_ENV: str(tenants_file),
                "CHAT_ASSETS_DATABASE_URL": warehouse_url,
                "CHAT_ASSETS_HOME": str(base / "state"),
            }
            for tenant in tenants:
                location_env |= tenant_variables(tenant)
        else:
            module = "chat_assets.definitions"
            # The production code location on a UJET account: the emulator, over real HTTP.
            ujet = stack.enter_context(
                UjetEmulator(
                    company_key="topology-key",
                    company_secret="topology-secret",
                    **(emulator or {}),
                )
            )
            location_env = {
                "UJET_BASE_URL": ujet.base_url,
                "UJET_COMPANY_KEY": "topology-key",
                "UJET_COMPANY_SECRET": "topology-secret",
                "CHAT_ASSETS_PII_KEY": TEST_PII_KEY,
                "CHAT_ASSETS_DATABASE_URL": warehouse_url,
                "CHAT_ASSETS_START_DATE": start_date.isoformat(),
                "CHAT_ASSETS_TIMEZONE": TIMEZONE,
                "CHAT_ASSETS_HOME": str(base / "state"),
            }
        code_env = inherited | dagster_env | location_env | (settings or {})
        deployment = Deployment(
            base=base,
            url=f"http://127.0.0.1:{web_port}",
            pg_port=pg_port,
            pg_password=password,
            home=home,
            workspace=workspace,
            dagster_env=dagster_env,
            start_date=start_date,
            ujet=ujet,
            ujets=ujets,
        )
        # Dagster's tables, created once before any service races to create them.
        with deployment.instance():
            pass

        def launch(name: str, command: list[str], env: dict[str, str]) -> Process:
            process = start(name, command, logs, env=env)
            deployment.processes.append(process)
            stack.callback(process.stop)
            return process

        code_server = launch("code_server", code_server_command(grpc_port, module), code_env)
        wait_until_serving(code_server, grpc_port)
        services_env = inherited | dagster_env
        webserver = launch(
            "webserver",
            webserver_command(workspace, web_port),
            services_env,
        )

        def location_loaded() -> bool:
            assert webserver.popen.poll() is None, webserver.tail()
            data = deployment.graphql(LOCATIONS)["workspaceOrError"]
            entry = {e["name"]: e for e in data["locationEntries"]}[LOCATION]
            loaded = entry["locationOrLoadError"]
            assert loaded is None or loaded["__typename"] != "PythonError", loaded
            return bool(loaded) and loaded["__typename"] == "RepositoryLocation"

        wait_for(location_loaded, 90, "the webserver to load the code location", every=1)
        if not tenants:
            deployment.missed_tick = seed_missed_daily_tick(deployment)
        daemon = [str(VENV_BIN / "dagster-daemon")]
        if brisk:
            daemon = [sys.executable, str(BRISK_DAEMON), str(BRISK_BACKFILL_SECONDS)]
        launch("daemon", [*daemon, "run", "-w", str(workspace)], services_env)
        yield deployment


class _Shared:
    """One topology for every module that asks for it, stopped when the last one is done."""

    def __init__(self) -> None:
        self.users = 0
        self.stack: ExitStack | None = None
        self.deployment: Deployment | None = None

    @contextmanager
    def use(self) -> Iterator[Deployment]:
        if self.users == 0:
            self.stack = ExitStack()
            self.deployment = self.stack.enter_context(running_deployment(brisk=True))
        self.users += 1
        try:
            assert self.deployment is not None
            yield self.deployment
        finally:
            self.users -= 1
            if self.users == 0 and self.stack is not None:
                self.stack.close()
                self.stack = self.deployment = None


shared_deployment = _Shared().use


def launch_run(deployment: Deployment, day: str) -> str:
    """Launch the whole-graph job for one day, as the UI's Launchpad does."""
    result = deployment.graphql(
        LAUNCH_RUN,
        executionParams={
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "jobName": JOB_NAME,
            },
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": day}]},
        },
    )["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def launch_job_backfill(deployment: Deployment, days: list[str], job: str = JOB_NAME) -> str:
    """Backfill the whole-graph job (or a tenant's, `job`) over days, as the UI's Jobs >
    Partitions does; its id."""
    result = deployment.graphql(
        LAUNCH_BACKFILL,
        backfillParams={
            "selector": {
                "partitionSetName": f"{job}_partition_set",
                "repositorySelector": {
                    "repositoryLocationName": LOCATION,
                    "repositoryName": REPOSITORY,
                },
            },
            "partitionNames": days,
        },
    )["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


def landed(deployment: Deployment, day: str) -> tuple[int, int]:
    """Chats in raw_chats for `day`, and how many of them made it into `chats`."""
    engine = deployment.warehouse()
    try:
        with engine.connect() as connection:
            raw = connection.exec_driver_sql(
                "SELECT count(*) FROM ujet.raw_chats WHERE partition_key = %(day)s", {"day": day}
            ).scalar_one()
            flattened = connection.exec_driver_sql(
                "SELECT count(*) FROM ujet.chats WHERE id IN "
                "(SELECT id FROM ujet.raw_chats WHERE partition_key = %(day)s)",
                {"day": day},
            ).scalar_one()
    finally:
        engine.dispose()
    return raw, flattened


def tags(run: dict[str, Any]) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in run["tags"]}


def check_partitions(deployment: Deployment, run_ids: list[str]) -> dict[str, set[str]]:
    """The asset check results the runs recorded, by partition (read from Dagster's storage)."""
    engine = sa.create_engine(
        f"postgresql+psycopg://{PG_USER}:{deployment.pg_password}@127.0.0.1:"
        f"{deployment.pg_port}/dagster"
    )
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT event FROM event_logs WHERE run_id = ANY(:runs)"
                    " AND dagster_event_type = 'ASSET_CHECK_EVALUATION'"
                ),
                {"runs": run_ids},
            ).fetchall()
    finally:
        engine.dispose()
    found: dict[str, set[str]] = {}
    for (event,) in rows:
        evaluation = deserialize_value(event).dagster_event.event_specific_data
        name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        found.setdefault(evaluation.partition, set()).add(name)
    return found
