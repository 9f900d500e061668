"""What a hostile round found in the admin routes, privacy requests and
retention, each kept as a test: no crash, no miss, nothing deleted too much."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from sqlalchemy import select

from relay import keys, privacy, retention
from relay.config import Config
from relay.errors import ConfigError
from relay.models import Shop
from relay.shops import ensure_shop
from tests.conftest import (
    SECRET,
    SHOP,
    connect_pinterest,
    fixture_bytes,
    post_fixture,
    post_signed,
    work,
)
from tests.fake_shopify import API_KEY, session_token
from tests.test_privacy import JANE, everything, mentions

APP = "https://relay.example"
NOTHING_FOUND = {
    "events": 0,
    "deliveries": 0,
    "webhook_bodies": 0,
    "pixel_beacons": 0,
    "privacy_reports": 0,
    "visitor_profiles": 0,
}


def signed_token(**claims: object) -> str:
    """A session token Shopify could have signed, with odd claims."""
    now = int(time.time())
    base = {
        "dest": f"https://{SHOP}",
        "aud": API_KEY,
        "sub": "42",
        "exp": now + 60,
        "nbf": now - 5,
        "iat": now - 5,
    }
    base.update(claims)
    return jwt.encode(base, SECRET, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# Admin routes


@pytest.mark.parametrize("report_id", ["2147483648", "9223372036854775808"])
def test_report_id_beyond_any_row_is_404(client, runtime, report_id):
    response = client.get(
        f"/api/privacy/reports/{report_id}",
        base_url=APP,
        headers=bearer(session_token(SHOP, SECRET)),
    )

    assert (response.status_code, response.json) == (404, {"error": "no such report"})


@pytest.mark.parametrize("shop", ["a%0d%0aX:1", "attacker.example%20*"])
def test_patch_page_refuses_a_shop_that_is_not_a_shop(client, runtime, shop):
    response = client.get(
        f"/auth/patch-id-token?shop={shop}&shopify-reload=%2F", base_url=APP
    )

    assert (response.status_code, response.json) == (
        400,
        {"error": "shop must be a myshopify.com domain"},
    )
    assert "Content-Security-Policy" not in response.headers


@pytest.mark.parametrize(
    "dest",
    [
        None,
        123,
        ["x"],
        "https://[bad",
        f"https://{SHOP}:8443/path",
        f"https://user@{SHOP}",
        "https://a.myshopify.com.myshopify.com",
    ],
)
def test_signed_token_with_a_malformed_dest_gets_401(client, runtime, dest):
    response = client.get(
        "/api/shop", base_url=APP, headers=bearer(signed_token(dest=dest))
    )

    assert response.status_code == 401


def test_page_load_for_a_dest_outside_shopify_records_nothing(client, runtime, shopify):
    response = client.get(
        f"/?id_token={signed_token(dest='https://evil.example')}", base_url=APP
    )

    assert response.status_code == 401
    assert shopify.requests == []
    with runtime.db.session() as session:
        assert session.scalars(select(Shop)).all() == []


# Privacy requests


def test_lone_surrogate_email_does_not_crash_a_redact(runtime):
    payload = json.loads(
        '{"customer": {"id": 1, "email": "j\\ud800@x.com"}, "orders_to_redact": []}'
    )
    runtime.redis.set(keys.inbox(SHOP, "w"), b'{"email": "x\\ud800@x.com"}')

    assert privacy.redact_customer(runtime, SHOP, payload) == NOTHING_FOUND
    assert runtime.redis.exists(keys.inbox(SHOP, "w"))


def test_tens_of_thousands_of_orders_fit_the_database_s_parameter_limit(runtime):
    with runtime.db.session() as session:
        ensure_shop(session, SHOP, runtime.clock.now())
    payload = {"customer": {"id": 1}, "orders_to_redact": list(range(1, 70_001))}

    assert privacy.redact_customer(runtime, SHOP, payload) == NOTHING_FOUND


def test_a_missing_field_never_matches_an_id_of_none(runtime):
    sams = keys.inbox(SHOP, "sams-order")
    runtime.redis.set(
        sams, json.dumps({"id": 999, "line_items": [], "email": "sam@example.org"})
    )

    privacy.redact_customer(runtime, SHOP, {"customer": {"id": "None"}})
    privacy.redact_customer(
        runtime, SHOP, {"customer": {}, "orders_to_redact": ["None"]}
    )

    assert runtime.redis.exists(sams)


def test_an_order_id_is_never_compared_with_a_customer_id(runtime):
    sams = keys.inbox(SHOP, "sams-order")
    body = {
        "id": 6199999999999,
        "order_number": 1002,
        "line_items": [],
        "customer": {"id": 4242},
        "email": "sam@example.org",
    }
    runtime.redis.set(sams, json.dumps(body))

    privacy.redact_customer(
        runtime,
        SHOP,
        {
            "customer": {"id": 1, "email": "jane@example.com"},
            "orders_to_redact": [4242],
        },
    )

    assert runtime.redis.exists(sams)


def test_shop_redact_spares_another_shop_s_key_that_contains_the_domain(runtime):
    other = keys.inbox("other-shop.myshopify.com", f"x:{SHOP}")
    runtime.redis.set(other, "{}")

    privacy.redact_shop(runtime, SHOP)

    assert runtime.redis.exists(other)


def test_report_found_by_its_orders_goes_with_a_redact_naming_the_customer(
    client, runtime, pinterest
):
    connect_pinterest(runtime, pinterest, SHOP)
    post_fixture(client, "orders_create.json")
    request = json.loads(fixture_bytes("customers_data_request.json"))
    request["customer"] = {"email": "jane@example.com"}
    request["orders_requested"] = []
    post_signed(client, request, "by-email", "customers/data_request")
    work(runtime)

    post_signed(
        client,
        {"customer": {"id": 7712345678901}, "orders_to_redact": [6123456789012]},
        "by-id",
        "customers/redact",
    )
    work(runtime)

    assert mentions(everything(runtime), JANE) == []


def test_guest_known_by_phone_only_is_redacted(client, runtime, pinterest):
    connect_pinterest(runtime, pinterest, SHOP)
    checkout = json.loads(fixture_bytes("checkouts_create.json"))
    checkout.pop("customer")
    checkout["email"], checkout["phone"] = None, "+15555550100"
    post_signed(client, checkout, "guest-checkout", "checkouts/create")
    work(runtime)

    post_signed(
        client,
        {"customer": {"id": 7712345678901, "phone": "+15555550100"}},
        "by-phone",
        "customers/redact",
    )
    work(runtime)

    assert mentions(everything(runtime), JANE) == []


def test_customer_named_by_a_graphql_id_is_redacted(client, runtime, pinterest):
    connect_pinterest(runtime, pinterest, SHOP)
    order = json.loads(fixture_bytes("orders_create.json"))
    order["email"] = order["contact_email"] = order["customer"]["email"] = None
    post_signed(client, order, "no-email")
    work(runtime)

    outcome = privacy.redact_customer(
        runtime, SHOP, {"customer": {"id": "gid://shopify/Customer/7712345678901"}}
    )

    assert outcome["events"] == 1
    assert mentions(everything(runtime), ["6123456789012"]) == []


# Retention


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("RELAY_DELIVERY_LOG_DAYS", "1000000", "between 8 and 36500 days"),
        ("RELAY_DELIVERY_LOG_DAYS", "0", "between 8 and 36500 days"),
        ("RELAY_PRIVACY_REQUEST_DAYS", "1000000", "between 0 and 36500 days"),
        ("RELAY_UNINSTALLED_SHOP_DAYS", "1000000", "between 0 and 36500 days"),
        ("RELAY_PRIVACY_REPORT_DAYS", "3000000", "between 1 and 36500 days"),
    ],
)
def test_lifetimes_beyond_reason_are_refused_at_start(name, value, message):
    with pytest.raises(ConfigError) as refused:
        Config.from_env({name: value})

    assert str(refused.value) == f"{name} must be {message}, got {value}"


def test_a_key_that_is_not_utf8_does_not_stop_retention(runtime):
    runtime.redis.set(b"relay:cart:\xff:x", "x")

    counts = retention.enforce(runtime)

    assert counts["redis_keys_given_ttl"] == 1
    assert runtime.redis.ttl(b"relay:cart:\xff:x") > 0
