"""The record of processing: written from the catalog and the deployment's settings, holding
every treated field, the retention limits and the key chain, and never a secret."""

from __future__ import annotations

from datetime import date

import pytest

from chat_assets.docs import main
from chat_assets.privacy.catalog import CATALOG, Subject, Treatment
from chat_assets.privacy.record import record_of_processing
from chat_assets.settings import Settings
from chat_assets.tables import TABLES

PASSWORD = "s3cret-warehouse-pw"
OLD_KEY = "an-old-pseudonym-key-" + "7c6b5a4938271605" * 2
NEW_KEY = "the-new-pseudonym-key-" + "0a1b2c3d4e5f6789" * 2


@pytest.fixture
def deployment(monkeypatch) -> Settings:
    for name, value in {
        "UJET_SUBDOMAIN": "acme",
        "CHAT_ASSETS_DATABASE_URL": f"postgresql+psycopg://loader:{PASSWORD}@db:5432/wh",
        "CHAT_ASSETS_SCHEMA": "contact_center",
        "CHAT_ASSETS_TIMEZONE": "Asia/Seoul",
        "CHAT_ASSETS_PII_KEY": NEW_KEY,
        "CHAT_ASSETS_PII_KEY_VERSION": "k2",
        "CHAT_ASSETS_PII_PREVIOUS_KEYS": f"k1:{OLD_KEY}",
        "CHAT_ASSETS_RETAIN_RAW_DAYS": "90",
        "CHAT_ASSETS_RETAIN_CUSTOMER_DAYS": "365",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CHAT_ASSETS_RETAIN_AGENT_DAYS", raising=False)
    return Settings.from_env()


def test_the_record_states_subjects_treatments_limits_and_keys(deployment):
    record = record_of_processing(deployment, date(2026, 12, 5))
    assert "2026-12-05" in record and "schema `contact_center`" in record
    assert "https://acme.ujet.co/manager/api/v1" in record and "Asia/Seoul" in record
    assert "| raw payloads (`raw_chats`) | 90 days after the chat's day" in record
    assert "| customer pseudonyms | 365 days after the chat's day" in record
    assert "| agent pseudonyms | no limit set (`CHAT_ASSETS_RETAIN_AGENT_DAYS` unset)" in record
    assert "chain k1 > k2" in record and "previous versions: k1" in record
    for rule in CATALOG:
        if rule.treatment is not Treatment.KEEP or rule.subject is not Subject.NONE:
            assert f"`{rule.path}`" in record, rule.path
    for subject in ("customer", "agent"):
        assert f"- **{subject}**:" in record
    (stored,) = [line for line in record.splitlines() if line.startswith("- **Stored in:**")]
    for name in TABLES:  # chat_participants among them: customer and agent pseudonyms
        assert f"`{name}`" in stored, name
    for law in ("GDPR Art. 30(1)", "PIPA Art. 28-4", "PIPA Art. 28-5"):
        assert law in record
    for secret in (PASSWORD, OLD_KEY, NEW_KEY, "loader"):
        assert secret not in record


def test_the_command_writes_it_for_the_environment(deployment, tmp_path, capsys, monkeypatch):
    target = tmp_path / "record.md"
    assert main(["--record", str(target)]) == 0
    assert target.read_text() == record_of_processing(deployment, date.today())
    assert str(target) in capsys.readouterr().out
    monkeypatch.setenv("CHAT_ASSETS_RETAIN_AGENT_DAYS", "forever")
    assert main(["--record", str(target)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "CHAT_ASSETS_RETAIN_AGENT_DAYS" in err
