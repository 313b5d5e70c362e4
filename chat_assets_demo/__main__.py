"""`bin/demo`: chat_assets on the demo source and embedded defaults, with Dagster's UI and daemon.

bin/demo                      UI and daemon at http://127.0.0.1:3000
bin/demo materialize [DAY]    materialize every asset for DAY (default: yesterday) from the CLI
bin/demo --production ...     the same on your UJET account and warehouse (from the environment)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from chat_assets.location import require_production_settings
from chat_assets.partitions import daily_partitions
from chat_assets.settings import Settings, SettingsError, said
from chat_assets_demo.earlier_version import start_afresh_if_earlier
from chat_assets_demo.embedded import embedded_database_url, release

QUIET = (
    "Function `dev_command` is superseded",
    "Function `asset_materialize_command` is superseded",
    "XDG_RUNTIME_DIR is not set",
    # Raised from inside Dagster's own asset selection, on every `dagster asset materialize`.
    "Parameter `include_sources` of function `AssetSelection.all` is currently in beta",
)
for _text in QUIET:
    warnings.filterwarnings("ignore", message=re.escape(_text))

INSTANCE_HEADER = "# Written by bin/demo for the local demo instance"
# `nux`: Dagster's first-visit pop-up (a newsletter sign-up) stays off; the UI opens on its pages.
NUX_YAML = """\
nux:
  enabled: false
"""
# What runs print on the console: Dagster's INFO events and up (progress, results, failures), or
# every DEBUG event too with --verbose. The run's event log in the UI keeps all of them.
PYTHON_LOGS_YAML = """\
python_logs:
  python_log_level: {level}
"""
INSTANCE_YAML = f"""\
{INSTANCE_HEADER}; production uses the repository's dagster.yaml.
telemetry:
  enabled: false
{NUX_YAML}concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: 4
run_monitoring:
  enabled: true
  free_slots_after_run_end_seconds: 300
"""


def prepare_environment(
    settings: Settings, *, production: bool, verbose: bool = False
) -> dict[str, str]:
    """Environment for Dagster's processes: the warehouse URL and a local instance home."""
    env = dict(os.environ)
    env["CHAT_ASSETS_HOME"] = str(settings.state_dir)
    # Warnings an operator can do nothing about: `dagster dev` recommending another CLI, a
    # desktop session variable a server does not have, a beta notice from inside Dagster.
    env["PYTHONWARNINGS"] = ",".join(
        filter(None, [env.get("PYTHONWARNINGS"), *(f"ignore:{text}" for text in QUIET)])
    )
    if not production:
        # The demo always writes to its own embedded PostgreSQL, whatever the environment names:
        # synthetic chats never reach a real warehouse.
        env["CHAT_ASSETS_DATABASE_URL"] = embedded_database_url(settings.state_dir)
        if start_afresh_if_earlier(env["CHAT_ASSETS_DATABASE_URL"], settings.schema):
            print(
                "chat_assets: the demo's warehouse was made by an earlier version of chat_assets;"
                " its synthetic chats were let go and it starts afresh",
                file=sys.stderr,
            )
    # The demo's runs and the production location's are kept in instances of their own.
    instance = "dagster_home_production" if production else "dagster_home"
    home = Path(env.get("DAGSTER_HOME") or settings.state_dir / instance)
    home.mkdir(parents=True, exist_ok=True)
    instance_yaml = home / "dagster.yaml"
    written = instance_yaml.read_text() if instance_yaml.exists() else None
    wanted = instance_settings(written, "DEBUG" if verbose else "INFO")
    if wanted != written:
        instance_yaml.write_text(wanted)
    env["DAGSTER_HOME"] = str(home)
    return env


def instance_settings(written: str | None, log_level: str) -> str:
    """The instance's dagster.yaml: bin/demo's own (new, or one it wrote before, brought up to
    date: the pop-up off, the console's log level), or an operator's left as it is."""
    if written is None:
        written = INSTANCE_YAML
    elif not written.startswith(INSTANCE_HEADER):
        return written
    if not re.search(r"^nux:", written, re.M):
        written = written.rstrip("\n") + "\n" + NUX_YAML
    written = re.sub(r"^python_logs:\n(  .*\n)*", "", written, flags=re.M)
    return written.rstrip("\n") + "\n" + PYTHON_LOGS_YAML.format(level=log_level)


