"""UjetChatsComponent: several tenants in one code location, each on its own emulator, schema,
pseudonym key and request budget, through real Dagster runs and a real PostgreSQL."""

from __future__ import annotations

import importlib
import itertools
import json
import logging
import os
import subprocess
import sys
from contextlib import ExitStack
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from chat_assets import UjetAccount, UjetChatsComponent, tenants_definitions
from chat_assets.settings import SettingsError
from chat_assets.tables import AGGREGATE_TABLES, DERIVED_TABLES, RAW_CHATS
from chat_assets.tenants import read_tenants, tenants_location
from chat_assets.ujet.errors import UjetUnavailableError
from chat_assets_demo.emulator import UjetEmulator
from chat_assets_tests.support import TEST_PII_KEY

DAY = "2026-03-02"
OTHER_KEY = "chat-assets-tests-globex-" + "fedcba9876543210" * 2
SECRET = "sk_live_3f9a8b7c6d5e4f3a2b1c"
# Every asset of a day: the landing, the flattened tables and the service levels.
DAILY_ASSETS = {
    RAW_CHATS.name,
    *(t.name for t in DERIVED_TABLES),
    *(t.name for t in AGGREGATE_TABLES),
}


@pytest.fixture
def tenant_env(monkeypatch, database_url: str) -> None:
    """Each tenant's secrets in variables of its own; one warehouse URL for both."""
    monkeypatch.setenv("TENANTS_DATABASE_URL", database_url)
    for name, value in {
        "ACME_UJET_KEY": "acme-key",
        "ACME_UJET_SECRET": "acme-secret",
        "ACME_PII_KEY": TEST_PII_KEY,
        "GLOBEX_UJET_KEY": "globex-key",
        "GLOBEX_UJET_SECRET": "globex-secret",
        "GLOBEX_PII_KEY": OTHER_KEY,
    }.items():
        monkeypatch.setenv(name, value)


def tenant(name: str, emulator: UjetEmulator, schema: str, **attributes) -> UjetChatsComponent:
    upper = name.upper()
    return UjetChatsComponent(
        tenant=name,
        ujet=UjetAccount(
            base_url=emulator.base_url,
            company_key_env=f"{upper}_UJET_KEY",
            company_secret_env=f"{upper}_UJET_SECRET",
            requests_per_second=attributes.pop("requests_per_second", 50),
        ),
        pii_key_env=f"{upper}_PII_KEY",
        database_url_env="TENANTS_DATABASE_URL",
        db_schema=schema,
        start_date="2026-01-01",
        timezone=attributes.pop("timezone", "Asia/Seoul"),
        **attributes,
    )


def rows(engine: sa.Engine, schema: str, table: str) -> int:
    with engine.connect() as connection:
        exists = connection.exec_driver_sql(
            "SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".{table}',)
        ).scalar()
        if not exists:
            return 0
        return connection.exec_driver_sql(f'SELECT count(*) FROM "{schema}".{table}').scalar()


def run_daily(defs: dg.Definitions, name: str, instance: dg.DagsterInstance):
    job = defs.resolve_job_def(f"{name}_chat_assets_daily")
    return job.execute_in_process(partition_key=DAY, instance=instance, raise_on_error=False)


