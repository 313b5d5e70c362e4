import gc

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
