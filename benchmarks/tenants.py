"""Backfills of 1, 2 and 4 tenants at once through the daemon: wall time and CPU per chat.

For each tenant count, the production topology of the tests (chat_assets_tests.topology: code
server, webserver, daemon, the production dagster.yaml, PostgreSQL) serves the tenants' code
location (`chat_assets.tenants_location` on a tenants file), each tenant paced at 10
requests/s against a UJET emulator of its own with a strict limiter of 10 requests/s and 5,000
chats a day (with `--latency`, the emulator takes that long to answer each admitted request, 0.4 s
if no figure is given). Each emulator builds its days' pages before the clock starts, so that
while the backfills run it only sends them. Each tenant's job is backfilled over the same days,
one backfill per tenant launched through GraphQL as the UI does, all at once; the instance runs
at most 4 runs at a time, 2 of one tenant. A fresh topology for each count.

Prints per count: the wall time from the first run's start to the last run's end, against the
single-tenant floor (the slowest tenant's requests at 10 per second: tenants have budgets of
their own, so none waits for another's) and against the 1-tenant wall time (target: 2 tenants
within 1.25 times it); per tenant its own wall time, requests and answers of 429. Then the CPU
seconds from the backfills' launch to the last run's end, from the kernel's accounting
(benchmarks/process_cpu.py):
- runs: every process the code server started meanwhile, i.e. the run workers (each a Python
  process that imports Dagster and loads the location, then fetches, pseudonymises, writes and
  flattens its day and runs the checks), so from HTTP bytes to committed rows, with each run's
  start-up; divided by the chats landed (rows of the tenants' raw_chats for those days); and
  split into each run process's CPU until its first step started (sampled; the process is
  found by the pid its run's engine event records) and its steps' (the rest);
- PostgreSQL: the server's processes, all of them exactly, and split by database from samples
  of its backends (the warehouse's against Dagster's storage; a lower bound each);
- the daemon, the webserver, the code server itself, this process (the emulators and the
  watching), and the rest of the machine's busy time (other processes: on a shared machine,
  others' work);
- the machine's busy share of all its cores over the span (and the share of 0.25 s samples at
  95 % or more: where it saturates), and the 1-minute load average.
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
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psutil
from dagster import DagsterEventType

from benchmarks.backfill_runs import serve_first, wait_for_backfills
from benchmarks.process_cpu import (
    Sampler,
    TreeTimes,
    machine_times,
    postmaster_of,
    wait_until_exited,
)
from chat_assets.schedules import JOB_NAME
from chat_assets_demo.emulator import RequestLog
from chat_assets_tests.topology import (
    TIMEZONE,
    Deployment,
    launch_job_backfill,
    running_deployment,
)

RATE = 10.0
DEFAULT_LATENCY = 0.4


@dataclass
class Measured:
    """What one tenant count measured: runs by tenant, requests by tenant, chats landed by
    tenant, CPU seconds by part, the machine's times, the samples."""

    count: int
    prioritized: bool
    launched: float
    finished: float
    runs: dict[str, list[dict[str, Any]]]
    requests: dict[str, list[RequestLog]]
    chats: dict[str, int]
    services: dict[str, float]
    run_cpu: float
    postgres_cpu: float
    self_cpu: float
    machine: tuple[float, float, float]
    startups: list[float | None]
    left: int
    sampler: Sampler

    @property
    def every(self) -> list[dict[str, Any]]:
        return [run for runs in self.runs.values() for run in runs]

    @property
    def wall(self) -> float:
        return max(r["endTime"] for r in self.every) - min(r["startTime"] for r in self.every)

    @property
    def floor(self) -> float:
        """The slowest tenant's requests at the rate: tenants do not share a budget."""
        return max(len(requests) / RATE for requests in self.requests.values())

    @property
    def landed(self) -> int:
        return sum(self.chats.values())

    def per_thousand(self, seconds: float) -> float:
        return seconds / self.landed * 1000 if self.landed else float("nan")

    @property
    def steps_cpu(self) -> float | None:
        """The runs' CPU beyond their processes' start-up, if every start-up was sampled."""
        if not self.startups or any(startup is None for startup in self.startups):
            return None
        return self.run_cpu - sum(s for s in self.startups if s is not None)

    @property
    def accounted(self) -> float:
        """CPU seconds of the deployment, PostgreSQL and this process (the code server's tree
        holds the runs)."""
        return self.postgres_cpu + sum(self.services.values()) + self.self_cpu

    @property
    def cores_used(self) -> float:
        """The accounted CPU over the span, in cores kept busy on average."""
        return self.accounted / (self.finished - self.launched)

    @property
    def busy_share(self) -> float:
        busy, idle, steal = self.machine
        return busy / (busy + idle + steal)


