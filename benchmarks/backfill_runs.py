"""The runs of backfills launched through GraphQL, watched until they end, and the emulator
served before the deployment: what benchmarks/backfill.py and benchmarks/tenants.py share."""

from __future__ import annotations

import os
from typing import Any

from chat_assets_tests.topology import Deployment, wait_for

# One query a poll for all of a backfill's runs, so that watching costs the webserver little.
RUNS = """
query Runs($backfill: String!) {
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $backfill}]}) {
    ... on Runs {
      results { runId status startTime endTime stepStats { stepKey startTime endTime } }
    }
  }
}
"""
ENDED = ("SUCCESS", "FAILURE", "CANCELED")


def serve_first() -> bool:
    """Raise this process's threads, the emulators' among them (and those they start), above
    the deployment's processes; False where this user may not."""
    try:
        for thread in os.listdir("/proc/self/task"):
            os.setpriority(os.PRIO_PROCESS, int(thread), -10)
    except OSError:
        return False
    return True


def ended_runs(deployment: Deployment, backfill: str, count: int) -> list[dict[str, Any]] | None:
    """The backfill's runs once all `count` of them have ended, else None."""
    runs = deployment.graphql(RUNS, backfill=backfill)["runsOrError"]["results"]
    if len(runs) < count or any(run["status"] not in ENDED for run in runs):
        return None
    return runs


def wait_for_backfills(
    deployment: Deployment, backfills: list[str], count: int, timeout: float = 3600
) -> list[list[dict[str, Any]]]:
    """The runs of each backfill (`count` each), once every one of them has ended."""

    def finished() -> list[list[dict[str, Any]]] | None:
        runs = [ended_runs(deployment, backfill, count) for backfill in backfills]
        return None if any(r is None for r in runs) else runs  # type: ignore[return-value]

    return wait_for(finished, timeout, "the backfills to finish", every=5)
