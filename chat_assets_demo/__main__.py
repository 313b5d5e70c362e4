"""`bin/demo`: chat_assets on the demo source and embedded defaults, with Dagster's UI and daemon.

bin/demo                      UI and daemon at http://127.0.0.1:3000
bin/demo materialize [DAY]    materialize every asset for DAY (default: yesterday) from the CLI
bin/demo --production ...     the same on your UJET account and warehouse (from the environment)
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from chat_assets.location import production_resources, production_warehouse
from chat_assets.settings import Settings, SettingsError
from chat_assets_demo.embedded import embedded_database_url

INSTANCE_YAML = """\
# Written by bin/demo for the local demo instance; production uses the repository's dagster.yaml.
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: 4
run_monitoring:
  enabled: true
  free_slots_after_run_end_seconds: 300
"""


def prepare_environment(settings: Settings, *, production: bool) -> dict[str, str]:
    """Environment for Dagster's processes: the warehouse URL and a local instance home."""
    env = dict(os.environ)
    env["CHAT_ASSETS_HOME"] = str(settings.state_dir)
    if not production and not settings.database_url:
        env["CHAT_ASSETS_DATABASE_URL"] = embedded_database_url(settings.state_dir)
    home = Path(env.get("DAGSTER_HOME") or settings.state_dir / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(INSTANCE_YAML)
    env["DAGSTER_HOME"] = str(home)
    return env


def yesterday(timezone: str) -> str:
    return (datetime.now(ZoneInfo(timezone)).date() - timedelta(days=1)).isoformat()


def run(command: list[str], env: dict[str, str]) -> int:
    """Run a child until it ends, passing Ctrl-C and SIGTERM on to it."""
    child = subprocess.Popen(command, env=env)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bin/demo", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3000, help="port of Dagster's UI")
    parser.add_argument("--host", default="127.0.0.1", help="address the UI binds to")
    parser.add_argument(
        "--production",
        action="store_true",
        help="the production code location instead of the demo: your UJET account and "
        "warehouse, from the environment (UJET_SUBDOMAIN, CHAT_ASSETS_DATABASE_URL, ...)",
    )
    sub = parser.add_subparsers(dest="command")
    materialize = sub.add_parser("materialize", help="materialize all assets for one day")
    materialize.add_argument("day", nargs="?", help="YYYY-MM-DD (default: yesterday)")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    if args.production:
        try:  # the settings errors loading would raise, said before anything starts
            production_resources(settings)
            production_warehouse(settings)
        except SettingsError as error:
            print(f"chat_assets: {error}", file=sys.stderr)
            return 2
    env = prepare_environment(settings, production=args.production)
    dagster = str(Path(sys.executable).with_name("dagster"))
    location = "chat_assets.definitions" if args.production else "chat_assets_demo.definitions"
    module = ["-m", location]
    if args.command == "materialize":
        day = args.day or yesterday(settings.timezone)
        command = [dagster, "asset", "materialize", *module, "--select", "*", "--partition", day]
    else:
        print(f"chat_assets: Dagster UI at http://{args.host}:{args.port} (Ctrl-C stops)")
        command = [dagster, "dev", *module, "--host", args.host, "--port", str(args.port)]
    return run(command, env)


if __name__ == "__main__":
    sys.exit(main())
