"""StreamFollower: entries handled in order, cursor persisted, and "not yet" holds the cursor."""

from __future__ import annotations

import logging
import threading

import pytest
import redis

from actors.common import StreamFollower

pytestmark = pytest.mark.unit

STREAM = "test:follower"
CURSOR = "test:follower:cursor"


def test_not_ready_entry_is_offered_again_and_the_cursor_waits(redis_client: redis.Redis) -> None:
    ids = [redis_client.xadd(STREAM, {"n": str(n)}) for n in (1, 2, 3)]
    handled: list[str] = []
    offers_of_second = 0
    offered_twice = threading.Event()
    ready = threading.Event()
    all_done = threading.Event()

    def handle(entry_id: str, fields: dict[str, str]) -> bool:
        nonlocal offers_of_second
        if fields["n"] == "2" and not ready.is_set():
            offers_of_second += 1
            if offers_of_second >= 2:
                offered_twice.set()
            return False
        handled.append(fields["n"])
        if len(handled) == 3:
            all_done.set()
        return True

    follower = StreamFollower(redis_client, STREAM, CURSOR, handle, logging.getLogger("test"), "test-follower")
    try:
        assert offered_twice.wait(10), "the entry that was not ready was not offered again"
        assert handled == ["1"]
        assert redis_client.get(CURSOR) == ids[0]  # not past the entry that was not ready
        assert follower.retries >= 1
        assert follower.stalled_for_s() < 5  # waiting is not stalling
        ready.set()
        assert all_done.wait(10)
        assert handled == ["1", "2", "3"]
        assert redis_client.get(CURSOR) == ids[2]
    finally:
        follower.stop()
        assert follower.join()


def test_restarted_follower_resumes_after_the_last_handled_entry(redis_client: redis.Redis) -> None:
    ids = [redis_client.xadd(STREAM, {"n": str(n)}) for n in (1, 2, 3)]
    redis_client.set(CURSOR, ids[1])  # a previous incarnation finished entries 1 and 2
    seen: list[str] = []
    done = threading.Event()

    def handle(entry_id: str, fields: dict[str, str]) -> None:
        seen.append(fields["n"])
        done.set()

    follower = StreamFollower(redis_client, STREAM, CURSOR, handle, logging.getLogger("test"), "test-follower")
    try:
        assert done.wait(10)
        assert seen == ["3"]
        assert follower.cursor == ids[2]
    finally:
        follower.stop()
        assert follower.join()
