"""dagster-daemon whose backfill daemon looks for work every few seconds instead of every 30.

``python chat_assets_tests/brisk_daemon.py SECONDS run -w workspace.yaml``: the rest of the
arguments go to dagster-daemon as they are. Dagster reads the backfill loop's interval from a
module constant (no instance setting holds it), so a backfill waits up to 30 seconds to be picked
up and as long again to be marked done. The tests' topology runs this instead, so that their
backfills wait for the runs, not the clock; everything else is the production daemon.
"""

from __future__ import annotations

import sys

from dagster._daemon import controller
from dagster._daemon.cli import main

if __name__ == "__main__":
    # Fail loudly if a Dagster upgrade moves the constant, rather than silently wait 30 s again.
    assert isinstance(controller.DEFAULT_DAEMON_INTERVAL_SECONDS, int | float)
    controller.DEFAULT_DAEMON_INTERVAL_SECONDS = float(sys.argv.pop(1))
    sys.exit(main())
