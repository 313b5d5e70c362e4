"""Peak memory of one day's run, whatever the day's size.

The daily job (raw_chats, the flattened tables, both queue marts) runs in process, in a
child process of its own, for one day of the demo emulator over real HTTP (100,000 new chats
by default, no seasonality, the client unthrottled) into an embedded PostgreSQL. The emulator
and the database live outside that process, so its peak RSS is the run's own.

Prints the chats landed, the time of each step, and the run process's peak RSS: after its
imports, after raw_chats, and after the rest of the job (run on its own, raw_chats then landed).
The run process has MALLOC_ARENA_MAX=2, as the Dockerfile and bin/demo give run processes, unless
this process's environment sets another value.

Run: .venv/bin/python -m benchmarks.memory [--chats 100000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import tempfile
from datetime import date
from pathlib import Path

DAY = date(2026, 1, 15)
SCHEMA = "memory_bench"
PII_KEY = "5f1c0e9a7b3d42c8a6e4f2019b8d7c6e5a4f3b2c1d0e9f8a7b6c5d4e3f2a1b0c"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_day(url: str, base_url: str, results: multiprocessing.Queue) -> None:
    import dagster as dg

    from chat_assets.location import build_definitions
    from chat_assets.privacy.resource import PrivacyResource
    from chat_assets.schedules import JOB_NAME
    from chat_assets.settings import Settings
    from chat_assets.tables import AGGREGATE_TABLES, DERIVED_TABLES
    from chat_assets.ujet.resource import UjetResource
    from chat_assets.warehouse.resource import Warehouse

    os.environ["CHAT_ASSETS_DATABASE_URL"] = url
    settings = Settings.from_env()
    resources = {
        "ujet": UjetResource(
            base_url=base_url,
            company_key="demo-key",
            company_secret="demo-secret",
            requests_per_second=1000.0,
        ),
        "privacy": PrivacyResource(pii_key=PII_KEY),
    }
    definitions = build_definitions(
        settings, Warehouse(database_url=url, db_schema=SCHEMA), resources
    )
    job = definitions.resolve_job_def(JOB_NAME)
    instance = dg.DagsterInstance.ephemeral()
    peaks = [("before the run (imports)", peak_mb())]
    steps: dict[str, float] = {}
    landed, success = 0, True
    # The landing first, then the rest of the day: the peak of each, since the peak only grows.
    rest = [table.name for table in (*DERIVED_TABLES, *AGGREGATE_TABLES)]
    for selection, after in ((["raw_chats"], "raw_chats"), (rest, "the rest of the job")):
        result = job.execute_in_process(
            partition_key=DAY.isoformat(),
            instance=instance,
            raise_on_error=False,
            asset_selection=[dg.AssetKey(name) for name in selection],
        )
        success = success and result.success
        peaks.append((f"after {after}", peak_mb()))
        steps |= {
            event.step_key: event.event_specific_data.duration_ms / 1000
            for event in result.all_events
            if event.event_type_value == "STEP_SUCCESS"
        }
        if selection == ["raw_chats"]:
            (materialization,) = result.asset_materializations_for_node("raw_chats")
            landed = materialization.metadata["rows_written"].value
    results.put((success, steps, landed, peaks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chats", type=int, default=100_000, help="new chats in the day")
    parser.add_argument("--database-url", help="a PostgreSQL to use instead of an embedded one")
    args = parser.parse_args()

    from chat_assets_demo.emulator import UjetEmulator

    url = args.database_url
    if url is None:
        from chat_assets_demo.embedded import embedded_database_url

        url = embedded_database_url(Path(tempfile.mkdtemp(prefix="chat_assets_memory_")))
    emulator = UjetEmulator(
        company_key="demo-key",
        company_secret="demo-secret",
        chats_per_day=args.chats,
        seasonal=False,
        personality="rfc8288",
    )
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    with emulator:
        results: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
        child = multiprocessing.get_context("spawn").Process(
            target=run_day, args=(url, emulator.base_url, results)
        )
        child.start()
        success, steps, landed, peaks = results.get()
        child.join()
    print(
        f"day                     {DAY}, {args.chats:,} new chats a day, run succeeded: {success}"
    )
    print(f"landed                  {landed:,} chats in raw_chats")
    print(f"MALLOC_ARENA_MAX        {os.environ['MALLOC_ARENA_MAX']}")
    for step, seconds in steps.items():
        print(f"step {step:<27}  {seconds:.1f} s")
    for when, megabytes in peaks:
        print(f"peak RSS {megabytes:5.0f} MB        {when}")


if __name__ == "__main__":
    main()
