"""Pseudonyms must be stable per key, differ across keys, and never stand for a missing value."""

import re
import stat
from pathlib import Path

import pytest

from chat_assets.privacy.pseudonyms import (
    KEY_ENV,
    PrivacyKeyError,
    Pseudonymizer,
    UnknownKeyVersion,
    load_key,
    load_previous_keys,
    normalize,
)
from chat_assets.settings import Settings

KEY = b"0123456789abcdef0123456789abcdef-test-key"
OTHER_KEY = b"fedcba9876543210fedcba9876543210-other-key"


@pytest.fixture
def pz() -> Pseudonymizer:
    return Pseudonymizer(KEY)


def test_a_pseudonym_is_a_versioned_keyed_hash(pz: Pseudonymizer) -> None:
    value = pz.pseudonym("end_user", 12345)
    assert value is not None
    assert re.fullmatch(r"k1:[0-9a-f]{32}", value)
    assert "12345" not in value
    rotated = Pseudonymizer(KEY, version="k2").pseudonym("end_user", 12345)
    assert rotated is not None and rotated.startswith("k2:") and rotated[3:] == value[3:]


def test_same_key_gives_the_same_pseudonyms_in_any_instance() -> None:
    values = [4, "AbC123", "olivia.lee@example.com", "+14155550134"]
    first = [Pseudonymizer(KEY).pseudonym("agent", v) for v in values]
    again = [Pseudonymizer(bytes(KEY)).pseudonym("agent", v) for v in values]
    assert first == again
    assert len(set(first)) == len(values)
    assert Pseudonymizer(KEY).fingerprint == Pseudonymizer(KEY).fingerprint


def test_another_key_gives_other_pseudonyms_and_fingerprint(pz: Pseudonymizer) -> None:
    other = Pseudonymizer(OTHER_KEY)
    for value in (1, 4, "AbC123", "360949501087"):
        assert pz.pseudonym("agent", value) != other.pseudonym("agent", value)
    assert pz.fingerprint != other.fingerprint
    assert re.fullmatch(r"k1:[0-9a-f]{16}", pz.fingerprint)


def test_namespaces_keep_equal_ids_of_different_kinds_apart(pz: Pseudonymizer) -> None:
    assert pz.pseudonym("agent", 4) != pz.pseudonym("end_user", 4)
    # "a\x00b" must not be reachable from another namespace/value split.
    with pytest.raises(ValueError):
        pz.pseudonym("agent\x00x", 4)
    with pytest.raises(ValueError):
        pz.pseudonym("", 4)


def test_opaque_ids_are_case_sensitive_but_emails_are_not(pz: Pseudonymizer) -> None:
    assert pz.pseudonym("crm_contact", "AbC123") != pz.pseudonym("crm_contact", "abc123")
    assert pz.pseudonym("end_user", "Olivia.Lee@Example.COM") == pz.pseudonym(
        "end_user", " olivia.lee@example.com "
    )


def test_equal_ids_in_drifting_types_get_one_pseudonym(pz: Pseudonymizer) -> None:
    one = pz.pseudonym("end_user", 42)
    assert one is not None
    assert pz.pseudonym("end_user", "42") == one
    assert pz.pseudonym("end_user", " 42\n") == one
    assert pz.pseudonym("end_user", 42.0) == one
    assert pz.pseudonym("end_user", "\uff14\uff12") == one  # full-width digits, NFKC
    assert pz.pseudonym("end_user", "042") != one  # an opaque string keeps its zeros
    assert pz.pseudonym("end_user", 42.5) not in (None, one)


@pytest.mark.parametrize(
    "missing",
    [
        None,
        "",
        "   ",
        "\t\n",
        0,
        0.0,
        "0",
        " 000 ",
        "string",
        "NULL",
        "None",
        "undefined",
        True,
        False,
        float("nan"),
        {"id": 4},
        [4],
    ],
)
def test_missing_or_placeholder_ids_have_no_pseudonym(pz: Pseudonymizer, missing: object) -> None:
    assert pz.pseudonym("end_user", missing) is None
    assert normalize(missing) is None


def test_the_key_never_shows(pz: Pseudonymizer) -> None:
    shown = f"{pz!r} {pz} {pz.fingerprint}"
    assert KEY.decode() not in shown
    assert KEY.decode()[:12] not in shown
    assert "fingerprint=" in repr(pz)


def test_short_keys_and_bad_versions_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        Pseudonymizer(b"short")
    with pytest.raises(ValueError):
        Pseudonymizer(KEY, version="k1:x")


def test_load_key_from_the_environment(tmp_path: Path) -> None:
    secret = "env-key-5f3a9c1e7b2d4068-a1b2c3d4e5f6"
    key, note = load_key(f"  {secret}\n", key_file=tmp_path / "k", allow_create=False)
    assert key == secret.encode()
    assert note == f"key from {KEY_ENV}"
    assert secret not in note
    assert not (tmp_path / "k").exists()


