"""The tests' Redis database (HANDLED_TEST_REDIS): a client, and emptying it between tests."""

from __future__ import annotations

import redis

from tests.support.environment import TEST_REDIS


def open_test_redis() -> redis.Redis:
    return redis.Redis.from_url(TEST_REDIS)


def flush_test_redis() -> None:
    client = open_test_redis()
    client.flushdb()
    client.close()
