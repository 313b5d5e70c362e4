"""A 30-day backfill through the daemon, against the API floor.

The production topology of the tests (chat_assets_tests.topology: code server, webserver, daemon,
the production dagster.yaml, PostgreSQL) runs against the UJET emulator with a strict limiter of
10 requests/s and 5,000 chats a day, the client paced at 10/s; with `--latency`, the emulator
takes that long to answer each admitted request, as a real API does. The job's partition
backfill is launched through GraphQL, as the UI does. The API floor is the backfill's requests
at 10 per second: fetches from one account share its budget request by request (their turns in
the warehouse), so no schedule can beat it.

Prints the wall time from the first run's start to the last run's end (and the daemon's delay
before the first run), the floor and the ratio, per run its duration and its steps', the time
the API stood idle between requests beyond their spacing, and the answers of 429 (those right
after another day's request were drawn at a handover between runs).

UJET's servers do not share this machine's cores, but the emulator does: on a saturated machine
its limiter would stamp a request's arrival late, whenever its thread waits for a core, and then
refuse the next request, which was on time. Where the benchmark may (as root), the emulator's
threads run at a higher priority than the deployment's processes; it says whether they did.
Python's garbage collector is off in this process: its collections over the days' generated
chats paused the emulator for up to 30 ms, with the same effect.

Run: .venv/bin/python -m benchmarks.backfill [--days 30] [--chats 5000] [--latency 0.4]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import time
from datetime import timedelta

from benchmarks.backfill_runs import serve_first, wait_for_backfills
from chat_assets_tests.topology import launch_job_backfill, running_deployment

RATE = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--chats", type=int, default=5_000, help="new chats per day")
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds the API takes to answer each page"
    )
    args = parser.parse_args()
    emulator = {
        "chats_per_day": args.chats,
        "seasonal": False,
        "personality": "strict_10",
        "latency": args.latency,
    }
    settings = {"UJET_REQUESTS_PER_SECOND": str(RATE), "CHAT_ASSETS_CATCH_UP_SENSOR": "off"}
    with running_deployment(emulator, settings) as deployment:
        ujet = deployment.ujet
        assert ujet is not None
        prioritized = serve_first()
        # Nor does a server pause for a collection over the days' generated chats.
        gc.disable()
        days = [
            (deployment.start_date + timedelta(days=10 + n)).isoformat() for n in range(args.days)
        ]
        before = len(ujet.requests)
        launched = time.time()
        backfill = launch_job_backfill(deployment, days)
        (runs,) = wait_for_backfills(deployment, [backfill], len(days))
        requests = len(ujet.requests) - before
        log = sorted(ujet.requests[before:], key=lambda request: request.time)
        arrivals = [request.time for request in log]
        throttled = sum(request.status == 429 for request in log)
        # A 429 right after another day's request: drawn at a handover between runs.
        handover = sum(
            b.status == 429 and a.query.get("updated_at[to]") != b.query.get("updated_at[to]")
            for a, b in itertools.pairwise(log)
        )
        # How soon after the request the limiter last admitted each 429 arrived (as stamped).
        admitted_at, early = None, []
        for request in log:
            if request.status == 429 and admitted_at is not None:
                early.append(request.time - admitted_at)
            elif request.status == 200:
                admitted_at = request.time
    failed = [run for run in runs if run["status"] != "SUCCESS"]
    first = min(run["startTime"] for run in runs)
    wall = max(run["endTime"] for run in runs) - first
    floor = requests / RATE
    durations = [run["endTime"] - run["startTime"] for run in runs]
    fetches = [
        step["endTime"] - step["startTime"]
        for run in runs
        for step in run["stepStats"]
        if step["stepKey"] == "raw_chats"
    ]
    print(
        f"days                    {len(runs)} runs, {len(failed)} failed, {args.chats:,} chats/day"
        f", answers after {args.latency:g} s"
    )
    print(f"emulator's priority     {'raised' if prioritized else 'as the deployment'}")
    print(f"requests                {requests} ({requests / len(runs):.0f} per day)")
    print(f"daemon's delay          {first - launched:.1f} s from launch to the first run")
    print(f"wall                    {wall:.1f} s, first run start to last run end")
    print(f"API floor               {floor:.1f} s at {RATE:g} requests/s")
    print(f"ratio                   {wall / floor:.2f} (target 1.25)")
    run, fetch = statistics.mean(durations), statistics.mean(fetches)
    print(f"per run                 {run:.1f} s mean, its fetch step {fetch:.1f} s")
    print(f"run overhead            {run - fetch:.1f} s a run beyond its fetch")
    steps: dict[str, list[float]] = {}
    for step in (step for run in runs for step in run["stepStats"]):
        steps.setdefault(step["stepKey"], []).append(step["endTime"] - step["startTime"])
    for key, times in sorted(steps.items()):
        print(f"  step {key:<27} {statistics.mean(times):.1f} s mean")
    idle = sum(max(0.0, b - a - 1 / RATE) for a, b in itertools.pairwise(arrivals))
    print(f"API idle                {idle:.1f} s beyond the spacing, first request to last")
    # Where the idle time fell: by how many days' fetch steps were running at its start.
    # Step times are wall-clock; the emulator stamps arrivals on the monotonic clock.
    offset = time.time() - time.monotonic()
    spans = [
        (step["startTime"] - offset, step["endTime"] - offset)
        for run in runs
        for step in run["stepStats"]
        if step["stepKey"] == "raw_chats"
    ]
    by_fetching: dict[int, float] = {}
    for a, b in itertools.pairwise(arrivals):
        fetching = sum(start <= a < end for start, end in spans)
        by_fetching[fetching] = by_fetching.get(fetching, 0.0) + max(0.0, b - a - 1 / RATE)
    # The time spent with so many days fetching, first request to last, in 10 ms steps.
    spent: dict[int, float] = {}
    moment = arrivals[0]
    while moment < arrivals[-1]:
        fetching = sum(start <= moment < end for start, end in spans)
        spent[fetching] = spent.get(fetching, 0.0) + 0.01
        moment += 0.01
    for fetching, seconds in sorted(by_fetching.items()):
        print(
            f"  with {fetching} days fetching       {seconds:.1f} s idle"
            f" of {spent.get(fetching, 0.0):.1f} s"
        )
    # Between two requests of one day, or at a turn passing from one day's run to another's.
    gaps: dict[bool, list[float]] = {True: [], False: []}
    for a, b in itertools.pairwise(log):
        day = a.query.get("updated_at[from]", "")[:10] == b.query.get("updated_at[from]", "")[:10]
        gaps[day].append(b.time - a.time)
    for same, label in ((True, "within a day"), (False, "between days")):
        if gaps[same]:
            spacing = statistics.median(gaps[same]) * 1000
            beyond = sum(max(0.0, gap - 1 / RATE) for gap in gaps[same])
            print(
                f"  {label:<23} {len(gaps[same])} gaps, median {spacing:.0f} ms,"
                f" {beyond:.1f} s beyond the spacing"
            )
    print(f"answers of 429          {throttled}, {handover} of them at a handover between days")
    if early:
        gaps = ", ".join(f"{gap * 1000:.0f}" for gap in sorted(early))
        print(f"  after the last admitted request: {gaps} ms (the limit: {1000 / RATE:.0f} ms)")


if __name__ == "__main__":
    main()