def test_two_tenants_in_one_location_a_wrong_secret_fails_only_its_own(tenant_env, engine, schemas):
    with (
        UjetEmulator(company_key="acme-key", company_secret="acme-secret") as acme_api,
        # Globex's emulator expects another secret than GLOBEX_UJET_SECRET holds.
        UjetEmulator(company_key="globex-key", company_secret="rotated") as globex_api,
        dg.instance_for_test() as instance,
    ):
        defs = tenants_definitions(
            [
                tenant("acme", acme_api, schemas["acme"]),
                tenant("globex", globex_api, schemas["globex"]),
            ]
        )
        dg.Definitions.validate_loadable(defs)
        keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
        assert keys == {f"{t}/{a}" for t in ("acme", "globex") for a in DAILY_ASSETS} | {
            "acme/retention",
            "globex/retention",
        }
        for job in defs.jobs:  # the run queue's per-tenant limit counts by this tag
            tenant_name = job.name.split("_")[0]
            assert defs.resolve_job_def(job.name).tags == {"chat_assets/tenant": tenant_name}
        # One after the other: Dagster's in-process execution is not thread-safe (the test of
        # parallel runs below starts a process per run, as the deployment does).
        results = {name: run_daily(defs, name, instance) for name in ("acme", "globex")}

    assert results["acme"].success
    assert not results["globex"].success
    failure = next(
        event
        for event in results["globex"].all_events
        if event.event_type == dg.DagsterEventType.STEP_FAILURE
    )
    message = failure.step_failure_data.error.to_string()
    assert "401 Unauthorized: check GLOBEX_UJET_KEY and GLOBEX_UJET_SECRET (tenant globex)" in (
        message
    )
    assert "globex-key" not in message and "rotated" not in message
    # Acme's day landed in acme's schema only, pseudonymised with acme's key.
    landed = rows(engine, schemas["acme"], "raw_chats")
    assert landed > 0
    assert rows(engine, schemas["acme"], "chats") == landed
    assert rows(engine, schemas["globex"], "raw_chats") == 0
    materialized = {
        event.asset_key.to_user_string()
        for event in results["acme"].get_asset_materialization_events()
    }
    assert materialized == {f"acme/{name}" for name in DAILY_ASSETS}
    checks = results["acme"].get_asset_check_evaluations()
    assert checks and all(c.asset_key.path[0] == "acme" for c in checks)
    assert all(c.passed for c in checks if c.severity == dg.AssetCheckSeverity.ERROR)


TENANTS_YAML = """
type: chat_assets.UjetChatsComponent
attributes:
  tenant: {name}
  ujet:
    base_url: {base_url}
    company_key_env: {upper}_UJET_KEY
    company_secret_env: {upper}_UJET_SECRET
    requests_per_second: 10
  pii_key_env: {upper}_PII_KEY
  database_url_env: TENANTS_DATABASE_URL
  db_schema: {schema}
  start_date: "2026-01-01"
  timezone: UTC
"""


def test_tenants_run_at_once_each_paced_to_its_own_budget(tenant_env, tmp_path, schemas):
    """Each emulator allows 10 requests/s and answers in 0.4 s; each tenant may send 10. A
    process per run, both launched at once, on the YAML file's code location."""
    emulators = {
        name: UjetEmulator(
            company_key=f"{name}-key",
            company_secret=f"{name}-secret",
            chats_per_day=1500,
            seasonal=False,
            personality="slow_strict_10",
        )
        for name in ("acme", "globex")
    }
    with ExitStack() as stack:
        apis = {name: stack.enter_context(api) for name, api in emulators.items()}
        tenants_file = tmp_path / "tenants.yaml"
        tenants_file.write_text(
            "---".join(
                TENANTS_YAML.format(
                    name=name, upper=name.upper(), base_url=api.base_url, schema=schemas[name]
                )
                for name, api in apis.items()
            )
        )
        home = tmp_path / "dagster_home"
        home.mkdir()
        # The instance's storage created once, before two processes would both create it.
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.get_runs(limit=1)
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "CHAT_ASSETS_TENANTS_FILE": str(tenants_file),
        }
        runs = [
            subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "dagster"),
                    *("job", "execute", "-m", "chat_assets.tenants_location"),
                    *("-j", f"{name}_chat_assets_daily"),
                    *("--tags", json.dumps({"dagster/partition": DAY})),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in apis
        ]
        errors = [run.communicate(timeout=300)[1] for run in runs]
        arrivals = {name: sorted(r.time for r in api.requests) for name, api in apis.items()}

    assert [run.returncode for run in runs] == [0, 0], [e[-2000:] for e in errors]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for name in apis:
            (raw,) = [
                record.asset_materialization
                for record in instance.fetch_materializations(
                    dg.AssetKey([name, "raw_chats"]), limit=10
                ).records
            ]
            # The day's 1,500 new chats and later versions of earlier days' chats, all of them.
            assert raw.metadata["records"].value == raw.metadata["api_total"].value >= 1500
            # Each tenant kept to its own emulator's limit.
            assert raw.metadata["throttled"].value == 0, name
    for name in apis:
        gaps = [b - a for a, b in itertools.pairwise(arrivals[name])]
        assert min(gaps) >= 0.1 - 0.005, name
    # In parallel: each tenant's requests began before the other's ended.
    assert arrivals["acme"][0] < arrivals["globex"][-1]
    assert arrivals["globex"][0] < arrivals["acme"][-1]


