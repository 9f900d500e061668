"""Webhooks through intake, a real RQ worker and a local fake Pinterest.

    .venv/bin/python bench/pipeline.py [--orders 300]

Signs N distinct orders, posts them to the Flask app (in process), then runs
one forking RQ worker in burst mode until every delivery reached the fake
Pinterest (which validates each body against the schema). Reports intake
requests per second, and end-to-end orders per second through the worker.
Uses the embedded Redis and SQLite, as a fresh machine would.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402
from pytest_httpserver import HTTPServer  # noqa: E402

from relay.clock import FixedClock  # noqa: E402
from relay.config import Config  # noqa: E402
from relay.database import Database  # noqa: E402
from relay.plugins import Plugins  # noqa: E402
from relay.redisconn import EmbeddedRedis, connect  # noqa: E402
from relay.runtime import Runtime  # noqa: E402
from relay.shopify.webhooks import sign  # noqa: E402
from relay.shops import ensure_shop, save_destination  # noqa: E402
from relay.worker import run_worker  # noqa: E402
from tests.fake_pinterest import FakePinterest  # noqa: E402
from webapp import create_app  # noqa: E402

SECRET = "bench_secret"
SHOP = "bench.myshopify.com"
FIXTURE = ROOT / "tests" / "fixtures" / "shopify" / "orders_create.json"
NOW = datetime(2026, 7, 14, 14, 30, tzinfo=timezone.utc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=300)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    redis_server = EmbeddedRedis(folder / "redis")
    server = HTTPServer()
    server.start()
    try:
        run(args.orders, folder, redis_server.url, server)
    finally:
        server.stop()
        redis_server.stop()


def run(orders: int, folder: Path, redis_url: str, server: HTTPServer) -> None:
    clock = FixedClock(NOW)
    config = Config(
        instance_path=folder,
        shopify_api_secret=SECRET,
        database_url=f"sqlite:///{folder / 'relay.db'}",
        secret_keys=(Fernet.generate_key().decode(),),
        plugins_file=ROOT / "plugins.toml",
    )
    db = Database(config.sqlalchemy_url)
    db.upgrade()
    runtime = Runtime(
        config, connect(redis_url), db, Plugins.load(config.plugins_file), clock
    )
    pinterest = FakePinterest(server, clock)
    with db.session() as session:
        save_destination(
            session,
            runtime.keyring,
            runtime.plugins,
            ensure_shop(session, SHOP, NOW),
            "pinterest",
            {
                "ad_account_id": pinterest.ad_account_id,
                "conversion_token": pinterest.token,
                "api_base": pinterest.api_base,
            },
            NOW,
        )

    client = create_app(runtime=runtime).test_client()
    template = json.loads(FIXTURE.read_bytes())
    requests = []
    for number in range(orders):
        body = json.dumps({**template, "id": 7_000_000_000_000 + number}).encode()
        requests.append(
            (
                body,
                {
                    "X-Shopify-Topic": "orders/create",
                    "X-Shopify-Shop-Domain": SHOP,
                    "X-Shopify-Webhook-Id": f"bench-{number}",
                    "X-Shopify-Hmac-Sha256": sign(body, SECRET),
                },
            )
        )

    started = time.perf_counter()
    for body, headers in requests:
        assert client.post("/webhooks", data=body, headers=headers).status_code == 200
    intake_seconds = time.perf_counter() - started

    started = time.perf_counter()
    run_worker(runtime, burst=True)
    pipeline_seconds = time.perf_counter() - started

    assert len(pinterest.events) == orders, len(pinterest.events)
    assert pinterest.schema_errors == []
    print(
        f"intake (Flask test client, embedded Redis): {orders / intake_seconds:,.0f} "
        f"webhooks/s"
    )
    print(
        f"worker, 1 forking RQ worker, one request per event: "
        f"{orders / pipeline_seconds:,.1f} orders/s end to end "
        f"({2 * orders} jobs, {1000 * pipeline_seconds / (2 * orders):.1f} ms per job)"
    )


if __name__ == "__main__":
    main()
