"""hand_over: a producer thread's items reach the caller in order, at most a few ahead, and
either side's failure ends both, with the producer's resources released before the caller
goes on."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from chat_assets.handoff import Abandoned, hand_over


def test_every_item_arrives_in_order_and_the_result_comes_back():
    got: list[int] = []

    def produce(hand):
        for n in range(50):
            hand(n)
        return "done"

    assert hand_over(produce, got.append, depth=3) == "done"
    assert got == list(range(50))


def test_the_producer_is_at_most_depth_items_ahead():
    produced = 0
    ahead: list[int] = []

    def produce(hand):
        nonlocal produced
        for n in range(40):
            produced += 1
            hand(n)

    def consume(item):
        time.sleep(0.002)  # a slow consumer: the producer fills the queue
        ahead.append(produced - (item + 1))

    hand_over(produce, consume, depth=4)
    # Items waiting in the queue, plus the one the producer is blocked handing; the queue
    # was used to the full.
    assert 4 <= max(ahead) <= 5


def test_a_producer_failure_is_raised_here_after_its_items():
    got: list[int] = []

    def produce(hand):
        hand(1)
        hand(2)
        raise ValueError("the API broke")

    with pytest.raises(ValueError, match="the API broke"):
        hand_over(produce, got.append, depth=8)
    assert got == [1, 2]


def test_a_consumer_failure_stops_the_producer_and_releases_what_it_holds():
    held = threading.Lock()
    stopped_by: list[type[BaseException]] = []

    def produce(hand):
        with held:  # a lock, as a fetch holds the account's
            n = 0
            try:
                while True:  # it would never end by itself
                    hand(n)
                    n += 1
            except BaseException as error:
                stopped_by.append(type(error))
                raise

    def consume(item):
        if item == 5:
            raise RuntimeError("cannot land this page")

    with pytest.raises(RuntimeError, match="cannot land this page"):
        hand_over(produce, consume, depth=2)
    assert stopped_by == [Abandoned]
    assert held.acquire(blocking=False)  # released before hand_over returned


@pytest.fixture
def switch_interval():
    """A switch interval of 4 ms for the test, whatever the process had; the process's own
    comes back after it."""
    own = sys.getswitchinterval()
    sys.setswitchinterval(0.004)
    yield 0.004
    sys.setswitchinterval(own)


def test_the_caller_yields_the_interpreter_quickly_only_while_the_producer_runs(switch_interval):
    """A producer waking for an answer waits at most the switch interval for the caller's
    thread to let go of the interpreter: 1 ms during the hand-over, the process's own after."""
    seen: list[float] = []

    def produce(hand):
        seen.append(sys.getswitchinterval())
        hand(1)
        return "done"

    def consume(item):
        seen.append(sys.getswitchinterval())

    assert hand_over(produce, consume, depth=2) == "done"
    assert seen == [0.001, 0.001]
    assert sys.getswitchinterval() == switch_interval

    def fail(item):
        raise RuntimeError("cannot land this page")

    with pytest.raises(RuntimeError):
        hand_over(produce, fail, depth=2)
    assert sys.getswitchinterval() == switch_interval


def test_overlapping_hand_overs_restore_the_interval_after_the_last(switch_interval):
    first_in, second_done = threading.Event(), threading.Event()
    seen: list[float] = []

    def long_producer(hand):
        first_in.set()
        second_done.wait(timeout=10)
        seen.append(sys.getswitchinterval())  # the other hand-over ended meanwhile
        return "first"

    first = threading.Thread(target=hand_over, args=(long_producer, print), kwargs={"depth": 1})
    first.start()
    assert first_in.wait(timeout=10)
    assert hand_over(lambda hand: "second", print, depth=1) == "second"
    second_done.set()
    first.join(timeout=10)
    assert seen == [0.001]
    assert sys.getswitchinterval() == switch_interval