def step_failure(result: dg.ExecuteInProcessResult) -> str:
    return next(
        event.step_failure_data.error.message
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.STEP_FAILURE
    )


@pytest.mark.parametrize("secret", [None, ""], ids=["unset", "empty"])
def test_a_tenant_missing_a_variable_loads_and_fails_alone(
    secret, tenant_env, monkeypatch, engine, schemas, caplog
):
    """A variable unset or empty: loading warns, and the tenant's runs fail naming its own
    variables, never the single-tenant location's."""
    if secret is None:
        monkeypatch.delenv("GLOBEX_UJET_SECRET")
    else:
        monkeypatch.setenv("GLOBEX_UJET_SECRET", secret)
    with (
        UjetEmulator(company_key="acme-key", company_secret="acme-secret") as acme_api,
        UjetEmulator(company_key="globex-key", company_secret="globex-secret") as globex_api,
        dg.instance_for_test() as instance,
    ):
        with caplog.at_level(logging.WARNING, logger="chat_assets"):
            defs = tenants_definitions(
                [
                    tenant("acme", acme_api, schemas["acme"]),
                    tenant("globex", globex_api, schemas["globex"]),
                ]
            )
        dg.Definitions.validate_loadable(defs)
        assert [r.getMessage() for r in caplog.records] == [
            "chat_assets tenant globex: GLOBEX_UJET_SECRET not set; its runs fail until they "
            "are (the other tenants are not affected)"
        ]
        acme = run_daily(defs, "acme", instance)
        if secret is None:
            with pytest.raises(dg.DagsterInvalidConfigError, match="GLOBEX_UJET_SECRET"):
                run_daily(defs, "globex", instance)
        else:
            message = step_failure(run_daily(defs, "globex", instance))
            assert "GLOBEX_UJET_KEY and GLOBEX_UJET_SECRET (tenant globex) must" in message
            assert "UJET_COMPANY" not in message
    assert acme.success
    assert rows(engine, schemas["acme"], "raw_chats") > 0


@pytest.mark.parametrize(
    ("url", "named", "warned"),
    [
        (
            "postgresql+psycopg://loader:pw@127.0.0.1:9/dw",
            "PostgreSQL at 127.0.0.1:9 (database dw) could not be reached (OperationalError, "
            "SQLSTATE None): check GLOBEX_DATABASE_URL (tenant globex) (host, port",
            False,
        ),
        (
            "loader:pw@127.0.0.1:9/dw",  # the scheme forgotten
            "GLOBEX_DATABASE_URL (tenant globex) must be a PostgreSQL URL such as",
            True,
        ),
    ],
    ids=["unreachable", "no_postgresql_url"],
)
def test_a_tenants_wrong_warehouse_fails_its_runs_alone_naming_its_variable(
    url, named, warned, tenant_env, monkeypatch, engine, schemas, caplog
):
    monkeypatch.setenv("GLOBEX_DATABASE_URL", url)
    with (
        UjetEmulator(company_key="acme-key", company_secret="acme-secret") as acme_api,
        UjetEmulator(company_key="globex-key", company_secret="globex-secret") as globex_api,
        dg.instance_for_test() as instance,
    ):
        globex = tenant("globex", globex_api, schemas["globex"]).model_copy(
            update={"database_url_env": "GLOBEX_DATABASE_URL"}
        )
        with caplog.at_level(logging.WARNING, logger="chat_assets"):
            defs = tenants_definitions([tenant("acme", acme_api, schemas["acme"]), globex])
        acme = run_daily(defs, "acme", instance)
        message = step_failure(run_daily(defs, "globex", instance))
    assert acme.success
    assert rows(engine, schemas["acme"], "raw_chats") > 0
    assert named in message
    assert "CHAT_ASSETS_DATABASE_URL" not in message and "pw" not in message
    assert (named in caplog.text) is warned and "pw" not in caplog.text


