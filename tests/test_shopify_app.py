"""Relay as an embedded Shopify app, against a local fake Shopify.

First load exchanges the session token, tokens are stored encrypted and
refreshed once however many workers want them, the Web Pixel is created
once and updated after, and uninstalling stops everything until a reinstall.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta, timezone

import pytest
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from sqlalchemy import select

from relay.errors import ShopifyRefused, ShopifyUnavailable
from relay.models import Delivery, Shop, ShopToken
from relay.shopify import install, tokens
from tests.conftest import (
    SECRET,
    SHOP,
    connect_pinterest,
    post_fixture,
    work,
)
from tests.fake_shopify import session_token
from webapp import create_app

APP_URL = "https://relay.example"


def open_app(client, token: str):
    """The merchant opens Relay in the admin: a page load with `id_token`."""
    return client.get(
        f"/?shop={SHOP}&host=YWRtaW4&embedded=1&id_token={token}",
        base_url=APP_URL,
    )


def fetch(client, path: str, token: str):
    """App Bridge's authenticated fetch from Relay's pages."""
    return client.get(
        path, base_url=APP_URL, headers={"Authorization": f"Bearer {token}"}
    )


def stored_token(runtime) -> tuple[ShopToken, dict]:
    with runtime.db.session() as session:
        row = session.scalars(select(ShopToken)).one()
        session.expunge(row)
    return row, runtime.keyring.decrypt(row.encrypted_token)


def set_expiry(runtime, seconds_from_now: float) -> None:
    with runtime.db.session() as session:
        row = session.scalars(select(ShopToken)).one()
        row.expires_at = datetime.now(timezone.utc) + timedelta(
            seconds=seconds_from_now
        )


def shop_row(runtime, domain: str = SHOP) -> Shop:
    with runtime.db.session() as session:
        shop = session.scalars(select(Shop).where(Shop.domain == domain)).one()
        session.expunge(shop)
    return shop


# First load and session tokens


def test_first_load_exchanges_the_session_token_and_stores_it_encrypted(
    client, runtime, shopify
):
    response = open_app(client, session_token(SHOP, SECRET))

    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == (
        f"frame-ancestors https://{SHOP} https://admin.shopify.com;"
    )
    assert b"Relay is installed" in response.data
    assert shopify.count("exchange") == 1

    row, secrets = stored_token(runtime)
    state = shopify.shops[SHOP]
    assert secrets == {
        "token": state.access_token,
        "refresh_token": state.refresh_token,
    }
    assert state.access_token not in row.encrypted_token
    assert state.refresh_token not in row.encrypted_token
    assert row.scope == "read_customer_events,read_orders,read_themes,write_pixels"
    assert 3590 < (row.expires_at - datetime.now(timezone.utc)).total_seconds() <= 3600
    shop = shop_row(runtime)
    assert (shop.installed, shop.installed_at) == (True, runtime.clock.now())
    assert runtime.queue.get_job_ids() == ["set-up-example-shop"]


def test_second_load_uses_the_stored_token(client, runtime, shopify):
    open_app(client, session_token(SHOP, SECRET))
    open_app(client, session_token(SHOP, SECRET))

    assert shopify.count("exchange") == 1
    assert shopify.count("refresh") == 0


@pytest.mark.parametrize(
    "token",
    [
        session_token(SHOP, "another_apps_secret"),
        session_token(SHOP, SECRET, expires_in=-60),
        session_token(SHOP, SECRET, audience="another_app_client_id"),
        "not.a.jwt",
    ],
    ids=["forged", "expired", "other app", "garbage"],
)
def test_bad_session_token_gets_401_and_nothing_is_exchanged(
    client, runtime, shopify, token
):
    response = fetch(client, "/api/shop", token)

    assert response.status_code == 401
    # App Bridge retries once with a fresh token when it sees this header.
    assert response.headers["X-Shopify-Retry-Invalid-Session-Request"] == "1"
    assert shopify.requests == []
    with runtime.db.session() as session:
        assert session.scalars(select(Shop)).all() == []


def test_verified_token_for_a_shop_outside_myshopify_gets_401(client, shopify):
    response = fetch(client, "/api/shop", session_token("evil.example.com", SECRET))

    assert (response.status_code, response.data) == (401, b"Unauthorized")
    assert shopify.requests == []


def test_page_load_with_a_bad_session_token_is_sent_for_a_fresh_one(
    client, runtime, shopify
):
    response = open_app(client, session_token(SHOP, "another_apps_secret"))

    assert response.status_code == 302
    assert response.headers["Location"].startswith(
        f"{APP_URL}/auth/patch-id-token?shop={SHOP}"
    )
    assert shopify.requests == []


def test_api_answers_only_for_the_session_s_own_shop(client, runtime, shopify):
    open_app(client, session_token(SHOP, SECRET))
    other = "other-shop.myshopify.com"

    mine = fetch(client, "/api/shop", session_token(SHOP, SECRET))
    theirs = fetch(client, "/api/shop", session_token(other, SECRET))

    assert (mine.status_code, mine.json) == (
        200,
        {"shop": SHOP, "installed": True, "web_pixel": False},
    )
    assert (theirs.status_code, theirs.json) == (
        404,
        {"error": f"{other} has not opened Relay yet"},
    )


# Refresh


def test_token_is_refreshed_ahead_of_expiry_and_saved(client, runtime, shopify):
    open_app(client, session_token(SHOP, SECRET))
    old_token = shopify.shops[SHOP].access_token
    set_expiry(runtime, 30)

    token = tokens.access_token(runtime, SHOP)

    assert shopify.count("refresh") == 1
    assert token == shopify.shops[SHOP].access_token != old_token
    assert stored_token(runtime)[1]["token"] == token


def test_token_far_from_expiry_is_not_refreshed(client, runtime, shopify):
    open_app(client, session_token(SHOP, SECRET))

    assert tokens.access_token(runtime, SHOP) == shopify.shops[SHOP].access_token
    assert shopify.count("refresh") == 0


def test_two_workers_racing_refresh_the_token_once(client, runtime, shopify):
    open_app(client, session_token(SHOP, SECRET))
    set_expiry(runtime, 30)
    start = threading.Barrier(4)
    results: list[str] = []

    def worker() -> None:
        start.wait()
        results.append(tokens.access_token(runtime, SHOP))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Shopify rotates the refresh token: a second refresh with the old one
    # would have been refused and the token lost.
    assert shopify.count("refresh") == 1
    assert results == [shopify.shops[SHOP].access_token] * 4


def test_revoked_refresh_token_is_forgotten_and_the_next_load_exchanges_again(
    client, runtime, shopify
):
    open_app(client, session_token(SHOP, SECRET))
    shopify.shops[SHOP].refresh_token = "revoked"
    set_expiry(runtime, 30)

    with pytest.raises(ShopifyRefused, match="invalid_grant"):
        tokens.access_token(runtime, SHOP)
    with runtime.db.session() as session:
        assert session.scalars(select(ShopToken)).all() == []

    assert open_app(client, session_token(SHOP, SECRET)).status_code == 200
    assert shopify.count("exchange") == 2


# The Web Pixel


def test_pixel_is_created_once_then_updated(client, runtime, shopify):
    open_app(client, session_token(SHOP, SECRET))
    work(runtime)

    state = shopify.shops[SHOP]
    assert state.calls == ["webPixelCreate"]
    assert json.loads(state.pixel_settings) == {
        "relayUrl": f"{APP_URL}/pixel",
        "shopDomain": SHOP,
    }
    assert shop_row(runtime).web_pixel_id == state.pixel_id

    # Opening the app again queues nothing; setting up again changes nothing.
    open_app(client, session_token(SHOP, SECRET))
    assert runtime.queue.get_job_ids() == []
    settings_before = state.pixel_settings
    assert install.set_up_shop(runtime, SHOP) == state.pixel_id

    assert state.calls == ["webPixelCreate", "webPixelUpdate"]
    assert state.pixel_settings == settings_before


def test_pixel_whose_id_was_lost_is_found_and_updated_not_duplicated(
    client, runtime, shopify
):
    open_app(client, session_token(SHOP, SECRET))
    work(runtime)
    pixel_id = shopify.shops[SHOP].pixel_id
    with runtime.db.session() as session:
        session.scalars(select(Shop)).one().web_pixel_id = None

    assert install.set_up_shop(runtime, SHOP) == pixel_id
    assert shopify.shops[SHOP].calls == [
        "webPixelCreate",
        "webPixelCreate",  # refused: TAKEN
        "webPixel",
        "webPixelUpdate",
    ]


def test_worker_loads_an_expiring_token_through_the_refresh(client, runtime, shopify):
    open_app(client, session_token(SHOP, SECRET))
    set_expiry(runtime, 30)
    shopify.expire_access_token(SHOP)

    work(runtime)

    assert shopify.count("refresh") == 1
    assert shopify.shops[SHOP].calls == ["webPixelCreate"]


def test_long_rate_limit_is_handed_back_not_slept_through(client, runtime, shopify):
    open_app(client, session_token(SHOP, SECRET))
    shopify.forced.append((429, {"Retry-After": "30"}, {"errors": "Throttled"}))

    with pytest.raises(ShopifyUnavailable) as raised:
        install.set_up_shop(runtime, SHOP)

    assert (raised.value.code, raised.value.retry_after) == ("rate_limited", 30)
    # One request, no in-process retry: the job is retried by RQ instead.
    assert shopify.count("graphql (forced)") == 1
    assert shopify.shops[SHOP].calls == []


def test_short_rate_limit_is_waited_out_by_the_package(client, runtime, shopify):
    open_app(client, session_token(SHOP, SECRET))
    shopify.forced.append((429, {"Retry-After": "1"}, {"errors": "Throttled"}))

    assert install.set_up_shop(runtime, SHOP) == shopify.shops[SHOP].pixel_id
    assert shopify.shops[SHOP].calls == ["webPixelCreate"]


def test_query_cost_throttling_is_retryable(client, runtime, shopify):
    open_app(client, session_token(SHOP, SECRET))
    throttled = {
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]
    }
    shopify.forced.append((200, {}, throttled))

    with pytest.raises(ShopifyUnavailable) as raised:
        install.set_up_shop(runtime, SHOP)
    assert raised.value.code == "throttled"


# Uninstall and reinstall


def test_uninstall_stops_deliveries_then_reinstall_starts_cleanly(
    client, runtime, shopify, pinterest, process_log
):
    open_app(client, session_token(SHOP, SECRET))
    work(runtime)
    connect_pinterest(runtime, pinterest, SHOP)

    # An order queued just before the uninstall is dropped, not sent.
    post_fixture(client, "orders_create.json")
    post_fixture(client, "app_uninstalled.json")
    shopify.uninstall(SHOP)
    work(runtime)

    assert pinterest.requests == []
    shop = shop_row(runtime)
    assert (shop.installed, shop.uninstalled_at, shop.web_pixel_id) == (
        False,
        runtime.clock.now(),
        None,
    )
    with runtime.db.session() as session:
        assert session.scalars(select(ShopToken)).all() == []
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.status, delivery.reason) == ("skipped", "shop uninstalled")
    assert (
        f"pinterest batch for {SHOP}: 1 deliveries skipped, shop uninstalled"
        in process_log()
    )

    # Orders arriving while uninstalled make nothing.
    post_fixture(client, "orders_paid.json")
    work(runtime)
    assert pinterest.requests == []

    # The merchant installs again and opens the app.
    runtime.clock.advance(timedelta(hours=1))
    assert open_app(client, session_token(SHOP, SECRET)).status_code == 200
    work(runtime)

    shop = shop_row(runtime)
    assert (shop.installed, shop.uninstalled_at, shop.installed_at) == (
        True,
        None,
        runtime.clock.now(),
    )
    assert shop.web_pixel_id == shopify.shops[SHOP].pixel_id is not None
    assert shopify.count("exchange") == 2


def test_token_missing_a_scope_from_scopes_is_logged(runtime, shopify, caplog):
    runtime.config = runtime.config.with_changes(
        scopes="read_orders,write_pixels,read_customer_events,read_themes,read_files"
    )
    client = create_app(runtime=runtime).test_client()

    with caplog.at_level(logging.WARNING, logger="relay.shopify.install"):
        assert open_app(client, session_token(SHOP, SECRET)).status_code == 200

    assert caplog.messages == [
        f"shop {SHOP}: access token lacks scopes read_files; Shopify will refuse "
        "what needs them (run `shopify app deploy`)"
    ]


def test_shopify_unreachable_at_first_load_is_503_not_500(client, runtime, shopify):
    shopify.forced.append((502, {}, {"errors": "Bad Gateway"}))

    response = open_app(client, session_token(SHOP, SECRET))

    assert (response.status_code, response.json) == (
        503,
        {"error": "Shopify could not be reached; try again shortly"},
    )
    assert response.headers["Retry-After"] == "30"
    # Not recorded as installed before Shopify has given a token.
    with runtime.db.session() as session:
        assert session.scalars(select(Shop)).all() == []
        assert session.scalars(select(ShopToken)).all() == []


def test_set_up_refused_by_shopify_is_logged_and_not_retried(
    client, runtime, shopify, process_log
):
    open_app(client, session_token(SHOP, SECRET))
    shopify.uninstall(SHOP)  # the token is revoked before the job runs

    work(runtime)

    assert f"shop {SHOP}: set-up refused, not retried" in process_log()
    assert FailedJobRegistry(queue=runtime.queue).get_job_ids() == []
    assert ScheduledJobRegistry(queue=runtime.queue).get_job_ids() == []
