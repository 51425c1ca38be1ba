"""A Celery app with the project's configuration (`make_celery_app`) pointed at a private broker, and one task that
holds the worker for a while: `tests/reliability/test_worker_redis_restart.py` runs a real worker on it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from galfriday_site.celery import app as project_app
from galfriday_site.celery import make_celery_app

app = make_celery_app(
    "restart-test",
    # The worker's broker (the test publishes through an explicit connection to the same URL).
    broker_url=os.environ.get("RESTART_TEST_BROKER", "redis://127.0.0.1:1/0"),
    result_backend=None,
    task_ignore_result=True,
)
# A new Celery app makes itself the process's current app, and pytest imports this module when it collects the
# suite: every later `current_app` (the execution hand-overs, the post-ack sync) would publish to this test's dead
# broker. The project's app stays current; the worker started on this module uses `app` by name.
project_app.set_current()


@app.task(name="restart_test.hold", acks_late=True)
def hold(seconds: float, marker: str, then: int = 0) -> None:
    """Write `marker`.started, sleep, enqueue `then` more (as a decision enqueues its order), write `marker`.done
    (the test watches both)."""
    Path(marker + ".started").touch()
    time.sleep(seconds)
    for n in range(then):
        hold.apply_async(args=[0.1, f"{marker}-{n}"], queue="default")
    with Path(marker + ".done").open("a") as out:
        out.write(f"{os.getpid()}\n")