def test_a_tenant_refused_past_its_retries_names_its_own_request_rate(tenant_env, schemas):
    with UjetEmulator(company_key="acme-key", company_secret="acme-secret") as api:
        api.inject("429", count=100, retry_after=0)
        defs = tenant("acme", api, schemas["acme"]).definitions()
        ujet = defs.resources["acme_ujet"].process_config_and_initialize()
        with ujet.open_client() as client, pytest.raises(UjetUnavailableError) as refused:
            client.fetch_window(datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))
    message = str(refused.value)
    assert message.endswith("or lower tenant acme's ujet.requests_per_second")
    assert "UJET_" not in message


class ProjectWarehouse(dg.ConfigurableResource):
    """A project's own resource under the key chat_assets' single location uses."""

    dsn: str


def test_merges_into_a_project_with_its_own_warehouse_and_executor(tenant_env, engine, schemas):
    """A project of its own with a `warehouse` resource and the multiprocess executor."""

    @dg.asset
    def orders(warehouse: ProjectWarehouse) -> int:
        return len(warehouse.dsn)

    project = dg.Definitions(
        assets=[orders],
        resources={"warehouse": ProjectWarehouse(dsn="project-db")},
        executor=dg.multiprocess_executor,
    )
    with (
        UjetEmulator(company_key="acme-key", company_secret="acme-secret") as acme_api,
        dg.instance_for_test() as instance,
    ):
        defs = dg.Definitions.merge(
            project, tenant("acme", acme_api, schemas["acme"]).definitions()
        )
        dg.Definitions.validate_loadable(defs)
        assert defs.executor is dg.multiprocess_executor
        assert defs.resources["warehouse"].dsn == "project-db"
        result = run_daily(defs, "acme", instance)
    assert result.success
    assert rows(engine, schemas["acme"], "raw_chats") > 0


def test_the_single_tenant_location_keeps_its_bare_names(monkeypatch, database_url):
    from chat_assets.location import production_definitions

    for name, value in {
        "UJET_SUBDOMAIN": "acme",
        "UJET_COMPANY_KEY": "k",
        "UJET_COMPANY_SECRET": "s",
        "CHAT_ASSETS_PII_KEY": TEST_PII_KEY,
        "CHAT_ASSETS_DATABASE_URL": database_url,
    }.items():
        monkeypatch.setenv(name, value)
    defs = production_definitions()
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == DAILY_ASSETS | {"retention"}
    assert set(defs.resources) == {"ujet", "privacy", "warehouse", "warehouse_io_manager"}
    assert {job.name for job in defs.jobs} == {
        "chat_assets_daily",
        "queue_service_levels_refresh",
        "privacy_retention",
    }
    assert defs.executor is dg.in_process_executor
    assert not any(defs.resolve_job_def(job.name).tags for job in defs.jobs)
    assert all(node.freshness_policy is None for node in defs.resolve_asset_graph().asset_nodes)


