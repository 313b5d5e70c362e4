"""Request turns in the warehouse: runs in separate processes share one UJET account's budget
request by request. Each run has its own pacer (processes share none), so only the turns keep
their requests apart at the server."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime, timedelta

from chat_assets.ujet.client import UjetClient
from chat_assets.ujet.pacer import RequestPacer
from chat_assets.warehouse.request_turns import request_turns
from chat_assets_demo.emulator import UjetEmulator
from chat_assets_tests.topology import wait_for

START = datetime(2026, 3, 8, tzinfo=UTC)


def chats(first: int, count: int, day: datetime) -> list[dict]:
    step = timedelta(days=1) / (count + 1)
    return [
        {"id": first + i, "updated_at": (day + step * i).isoformat().replace("+00:00", "Z")}
        for i in range(1, count + 1)
    ]


def test_two_runs_take_turns_request_by_request(engine, schema) -> None:
    days = [START, START + timedelta(days=1)]
    records = [*chats(0, 600, days[0]), *chats(10_000, 600, days[1])]
    results = {}
    with UjetEmulator(personality="slow_strict_10", records=records) as emu:

        def run(day: datetime) -> None:
            # A pacer of its own, as a run in another process has.
            client = UjetClient(emu.base_url, "demo-key", "demo-secret", pacer=RequestPacer(10))
            with client, request_turns(engine, schema, client.origin) as turns:
                client.share(turns)
                results[day] = client.fetch_window(day, day + timedelta(days=1))

        threads = [threading.Thread(target=run, args=(day,)) for day in days]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        arrivals = sorted(r.time for r in emu.requests)

    assert [len(results[day].records) for day in days] == [600, 600]
    assert all(results[day].throttled == 0 for day in days)
    assert min(b - a for a, b in itertools.pairwise(arrivals)) >= 0.1


def _waiting_for_turns(engine) -> int:
    with engine.connect() as connection:
        return connection.exec_driver_sql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).scalar_one()


def _taker(order: list[str], interval: float):
    """A request's turn as a thread takes it: begun, noted in `order`, ended."""

    def take(turns, name: str) -> None:
        turns.begin(interval)
        order.append(name)
        turns.end()

    return take


def test_an_older_fetch_waiting_for_the_turn_takes_it_before_a_younger_one(engine, schema):
    account = "http://ujet.example:80"
    order: list[str] = []
    take = _taker(order, 0)

    with request_turns(engine, schema, account) as older:
        time.sleep(1.1)  # fetches are told apart by the second they began
        with (
            request_turns(engine, schema, account) as holder,
            request_turns(engine, schema, account) as younger,
        ):
            holder.begin(0)
            # The younger fetch queues for the turn first, the older one after it.
            threads = [
                threading.Thread(target=take, args=(younger, "younger")),
                threading.Thread(target=take, args=(older, "older")),
            ]
            for waiting, thread in enumerate(threads, start=1):
                thread.start()
                wait_for(
                    lambda waiting=waiting: _waiting_for_turns(engine) == waiting,
                    10,
                    f"{waiting} fetches waiting for the turn",
                    every=0.01,
                )
            holder.end()
            for thread in threads:
                thread.join(10)
    assert order == ["older", "younger"]


def test_an_older_fetch_that_queues_while_the_turn_waits_for_its_spacing_goes_first(engine, schema):
    """A turn taken at once still waits out the spacing since the last request; an older
    fetch's request that queues meanwhile (as its lanes do, one after another) is sent first."""
    account = "http://ujet.example:80"
    order: list[str] = []
    take = _taker(order, 1.0)

    with request_turns(engine, schema, account) as older:
        time.sleep(1.1)  # fetches are told apart by the second they began
        with request_turns(engine, schema, account) as younger:
            take(younger, "first")  # a request has just started: the next waits a second
            threads = [
                threading.Thread(target=take, args=(younger, "younger")),
                threading.Thread(target=take, args=(older, "older")),
            ]
            threads[0].start()
            time.sleep(0.3)  # the younger holds the turn, waiting out the spacing
            threads[1].start()
            for thread in threads:
                thread.join(10)
    assert order == ["first", "older", "younger"]
