"""bin/demo as a process: it starts, serves the UI, and stops cleanly however it is asked."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

pytestmark = pytest.mark.topology


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def demo_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UJET_", "CHAT_ASSETS_"))}
    return env | {"CHAT_ASSETS_HOME": str(home), "CHAT_ASSETS_START_DATE": "2026-01-01"}


def ignore_sigint() -> None:
    """What a non-interactive shell does to a job it starts with `&`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def sensor_ticked(dagster_home: Path) -> bool:
    """Whether the daemon has evaluated a sensor of the instance at `dagster_home` yet."""
    import dagster as dg
    from dagster._core.scheduler.instigation import InstigatorType

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        sensors = instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
        return any(
            instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
            for state in sensors
        )


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_a_background_demo_stops_every_child_on_a_signal(tmp_path: Path, how: int) -> None:
    port = free_port()
    env = demo_env(tmp_path / "state")
    demo = subprocess.Popen(
        [sys.executable, "-m", "chat_assets_demo", "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=ignore_sigint,
    )
    try:
        deadline = time.monotonic() + 180
        assert demo.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in demo.stdout], daemon=True).start()
        said: list[str] = []
        address = f"http://127.0.0.1:{port}/assets"
        while f"chat_assets: Dagster UI at {address}, the asset catalog\n" not in said:
            assert demo.poll() is None and time.monotonic() < deadline, "".join(said)
            with contextlib.suppress(queue.Empty):
                said.append(lines.get(timeout=1))
        # The address is printed once it answers: opened at once, it shows the catalog.
        assert requests.get(address, timeout=5).ok
        family = psutil.Process(demo.pid).children(recursive=True)
        postgres = [
            p
            for p in psutil.process_iter(["cmdline"])
            if str(tmp_path) in " ".join(p.info["cmdline"] or [])
        ]
        assert len(family) >= 3  # dagster dev, its webserver and daemon at least
        assert postgres  # the embedded PostgreSQL, by its data folder
        # The catch-up sensor's first tick, which finds nothing to do, is silent on the console.
        home = Path(env.get("DAGSTER_HOME") or tmp_path / "state" / "dagster_home")
        while not sensor_ticked(home):
            assert time.monotonic() < deadline + 120, "the daemon never evaluated the sensor"
            time.sleep(2)
        demo.send_signal(how)
        assert demo.wait(timeout=60) == 0
        time.sleep(0.5)  # the reader's last lines
        while not lines.empty():
            said.append(lines.get())
        [starting] = [n for n, x in enumerate(said) if x.startswith("chat_assets: starting ")]
        assert starting < said.index(f"chat_assets: Dagster UI at {address}, the asset catalog\n")
        assert (
            said[-1] == "chat_assets: stopped Dagster's UI and daemon and the embedded PostgreSQL\n"
        )
        assert not [line for line in said if "dagster.daemon" in line], "".join(said)
    finally:
        if demo.poll() is None:
            demo.kill()
    _, alive = psutil.wait_procs(family + postgres, timeout=10)
    assert alive == [], [p.pid for p in alive]