GOOD = {
    "tenant": "acme",
    "ujet": {
        "subdomain": "acme",
        "company_key_env": "ACME_UJET_KEY",
        "company_secret_env": "ACME_UJET_SECRET",
    },
    "pii_key_env": "ACME_PII_KEY",
}


def attributes(**changes) -> dict:
    merged = {**GOOD, "ujet": dict(GOOD["ujet"])}
    for path, value in changes.items():
        target = merged
        *parents, last = path.split("__")
        for parent in parents:
            target = target[parent]
        if value is None:
            target.pop(last)
        else:
            target[last] = value
    return merged


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tenant": "Acme-EU"}, "chat_assets tenant 'Acme-EU': tenant must be lowercase"),
        ({"ujet__subdomain": None}, "chat_assets tenant acme: ujet needs subdomain"),
        ({"ujet__subdomain": "acme.ujet.co"}, "ujet.subdomain must be a host label"),
        ({"ujet__base_url": "acme.ujet.co/manager"}, "ujet.base_url must start with https://"),
        ({"ujet__domain": "https://ujet.co"}, "ujet.domain must be a domain name"),
        ({"ujet__domain": "ujet"}, "ujet.domain must be a domain name"),
        ({"ujet__requests_per_second": 0}, "ujet.requests_per_second='0.0' must be a number"),
        ({"timezone": "Asia/Seol"}, "timezone='Asia/Seol' is not an IANA time zone"),
        ({"start_date": "2025-13-01"}, "start_date='2025-13-01' is not a date"),
        ({"db_schema": "pg_acme"}, "db_schema='pg_acme' is reserved by PostgreSQL"),
        ({"lookback_days": 90}, "lookback_days='90' must be a whole number from 1 to 60"),
        ({"interval_minutes": 20}, "interval_minutes='20' must be 15, 30 or 60 (minutes)"),
        ({"retention": {"raw_days": 0}}, "retention.raw_days='0' must be a whole number of days"),
        ({"fresh_by": "6am"}, "fresh_by='6am' must be a local time HH:MM"),
        ({"fresh_by": "00:15"}, "fresh_by='00:15' must come after the daily run at 00:30"),
        ({"pii_previous_keys_env": "k1:x"}, "pii_previous_keys_env must name an environment"),
    ],
)
def test_attributes_are_refused_with_one_line_naming_tenant_and_attribute(changes, message):
    component = UjetChatsComponent.from_attributes_dict(attributes=attributes(**changes))
    with pytest.raises(SettingsError) as refused:
        component.definitions()
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"ujet__company_secret_env": SECRET},
            "ujet.company_secret_env must name an environment variable",
        ),
        (
            # The base URL is resource configuration the UI shows.
            {"ujet__base_url": f"https://acme-key:{SECRET}@acme.ujet.co/manager/api/v1"},
            "ujet.base_url must not carry credentials",
        ),
    ],
)
def test_a_secret_written_where_it_does_not_belong_is_never_repeated(changes, message):
    component = UjetChatsComponent.from_attributes_dict(attributes=attributes(**changes))
    with pytest.raises(SettingsError) as refused:
        component.definitions()
    assert message in str(refused.value)
    assert SECRET not in str(refused.value)


def test_secrets_are_bound_by_variable_never_as_config_the_ui_shows(monkeypatch, database_url):
    monkeypatch.setenv("ACME_UJET_KEY", "the-key")
    monkeypatch.setenv("ACME_UJET_SECRET", "the-secret")
    monkeypatch.setenv("ACME_PII_KEY", TEST_PII_KEY)
    monkeypatch.setenv("CHAT_ASSETS_DATABASE_URL", database_url)
    defs = UjetChatsComponent.from_attributes_dict(attributes=GOOD).definitions()
    # What the UI shows of a resource is its configuration: the variable's name, not its value.
    shown = repr({key: resource.model_dump() for key, resource in defs.resources.items()})
    assert "ACME_UJET_SECRET" in shown
    for secret in ("the-key", "the-secret", TEST_PII_KEY, database_url):
        assert secret not in shown
    ujet = defs.resources["acme_ujet"]
    assert ujet.company_secret == dg.EnvVar("ACME_UJET_SECRET")


