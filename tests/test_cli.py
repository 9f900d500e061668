"""The `relay` command, run as an operator would."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from relay.cli import cli
from relay.clock import SystemClock
from relay.devserver import PrivateRequestHandler
from relay.shops import ensure_shop
from tests.conftest import FIXTURES, ROOT, SHOP, connect_pinterest, work
from tests.fake_pinterest import REQUEST_SCHEMA
from webapp import create_app

ORDER_FILE = str(FIXTURES / "orders_create.json")


@pytest.fixture
def env(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """A clean environment: only what each test sets."""
    for name in ("REDIS_URL", "DATABASE_URL", "RELAY_SECRET_KEY", "SHOPIFY_API_SECRET"):
        monkeypatch.delenv(name, raising=False)
    return {
        "RELAY_INSTANCE_PATH": str(tmp_path / "instance"),
        "RELAY_PLUGINS_FILE": str(ROOT / "plugins.toml"),
    }


def run(env: dict[str, str], *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def sha(text: str) -> list[str]:
    return [hashlib.sha256(text.encode()).hexdigest()]


def test_preview_prints_pinterest_body_for_an_order(env):
    result = run(
        env,
        "preview",
        ORDER_FILE,
        "--topic",
        "orders/create",
        "--destination",
        "pinterest",
    )

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    REQUEST_SCHEMA.validate(body)
    (event,) = body["data"]
    assert (event["event_name"], event["event_id"], event["action_source"]) == (
        "checkout",
        "6123456789012",
        "web",
    )
    custom = event["custom_data"]
    assert (custom["currency"], custom["value"], custom["num_items"]) == (
        "CAD",
        "135.00",
        3,
    )
    user = event["user_data"]
    assert user["click_id"] == (
        "dj0yJnU9RkFLRV9FUElLX0ZPUl9URVNUUyZwPTEmbj1leGFtcGxlJnQ9QUFBQUFBQUFBQUFB"
    )
    assert user["client_ip_address"] == "203.0.113.42"
    assert user["client_user_agent"].startswith("Mozilla/5.0 (iPhone;")
    assert {
        key: user[key]
        for key in ("em", "ph", "fn", "ln", "ct", "st", "country", "external_id")
    } == {
        "em": sha("jane@example.com"),
        "ph": sha("15555550100"),
        "fn": sha("jane"),
        "ln": sha("doe"),
        "ct": sha("toronto"),
        "st": sha("on"),
        "country": sha("ca"),
        "external_id": sha("7712345678901"),
    }


def test_preview_without_destination_keys_bodies_by_name(env):
    result = run(env, "preview", ORDER_FILE, "--topic", "orders/create")

    assert list(json.loads(result.stdout)) == ["pinterest"]


def test_preview_of_a_topic_that_makes_no_event_says_so(env):
    result = run(
        env, "preview", str(FIXTURES / "carts_create.json"), "--topic", "carts/create"
    )

    assert result.exit_code == 1
    assert "carts/create makes no event from its payload alone" in result.output


def test_destinations_set_validates_each_field_and_hides_the_token(env, tmp_path):
    bad = run(
        env,
        "destinations",
        "set",
        "pinterest",
        "--shop",
        SHOP,
        "--set",
        "ad_account_id=acct-1",
    )
    assert bad.exit_code == 1
    assert "ad_account_id: 'acct-1' is not valid (digits only" in bad.output

    unknown = run(
        env, "destinations", "set", "pinterest", "--shop", SHOP, "--set", "colour=red"
    )
    assert "pinterest has no setting colour" in unknown.output

    good = run(
        env,
        "destinations",
        "set",
        "pinterest",
        "--shop",
        SHOP,
        "--test-mode",
        "--set",
        "ad_account_id=549755885175",
        "--set",
        "conversion_token=pina_secret_value",
    )
    assert good.exit_code == 0, good.output

    listed = run(env, "destinations", "list", "--shop", SHOP)
    assert listed.output.splitlines() == [
        f"pinterest for {SHOP}: enabled, test mode, conflict policy send",
        "  ad_account_id: '549755885175'",
        "  conversion_token: set",
        "  tag_id: not set",
        "  events: 'checkout,add_to_cart,page_visit,view_category,search,"
        "initiate_checkout,add_payment_info'",
        "  value: 'subtotal'",
        "  currency: 'buyer'",
        "  api_base: 'https://api.pinterest.com'",
    ]
    stored = (tmp_path / "instance" / "relay.db").read_bytes()
    assert b"pina_secret_value" not in stored


def test_secret_prompted_when_given_as_dash(env):
    result = CliRunner().invoke(
        cli,
        [
            "destinations",
            "set",
            "pinterest",
            "--shop",
            SHOP,
            "--set",
            "ad_account_id=1",
            "--set",
            "conversion_token=-",
        ],
        env=env,
        input="pina_typed\n",
    )

    assert result.exit_code == 0, result.output
    assert "pina_typed" not in result.output


def test_replay_now_queues_a_fixture_that_pinterest_accepts_today(
    env, runtime, pinterest, redis_url, database_url
):
    connect_pinterest(runtime, pinterest, SHOP)
    # --now moves the order to the real present, for Relay and Pinterest alike.
    runtime.clock = pinterest.clock = SystemClock()
    env.update(
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        RELAY_QUEUE="relay-test",
        RELAY_SECRET_KEY=runtime.config.secret_keys[0],
    )

    result = run(
        env, "replay", ORDER_FILE, "--topic", "orders/create", "--shop", SHOP, "--now"
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith(
        f"queued orders/create for {SHOP} as webhook replay-"
    )
    work(runtime)

    (event,) = pinterest.events
    assert event["event_id"] == "6123456789012"
    assert abs(event["event_time"] - time.time()) < 60

    log = run(env, "deliveries", "--shop", SHOP, "--order", "6123456789012")
    assert " pinterest purchase 6123456789012 sent http=200 attempts=1 " in log.output
    by_customer = run(env, "deliveries", "--customer", "7712345678901")
    assert by_customer.output == log.output
    other = run(env, "deliveries", "--order", "1")
    assert other.output == "no deliveries\n"

    # Filters combine: a time, a status, dead letters only.
    later = run(env, "deliveries", "--since", "2099-01-01T00:00:00Z")
    assert later.output == "no deliveries since 2099-01-01 00:00 UTC\n"
    assert run(env, "deliveries", "--since", "2000-01-01").output == log.output
    held = run(env, "deliveries", "--status", "held")
    assert held.output == "no held deliveries\n"
    dead = run(env, "deliveries", "--failed", "--summary", "--since", "2000-01-01")
    assert dead.output == "no failed deliveries since 2000-01-01 00:00 UTC\n"
    counted = run(env, "deliveries", "--summary", "--since", "2000-01-01")
    assert counted.output == "pinterest sent: 1\n"
    mixed = run(env, "deliveries", "--failed", "--status", "sent")
    assert mixed.exit_code == 2
    assert "--failed shows failed deliveries; drop --status" in mixed.output


def test_replay_refuses_a_shop_that_is_not_a_myshopify_domain(env):
    result = run(
        env, "replay", ORDER_FILE, "--topic", "orders/create", "--shop", "x.com"
    )

    assert result.exit_code == 2
    assert "expected a myshopify.com domain" in result.output


def test_shops_reinstall_undoes_an_uninstall(
    env, client, runtime, pinterest, database_url
):
    connect_pinterest(runtime, pinterest, SHOP)
    from tests.conftest import post_fixture

    post_fixture(client, "app_uninstalled.json")
    work(runtime)
    env.update(
        DATABASE_URL=database_url, RELAY_SECRET_KEY=runtime.config.secret_keys[0]
    )
    assert run(env, "shops", "list").output.startswith(
        f"{SHOP}: uninstalled 2026-07-14"
    )

    result = run(env, "shops", "reinstall", SHOP)

    assert result.output == f"{SHOP}: installed again; new events will be sent\n"
    post_fixture(client, "orders_create.json")
    work(runtime)
    assert [event["event_id"] for event in pinterest.events] == ["6123456789012"]


def test_one_off_commands_print_no_routine_log_lines(env):
    # A real process: pytest's own log capture would hide the lines otherwise.
    result = subprocess.run(
        [sys.executable, "-m", "relay.cli", "destinations", "list", "--shop", SHOP],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=True,
    )

    assert result.stdout == f"{SHOP}: no destinations set up\n"
    assert result.stderr == ""


def test_deliveries_refuses_an_unknown_status(env):
    result = run(env, "deliveries", "--status", "bogus")

    assert result.exit_code == 2
    assert "'bogus' is not one of" in result.output


def test_shops_list_tells_installed_from_merely_seen(
    env, client, runtime, shopify, database_url
):
    from tests.conftest import SECRET
    from tests.fake_shopify import session_token

    client.get(f"/?shop={SHOP}&id_token={session_token(SHOP, SECRET)}")
    work(runtime)
    # A shop Relay knows only from its webhooks or the CLI.
    other = "other-shop.myshopify.com"
    with runtime.db.session() as session:
        ensure_shop(session, other, runtime.clock.now())
    env.update(
        DATABASE_URL=database_url, RELAY_SECRET_KEY=runtime.config.secret_keys[0]
    )

    assert run(env, "shops", "list").output == (
        f"{SHOP}: installed, access token stored, pixel on; "
        "consent policy standard\n"
        f"{other}: known from webhooks or the CLI; the merchant has not opened "
        "Relay yet; "
        "consent policy standard\n"
    )


def test_development_access_log_has_no_query_strings_or_client_ips(runtime, caplog):
    server = make_server(
        "127.0.0.1",
        0,
        create_app(runtime=runtime),
        request_handler=PrivateRequestHandler,
    )
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    with caplog.at_level(logging.INFO, logger="relay.devserver"):
        urllib.request.urlopen(
            f"http://127.0.0.1:{server.server_port}/healthz?id_token=secret.jwt"
        ).read()
        thread.join()
    server.server_close()

    assert caplog.messages == ["GET /healthz 200"]
