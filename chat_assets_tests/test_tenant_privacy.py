"""A tenant's privacy lifecycle: a customer erased and a key rotated in one tenant of the tenants
file, through `python -m chat_assets.privacy ... --tenant NAME`, on days landed by real Dagster
runs of the tenants' code location from the emulator into PostgreSQL. The other tenant stays
as it was, and every error about a tenant's key names the tenant's own variable."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from chat_assets.docs import main as docs_main
from chat_assets.privacy.__main__ import main as privacy_main
from chat_assets.privacy.ledger import LEDGER_TABLE
from chat_assets.privacy.pseudonyms import Pseudonymizer
from chat_assets.privacy.rotation import CURRENT_KEY_VERSION
from chat_assets.privacy.suppression import SUPPRESSION_TABLE
from chat_assets.tables import DERIVED_TABLES
from chat_assets.tenants import tenants_location
from chat_assets_demo.emulator import UjetEmulator
from chat_assets_tests.privacy.test_erasure import DAYS, REF, SUBJECT_ID, every_table, served_chats
from chat_assets_tests.support import TEST_PII_KEY
from chat_assets_tests.test_component import TENANTS_YAML

DAY = DAYS[0]
TENANTS = ("acme", "globex")
KEYS = {"acme": TEST_PII_KEY, "globex": "chat-assets-tests-globex-" + "fedcba9876543210" * 2}
NEW_ACME_KEY = "chat-assets-tests-acme-rotated-" + "9e8d7c6b5a4f3e2d1c0b"
PREVIOUS_ACME_KEYS = f"k1:{TEST_PII_KEY}"
# The single-tenant location's settings, pointed at globex's schema with globex's key: a
# command that ignored --tenant acme would work on globex.
TRAP_KEY = KEYS["globex"]

# Acme after its key is rotated: a new version, and the variable of the keys before it.
ROTATED = """  pii_key_version: k2
  pii_previous_keys_env: ACME_PII_PREVIOUS_KEYS
"""


@dataclass
class Tenants:
    """Both tenants, each on an emulator of its own serving the same chats, declared in one
    tenants file; `rotated` rewrites acme's document as after a key rotation."""

    path: Path
    apis: dict[str, UjetEmulator]
    schemas: dict[str, str]
    instance: dg.DagsterInstance

    def write(self, rotated: bool = False) -> None:
        documents = []
        for name, api in self.apis.items():
            document = TENANTS_YAML.format(
                name=name, upper=name.upper(), base_url=api.base_url, schema=self.schemas[name]
            )
            documents.append(document + (ROTATED if rotated and name == "acme" else ""))
        self.path.write_text("---".join(documents))

    def run(self, name: str, *, chat_tables_only: bool = False) -> dg.ExecuteInProcessResult:
        """The tenant's daily job for DAY, from the definitions the tenants file gives now; or
        only its chat tables, flattened from the raw_chats already stored."""
        job = tenants_location().resolve_job_def(f"{name}_chat_assets_daily")
        selection = (
            [dg.AssetKey([name, table.name]) for table in DERIVED_TABLES]
            if chat_tables_only
            else None
        )
        return job.execute_in_process(
            partition_key=DAY,
            instance=self.instance,
            asset_selection=selection,
            raise_on_error=False,
        )


