"""The deployments past one tenant, checked statically (no Docker, no Kubernetes here): the
tenants' compose file, the Helm values, and what both share with dagster.yaml and tenants.yaml.
The files are parsed, Compose's interpolation is rendered as test_deployment.py renders it, and
the names each file gives (modules, paths, variables, secrets, limits) must agree."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config

from chat_assets.names import TENANT_TAG
from chat_assets.tenants import TENANTS_FILE_ENV, read_tenants
from chat_assets_tests.test_deployment import MissingVariable, interpolate, option

ROOT = Path(__file__).resolve().parents[1]
TENANTS_DIR = ROOT / "deploy" / "tenants"
COMPOSE_FILES = [ROOT / "docker-compose.yml", TENANTS_DIR / "docker-compose.yml"]
ENV = {"POSTGRES_PASSWORD": "pw"}


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return load(TENANTS_DIR / "docker-compose.yml")["services"]


@pytest.fixture(scope="module")
def tenants():
    return [tenant.validated() for tenant in read_tenants(TENANTS_DIR / "tenants.yaml")]


@pytest.fixture(scope="module")
def helm() -> dict[str, Any]:
    return load(ROOT / "deploy" / "helm" / "values.yaml")


def mount_target(volumes: list[str], source: str) -> str:
    (target,) = [v.split(":")[1] for v in volumes if v.split(":")[0] == source]
    return target


def test_a_dead_run_frees_its_slot_within_the_maximum_runtime(tmp_path):
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    monitoring = config["run_monitoring"]
    assert monitoring["enabled"] is True
    assert 0 < monitoring["max_runtime_seconds"] <= 4 * 3600
    assert monitoring["free_slots_after_run_end_seconds"] > 0


def test_one_tenants_runs_leave_run_slots_to_the_others(tmp_path, helm):
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    runs = config["concurrency"]["runs"]
    (limit,) = runs["tag_concurrency_limits"]
    assert limit["key"] == TENANT_TAG
    assert limit["value"] == {"applyLimitPerUniqueValue": True}
    assert 0 < limit["limit"] < runs["max_concurrent_runs"]
    queue = helm["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    (helm_limit,) = queue["tagConcurrencyLimits"]
    assert helm_limit["key"] == TENANT_TAG
    assert helm_limit["value"] == {"applyLimitPerUniqueValue": True}
    assert 0 < helm_limit["limit"] < queue["maxConcurrentRuns"]


def test_a_freed_run_slot_is_taken_within_a_second(tmp_path, helm):
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["run_coordinator"]["config"]["dequeue_interval_seconds"] == 1
    queue = helm["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queue["dequeueIntervalSeconds"] == 1


@pytest.mark.parametrize("compose_file", COMPOSE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_compute_logs_are_written_and_read_on_one_volume(compose_file):
    instance = load(ROOT / "dagster.yaml")["compute_logs"]
    assert instance["class"] == "LocalComputeLogManager"
    assert instance["config"]["base_dir"] == {"env": "DAGSTER_COMPUTE_LOGS_DIR"}
    compose = load(compose_file)
    rendered = interpolate(compose["services"], ENV | {"UJET_SUBDOMAIN": "a"} | _secrets())
    # Runs execute in user_code (subprocesses of its code server); the webserver shows them.
    for name in ("user_code", "webserver"):
        directory = rendered[name]["environment"]["DAGSTER_COMPUTE_LOGS_DIR"]
        assert mount_target(rendered[name]["volumes"], "compute_logs") == directory
    assert "compute_logs" in compose["volumes"]


def _secrets() -> dict[str, str]:
    return {
        "UJET_COMPANY_KEY": "k",
        "UJET_COMPANY_SECRET": "s",
        "CHAT_ASSETS_PII_KEY": "p" * 64,
    }


def test_the_tenants_compose_serves_the_tenants_file(services):
    user_code = interpolate(services, ENV)["user_code"]
    command = user_code["command"]
    assert option(command, "-m") == "chat_assets.tenants_location"
    single = load(ROOT / "docker-compose.yml")["services"]["user_code"]["command"]
    assert option(command, "--location-name") == option(single, "--location-name")
    assert option(command, "-p") == option(single, "-p")
    path = user_code["environment"][TENANTS_FILE_ENV]
    assert mount_target(user_code["volumes"], "./tenants.yaml") == path


def test_every_variable_the_tenants_name_reaches_the_code_server(services, tenants):
    user_code = interpolate(services, ENV)["user_code"]
    assert user_code["env_file"] == [{"path": ".env", "required": True}]
    example = (TENANTS_DIR / ".env.example").read_text()
    declared = set(re.findall(r"^([A-Z_0-9]+)=", example, flags=re.MULTILINE))
    for tenant in tenants:
        account = tenant.component.ujet
        for name in (
            account.company_key_env,
            account.company_secret_env,
            tenant.component.pii_key_env,
            tenant.component.database_url_env,
        ):
            assert name in declared or name in user_code["environment"], name
    for name in ("webserver", "daemon"):
        assert "env_file" not in services[name]


def test_the_tenants_compose_requires_only_the_database_password(services):
    assert set(
        re.findall(r"\$\{([A-Z_]+):\?", (TENANTS_DIR / "docker-compose.yml").read_text())
    ) == {"POSTGRES_PASSWORD"}
    with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):
        interpolate(services, {})
    assert (TENANTS_DIR / "../create-warehouse-db.sql").resolve().exists()
    assert (TENANTS_DIR / services["user_code"]["build"]).resolve() == ROOT


def test_helm_values_agree_with_the_compose_file_and_the_instance(helm, services, tenants):
    (deployment,) = helm["dagster-user-deployments"]["deployments"]
    compose_command = services["user_code"]["command"]
    args = deployment["codeServerArgs"]
    assert option(args, "-m") == option(compose_command, "-m")
    assert option(args, "--location-name") == option(compose_command, "--location-name")
    assert str(deployment["port"]) == option(compose_command, "-p")
    env = {item["name"]: item["value"] for item in deployment["env"]}
    tenants_file = Path(env[TENANTS_FILE_ENV])
    (mount,) = deployment["volumeMounts"]
    assert Path(mount["mountPath"]) == tenants_file.parent
    (volume,) = [v for v in deployment["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == "chat-assets-tenants"
    # Each tenant's secrets in a secret of its own, and every run pod gets them.
    secrets = {item["name"] for item in deployment["envSecrets"]}
    assert {f"chat-assets-{t.names.tenant}" for t in tenants} | {"chat-assets-warehouse"} == secrets
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    assert helm["runLauncher"]["type"] == "K8sRunLauncher"
    monitoring = helm["dagsterDaemon"]["runMonitoring"]
    instance = load(ROOT / "dagster.yaml")["run_monitoring"]
    assert monitoring["enabled"] is True
    assert monitoring["maxRuntimeSeconds"] == instance["max_runtime_seconds"]
    # The secrets' commands in the header name the variables the tenants file names.
    header = (ROOT / "deploy" / "helm" / "values.yaml").read_text()
    for tenant in tenants:
        account = tenant.component.ujet
        for name in (account.company_key_env, account.company_secret_env):
            assert name in header
        assert tenant.component.pii_key_env in header


def test_the_helm_command_installs_the_chart_of_the_dagster_the_image_holds():
    """The chart's version is Dagster's: its webserver and daemon run the Dagster that
    pyproject.toml pins for the code location's image."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    (pinned,) = re.findall(r'"dagster==([0-9.]+)"', pyproject)
    header = (ROOT / "deploy" / "helm" / "values.yaml").read_text()
    (command,) = [line for line in header.splitlines() if "helm upgrade --install" in line]
    assert option(command.split(), "--version") == pinned