def yesterday(timezone: str) -> str:
    return (datetime.now(ZoneInfo(timezone)).date() - timedelta(days=1)).isoformat()


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def partition_day(raw: str | None, settings: Settings) -> str:
    """The day to materialize (yesterday by default), refused unless it is a daily partition."""
    partitions = daily_partitions(settings)
    first, last = partitions.get_first_partition_key(), partitions.get_last_partition_key()
    start = f"CHAT_ASSETS_START_DATE={settings.start_date.isoformat()}"
    if first is None or last is None:
        raise SettingsError(
            f"no day to materialize yet: {start} is after yesterday "
            f"({yesterday(settings.timezone)} in {settings.timezone}); set an earlier start"
        )
    days = f"days run from {first} ({start}) to {last} (yesterday in {settings.timezone})"
    day = raw or yesterday(settings.timezone)
    try:
        valid = bool(_DAY.match(day)) and date.fromisoformat(day).isoformat() == day
    except ValueError:
        valid = False
    if not valid:
        raise SettingsError(f"{day!r} is not a day like {last}: {days}")
    if not first <= day <= last:
        if day < first:
            hint = ", or set an earlier CHAT_ASSETS_START_DATE"
        else:
            hint = "; a day is a partition once it has ended"
        raise SettingsError(f"{day} is not a daily partition: {days}{hint}")
    return day


# A line of Dagster's console logger: its timestamp starts each event.
_EVENT_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4} - ")


# Errors whose message says what to change (a credential, an address, a setting): a stack
# helps no one who meets them.
_PLAIN_ERROR = re.compile(
    r"^chat_assets\.(ujet\.errors\.Ujet(Address|Auth|NotFound|Unavailable)Error"
    r"|warehouse\.connection\.WarehouseUnreachable): "
)


def without_repeated_stack(lines: Iterable[str]) -> Iterator[str]:
    """Dagster's console prints a failed step's error with its stack, then the run's failure
    with the same error and stack again, and the CLI's own `Error: ...` line: the run failure's
    line stays, the rest of it (the repeat, and the CLI's line, which bin/demo says in its own
    words) goes. An error whose message says what to change keeps its message, not its stack."""
    repeat = plain = False
    for line in lines:
        if _EVENT_LINE.match(line):
            repeat, plain = " - RUN_FAILURE - " in line, False
            yield line
        elif not (repeat or plain):
            plain = _PLAIN_ERROR.match(line) is not None
            yield line