def test_a_short_environment_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    with pytest.raises(PrivacyKeyError) as raised:
        load_key("tooshort-secret", key_file=tmp_path / "k", allow_create=True)
    assert "tooshort-secret" not in str(raised.value)
    assert KEY_ENV in str(raised.value)


def test_a_real_source_without_a_key_stops_with_a_clear_message(tmp_path: Path) -> None:
    for unset in (None, "", "   "):
        with pytest.raises(PrivacyKeyError) as raised:
            load_key(unset, key_file=tmp_path / "k", allow_create=False)
        assert str(raised.value) == (
            "CHAT_ASSETS_PII_KEY is not set: a real UJET source needs a secret key for "
            "pseudonyms (see docs/personal-data.md)"
        )
    assert not (tmp_path / "k").exists()


def test_the_demo_creates_then_reuses_a_private_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "state" / "pii.key"
    key, note = load_key(None, key_file=key_file, allow_create=True)
    assert note == f"created local key file {key_file}"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert re.fullmatch(r"[0-9a-f]{64}", key.decode())
    assert key.decode() not in note
    again, note_again = load_key(None, key_file=key_file, allow_create=True)
    assert again == key
    assert note_again == f"key from local key file {key_file}"
    # The file's text used as the environment variable is the same key.
    from_env, _ = load_key(key_file.read_text(), key_file=None, allow_create=False)
    assert Pseudonymizer(from_env).fingerprint == Pseudonymizer(key).fingerprint
    with pytest.raises(PrivacyKeyError):
        load_key(None, key_file=None, allow_create=True)


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("a" * 32, "distinct bytes"),
        ("abcd" * 8, "distinct bytes"),
        ("0123456789abcdef" * 2, "documentation"),
        ("0123456789ABCDEF" * 4, "documentation"),
        ("s3cr3t-pattern-" * 3, "repeats a shorter pattern"),
        ("Kx9!mQ2#vL7@pR4$" + "Kx9!mQ2#vL7@pR4$", "repeats a shorter pattern"),
    ],
)
def test_weak_keys_are_refused_with_how_to_make_a_good_one(
    tmp_path: Path, key: str, says: str
) -> None:
    with pytest.raises(PrivacyKeyError) as caught:
        load_key(key, key_file=tmp_path / "k", allow_create=False)
    message = str(caught.value)
    assert says in message
    assert "secrets.token_hex(32)" in message
    assert key not in message and key[:12] not in message


def test_a_random_key_is_accepted(tmp_path: Path) -> None:
    import secrets

    for _ in range(50):
        key = secrets.token_hex(16)  # 32 characters, the shortest allowed
        assert load_key(key, key_file=None, allow_create=False)[0] == key.encode()