def process_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def run_pids(deployment: Deployment, run_ids: list[str]) -> dict[str, int]:
    """The process of each run, as its engine event "Started process for run" records it."""
    pids = {}
    with deployment.instance() as instance:
        for run_id in run_ids:
            for record in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
                event = record.dagster_event
                pid = event.engine_event_data.metadata.get("pid") if event else None
                if pid is not None:
                    pids[run_id] = int(pid.value)
                    break
    return pids


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


def day_window(day: str) -> tuple[datetime, datetime]:
    """A tenant's day in the deployment's time zone, as the bounds its fetch asks for."""
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), ZoneInfo(TIMEZONE))
    return start, start + timedelta(days=1)


def measure(count: int, args: argparse.Namespace) -> Measured:
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
        # UJET's servers do not share the machine's cores: each emulator builds the days' pages
        # before the clock starts, and then only sends them.
        for api in deployment.ujets.values():
            for day in days:
                api.prepare(*day_window(day))
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
            ended = wait_for_backfills(deployment, backfills, len(days))
            left = wait_until_exited(code_server, start_trees["code_server"])
            finished = time.time()
        end_trees = {name: TreeTimes.read(pid) for name, pid in services.items()}
        end_postgres = TreeTimes.read(postmaster)
        end_self, end_machine = process_cpu(this), machine_times()
        runs = dict(zip(names, ended, strict=True))
        every = [run for tenant in ended for run in tenant]
        pids = run_pids(deployment, [run["runId"] for run in every])
        measured = Measured(
            count=count,
            prioritized=prioritized,
            launched=launched,
            finished=finished,
            runs=runs,
            requests={name: api.requests[before[name] :] for name, api in deployment.ujets.items()},
            chats={name: landed(deployment, name, days) for name in names},
            services={
                name: end_trees[name].total() - start_trees[name].total() for name in services
            },
            run_cpu=end_trees["code_server"].started_since(start_trees["code_server"]),
            postgres_cpu=end_postgres.total() - start_postgres.total(),
            self_cpu=end_self - start_self,
            machine=tuple(b - a for a, b in zip(start_machine, end_machine, strict=True)),
            # Each run process's CPU until its first step started: imports, loading the
            # location, the run's start; the rest is its steps'.
            startups=[
                sampler.cpu_at(
                    pids[run["runId"]], min(step["startTime"] for step in run["stepStats"])
                )
                if run["runId"] in pids and run["stepStats"]
                else None
                for run in every
            ],
            left=left,
            sampler=sampler,
        )
    return measured


