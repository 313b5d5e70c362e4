"""`dg`, Dagster's project CLI: it finds UjetChatsComponent through the package's entry point,
checks and lists a project that declares two tenants in YAML, and this checkout's location."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chat_assets.tables import AGGREGATE_TABLES, DERIVED_TABLES, RAW_CHATS
from chat_assets_tests.support import TEST_PII_KEY

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent
DG = str(VENV / "bin" / "dg")
DAILY = {RAW_CHATS.name, *(t.name for t in DERIVED_TABLES), *(t.name for t in AGGREGATE_TABLES)}

TENANTS = """\
type: chat_assets.UjetChatsComponent
attributes:
  tenant: acme
  ujet:
    subdomain: acme
    company_key_env: ACME_UJET_KEY
    company_secret_env: ACME_UJET_SECRET
    requests_per_second: 5
  pii_key_env: ACME_PII_KEY
  database_url_env: CHAT_ASSETS_DATABASE_URL
  db_schema: ujet_acme
  start_date: "2025-01-01"
  timezone: Asia/Seoul
---
type: chat_assets.UjetChatsComponent
attributes:
  tenant: globex
  ujet:
    base_url: https://ujet.globex.example/manager/api/v1
    company_key_env: GLOBEX_UJET_KEY
    company_secret_env: GLOBEX_UJET_SECRET
  pii_key_env: GLOBEX_PII_KEY
  timezone: America/New_York
  fresh_by: "08:00"
"""


def dg(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DG, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """This environment, with its virtualenv active and a Dagster instance of the test's own."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    return {
        **os.environ,
        "VIRTUAL_ENV": str(VENV),
        "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "DAGSTER_HOME": str(home),
    }


@pytest.fixture
def project(tmp_path: Path, env: dict[str, str]) -> Path:
    """A dg project of a team's own, with both tenants in one defs.yaml."""
    root = tmp_path / "analytics"
    package = root / "src" / "analytics"
    (package / "defs" / "ujet_tenants").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "analytics"\nversion = "0.1.0"\n\n'
        '[tool.dg]\ndirectory_type = "project"\n\n'
        '[tool.dg.project]\nroot_module = "analytics"\n'
    )
    (package / "__init__.py").write_text("")
    (package / "defs" / "__init__.py").write_text("")
    (package / "definitions.py").write_text(
        "from pathlib import Path\n\nimport dagster as dg\n\n\n"
        "@dg.definitions\ndef defs():\n"
        "    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)\n"
    )
    (package / "defs" / "ujet_tenants" / "defs.yaml").write_text(TENANTS)
    env["PYTHONPATH"] = str(root / "src")
    return root


def test_dg_lists_the_component_from_the_entry_point(project, env):
    listed = dg(project, "list", "components", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    types = {entry["key"] for entry in json.loads(listed.stdout)["items"]}
    assert "chat_assets.UjetChatsComponent" in types


def test_dg_checks_and_lists_two_tenants_declared_in_yaml(project, env):
    checked = dg(project, "check", "defs", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    listed = dg(project, "list", "defs", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    defs = json.loads(listed.stdout)
    assets = {a["asset_key"]: a for a in defs["assets"]}
    assert set(assets) == {f"{t}/{name}" for t in ("acme", "globex") for name in DAILY} | {
        "acme/retention",
        "globex/retention",
    }
    assert assets["globex/chats"]["group_name"] == "globex_ujet"
    assert assets["acme/chats"]["dependency_keys"] == ["acme/raw_chats"]
    assert {r["name"] for r in defs["resources"]} == {
        f"{t}_{key}"
        for t in ("acme", "globex")
        for key in ("ujet", "privacy", "warehouse", "warehouse_io_manager")
    }
    assert {j["name"] for j in defs["jobs"]} >= {
        "acme_chat_assets_daily",
        "globex_chat_assets_daily",
    }


def test_dg_check_names_the_tenant_and_attribute_at_fault(project, env):
    defs_yaml = project / "src" / "analytics" / "defs" / "ujet_tenants" / "defs.yaml"
    defs_yaml.write_text(TENANTS.replace("America/New_York", "America/New_Yrok"))
    checked = dg(project, "check", "defs", env=env)
    assert checked.returncode != 0
    assert (
        "chat_assets tenant globex: timezone='America/New_Yrok' is not an IANA time zone"
        in checked.stdout + checked.stderr
    )


def test_dg_checks_and_lists_this_checkout_as_the_single_tenant_location(env):
    env.update(
        UJET_SUBDOMAIN="acme",
        UJET_COMPANY_KEY="k",
        UJET_COMPANY_SECRET="s",
        CHAT_ASSETS_PII_KEY=TEST_PII_KEY,
        CHAT_ASSETS_DATABASE_URL="postgresql+psycopg://loader:pw@db.internal:5432/warehouse",
    )
    checked = dg(ROOT, "check", "defs", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = dg(ROOT, "list", "defs", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert {a["asset_key"] for a in json.loads(listed.stdout)["assets"]} == DAILY | {"retention"}
