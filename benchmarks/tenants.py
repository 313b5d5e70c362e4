"""Backfills of 1, 2 and 4 tenants at once through the daemon: wall time and CPU per chat.

For each tenant count, the production topology of the tests (chat_assets_tests.topology: code
server, webserver, daemon, the production dagster.yaml, PostgreSQL) serves the tenants' code
location (`chat_assets.tenants_definitions` on a tenants file), each tenant paced at 10
requests/s against a UJET emulator of its own with a strict limiter of 10 requests/s and 5,000
chats a day (with `--latency`, the emulator takes that long to answer each admitted request, 0.4 s
if no figure is given). Each tenant's job is backfilled over the same days, one backfill per
tenant launched through GraphQL as the UI does, all at once; the instance runs at most 4 runs
at a time, 2 of one tenant. A fresh topology for each count.

Prints per count: the wall time from the first run's start to the last run's end, against the
single-tenant floor (the slowest tenant's requests at 10 per second: tenants have budgets of
their own, so none waits for another's) and against the 1-tenant wall time (target: 2 tenants
within 1.25 times it); per tenant its own wall time, requests and answers of 429. Then the CPU
seconds from the backfills' launch to the last run's end, from the kernel's accounting
(benchmarks/process_cpu.py):
- runs: every process the code server started meanwhile, i.e. the run workers (each a Python
  process that imports Dagster and loads the location, then fetches, pseudonymises, writes and
  flattens its day and runs the checks), so from HTTP bytes to committed rows, with each run's
  start-up; divided by the chats landed (rows of the tenants' raw_chats for those days);
- PostgreSQL: the server's processes, all of them exactly, and split by database from samples
  of its backends (the warehouse's against Dagster's storage; a lower bound each);
- the daemon, the webserver, the code server itself, this process (the emulators and the
  watching), and the rest of the machine's busy time (other processes: on a shared machine,
  others' work);
- the machine's busy share of all its cores over the span (mean of 0.5 s samples, and the share
  of samples at 95 % or more: where it saturates), and the 1-minute load average.
The emulators' threads run at a higher priority than the deployment where the benchmark may (as
root), as in benchmarks/backfill.py, and Python's garbage collector is off in this process.

Run: .venv/bin/python -m benchmarks.tenants [--tenants 1,2,4] [--days 7] [--chats 5000]
     [--latency [0.4]]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from dataclasses import dataclass
from datetime import timedelta

import psutil

from benchmarks.backfill_runs import serve_first, wait_for_backfills
from benchmarks.process_cpu import (
    Sampler,
    TreeTimes,
    machine_times,
    postmaster_of,
    wait_until_exited,
)
from chat_assets.schedules import JOB_NAME
from chat_assets_tests.topology import Deployment, launch_job_backfill, running_deployment

RATE = 10.0
DEFAULT_LATENCY = 0.4


@dataclass
class Outcome:
    """What one tenant count measured."""

    tenants: int
    wall: float
    floor: float
    chats: int
    run_cpu: float
    postgres_cpu: float
    busy_share: float


def process_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def landed(deployment: Deployment, tenant: str, days: list[str]) -> int:
    """Rows of the tenant's raw_chats for `days`."""
    engine = deployment.warehouse()
    try:
        with engine.connect() as connection:
            return connection.exec_driver_sql(
                f"SELECT count(*) FROM ujet_{tenant}.raw_chats WHERE partition_key = ANY(%(days)s)",
                {"days": days},
            ).scalar_one()
    finally:
        engine.dispose()


