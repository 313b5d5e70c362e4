"""Fixtures of the privacy tests: the settings of their days, and the privacy command."""

from __future__ import annotations

import pytest

from chat_assets.privacy.__main__ import main
from chat_assets.settings import Settings
from chat_assets_tests.support import TEST_PII_KEY


@pytest.fixture
def settings(monkeypatch) -> Settings:
    monkeypatch.setenv("CHAT_ASSETS_START_DATE", "2026-01-01")
    monkeypatch.delenv("CHAT_ASSETS_TIMEZONE", raising=False)
    return Settings.from_env()


@pytest.fixture
def command(monkeypatch, database_url: str, schema: str, capsys):
    """`python -m chat_assets.privacy ...` in this process, on the test's schema: (exit code,
    everything it printed)."""
    monkeypatch.setenv("CHAT_ASSETS_DATABASE_URL", database_url)
    monkeypatch.setenv("CHAT_ASSETS_SCHEMA", schema)
    monkeypatch.setenv("CHAT_ASSETS_PII_KEY", TEST_PII_KEY)
    monkeypatch.delenv("CHAT_ASSETS_PII_KEY_VERSION", raising=False)
    monkeypatch.delenv("CHAT_ASSETS_PII_PREVIOUS_KEYS", raising=False)

    def run(*argv: str) -> tuple[int, str]:
        code = main(list(argv))
        printed = capsys.readouterr()
        return code, printed.out + printed.err

    return run
