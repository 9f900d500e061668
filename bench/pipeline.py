"""Orders end to end: intake, one worker process, a local fake Pinterest.

    .venv/bin/python bench/pipeline.py [--orders 5000] [--baseline-orders 300]

Signs N distinct orders (placed now) and posts them to the app, in process.
Then one `relay worker --burst` process (RQ's forking worker, as the Procfile
runs it) normalizes them in batches and sends their purchases to a fake
Pinterest on loopback, which validates every body against Pinterest's
schema; the clock runs from the worker's start to its exit, once every
purchase has arrived. The same run repeats with RELAY_BATCH_SIZE=1, one
request per event (fewer orders: it is slow). Reports events per second for
both, their ratio, and the worker's peak memory (its own and its largest
work horse's). Uses the embedded Redis and SQLite, as a fresh machine would.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402
from pytest_httpserver import HTTPServer  # noqa: E402

from relay.clock import SystemClock  # noqa: E402
from relay.config import Config  # noqa: E402
from relay.database import Database  # noqa: E402
from relay.plugins import Plugins  # noqa: E402
from relay.preview import move_times  # noqa: E402
from relay.redisconn import EmbeddedRedis, connect  # noqa: E402
from relay.runtime import Runtime  # noqa: E402
from relay.shopify.webhooks import sign  # noqa: E402
from relay.shops import ensure_shop, save_destination  # noqa: E402
from tests.fake_pinterest import FakePinterest  # noqa: E402
from webapp import create_app  # noqa: E402

SECRET = "bench_secret_for_signing_only"
SHOP = "bench.myshopify.com"
FIXTURE = ROOT / "tests" / "fixtures" / "shopify" / "orders_create.json"
MEASURE = Path(__file__).parent / "measure_worker.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--baseline-orders", type=int, default=300)
    args = parser.parse_args()

    batched = run("batched", args.orders, batch_size=0)
    one_each = run("one request per event", args.baseline_orders, batch_size=1)
    for result in (batched, one_each):
        print(
            f"{result['mode']:<24}{result['orders']:>6} orders "
            f"{result['events_per_second']:>9,.0f} events/s "
            f"{result['requests']:>6} requests  worker peak "
            f"{result['worker_peak_mib']:.0f} MiB, largest work horse "
            f"{result['horse_peak_mib']:.0f} MiB"
        )
    ratio = batched["events_per_second"] / one_each["events_per_second"]
    print(f"batching sends {ratio:,.1f} times as many events per second")
    print(json.dumps({"batched": batched, "one_each": one_each, "ratio": ratio}))


def run(mode: str, orders: int, batch_size: int) -> dict[str, object]:
    # The fake Pinterest's server would log each request it answers.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    folder = Path(tempfile.mkdtemp(prefix="relay-bench-pipeline-"))
    redis_server = EmbeddedRedis(folder / "redis")
    fake_server = HTTPServer()
    fake_server.start()
    try:
        result = _run(mode, orders, batch_size, folder, redis_server.url, fake_server)
    finally:
        fake_server.stop()
        redis_server.stop()
    # Kept when the run failed: the worker's log is in it.
    shutil.rmtree(folder, ignore_errors=True)
    return result


def _run(
    mode: str,
    orders: int,
    batch_size: int,
    folder: Path,
    redis_url: str,
    fake_server: HTTPServer,
) -> dict[str, object]:
    secret_key = Fernet.generate_key().decode()
    config = Config(
        instance_path=folder,
        shopify_api_secret=SECRET,
        database_url=f"sqlite:///{folder / 'relay.db'}",
        secret_keys=(secret_key,),
        plugins_file=ROOT / "plugins.toml",
        # A benchmark's output is its figures, not a line per webhook.
        log_level="WARNING",
    )
    db = Database(config.sqlalchemy_url)
    db.upgrade()
    runtime = Runtime(config, connect(redis_url), db, Plugins.load(config.plugins_file))
    pinterest = FakePinterest(fake_server, SystemClock())
    _connect(runtime, pinterest)
    _post_orders(runtime, orders)

    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DATABASE_URL": config.database_url or "",
        "RELAY_SECRET_KEY": secret_key,
        "RELAY_INSTANCE_PATH": str(folder),
        "RELAY_BROWSER_WAIT_SECONDS": "0",
        # A burst worker stops when the queue is empty; a batch waiting in
        # RQ's schedule would be left behind. Batches still fill from what
        # is queued before each flush runs.
        "RELAY_BATCH_WAIT_SECONDS": "0",
        "RELAY_BATCH_SIZE": str(batch_size),
    }
    log_file = folder / "worker.log"
    started = time.perf_counter()
    with log_file.open("wb") as output:
        finished = subprocess.run(
            [sys.executable, str(MEASURE)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=output,
            check=True,
        )
    seconds = time.perf_counter() - started

    received = len(pinterest.events)
    if received != orders or pinterest.schema_errors:
        raise SystemExit(
            f"{mode}: Pinterest has {received} of {orders} events, schema errors "
            f"{pinterest.schema_errors[:3]}; see {log_file}"
        )
    memory = json.loads(finished.stdout.decode().strip().splitlines()[-1])
    return {
        "mode": mode,
        "orders": orders,
        "seconds": round(seconds, 2),
        "events_per_second": orders / seconds,
        "requests": len(pinterest.requests),
        "worker_peak_mib": memory["worker_kib"] / 1024,
        "horse_peak_mib": memory["horse_kib"] / 1024,
    }


def _connect(runtime: Runtime, pinterest: FakePinterest) -> None:
    now = datetime.now(timezone.utc)
    with runtime.db.session() as session:
        save_destination(
            session,
            runtime.keyring,
            runtime.plugins,
            ensure_shop(session, SHOP, now),
            "pinterest",
            {
                "ad_account_id": pinterest.ad_account_id,
                "conversion_token": pinterest.token,
                "api_base": pinterest.api_base,
            },
            now,
        )


def _post_orders(runtime: Runtime, orders: int) -> None:
    client = create_app(runtime=runtime).test_client()
    template = move_times(json.loads(FIXTURE.read_bytes()), datetime.now(timezone.utc))
    for number in range(orders):
        body = json.dumps({**template, "id": 7_000_000_000_000 + number}).encode()
        headers = {
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Shop-Domain": SHOP,
            "X-Shopify-Webhook-Id": f"bench-{number}",
            "X-Shopify-Hmac-Sha256": sign(body, SECRET),
        }
        response = client.post("/webhooks", data=body, headers=headers)
        assert response.status_code == 200, response.data


if __name__ == "__main__":
    main()
