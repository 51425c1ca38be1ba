"""The Redis broker transport of the Celery workers: kombu's, with one fix (`CELERY_BROKER_TRANSPORT` points here
when the broker is Redis).

kombu 5.7.0 and Celery 5.7.0: when a worker's broker connection is lost (Redis restarted) while the worker holds an
unacknowledged message (a task with a countdown or ETA waiting in the worker, such as `sync_order`, or a task in
flight with `acks_late`), Celery's `on_connection_error_after_connected` first `collect()`s the connection, which
drops its transport (`transport.client = None`) without closing the consumer's channel (its `close()` raises a
connection error from the BRPOP in flight), then closes the connection. Closing the channel restores its
unacknowledged messages, which needs a Redis client: kombu builds its connection parameters from
`transport.client`, now None, and raises `AttributeError: 'NoneType' object has no attribute 'hostname'`. That is
not a connection error, so it escapes Celery's error handling and the worker stops ("Unrecoverable error").
Found by the fault campaign (RELIABILITY.md); `tests/reliability/test_worker_redis_restart.py` restarts a real Redis
under a worker holding such a message.

The fix: a channel whose transport is gone raises `redis.exceptions.ConnectionError` instead, which kombu and
Celery handle as the connection loss it is (the worker reconnects). The messages it could not restore stay in
Redis's unacked set, and a worker restores them when their visibility timeout
(`CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]`) has passed, as for a worker that was killed. Remove this
module when kombu handles it (check with the test above)."""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["Channel", "Transport"]


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        transport = self.connection
        if transport is None or transport.client is None:
            raise RedisConnectionError(
                "the broker connection of this channel was closed; its unacknowledged messages are restored "
                "after the visibility timeout"
            )
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        return params


class Transport(kombu_redis.Transport):
    Channel = Channel