def measure(count: int, args: argparse.Namespace) -> Outcome:
    names = [f"tenant{n}" for n in range(1, count + 1)]
    emulator = {
        "chats_per_day": args.chats,
        "seasonal": False,
        "personality": "strict_10",
        "latency": args.latency,
    }
    with running_deployment(emulator, tenants=names, requests_per_second=RATE) as deployment:
        prioritized = serve_first()
        # Nor does a server pause for a collection over the days' generated chats.
        gc.disable()
        services = {process.name: process.popen.pid for process in deployment.processes}
        code_server = services["code_server"]
        postmaster = postmaster_of(deployment.pg_port)
        days = [
            (deployment.start_date + timedelta(days=10 + n)).isoformat() for n in range(args.days)
        ]
        before = {name: len(api.requests) for name, api in deployment.ujets.items()}
        this = psutil.Process()
        start_trees = {name: TreeTimes.read(pid) for name, pid in services.items()}
        start_postgres = TreeTimes.read(postmaster)
        start_self, start_machine = process_cpu(this), machine_times()
        launched = time.time()
        with Sampler(postmaster, code_server, start_trees["code_server"]) as sampler:
            # One backfill per tenant, launched back to back.
            backfills = [
                launch_job_backfill(deployment, days, job=f"{name}_{JOB_NAME}") for name in names
            ]
            runs = dict(
                zip(names, wait_for_backfills(deployment, backfills, len(days)), strict=True)
            )
            left = wait_until_exited(code_server, start_trees["code_server"])
            finished = time.time()
        end_trees = {name: TreeTimes.read(pid) for name, pid in services.items()}
        end_postgres = TreeTimes.read(postmaster)
        end_self, end_machine = process_cpu(this), machine_times()
        requests = {name: api.requests[before[name] :] for name, api in deployment.ujets.items()}
        chats = {name: landed(deployment, name, days) for name in names}

    every = [run for tenant in runs.values() for run in tenant]
    failed = sum(run["status"] != "SUCCESS" for run in every)
    first = min(run["startTime"] for run in every)
    wall = max(run["endTime"] for run in every) - first
    floors = {name: len(requests[name]) / RATE for name in names}
    floor = max(floors.values())
    span = finished - launched
    cpu = {name: end_trees[name].total() - start_trees[name].total() for name in services}
    run_cpu = end_trees["code_server"].started_since(start_trees["code_server"])
    postgres_cpu = end_postgres.total() - start_postgres.total()
    self_cpu = end_self - start_self
    busy, idle, steal = (b - a for a, b in zip(start_machine, end_machine, strict=True))
    cores = psutil.cpu_count() or 1
    landed_chats = sum(chats.values())
    per_thousand = run_cpu / landed_chats * 1000 if landed_chats else float("nan")

    print(
        f"\n== {count} tenant{'s' if count > 1 else ''}: {args.days} days each, "
        f"{args.chats:,} chats/day, answers after {args.latency:g} s; {len(every)} runs, "
        f"{failed} failed; emulators' priority {'raised' if prioritized else 'as the deployment'}"
    )
    print(f"{'tenant':<10} {'wall s':>8} {'requests':>9} {'floor s':>8} {'429s':>5} {'chats':>8}")
    for name in names:
        own = runs[name]
        own_wall = max(r["endTime"] for r in own) - min(r["startTime"] for r in own)
        throttled = sum(request.status == 429 for request in requests[name])
        print(
            f"{name:<10} {own_wall:>8.1f} {len(requests[name]):>9} {floors[name]:>8.1f}"
            f" {throttled:>5} {chats[name]:>8,}"
        )
    print(
        f"daemon's delay          {first - launched:.1f} s from the first launch to the first run"
    )
    print(f"wall                    {wall:.1f} s, first run start to last run end")
    print(f"single-tenant floor     {floor:.1f} s, the slowest tenant's requests at {RATE:g}/s")
    print(f"ratio                   {wall / floor:.2f}")
    print(
        f"CPU seconds over the {span:.1f} s from the first launch to the last run's end "
        f"({cores} cores, {span * cores:.0f} core-seconds)"
    )
    workers = len(sampler.workers)
    print(
        f"  runs                  {run_cpu:8.1f}  {per_thousand:.2f} s per 1,000 chats "
        f"({per_thousand * 1000:.0f} µs a chat), {run_cpu / max(len(every), 1):.1f} s a run; "
        f"{workers} run processes seen" + (f", {left} not yet exited" if left else "")
    )
    backends = sampler.backend_cpu()
    split = ", ".join(f"{db} {seconds:.1f}" for db, seconds in sorted(backends.items()))
    postgres_per_thousand = postgres_cpu / landed_chats * 1000 if landed_chats else float("nan")
    print(
        f"  PostgreSQL            {postgres_cpu:8.1f}  {postgres_per_thousand:.2f} s per 1,000 "
        f"chats; sampled backends by database: {split}"
    )
    print(f"  daemon                {cpu['daemon']:8.1f}")
    print(f"  webserver             {cpu['webserver']:8.1f}")
    print(f"  code server itself    {cpu['code_server'] - run_cpu:8.1f}")
    print(f"  this process          {self_cpu:8.1f}  (emulators, watching)")
    # The code server's tree holds the runs.
    accounted = postgres_cpu + sum(cpu.values()) + self_cpu
    print(f"  rest of the machine   {busy - accounted:8.1f}  (other processes, kernel)")
    print(f"  machine busy          {busy:8.1f}  idle {idle:.1f}, stolen {steal:.1f}")
    shares = sampler.busy_shares
    saturated = sum(share >= 0.95 for share in shares) / len(shares) if shares else 0.0
    print(
        f"busy share              {busy / (busy + idle + steal):.0%} of {cores} cores, "
        f"{saturated:.0%} of 0.5 s samples at 95 % or more; load average "
        f"{statistics.mean(sampler.loads) if sampler.loads else 0:.1f} (1 min, mean)"
    )
    return Outcome(
        count, wall, floor, landed_chats, run_cpu, postgres_cpu, busy / (busy + idle + steal)
    )


def counts(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError("tenant counts are positive integers, e.g. 1,2,4")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=counts, default=[1, 2, 4], help="e.g. 1,2,4")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--chats", type=int, default=5_000, help="new chats per day")
    parser.add_argument(
        "--latency",
        type=float,
        nargs="?",
        const=DEFAULT_LATENCY,
        default=0.0,
        help=f"seconds the API takes to answer each page ({DEFAULT_LATENCY:g} if no figure)",
    )
    args = parser.parse_args()
    outcomes = [measure(count, args) for count in args.tenants]
    single = next((o for o in outcomes if o.tenants == 1), None)
    print(
        f"\n{'tenants':>7} {'wall s':>8} {'floor s':>8} {'/floor':>7} {'/1 tenant':>10}"
        f" {'run CPU s/1k chats':>19} {'PG CPU s/1k':>12} {'busy':>5}"
    )
    for o in outcomes:
        versus = f"{o.wall / single.wall:.2f}" if single else "-"
        print(
            f"{o.tenants:>7} {o.wall:>8.1f} {o.floor:>8.1f} {o.wall / o.floor:>7.2f} {versus:>10}"
            f" {o.run_cpu / o.chats * 1000:>19.2f} {o.postgres_cpu / o.chats * 1000:>12.2f}"
            f" {o.busy_share:>5.0%}"
        )
    if single:
        print("target: 2 tenants within 1.25 times one tenant's wall time")
    print(f"machine: {os.cpu_count()} cores; figures on a shared machine include others' load")


if __name__ == "__main__":
    main()