def report(m: Measured, args: argparse.Namespace) -> None:
    failed = sum(run["status"] != "SUCCESS" for run in m.every)
    print(
        f"\n== {m.count} tenant{'s' if m.count > 1 else ''}: {args.days} days each, "
        f"{args.chats:,} chats/day, answers after {args.latency:g} s; {len(m.every)} runs, "
        f"{failed} failed; emulators' priority {'raised' if m.prioritized else 'as the deployment'}"
    )
    print(f"{'tenant':<10} {'wall s':>8} {'requests':>9} {'floor s':>8} {'429s':>5} {'chats':>8}")
    for name, runs in m.runs.items():
        wall = max(r["endTime"] for r in runs) - min(r["startTime"] for r in runs)
        requests = m.requests[name]
        throttled = sum(request.status == 429 for request in requests)
        print(
            f"{name:<10} {wall:>8.1f} {len(requests):>9} {len(requests) / RATE:>8.1f}"
            f" {throttled:>5} {m.chats[name]:>8,}"
        )
    first = min(run["startTime"] for run in m.every)
    print(f"daemon's delay          {first - m.launched:.1f} s from the first launch to a run")
    print(f"wall                    {m.wall:.1f} s, first run start to last run end")
    print(f"single-tenant floor     {m.floor:.1f} s, the slowest tenant's requests at {RATE:g}/s")
    print(f"ratio                   {m.wall / m.floor:.2f}")
    span, cores = m.finished - m.launched, psutil.cpu_count() or 1
    print(
        f"CPU seconds over the {span:.1f} s from the first launch to the last run's end "
        f"({cores} cores, {span * cores:.0f} core-seconds):"
    )
    per_run = m.run_cpu / max(len(m.every), 1)
    print(
        f"  runs                  {m.run_cpu:8.1f}  {m.per_thousand(m.run_cpu):.2f} s per 1,000 "
        f"chats, {per_run:.1f} s a run; {len(m.sampler.workers)} run processes seen, "
        f"{m.sampler.workers_cpu():.1f} s at their last samples"
        + (f", {m.left} not yet exited" if m.left else "")
    )
    steps = m.steps_cpu
    if steps is None:
        missing = sum(startup is None for startup in m.startups)
        print(f"    until a first step  {missing} of {len(m.startups)} runs not sampled in time")
    else:
        startup = m.run_cpu - steps
        print(f"    until a first step  {startup:8.1f}  {startup / len(m.startups):.1f} s a run")
        print(
            f"    steps               {steps:8.1f}  {m.per_thousand(steps):.2f} s per 1,000 chats"
            f" ({m.per_thousand(steps) * 1000:.0f} µs a chat)"
        )
    split = ", ".join(
        f"{database} {seconds:.1f}" for database, seconds in sorted(m.sampler.backend_cpu().items())
    )
    print(
        f"  PostgreSQL            {m.postgres_cpu:8.1f}  {m.per_thousand(m.postgres_cpu):.2f} s "
        f"per 1,000 chats; its backends sampled, by database: {split}"
    )
    print(f"  daemon                {m.services['daemon']:8.1f}")
    print(f"  webserver             {m.services['webserver']:8.1f}")
    print(f"  code server itself    {m.services['code_server'] - m.run_cpu:8.1f}")
    print(f"  this process          {m.self_cpu:8.1f}  (emulators, watching)")
    busy, idle, steal = m.machine
    print(f"  all of the above      {m.accounted:8.1f}  {m.cores_used:.2f} cores on average")
    print(f"  rest of the machine   {busy - m.accounted:8.1f}  (other processes, kernel)")
    print(f"  machine busy          {busy:8.1f}  idle {idle:.1f}, stolen {steal:.1f}")
    shares = m.sampler.busy_shares
    saturated = sum(share >= 0.95 for share in shares) / len(shares) if shares else 0.0
    load = statistics.mean(m.sampler.loads) if m.sampler.loads else 0.0
    print(
        f"busy share              {m.busy_share:.0%} of {cores} cores; {saturated:.0%} of "
        f"{m.sampler.every:g} s samples at 95 % or more; load average {load:.1f} (1 min, mean)"
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
    outcomes = []
    for count in args.tenants:
        outcomes.append(measure(count, args))
        report(outcomes[-1], args)
    single = next((o for o in outcomes if o.count == 1), None)
    print(
        f"\n{'tenants':>7} {'wall s':>8} {'floor s':>8} {'/floor':>7} {'/1 tenant':>10}"
        f" {'runs s/1k chats':>16} {'steps':>6} {'PG s/1k':>8} {'cores used':>11} {'busy':>5}"
    )
    for o in outcomes:
        versus = f"{o.wall / single.wall:.2f}" if single else "-"
        steps = "-" if o.steps_cpu is None else f"{o.per_thousand(o.steps_cpu):.2f}"
        print(
            f"{o.count:>7} {o.wall:>8.1f} {o.floor:>8.1f} {o.wall / o.floor:>7.2f} {versus:>10}"
            f" {o.per_thousand(o.run_cpu):>16.2f} {steps:>6}"
            f" {o.per_thousand(o.postgres_cpu):>8.2f} {o.cores_used:>11.2f}"
            f" {o.busy_share:>5.0%}"
        )
    if single:
        print("target: 2 tenants within 1.25 times one tenant's wall time")
    print(
        f"cores used: by the deployment, PostgreSQL and the emulators; busy: the machine's "
        f"{os.cpu_count()} cores, others' work included"
    )


if __name__ == "__main__":
    main()
