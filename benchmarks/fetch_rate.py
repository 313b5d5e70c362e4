"""How close the UJET client gets to a rate-limited API's ceiling, and how it shares a budget.

The emulator runs in a process of its own (as UJET would), so its clock and the client's do not
share an interpreter. Three runs:

- a strict limiter with a burst of one at 10 requests/s, the client configured at 10/s;
- the same at 5 requests/s;
- the tenant's 10 requests/s with 20% taken by another integration, the client at 10/s;
- the strict 10/s limiter behind a server that takes 0.4 s to answer each page, as a real API's
  database and serialisation do (`slow_strict_10`), for a day of 3,000 and one of 12,000 chats.

Each prints the request rate the server saw, as a share of the ceiling, the 429 answers, and the
pace the client ended at. Run: .venv/bin/python -m benchmarks.fetch_rate
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from datetime import date

from chat_assets.ujet.client import UjetClient
from chat_assets_tests.windows import day_window

DAY = date(2026, 1, 15)


def run(personality: str, ceiling: float, rate: float, chats_per_day: int) -> None:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chat_assets_demo.emulator",
            "--port",
            "0",
            "--personality",
            personality,
            "--chats-per-day",
            str(chats_per_day),
            "--no-seasonal",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    base_url = server.stdout.readline().split(" at ", 1)[1].strip()
    start, end = day_window(DAY, "UTC")
    try:
        with UjetClient(base_url, "demo-key", "demo-secret", requests_per_second=rate) as client:
            began = time.perf_counter()
            result = client.fetch_window(start, end)
            elapsed = time.perf_counter() - began
    finally:
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=10)
    served = served_summary(out)
    achieved = served["rate"]
    print(f"== {personality}: ceiling {ceiling:g}/s, client configured at {rate:g}/s")
    print(f"chats fetched           {len(result.records)} (API total {result.total})")
    print(f"lanes (most in flight)  {result.lanes}")
    print(f"requests                {served['requests']:.0f} ({result.pages} pages answered)")
    print(f"wall time               {elapsed:.2f} s")
    print(f"request rate (server)   {achieved:.2f} req/s = {achieved / ceiling:.1%} of the ceiling")
    print(f"429 answers             {served['answered_429']:.0f}")
    print(f"pace at the end         {result.pace:.2f} req/s")


# The emulator's last line: `emulator: 87 requests for chats, 9 answered 429; 0.955 a second ...`.
_SUMMARY = re.compile(
    r"emulator: (?P<requests>\d+) requests? for chats, (?P<answered_429>\d+) answered 429;"
    r" (?P<rate>[0-9.]+) a second"
)


def served_summary(out: str) -> dict[str, float]:
    """What the emulator says it served, from its output: requests, answered_429, rate."""
    found = _SUMMARY.search(out.strip().splitlines()[-1])
    if found is None:
        raise ValueError("the emulator's output does not end with its summary line")
    return {name: float(value) for name, value in found.groupdict().items()}


def main() -> None:
    # 3,000 chats in the window: a day's 2,500 new chats plus second versions of earlier days.
    run("strict_10", 10.0, 10.0, 2_500)
    run("strict_5", 5.0, 5.0, 2_500)
    # Longer, so the bucket's one-second burst is spent and the other client's share shows.
    run("shared_budget", 10.0, 10.0, 12_000)
    run("slow_strict_10", 10.0, 10.0, 2_500)
    run("slow_strict_10", 10.0, 10.0, 12_000)


if __name__ == "__main__":
    main()