@pytest.fixture
def tenants(monkeypatch, tmp_path, database_url, schemas) -> Iterator[Tenants]:
    chats, _ = served_chats()
    monkeypatch.setenv("TENANTS_DATABASE_URL", database_url)
    for name in TENANTS:
        monkeypatch.setenv(f"{name.upper()}_UJET_KEY", f"{name}-key")
        monkeypatch.setenv(f"{name.upper()}_UJET_SECRET", f"{name}-secret")
        monkeypatch.setenv(f"{name.upper()}_PII_KEY", KEYS[name])
    monkeypatch.delenv("ACME_PII_PREVIOUS_KEYS", raising=False)
    for name, value in {
        "CHAT_ASSETS_DATABASE_URL": database_url,
        "CHAT_ASSETS_SCHEMA": schemas["globex"],
        "CHAT_ASSETS_PII_KEY": TRAP_KEY,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CHAT_ASSETS_PII_KEY_VERSION", raising=False)
    monkeypatch.delenv("CHAT_ASSETS_PII_PREVIOUS_KEYS", raising=False)
    path = tmp_path / "tenants.yaml"
    monkeypatch.setenv("CHAT_ASSETS_TENANTS_FILE", str(path))
    with ExitStack() as stack:
        apis = {
            name: stack.enter_context(
                UjetEmulator(
                    company_key=f"{name}-key", company_secret=f"{name}-secret", records=chats
                )
            )
            for name in TENANTS
        }
        instance = stack.enter_context(dg.instance_for_test())
        found = Tenants(path, apis, schemas, instance)
        found.write()
        yield found


@pytest.fixture
def cli(capsys):
    """`python -m chat_assets.privacy ...` in this process: (exit code, what it printed)."""

    def run(*argv: str) -> tuple[int, str]:
        capsys.readouterr()  # what runs before it printed
        code = privacy_main(list(argv))
        printed = capsys.readouterr()
        return code, printed.out + printed.err

    return run


def linked(engine: sa.Engine, schema: str, pseudonym: str) -> int:
    """The chats rows linked to the customer's pseudonym."""
    with engine.connect() as connection:
        return connection.exec_driver_sql(
            f'SELECT count(*) FROM "{schema}".chats WHERE end_user_id = %s', (pseudonym,)
        ).scalar()


def customer(name: str, key: str = "", version: str = "k1", previous: str = "") -> str | None:
    """The subject's pseudonym as the tenant's keys make it."""
    chain = [("k1", TEST_PII_KEY.encode())] if previous else []
    pseudonymizer = Pseudonymizer((key or KEYS[name]).encode(), version, chain)
    return pseudonymizer.pseudonym("end_user", SUBJECT_ID)


def current_key_results(result: dg.ExecuteInProcessResult) -> list[bool]:
    return [
        evaluation.passed
        for evaluation in result.get_asset_check_evaluations()
        if evaluation.check_name == CURRENT_KEY_VERSION
    ]


def test_erasing_a_customer_of_one_tenant_leaves_the_other_untouched(tenants, engine, cli):
    for name in TENANTS:
        assert tenants.run(name).success
    acme, globex = tenants.schemas["acme"], tenants.schemas["globex"]
    # The same customer chatted with both tenants, under a pseudonym of each tenant's key.
    assert linked(engine, acme, customer("acme")) > 0
    assert linked(engine, globex, customer("globex")) > 0
    globex_before = every_table(engine, globex)

    code, printed = cli("erase", "end_user", str(SUBJECT_ID), "--ref", REF, "--tenant", "acme")

    assert code == 0, printed
    assert f"tenant acme, schema {acme}" in printed and REF in printed
    assert str(SUBJECT_ID) not in printed and customer("acme") not in printed
    assert linked(engine, acme, customer("acme")) == 0
    acme_tables = every_table(engine, acme)
    # On acme's suppression list (with the customer's CRM contact and tickets), under acme's key.
    assert any(customer("acme") in row for row in acme_tables[SUPPRESSION_TABLE])
    assert [row for row in acme_tables[LEDGER_TABLE] if '"erase"' in row]
    assert every_table(engine, globex) == globex_before
    assert linked(engine, globex, customer("globex")) > 0


def test_rotating_one_tenants_key_rekeys_it_alone_and_its_check_passes_after(
    tenants, engine, monkeypatch, cli
):
    for name in TENANTS:
        assert tenants.run(name).success
    acme, globex = tenants.schemas["acme"], tenants.schemas["globex"]
    globex_before = every_table(engine, globex)
    # The deployment changes first: a new current key, the old one moved to the previous keys.
    monkeypatch.setenv("ACME_PII_KEY", NEW_ACME_KEY)
    monkeypatch.setenv("ACME_PII_PREVIOUS_KEYS", PREVIOUS_ACME_KEYS)
    tenants.write(rotated=True)

    before = tenants.run("acme", chat_tables_only=True)
    assert before.success
    assert current_key_results(before) and not any(current_key_results(before))

    code, printed = cli("rotate", "--ref", "CHG-2026-41", "--tenant", "acme")
    assert code == 0, printed
    assert "rotation to key version k2" in printed
    for secret in (NEW_ACME_KEY, TEST_PII_KEY):
        assert secret not in printed

    after = tenants.run("acme", chat_tables_only=True)
    assert after.success and current_key_results(after) and all(current_key_results(after))
    # A fetch under the tenant's chain of keys computes what the rotation stored: the day lands
    # again with every check passing, the raw fingerprints' included.
    again = tenants.run("acme")
    assert again.success
    checks = again.get_asset_check_evaluations()
    assert all(c.passed for c in checks if c.severity == dg.AssetCheckSeverity.ERROR)
    rotated = customer("acme", NEW_ACME_KEY, "k2", PREVIOUS_ACME_KEYS)
    assert rotated.startswith("k2:") and linked(engine, acme, rotated) > 0
    assert linked(engine, acme, customer("acme")) == 0
    assert every_table(engine, globex) == globex_before


def test_errors_about_a_tenants_key_name_its_own_variable(tenants, monkeypatch, cli, caplog):
    monkeypatch.setenv("ACME_PII_KEY", "too-short-a-key")
    with caplog.at_level(logging.WARNING, logger="chat_assets"):
        tenants_location()
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "ACME_PII_KEY (tenant acme) holds 15 characters" in warned

    result = tenants.run("acme")
    assert not result.success
    failure = next(
        event for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_FAILURE
    )
    message = failure.step_failure_data.error.message
    assert "ACME_PII_KEY (tenant acme) holds 15 characters" in message
    assert "CHAT_ASSETS_PII_KEY" not in message and "too-short-a-key" not in message

    code, printed = cli("erase", "end_user", str(SUBJECT_ID), "--ref", REF, "--tenant", "acme")
    assert code == 2 and len(printed.strip().splitlines()) == 1
    assert "ACME_PII_KEY (tenant acme) holds 15 characters" in printed
    assert "CHAT_ASSETS_PII_KEY" not in printed

    monkeypatch.delenv("ACME_PII_KEY")
    code, printed = cli("rotate", "--tenant", "acme")
    assert code == 2 and "ACME_PII_KEY (tenant acme) is not set" in printed

    monkeypatch.setenv("ACME_PII_KEY", NEW_ACME_KEY)
    monkeypatch.setenv("ACME_PII_PREVIOUS_KEYS", TEST_PII_KEY)  # no version
    tenants.write(rotated=True)
    code, printed = cli("rotate", "--tenant", "acme")
    assert code == 2 and "ACME_PII_PREVIOUS_KEYS (tenant acme): entry 1 is not VERSION:KEY" in (
        printed
    )
    assert TEST_PII_KEY not in printed


def test_a_tenant_the_file_lacks_or_a_file_that_is_missing_is_one_line(
    tenants, tmp_path, monkeypatch, cli
):
    code, printed = cli("rotate", "--tenant", "initech")
    assert code == 2 and len(printed.strip().splitlines()) == 1
    assert f"tenant 'initech' is not in {tenants.path} (its tenants: acme, globex)" in printed

    missing = tmp_path / "nowhere.yaml"
    code, printed = cli("rotate", "--tenant", "acme", "--tenants-file", str(missing))
    assert code == 2 and len(printed.strip().splitlines()) == 1
    assert f"cannot read the tenants file {missing}" in printed

    monkeypatch.delenv("CHAT_ASSETS_TENANTS_FILE")
    path = tenants.path
    code, printed = cli("erase", "end_user", "1", "--ref", REF, "--tenant", "acme")
    assert code == 2 and "needs the tenants file: set CHAT_ASSETS_TENANTS_FILE" in printed

    # --tenants-file in place of the variable.
    code, printed = cli("rotate", "--dry-run", "--tenant", "acme", "--tenants-file", str(path))
    assert code == 0 and f"tenant acme, schema {tenants.schemas['acme']}" in printed


def test_the_record_of_processing_of_a_tenant(tenants, monkeypatch, capsys, database_url):
    monkeypatch.setenv("ACME_PII_KEY", NEW_ACME_KEY)
    monkeypatch.setenv("ACME_PII_PREVIOUS_KEYS", PREVIOUS_ACME_KEYS)
    tenants.write(rotated=True)
    assert docs_main(["--record", "-", "--tenant", "acme"]) == 0
    record = capsys.readouterr().out
    assert f"schema `{tenants.schemas['acme']}`" in record and "- **Tenant:** `acme`" in record
    assert "`ACME_PII_KEY` (version `k2`, `pii_key_version`)" in record
    assert "`ACME_PII_PREVIOUS_KEYS` (previous versions: k1)" in record
    assert "chain k1 > k2" in record and "`acme_privacy_retention`" in record
    assert "no limit set (`retention.raw_days` unset)" in record
    assert "CHAT_ASSETS_PII_KEY" not in record and "CHAT_ASSETS_RETAIN" not in record
    for secret in (NEW_ACME_KEY, TEST_PII_KEY, database_url):
        assert secret not in record

    assert docs_main(["--record", "-", "--tenant", "initech"]) == 2
    assert "tenant 'initech' is not in" in capsys.readouterr().err


def test_a_tenants_unreachable_warehouse_is_named_by_its_own_variable(tenants, monkeypatch, cli):
    monkeypatch.setenv("TENANTS_DATABASE_URL", "postgresql+psycopg://loader:pw@127.0.0.1:9/dw")
    code, printed = cli("pseudonym", "agent", "317", "--tenant", "acme")
    assert code == 2
    assert "PostgreSQL at 127.0.0.1:9 (database dw) could not be reached" in printed
    assert "check TENANTS_DATABASE_URL (tenant acme) (host, port" in printed
    assert "CHAT_ASSETS_DATABASE_URL" not in printed and "pw@" not in printed
