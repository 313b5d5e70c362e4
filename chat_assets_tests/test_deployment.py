"""docker-compose.yml, dagster.yaml and workspace.yaml agree with each other and with the code.

Docker is not needed: the files are parsed, the instance config goes through Dagster's own
schema, and Compose's variable interpolation (`${VAR:?message}`, `${VAR:-default}`) is rendered
here the way Compose renders it, to show what starts and what refuses to.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config

ROOT = Path(__file__).resolve().parents[1]
DAGSTER_SERVICES = ("user_code", "webserver", "daemon")
SOURCE_SECRETS = (
    "UJET_SUBDOMAIN",
    "UJET_COMPANY_KEY",
    "UJET_COMPANY_SECRET",
    "CHAT_ASSETS_PII_KEY",
)
COMPLETE_ENV = {
    "POSTGRES_PASSWORD": "pw",
    "UJET_SUBDOMAIN": "acme",
    "UJET_COMPANY_KEY": "key",
    "UJET_COMPANY_SECRET": "secret",
    "CHAT_ASSETS_PII_KEY": "k" * 64,
}

_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:\?|:-)(?P<arg>[^}]*))?\}"
)


class MissingVariable(Exception):
    """Compose refuses to start: a `${VAR:?message}` variable is unset or empty."""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation of the subset of syntax our compose file uses."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        current = env.get(name, "")
        if op == ":?" and not current:
            raise MissingVariable(f"{name}: {arg}")
        if op == ":-" and not current:
            return arg
        return current

    return _VARIABLE.sub(substitute, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, Any]:
    return compose["services"]


@pytest.fixture(scope="module")
def workspace() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "workspace.yaml").read_text())


@pytest.fixture(scope="module")
def instance_yaml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "dagster.yaml").read_text())


def env_references(config: Any) -> set[str]:
    """Every `{env: NAME}` in an instance config."""
    if isinstance(config, dict):
        if set(config) == {"env"}:
            return {config["env"]}
        return set().union(*(env_references(item) for item in config.values()))
    if isinstance(config, list):
        return set().union(*(env_references(item) for item in config))
    return set()


def option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_the_four_services(services):
    assert set(services) == {"postgres", *DAGSTER_SERVICES}
    for name in DAGSTER_SERVICES:
        assert services[name]["build"] == "."
        assert services[name]["restart"] == "unless-stopped"
    assert (ROOT / "Dockerfile").exists()


def test_postgres_keeps_storage_and_warehouse_apart(compose, services):
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert postgres["environment"]["POSTGRES_DB"] == "dagster"
    volumes = postgres["volumes"]
    assert "postgres_data:/var/lib/postgresql/data" in volumes
    assert "postgres_data" in compose["volumes"]
    init = next(v for v in volumes if "/docker-entrypoint-initdb.d/" in v)
    script = ROOT / init.split(":")[0]
    assert re.search(r"CREATE DATABASE warehouse\b", script.read_text())
    check = postgres["healthcheck"]
    assert "warehouse" in " ".join(check["test"])
    assert check["retries"] > 0


def test_code_server_command_matches_the_workspace(services, workspace):
    user_code = services["user_code"]
    command = user_code["command"]
    assert command[:3] == ["dagster", "code-server", "start"]
    assert option(command, "-m") == "chat_assets.definitions"
    (entry,) = workspace["load_from"]
    grpc = entry["grpc_server"]
    assert grpc["host"] == "user_code"
    assert option(command, "-h") == "0.0.0.0"
    assert int(option(command, "-p")) == grpc["port"]
    assert option(command, "--location-name") == grpc["location_name"] == "chat_assets"
    health = user_code["healthcheck"]["test"]
    assert health[1:4] == ["dagster", "api", "grpc-health-check"]
    assert int(option(health, "-p")) == grpc["port"]


def test_webserver_and_daemon_read_the_image_workspace(services):
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ENV DAGSTER_HOME=/opt/dagster_home" in dockerfile
    assert re.search(r"COPY dagster\.yaml workspace\.yaml /opt/dagster_home/", dockerfile)
    webserver, daemon = services["webserver"]["command"], services["daemon"]["command"]
    assert webserver[0] == "dagster-webserver"
    assert daemon[:2] == ["dagster-daemon", "run"]
    for command in (webserver, daemon):
        assert option(command, "-w") == "/opt/dagster_home/workspace.yaml"
    assert option(webserver, "-p") == "3000"
    assert services["daemon"]["healthcheck"]["test"] == ["CMD", "dagster-daemon", "liveness-check"]


def test_start_order_waits_for_health(services):
    assert services["user_code"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("webserver", "daemon"):
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "user_code": {"condition": "service_healthy"},
        }


def test_every_dagster_process_can_resolve_the_instance(services, instance_yaml):
    """dagster.yaml reads its connection from the environment: each service must provide it."""
    needed = env_references(instance_yaml)
    assert needed >= {"DAGSTER_PG_HOST", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"}
    rendered = interpolate(services, COMPLETE_ENV)
    for name in DAGSTER_SERVICES:
        environment = rendered[name]["environment"]
        assert needed <= set(environment), f"{name} lacks {needed - set(environment)}"
        assert environment["DAGSTER_PG_HOST"] == "postgres"
        assert environment["DAGSTER_PG_DB"] == "dagster"
        assert environment["DAGSTER_PG_PASSWORD"] == "pw"


def test_secrets_reach_only_the_code_server(services):
    user_code = services["user_code"]
    assert user_code["env_file"] == [{"path": ".env", "required": True}]
    for name in SOURCE_SECRETS:
        assert user_code["environment"][name].startswith(f"${{{name}:?")
    for name in ("webserver", "daemon"):
        assert "env_file" not in services[name]
        assert not set(SOURCE_SECRETS) & set(services[name]["environment"])
    gitignore = (ROOT / ".gitignore").read_text().split()
    assert ".env" in gitignore


@pytest.mark.parametrize("missing", ["POSTGRES_PASSWORD", *SOURCE_SECRETS])
def test_compose_refuses_to_start_without_a_real_source(services, missing):
    env = COMPLETE_ENV | {missing: ""}
    with pytest.raises(MissingVariable, match=missing):
        interpolate(services, env)


def test_rendered_with_a_complete_env(services):
    rendered = interpolate(services, COMPLETE_ENV)
    user_code = rendered["user_code"]["environment"]
    assert user_code["UJET_SUBDOMAIN"] == "acme"
    assert user_code["CHAT_ASSETS_DATABASE_URL"] == (
        "postgresql+psycopg://dagster:pw@postgres:5432/warehouse"
    )
    assert "UJET_BASE_URL" not in user_code  # a real tenant, never the demo emulator
    check = " ".join(rendered["postgres"]["healthcheck"]["test"])
    assert '"${POSTGRES_USER}"' in check  # `$$` reaches the container's shell as `$`


def test_ui_binds_to_localhost_unless_told(services):
    assert interpolate(services, COMPLETE_ENV)["webserver"]["ports"] == ["127.0.0.1:3000:3000"]
    public = interpolate(services, COMPLETE_ENV | {"DAGSTER_UI_BIND": "0.0.0.0"})
    assert public["webserver"]["ports"] == ["0.0.0.0:3000:3000"]
    for name in ("postgres", "user_code", "daemon"):
        assert "ports" not in services[name]


def test_env_example_names_every_required_variable(compose):
    required = set(re.findall(r"\$\{([A-Z_]+):\?", (ROOT / "docker-compose.yml").read_text()))
    assert required == {"POSTGRES_PASSWORD", *SOURCE_SECRETS}
    example = (ROOT / ".env.example").read_text()
    declared = set(re.findall(r"^([A-Z_]+)=", example, flags=re.MULTILINE))
    assert required <= declared


def test_instance_config_passes_dagsters_schema(tmp_path, instance_yaml):
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(tmp_path))
    assert custom_class is None
    storage = config["storage"]["custom"]
    assert (storage["module"], storage["class"]) == (
        "chat_assets.instance_storage",
        "PooledPostgresStorage",
    )
    postgres = storage["config"]["postgres_db"]
    assert postgres["scheme"] == "postgresql+psycopg2"
    assert postgres["port"] == {"env": "DAGSTER_PG_PORT"}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    # Its limits live in `concurrency` (Dagster refuses them in both places).
    coordinator = instance_yaml["run_coordinator"].get("config", {})
    assert not {"max_concurrent_runs", "tag_concurrency_limits"} & set(coordinator)
    assert config["concurrency"]["runs"]["max_concurrent_runs"] >= 2
    assert config["run_monitoring"]["enabled"] is True
    assert config["telemetry"]["enabled"] is False
    assert config["nux"]["enabled"] is False


def test_compose_sets_the_port_the_instance_reads(services):
    rendered = interpolate(services, COMPLETE_ENV)
    assert rendered["user_code"]["environment"]["DAGSTER_PG_PORT"] == "5432"
