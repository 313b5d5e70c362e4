import gc
import threading

import pytest

from chat_assets.collection import YOUNG, collected_rarely


def _young_collections(objects: int) -> int:
    """Collections of the youngest generation while `objects` acyclic dicts are made and kept."""
    counted = {"young": 0}

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            counted["young"] += 1

    kept = []
    gc.collect()
    gc.callbacks.append(count)
    try:
        for n in range(objects):
            kept.append({"n": n})
    finally:
        gc.callbacks.remove(count)
    return counted["young"]


def test_a_window_allocates_without_collections_and_the_thresholds_come_back():
    before = gc.get_threshold()
    assert _young_collections(YOUNG // 2) > 10  # the default walks them over and over
    with collected_rarely():
        assert gc.get_threshold()[0] == YOUNG
        assert _young_collections(YOUNG // 2) == 0
    assert gc.get_threshold() == before


def test_thresholds_come_back_after_an_error_and_a_higher_one_is_kept():
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), collected_rarely():
        raise RuntimeError("a failed fetch")
    assert gc.get_threshold() == before
    gc.set_threshold(2 * YOUNG, *before[1:])
    try:
        with collected_rarely():
            assert gc.get_threshold()[0] == 2 * YOUNG
    finally:
        gc.set_threshold(*before)


def test_blocks_in_several_threads_leave_the_thresholds_as_they_found_them():
    """A thread's block that ends while another thread's is open neither lowers the other's
    threshold nor leaves the raised one behind when the other ends."""
    before = gc.get_threshold()
    opened, may_end = threading.Event(), threading.Event()

    def other() -> None:
        with collected_rarely():
            opened.set()
            may_end.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    assert opened.wait(10)
    with collected_rarely():
        may_end.set()
        thread.join(10)  # the other block ended first
        assert gc.get_threshold()[0] == YOUNG
    assert gc.get_threshold() == before
