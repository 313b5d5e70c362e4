"""How close the UJET client gets to a rate-limited API's ceiling.

Fetches a ~2,000-chat day window from the emulator limited to 5 requests/s, with the client
paced by UJET_REQUESTS_PER_SECOND (default here 5), and prints the achieved request rate as a
share of the ceiling and the 429 answers it drew. Run: .venv/bin/python benchmarks/fetch_rate.py
"""

from __future__ import annotations

import os
import time
from datetime import date

from chat_assets.partitions import day_window
from chat_assets.source.client import UjetClient
from chat_assets.source.emulator import UjetEmulator

CEILING = 5.0
CHATS_PER_DAY = 1_700  # plus about 20% second versions of the day before: ~2,000 in the window


def main() -> None:
    rate = float(os.environ.get("UJET_REQUESTS_PER_SECOND", "5"))
    start, end = day_window(date(2026, 1, 15), "UTC")
    with UjetEmulator(
        company_key="bench",
        company_secret="bench",
        chats_per_day=CHATS_PER_DAY,
        requests_per_second=CEILING,
    ) as emulator:
        with UjetClient(emulator.base_url, "bench", "bench", requests_per_second=rate) as client:
            began = time.perf_counter()
            result = client.fetch_window(start, end)
            elapsed = time.perf_counter() - began
        served = [r for r in emulator.requests if r.path.endswith("/chats")]
    throttled = sum(r.status == 429 for r in served)
    # n requests paced 1/rate apart span n-1 intervals; the rate over the fetch counts those.
    achieved = (len(served) - 1) / (served[-1].time - served[0].time)
    print(f"chats fetched           {len(result.records)} (API total {result.total})")
    print(f"pages / requests        {result.pages} / {len(served)}")
    print(f"wall time               {elapsed:.2f} s")
    print(f"request rate            {achieved:.2f} req/s of a {CEILING:.0f} req/s ceiling")
    print(f"share of the ceiling    {achieved / CEILING:.1%}")
    print(f"429 answers             {throttled}")


if __name__ == "__main__":
    main()