def failed_checks(dagster_home: Path, day: str) -> list[str]:
    """The checks that failed in the newest run of `day` in the instance at `dagster_home`, as
    `check on asset (severity)`: the console shows INFO events and up, and Dagster records a
    check's evaluation at DEBUG."""
    import dagster as dg  # imported late: only a finished materialize needs it

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": day}), limit=1)
        if not runs:
            return []
        entries = instance.all_logs(
            runs[0].run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
    evaluations = [e.dagster_event.event_specific_data for e in entries if e.dagster_event]
    return [
        f"{e.check_name} on {e.asset_key.to_user_string()} ({e.severity.value})"
        for e in evaluations
        if not e.passed
    ]


def materialize_outcome(
    day: str, code: int, failed: list[str], production: bool, verbose: bool
) -> str:
    """The last line of `bin/demo materialize`: whether the day materialized, and any check that
    failed."""
    mode = "--production " if production else ""
    if code:
        return (
            f"chat_assets: materializing {day} failed (see above; bin/demo {mode}--verbose "
            f"materialize {day} prints every event)"
        )
    if failed:
        return (
            f"chat_assets: {day} materialized, but {len(failed)} "
            f"check{'s' if len(failed) > 1 else ''} failed: {'; '.join(failed)} (bin/demo "
            f"{mode}shows why in the UI)"
        )
    return (
        f"chat_assets: {day} materialized and every check passed (bin/demo {mode}shows its "
        "tables and checks in the UI)"
    )


STOP_SECONDS = 20.0


def run(
    command: list[str],
    env: dict[str, str],
    cwd: Path,
    *,
    stderr: Callable[[Iterable[str]], Iterable[str]] | None = None,
    ready: tuple[str, str] | None = None,
) -> int:
    """Run Dagster until it ends or this process is asked to stop (SIGINT or SIGTERM).

    The handlers are installed before the child starts, so it inherits default signal
    dispositions even when this process was started with SIGINT ignored (in the background).
    The child runs in a session of its own: a terminal's Ctrl-C reaches only this process, which
    asks the child once to stop (SIGTERM, so Dagster shuts its webserver and daemon down in
    order), then ends whatever of the child's group is left. Stopping on request exits 0.
    The child's standard error passes through `stderr`, line by line, when given. With
    `ready` (an address and a line), the line is printed once the address answers, so an
    address it names opens at once.
    """
    stop = threading.Event()

    def request_stop(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    child = subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        start_new_session=True,
        stderr=subprocess.PIPE if stderr else None,
        text=True,
    )
    if stderr:
        assert child.stderr is not None
        lines = child.stderr
        copy = threading.Thread(
            target=lambda: sys.stderr.writelines(stderr(lines)), name="stderr", daemon=True
        )
        copy.start()
    if ready:

        def running() -> bool:
            return child.poll() is None and not stop.is_set()

        threading.Thread(
            target=_announce_when_up, args=(*ready, running), name="ready", daemon=True
        ).start()
    while child.poll() is None and not stop.wait(0.2):
        pass
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(STOP_SECONDS)
    _end_group(child.pid)
    if stderr:
        copy.join(STOP_SECONDS)
    return 0 if stop.is_set() else child.wait()


def _announce_when_up(address: str, line: str, running: Callable[[], bool]) -> None:
    """Print `line` once `address` answers 200, unless Dagster stops first."""
    while running():
        try:
            with urllib.request.urlopen(address, timeout=2) as answer:
                if answer.status == 200:
                    print(line, flush=True)
                    return
        except (OSError, ValueError):
            pass  # not listening yet, or not ready to answer
        time.sleep(0.5)


def _end_group(group: int) -> None:
    """Stop what is left of the child's process group: politely, then for good."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def port_taken(host: str, port: int) -> bool:
    """Whether the UI could not bind the port. Like the web server (uvicorn), the probe binds
    with SO_REUSEADDR, so connections of a stopped server left in TIME-WAIT do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bin/demo", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3000, help="port of Dagster's UI")
    parser.add_argument("--host", default="127.0.0.1", help="address the UI binds to")
    verbose_help = (
        "print every event of Dagster's runs on the console, DEBUG included, and the INFO lines "
        "of its webserver and daemon"
    )
    parser.add_argument("--verbose", action="store_true", help=verbose_help)
    parser.add_argument(
        "--production",
        action="store_true",
        help="the production code location instead of the demo: your UJET account and "
        "warehouse, from the environment (UJET_SUBDOMAIN, CHAT_ASSETS_DATABASE_URL, ...)",
    )
    sub = parser.add_subparsers(dest="command")
    materialize = sub.add_parser("materialize", help="materialize all assets for one day")
    materialize.add_argument("day", nargs="?", help="YYYY-MM-DD (default: yesterday)")
    # Also after the command (bin/demo materialize DAY --verbose); unset there, the top's holds.
    materialize.add_argument(
        "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help
    )
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(said(error), file=sys.stderr)
        return 2
    try:  # every setting loading would miss or refuse, said before anything (and the port)
        if args.production:
            require_production_settings(settings)
        elif settings.pii_key_problem:
            raise SettingsError(settings.pii_key_problem)
    except SettingsError as error:
        print(said(error), file=sys.stderr)
        return 2
    if args.command != "materialize" and port_taken(args.host, args.port):
        print(
            f"chat_assets: port {args.port} on {args.host} is taken (is another bin/demo "
            f"running?): choose another with bin/demo --port {args.port + 1}",
            file=sys.stderr,
        )
        return 2
    if args.command == "materialize":
        try:
            day = partition_day(args.day, settings)
        except SettingsError as error:
            print(said(error), file=sys.stderr)
            return 2
    env = prepare_environment(settings, production=args.production, verbose=args.verbose)
    dagster = str(Path(sys.executable).with_name("dagster"))
    location = "chat_assets.definitions" if args.production else "chat_assets_demo.definitions"
    # Modules resolve from the checkout, whatever the working folder (see run()).
    module = ["-m", location, "-d", str(Path(__file__).resolve().parents[1])]
    ready: tuple[str, str] | None = None
    if args.command == "materialize":
        command = [dagster, "asset", "materialize", *module, "--select", "*", "--partition", day]
    else:
        ui = f"http://{args.host}:{args.port}"
        print(f"chat_assets: starting Dagster's UI and daemon on {ui} (Ctrl-C stops)", flush=True)
        # Dagster's UI opens on its overview; the assets are what the demo is about.
        ready = (f"{ui}/assets", f"chat_assets: Dagster UI at {ui}/assets, the asset catalog")
        # Dagster's services (webserver, daemon) say only warnings and errors: without this the
        # daemon logs two lines a minute for each sensor tick, however little it does.
        services = ["--log-level", "info" if args.verbose else "warning"]
        command = [
            dagster,
            "dev",
            *module,
            *services,
            "--host",
            args.host,
            "--port",
            str(args.port),
        ]
    # Run from the state folder: Dagster reads a dagster.yaml it finds in its working folder,
    # and the repository's is the production instance's, not the demo's.
    code = run(
        command,
        env,
        settings.state_dir,
        stderr=without_repeated_stack if args.command == "materialize" else None,
        ready=ready,
    )
    if args.command == "materialize":
        failed = failed_checks(Path(env["DAGSTER_HOME"]), day) if code == 0 else []
        line = materialize_outcome(day, code, failed, args.production, args.verbose)
        print(line, file=sys.stderr if code or failed else sys.stdout)
    else:
        stopped = "Dagster's UI and daemon"
        if not args.production:
            stopped += (
                " and the embedded PostgreSQL"
                if release(settings.state_dir)
                else " (the embedded PostgreSQL runs on for another process using it)"
            )
        print(f"chat_assets: stopped {stopped}")
    return code


if __name__ == "__main__":
    sys.exit(main())