def test_a_yaml_file_of_tenants(tmp_path: Path):
    path = tmp_path / "tenants.yaml"
    path.write_text(
        """
type: chat_assets.UjetChatsComponent
attributes:
  tenant: acme
  ujet: {subdomain: acme, company_key_env: ACME_UJET_KEY, company_secret_env: ACME_UJET_SECRET}
  pii_key_env: ACME_PII_KEY
  db_schema: ujet_acme
  timezone: Asia/Seoul
---
type: chat_assets.UjetChatsComponent
attributes:
  tenant: globex
  ujet: {base_url: "https://ujet.globex.example/manager/api/v1",
         company_key_env: GLOBEX_UJET_KEY, company_secret_env: GLOBEX_UJET_SECRET,
         requests_per_second: 8}
  pii_key_env: GLOBEX_PII_KEY
  fresh_by: null
"""
    )
    acme, globex = read_tenants(path)
    assert (acme.tenant, acme.db_schema, acme.timezone) == ("acme", "ujet_acme", "Asia/Seoul")
    assert globex.validated().settings.schema == "ujet_globex"
    assert globex.validated().freshness_policy() is None
    assert globex.ujet.requests_per_second == 8

    path.write_text("type: chat_assets.UjetChatsComponent\nattributes:\n  tenant: acme\n")
    with pytest.raises(SettingsError, match=r"document 1: ujet: Field required"):
        read_tenants(path)
    path.write_text("type: other.Component\n")
    with pytest.raises(SettingsError, match="document 1 must have type: chat_assets"):
        read_tenants(path)


def test_two_tenants_may_not_share_a_name_or_a_schema_of_one_warehouse(monkeypatch):
    """A schema holds one tenant's tables: a second tenant in it would replace the first's
    days with its own."""
    monkeypatch.setenv("ACME_DATABASE_URL", "postgresql+psycopg://loader@db-a/warehouse")
    # The same database through another user of its own, and another port spelled out.
    monkeypatch.setenv("SAME_DATABASE_URL", "postgresql+psycopg://globex:pw@db-a:5432/warehouse")
    monkeypatch.setenv("OTHER_DATABASE_URL", "postgresql+psycopg://loader@db-b/warehouse")
    acme = UjetChatsComponent.from_attributes_dict(attributes=GOOD)
    globex = attributes(tenant="globex", ujet__subdomain="globex", pii_key_env="GLOBEX_PII_KEY")
    with pytest.raises(SettingsError, match=r"^chat_assets tenant acme: declared twice$"):
        tenants_definitions([acme, acme])

    def pair(first: dict, second: dict) -> list[UjetChatsComponent]:
        return [
            UjetChatsComponent.from_attributes_dict(attributes={**GOOD, **first}),
            UjetChatsComponent.from_attributes_dict(attributes={**globex, **second}),
        ]

    for first, second in (
        ({"db_schema": "ujet_acme"}, {"db_schema": "ujet_acme"}),
        ({}, {"db_schema": "UJET_ACME"}),
        (
            {"db_schema": "ujet", "database_url_env": "ACME_DATABASE_URL"},
            {"db_schema": "ujet", "database_url_env": "SAME_DATABASE_URL"},
        ),
    ):
        with pytest.raises(SettingsError) as refused:
            tenants_definitions(pair(first, second))
        schema = first.get("db_schema", "ujet_acme")
        assert str(refused.value) == (
            f"chat_assets tenant globex: db_schema {schema} is tenant acme's in the same "
            "warehouse; each tenant needs a schema of its own"
        )
    jobs = len(acme.definitions().jobs)
    assert len(tenants_definitions(pair({}, {})).jobs) == 2 * jobs
    elsewhere = pair(
        {"db_schema": "ujet", "database_url_env": "ACME_DATABASE_URL"},
        {"db_schema": "ujet", "database_url_env": "OTHER_DATABASE_URL"},
    )
    assert len(tenants_definitions(elsewhere).jobs) == 2 * jobs