@pytest.mark.parametrize("reuse", [False, True])
def test_a_taken_port_fails_at_once_naming_the_option(tmp_path: Path, reuse: bool) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, int(reuse))
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "chat_assets_demo", "--port", str(port)],
            env=demo_env(tmp_path / "state"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert f"port {port}" in done.stderr and "--port" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_setting_is_one_plain_line(tmp_path: Path) -> None:
    env = demo_env(tmp_path / "state") | {"CHAT_ASSETS_TIMEZONE": "Mars/Olympus"}
    done = subprocess.run(
        [sys.executable, "-m", "chat_assets_demo", "materialize"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "chat_assets: CHAT_ASSETS_TIMEZONE='Mars/Olympus' is not an IANA time zone such as "
        "Asia/Seoul"
    ]


def test_the_demo_and_production_keep_their_runs_in_instances_of_their_own(tmp_path, monkeypatch):
    from chat_assets.settings import Settings
    from chat_assets_demo.__main__ import prepare_environment

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("CHAT_ASSETS_HOME", str(tmp_path))
    monkeypatch.setenv("CHAT_ASSETS_DATABASE_URL", "postgresql+psycopg://loader@db/warehouse")
    settings = Settings.from_env()
    production = prepare_environment(settings, production=True)
    assert production["CHAT_ASSETS_DATABASE_URL"] == "postgresql+psycopg://loader@db/warehouse"
    demo = prepare_environment(settings, production=False)
    assert demo["DAGSTER_HOME"] != production["DAGSTER_HOME"]
    for env in (demo, production):
        assert (Path(env["DAGSTER_HOME"]) / "dagster.yaml").exists()


PRODUCTION_ENV = {
    "UJET_SUBDOMAIN": "acme",
    "UJET_COMPANY_KEY": "key",
    "UJET_COMPANY_SECRET": "secret",
    "CHAT_ASSETS_PII_KEY": "roster-join-test-key-" + "9f8e7d6c5b4a3928",
    "CHAT_ASSETS_DATABASE_URL": "postgresql+psycopg://loader:pw@db.invalid:5432/warehouse",
}


def demo(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chat_assets_demo", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "production", "said"),
    [
        (
            ["--production", "materialize", "2024-01-01"],
            True,
            "2024-01-01 is not a daily partition",
        ),
        (["materialize", "2024-13-01"], False, "'2024-13-01' is not a day like "),
        (["materialize", "2099-01-01"], False, "2099-01-01 is not a daily partition"),
    ],
)
def test_a_day_outside_the_partitions_is_one_line_naming_the_start_date(
    tmp_path: Path, args: list[str], production: bool, said: str
) -> None:
    env = demo_env(tmp_path / "state")
    if production:  # the default start date, as a new user has it
        env = {k: v for k, v in env.items() if k != "CHAT_ASSETS_START_DATE"} | PRODUCTION_ENV
    done = demo(args, env)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    start = "2025-01-01" if production else "2026-01-01"
    assert line.startswith(f"chat_assets: {said}")
    assert f"days run from {start} (CHAT_ASSETS_START_DATE={start}) to " in line
    assert "Traceback" not in done.stderr and "pw" not in line


def leave_time_wait(port: int) -> None:
    """What a stopped UI leaves behind when a browser was connected: the server closed first,
    so its side of the connection waits in TIME-WAIT; nothing listens."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        with socket.create_connection(("127.0.0.1", port)) as browser:
            served, _ = server.accept()
            served.close()
            assert browser.recv(1) == b""
    states = {c.status for c in psutil.net_connections("tcp4") if c.laddr and c.laddr[1] == port}
    assert psutil.CONN_TIME_WAIT in states and psutil.CONN_LISTEN not in states


def test_a_port_left_in_time_wait_by_a_stopped_ui_is_free(tmp_path: Path) -> None:
    port = free_port()
    leave_time_wait(port)
    env = demo_env(tmp_path / "state") | PRODUCTION_ENV | {"PYTHONUNBUFFERED": "1"}
    started = subprocess.Popen(
        [sys.executable, "-m", "chat_assets_demo", "--production", "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert started.stdout is not None
        first = started.stdout.readline()
        time.sleep(2)  # past the line, into run(): a stop request is then a clean stop
    finally:
        started.terminate()
        _, errors = started.communicate(timeout=60)
    assert first == (
        f"chat_assets: starting Dagster's UI and daemon on http://127.0.0.1:{port} (Ctrl-C stops)\n"
    ), errors
    assert "is taken" not in errors


def test_production_names_missing_settings_even_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = demo(["--production", "--port", str(port)], demo_env(tmp_path / "state"))
    assert done.returncode == 2
    assert "CHAT_ASSETS_DATABASE_URL is not set" in done.stderr
    assert "UJET_SUBDOMAIN" in done.stderr and "is taken" not in done.stderr
    said = done.stderr.strip().splitlines()
    assert len(said) == 3 and all(line.startswith("chat_assets: ") for line in said), said


def test_a_weak_pseudonym_key_is_refused_before_anything_starts(tmp_path: Path) -> None:
    env = demo_env(tmp_path / "state") | PRODUCTION_ENV | {"CHAT_ASSETS_PII_KEY": "changeme"}
    done = demo(["--production", "materialize", "2026-01-01"], env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "chat_assets: CHAT_ASSETS_PII_KEY holds 8 characters; a pseudonym key needs at least 32: "
        "make one with: python3 -c 'import secrets; print(secrets.token_hex(32))'"
    ]
    assert "changeme" not in done.stdout + done.stderr


def test_the_demo_instance_opens_without_dagsters_newsletter_pop_up(tmp_path, monkeypatch):
    import dagster as dg

    from chat_assets.settings import Settings
    from chat_assets_demo.__main__ import prepare_environment

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("CHAT_ASSETS_HOME", str(tmp_path))
    monkeypatch.setenv("CHAT_ASSETS_DATABASE_URL", "postgresql+psycopg://loader@db/warehouse")
    settings = Settings.from_env()
    earlier = tmp_path / "dagster_home" / "dagster.yaml"  # as an earlier bin/demo wrote it
    earlier.parent.mkdir()
    earlier.write_text(
        "# Written by bin/demo for the local demo instance; production uses the repository's "
        "dagster.yaml.\ntelemetry:\n  enabled: false\n"
    )
    for production in (False, True):
        home = prepare_environment(settings, production=production)["DAGSTER_HOME"]
        with dg.DagsterInstance.from_config(home) as instance:
            assert not instance.nux_enabled  # the UI's shouldShowNux
            assert not instance.telemetry_enabled
            assert instance.python_log_level == "INFO"  # the console without DEBUG events


def test_materialize_prints_progress_and_results_not_dagsters_debug_events(tmp_path: Path) -> None:
    env = demo_env(tmp_path / "state")
    quiet = demo(["materialize", "2026-01-05"], env)
    assert quiet.returncode == 0, quiet.stderr
    lines = quiet.stdout.splitlines() + quiet.stderr.splitlines()
    assert not [line for line in lines if " - DEBUG - " in line or "Warning" in line]
    assert any("chats from" in line for line in lines)  # the fetch's result
    assert quiet.stdout.splitlines()[-1].startswith(
        "chat_assets: 2026-01-05 materialized and every check passed"
    )
    assert len(lines) <= 12, "\n".join(lines)
    verbose = demo(["materialize", "2026-01-05", "--verbose"], env)
    assert verbose.returncode == 0, verbose.stderr
    assert " - DEBUG - " in verbose.stderr and "STEP_SUCCESS" in verbose.stderr
    # Another key on another day: the check that guards the key fails, and the last line says so.
    other_key = env | {"CHAT_ASSETS_PII_KEY": "9c1e5b8d2f4a6c0e9b7d5f3a1c8e7f3a"}
    failed = demo(["materialize", "2026-01-06"], other_key)
    assert failed.returncode == 0, failed.stderr
    assert failed.stderr.splitlines()[-1].startswith(
        "chat_assets: 2026-01-06 materialized, but 1 check failed: "
        "pii_key_unchanged on raw_chats (ERROR)"
    )


def test_a_failed_materialize_shows_its_error_once(tmp_path: Path, database_url: str) -> None:
    from chat_assets_demo.emulator import UjetEmulator

    with UjetEmulator(company_key="key", company_secret="right", chats_per_day=20) as emulator:
        env = demo_env(tmp_path / "state") | {
            **PRODUCTION_ENV,
            "UJET_BASE_URL": emulator.base_url,
            "UJET_COMPANY_KEY": "key",
            "UJET_COMPANY_SECRET": "wrong",
            "CHAT_ASSETS_DATABASE_URL": database_url,
        }
        env.pop("UJET_SUBDOMAIN", None)
        done = demo(["--production", "materialize", "2026-01-15"], env)
    assert done.returncode == 1
    # the error itself, once (a stack's source lines may quote the message's text)
    assert done.stderr.count("UjetAuthError: UJET answered 401 Unauthorized") == 1, done.stderr
    # ... and no stack: the message says what to check
    assert "Stack Trace:" not in done.stderr and "File " not in done.stderr, done.stderr
    assert " - RUN_FAILURE - " in done.stderr  # the run's failure is said, without the repeat
    assert done.stderr.splitlines()[-1].startswith("chat_assets: materializing 2026-01-15 failed")


def test_an_unreachable_warehouse_fails_each_step_naming_the_setting(tmp_path: Path) -> None:
    env = demo_env(tmp_path / "state") | PRODUCTION_ENV  # its warehouse is on db.invalid
    done = demo(["--production", "materialize", "2026-01-15"], env)
    assert done.returncode == 1
    # raw_chats and retention, the steps that reach the warehouse first, each say the same
    assert done.stderr.count("check CHAT_ASSETS_DATABASE_URL") == 2, done.stderr
    assert "refused the write" not in done.stderr and ":pw@" not in done.stderr


def test_an_unresolvable_ujet_host_is_one_line_without_a_stack(
    tmp_path: Path, database_url: str
) -> None:
    env = demo_env(tmp_path / "state") | {
        **PRODUCTION_ENV,
        "UJET_DOMAIN": "ujet.invalid",
        "CHAT_ASSETS_DATABASE_URL": database_url,
    }
    done = demo(["--production", "materialize", "2026-01-15"], env)
    assert done.returncode == 1
    said = "UJET host acme.ujet.invalid did not resolve ("
    assert done.stderr.count(said) == 1, done.stderr
    assert "check UJET_SUBDOMAIN and UJET_DOMAIN" in done.stderr
    assert "Stack Trace:" not in done.stderr and "File " not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1].startswith("chat_assets: materializing 2026-01-15 failed")
