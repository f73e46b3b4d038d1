"""Throwaway servers the tests start themselves on loopback (Redis, PostgreSQL).

A missing server binary skips a test on a developer's machine and fails it
in CI (``CI`` set), where ``.ci/run`` must have installed it.
"""

from __future__ import annotations

from tests.pg_server import postgres_url
from tests.test_redis_limits import RedisServer

__all__ = ["RedisServer", "postgres_url"]