def test_the_pseudonym_command_prints_what_the_pseudonymizer_stores(
    database_url: str, schema: str, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    key = "roster-join-test-key-" + "9f8e7d6c5b4a3928"
    env = {
        **os.environ,
        "CHAT_ASSETS_PII_KEY": key,
        "CHAT_ASSETS_PII_KEY_VERSION": "k7",
        # Each use is recorded in the warehouse's ledger.
        "CHAT_ASSETS_DATABASE_URL": database_url,
        "CHAT_ASSETS_SCHEMA": schema,
    }
    done = subprocess.run(
        [sys.executable, "-m", "chat_assets.privacy", "pseudonym", "agent", "317"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == Pseudonymizer(key.encode(), "k7").pseudonym("agent", 317)
    refused = subprocess.run(
        [sys.executable, "-m", "chat_assets.privacy", "pseudonym", "agent", "317"],
        env={**env, "CHAT_ASSETS_PII_KEY": "b" * 40},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    unrecorded = subprocess.run(
        [sys.executable, "-m", "chat_assets.privacy", "pseudonym", "agent", "317"],
        env={k: v for k, v in env.items() if k != "CHAT_ASSETS_DATABASE_URL"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unrecorded.returncode == 2 and "CHAT_ASSETS_DATABASE_URL is not set" in unrecorded.stderr
    assert unrecorded.stdout == ""
    home = tmp_path / "home"
    home.mkdir()
    (home / "pii.key").write_text(key)
    keyless = subprocess.run(
        [sys.executable, "-m", "chat_assets.privacy", "pseudonym", "agent", "317"],
        env={
            **{k: v for k, v in env.items() if k != "CHAT_ASSETS_PII_KEY"},
            "CHAT_ASSETS_HOME": str(home),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert keyless.returncode == 2 and keyless.stdout == "" and key not in keyless.stderr
    assert keyless.stderr.strip() == (
        "chat_assets: CHAT_ASSETS_PII_KEY is not set: give the key the warehouse's pseudonyms "
        f"were made with (bin/demo's: CHAT_ASSETS_PII_KEY=$(cat {home / 'pii.key'}))"
    )
    misversioned = subprocess.run(
        [sys.executable, "-m", "chat_assets.privacy", "pseudonym", "agent", "317"],
        env={**env, "CHAT_ASSETS_PII_KEY_VERSION": "k 7"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert misversioned.returncode == 2 and misversioned.stdout == ""
    assert misversioned.stderr.strip() == (
        "chat_assets: CHAT_ASSETS_PII_KEY_VERSION='k 7' must be 1-16 letters, digits, - or _, "
        "such as k2"
    )


def test_a_chain_rekeys_a_stored_value_to_what_it_computes_for_the_id(pz: Pseudonymizer) -> None:
    chain = Pseudonymizer(OTHER_KEY, "k2", [("k1", KEY)])
    stored = pz.pseudonym("end_user", 12345)
    assert stored is not None
    assert chain.pseudonym("end_user", 12345) == chain.rekey(stored)
    assert chain.rekey(stored).startswith("k2:") and chain.rekey(stored) != stored
    assert chain.rekey(chain.rekey(stored)) == chain.rekey(stored)  # current: as it is
    # Neither key alone computes it, under any version.
    assert chain.pseudonym("end_user", 12345) not in {
        Pseudonymizer(KEY, "k2").pseudonym("end_user", 12345),
        Pseudonymizer(OTHER_KEY, "k2").pseudonym("end_user", 12345),
    }
    three = Pseudonymizer(
        b"a-third-key-for-the-chain-" + b"6f5e4d3c2b1a0918",
        "k3",
        [
            ("k1", KEY),
            ("k2", OTHER_KEY),
        ],
    )
    assert (
        three.rekey(stored)
        == three.rekey(chain.rekey(stored))
        == three.pseudonym("end_user", 12345)
    )
    with pytest.raises(UnknownKeyVersion, match="'k0'") as refused:
        chain.rekey("k0:" + stored[3:])
    assert stored[3:] not in str(refused.value)


def test_fingerprints_name_the_chain_and_one_key_keeps_its_own(pz: Pseudonymizer) -> None:
    chain = Pseudonymizer(OTHER_KEY, "k2", [("k1", KEY)])
    assert chain.fingerprints[0] == pz.fingerprint
    assert chain.fingerprint not in (pz.fingerprint, Pseudonymizer(OTHER_KEY, "k2").fingerprint)
    assert re.fullmatch(r"k2:[0-9a-f]{16}", chain.fingerprint)
    with pytest.raises(ValueError, match="version of its own"):
        Pseudonymizer(OTHER_KEY, "k1", [("k1", KEY)])
    with pytest.raises(ValueError, match="differ"):
        Pseudonymizer(KEY, "k2", [("k1", KEY)])


def test_previous_keys_are_read_oldest_first_and_refused_without_echo() -> None:
    first, second = (
        "first-old-key-" + "0f1e2d3c4b5a6978" * 2,
        "second-old-key-" + "8796a5b4c3d2e1f0" * 2,
    )
    assert load_previous_keys(f" k1:{first} , k2:{second} ") == (
        ("k1", first.encode()),
        ("k2", second.encode()),
    )
    assert load_previous_keys(None) == load_previous_keys(" ") == ()
    for bad, says in (
        (first, "entry 1 is not VERSION:KEY"),
        (f"k1:{first},k1:{second}", "twice"),
        (f"k1:{first},k2:short-secret", "the key of version k2 holds 12 characters"),
    ):
        with pytest.raises(PrivacyKeyError, match=says) as refused:
            load_previous_keys(bad)
        assert first not in str(refused.value) and "short-secret" not in str(refused.value)


def test_settings_name_a_chain_that_cannot_follow(monkeypatch) -> None:
    old = "first-old-key-" + "0f1e2d3c4b5a6978" * 2
    monkeypatch.setenv("CHAT_ASSETS_PII_KEY", "the-new-key-" + "1a2b3c4d5e6f7089" * 2)
    monkeypatch.setenv("CHAT_ASSETS_PII_KEY_VERSION", "k2")
    monkeypatch.setenv("CHAT_ASSETS_PII_PREVIOUS_KEYS", f"k1:{old}")
    settings = Settings.from_env()
    assert settings.pii_key_problem is None and settings.pii_previous_versions == ("k1",)
    monkeypatch.setenv("CHAT_ASSETS_PII_KEY_VERSION", "k1")
    assert "also a version in CHAT_ASSETS_PII_PREVIOUS_KEYS" in Settings.from_env().pii_key_problem
    monkeypatch.setenv("CHAT_ASSETS_PII_KEY_VERSION", "k2")
    monkeypatch.setenv("CHAT_ASSETS_PII_PREVIOUS_KEYS", "k1:" + "b" * 40)
    problem = Settings.from_env().pii_key_problem
    assert "the key of version k1" in problem and "b" * 40 not in problem