def test_two_tenants_may_not_share_a_pseudonym_key():
    """A key per tenant, so that one customer's pseudonyms never link across tenants."""
    acme = UjetChatsComponent.from_attributes_dict(attributes=GOOD)
    globex = UjetChatsComponent.from_attributes_dict(
        attributes=attributes(tenant="globex", ujet__subdomain="globex")
    )
    with pytest.raises(SettingsError) as refused:
        tenants_definitions([acme, globex])
    assert str(refused.value) == (
        "chat_assets tenant globex: pii_key_env ACME_PII_KEY is tenant acme's; each tenant "
        "needs a pseudonym key of its own, so that a customer never links across tenants"
    )


def test_a_day_not_landed_by_its_deadline_shows_stale(tenant_env, tmp_path, monkeypatch, schemas):
    """Freshness as the daemon evaluates it: fresh after the day's run, stale once the next
    day's deadline (fresh_by, local time) passes without a run."""
    from dagster._core.definitions.freshness import FreshnessState
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon.freshness import FreshnessDaemon

    with (
        UjetEmulator(company_key="acme-key", company_secret="acme-secret") as acme_api,
        dg.instance_for_test() as instance,
    ):
        tenants_file = tmp_path / "tenants.yaml"
        tenants_file.write_text(
            TENANTS_YAML.format(
                name="acme", upper="ACME", base_url=acme_api.base_url, schema=schemas["acme"]
            )
            + '  fresh_by: "06:00"\n'
        )
        monkeypatch.setenv("CHAT_ASSETS_TENANTS_FILE", str(tenants_file))
        defs = tenants_location()
        raw_chats = dg.AssetKey(["acme", "raw_chats"])
        policy = defs.resolve_asset_graph().get(raw_chats).freshness_policy
        assert (policy.deadline_cron, policy.timezone) == ("0 6 * * *", "UTC")
        assert run_daily(defs, "acme", instance).success
        landed_at = datetime.now(UTC)
        target = InProcessWorkspaceLoadTarget(
            InProcessCodeLocationOrigin(
                LoadableTargetOrigin(module_name="chat_assets.tenants_location", attribute="defs")
            )
        )

        def state_at(at: datetime) -> FreshnessState:
            with (
                create_test_daemon_workspace_context(target, instance) as workspace,
                freeze_time(at),
            ):
                list(FreshnessDaemon().run_iteration(workspace))
            return instance.get_freshness_state_records([raw_chats])[raw_chats].freshness_state

        assert state_at(landed_at + timedelta(minutes=1)) == FreshnessState.PASS
        next_deadline = datetime.combine(landed_at.date() + timedelta(days=1), time(6, 1), UTC)
        assert state_at(next_deadline) == FreshnessState.FAIL


def test_the_python_api_stays_a_function_beside_the_tenants_code_location(tmp_path, monkeypatch):
    # Importing a submodule binds its name on the package: the location must not be named as
    # the function is, or `from chat_assets import tenants_definitions` returns the module.
    tenants_file = tmp_path / "tenants.yaml"
    tenants_file.write_text(
        TENANTS_YAML.format(
            name="acme", upper="ACME", base_url="http://127.0.0.1:9/api", schema="ujet_acme"
        )
    )
    monkeypatch.setenv("CHAT_ASSETS_TENANTS_FILE", str(tenants_file))
    importlib.import_module("chat_assets.tenants_location")
    from chat_assets import tenants_definitions as api

    assert callable(api) and api.__module__ == "chat_assets.component"
