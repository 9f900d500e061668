"""The admin pages' API: the settings form, the test event, the counts, the
event log, health, and that no session reaches another shop's data.

Against the real embedded Redis and database, a real worker, and the fake
Pinterest at the HTTP boundary.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from relay.models import Delivery, DestinationSetting, EventRecord, Shop
from tests.conftest import (
    FIXTURES,
    PINTEREST_ACCOUNT,
    SCENARIO_NOW,
    SECRET,
    SHOP,
    configure_destination,
    connect_pinterest,
    post_fixture,
    post_signed,
    work,
)
from tests.fake_shopify import session_token
from tests.test_shopify_app import APP_URL

OTHER_SHOP = "other-shop.myshopify.com"
ORDER = "6123456789012"


def call(client, method: str, path: str, shop: str = SHOP, **options):
    """App Bridge's authenticated fetch from Relay's pages."""
    headers = {"Authorization": f"Bearer {session_token(shop, SECRET)}"}
    return client.open(
        path, method=method, base_url=APP_URL, headers=headers, **options
    )


def settings_body(**values: str) -> dict:
    return {
        "values": values,
        "test_mode": True,
        "enabled": True,
        "consent_policy": "standard",
        "conflict_policy": "send",
    }


def stored_setting(runtime, shop: str = SHOP) -> DestinationSetting | None:
    with runtime.db.session() as session:
        row = session.scalars(
            select(DestinationSetting)
            .join(Shop, Shop.id == DestinationSetting.shop_id)
            .where(Shop.domain == shop)
        ).one_or_none()
        if row is not None:
            session.expunge(row)
    return row


# The settings form


def test_the_form_describes_pinterests_settings_for_a_shop_not_set_up(
    client, installed
):
    response = call(client, "GET", "/api/destinations/pinterest/settings")

    assert response.status_code == 200
    form = response.json
    # A new destination's form starts in test mode.
    assert (form["set_up"], form["test_mode"], form["consent_policy"]) == (
        False,
        True,
        "standard",
    )
    assert [(f["name"], f["kind"], f["required"]) for f in form["fields"]] == [
        ("ad_account_id", "text", True),
        ("conversion_token", "secret", True),
        ("tag_id", "text", False),
        ("events", "text", False),
        ("value", "text", False),
        ("currency", "text", False),
    ]  # api_base is the operator's: never on the merchant's form
    assert form["fields"][1] == {
        "name": "conversion_token",
        "label": "Conversion access token",
        "kind": "secret",
        "required": True,
        "help": "Ads Manager → Conversions → Conversion access token; "
        "letters, digits and punctuation, no spaces",
        "choices": [],
        "multiple": False,
        "default": None,
        "is_set": False,
    }
    assert [
        (f["choices"], f["multiple"], f["default"]) for f in form["fields"][4:6]
    ] == [
        (["subtotal", "total"], False, "subtotal"),
        (["buyer", "shop"], False, "buyer"),
    ]
    assert form["fields"][3]["multiple"] is True
    assert form["fields"][3]["choices"] == [
        "checkout",
        "add_to_cart",
        "page_visit",
        "view_category",
        "search",
        "initiate_checkout",
        "add_payment_info",
    ]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (
            settings_body(ad_account_id="12-34", conversion_token="pina_x"),
            {
                "ad_account_id": "Ad account ID: '12-34' is not valid (digits "
                "only, as shown in Pinterest Ads Manager)"
            },
        ),
        (
            settings_body(ad_account_id="", conversion_token=""),
            {
                "ad_account_id": "Ad account ID is required",
                "conversion_token": "Conversion access token is required",
            },
        ),
        (
            settings_body(
                ad_account_id="1", conversion_token="t", events="checkout,refund"
            ),
            {
                "events": "Events to send: 'checkout,refund' is not valid (Pinterest "
                "event names, comma-separated; leave out any a browser Pinterest "
                "Tag already sends with other event ids (docs/pinterest.md))"
            },
        ),
        (
            # Where requests go is the operator's to set: a merchant able to
            # set it could make Relay's servers call any address.
            settings_body(
                ad_account_id="1",
                conversion_token="t",
                api_base="http://127.0.0.1:6379/?",
            ),
            {"api_base": "Pinterest has no setting 'api_base'"},
        ),
        (
            settings_body(ad_account_id="1", conversion_token="pina_café"),
            {
                "conversion_token": "Conversion access token: the value is not "
                "valid (Ads Manager → Conversions → Conversion access token; "
                "letters, digits and punctuation, no spaces)"
            },
        ),
        (
            settings_body(ad_account_id="١٢٣٤", conversion_token="t"),
            {
                "ad_account_id": "Ad account ID: '١٢٣٤' is not valid (digits "
                "only, as shown in Pinterest Ads Manager)"
            },
        ),
        (
            settings_body(ad_account_id="1", conversion_token="t", pixel_id="9"),
            {"pixel_id": "Pinterest has no setting 'pixel_id'"},
        ),
        (
            {**settings_body(ad_account_id="1", conversion_token="t"), "test_mode": 1},
            {"test_mode": "test_mode must be true or false"},
        ),
        (
            {
                **settings_body(ad_account_id="1", conversion_token="t"),
                "consent_policy": "lax",
            },
            {"consent_policy": 'consent_policy must be "standard" or "strict"'},
        ),
        (
            settings_body(ad_account_id=["1"], conversion_token="t"),
            {"ad_account_id": "Ad account ID must be text"},
        ),
        (
            settings_body(ad_account_id="1", conversion_token="t", events=""),
            {"events": "Events to send: choose at least one"},
        ),
    ],
    ids=[
        "account not digits",
        "required missing",
        "unknown event",
        "operator's setting",
        "token not ascii",
        "arabic-indic digits",
        "unknown setting",
        "number for boolean",
        "unknown policy",
        "not text",
        "no event chosen",
    ],
)
def test_a_wrong_field_is_refused_with_what_is_wrong_and_nothing_saved(
    client, runtime, installed, body, fields
):
    response = call(client, "POST", "/api/destinations/pinterest/settings", json=body)

    assert response.status_code == 400
    assert response.json == {"error": "some settings are not valid", "fields": fields}
    assert stored_setting(runtime) is None


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b'{"values": "x"}'], ids=str)
def test_a_body_that_is_no_form_gets_400(client, runtime, installed, data):
    response = call(
        client,
        "POST",
        "/api/destinations/pinterest/settings",
        data=data,
        content_type="application/json",
    )

    assert response.status_code == 400
    assert stored_setting(runtime) is None


def test_saving_stores_the_token_encrypted_and_never_shows_it_again(
    client, runtime, installed, pinterest
):
    token = "pina_token_typed_by_the_merchant"
    body = settings_body(
        ad_account_id=f" {PINTEREST_ACCOUNT} ",
        conversion_token=token,
        events="checkout,add_to_cart",
        tag_id="2612345678901",
    )
    body["consent_policy"] = "strict"

    response = call(client, "POST", "/api/destinations/pinterest/settings", json=body)

    assert response.status_code == 200
    assert token.encode() not in response.data
    assert (response.json["saved"], response.json["resumed"]) == (True, 0)
    row = stored_setting(runtime)
    assert row.values == {
        "ad_account_id": PINTEREST_ACCOUNT,
        "events": "checkout,add_to_cart",
        "tag_id": "2612345678901",
    }
    assert runtime.keyring.decrypt(row.encrypted_secrets) == {"conversion_token": token}
    assert (row.test_mode, row.enabled) == (True, True)
    with runtime.db.session() as session:
        shop = session.scalars(select(Shop).where(Shop.domain == SHOP)).one()
        assert shop.consent_policy == "strict"
    assert runtime.queue.get_job_ids()[-1] == (
        "check-conflicts-pinterest-example-shop_myshopify_com"
    )

    form = call(client, "GET", "/api/destinations/pinterest/settings")
    page = client.get(
        f"/?shop={SHOP}&host=YWRtaW4&embedded=1&id_token={session_token(SHOP, SECRET)}",
        base_url=APP_URL,
    )
    assert token.encode() not in form.data + page.data
    assert form.json["fields"][1]["is_set"] is True

    # Leaving the token empty keeps it; emptying an optional field forgets it.
    again = call(
        client,
        "POST",
        "/api/destinations/pinterest/settings",
        json=settings_body(ad_account_id="42", conversion_token="", events=""),
    )
    assert again.json["fields"] == {"events": "Events to send: choose at least one"}
    again = call(
        client,
        "POST",
        "/api/destinations/pinterest/settings",
        json=settings_body(ad_account_id="42", conversion_token="", tag_id=""),
    )
    assert again.status_code == 200
    row = stored_setting(runtime)
    assert row.values == {"ad_account_id": "42", "events": "checkout,add_to_cart"}

    # A shown required value emptied is pointed out, not silently kept.
    emptied = call(
        client,
        "POST",
        "/api/destinations/pinterest/settings",
        json=settings_body(ad_account_id="", conversion_token=""),
    )
    assert (emptied.status_code, emptied.json["fields"]) == (
        400,
        {"ad_account_id": "Ad account ID is required"},
    )
    assert stored_setting(runtime).values["ad_account_id"] == "42"
    assert runtime.keyring.decrypt(row.encrypted_secrets) == {"conversion_token": token}


# The test event


def test_the_test_event_goes_to_pinterest_in_test_mode_and_its_answer_is_shown(
    client, runtime, installed, pinterest
):
    connect_pinterest(runtime, pinterest, SHOP)  # live, not test mode

    response = call(client, "POST", "/api/destinations/pinterest/test-event")

    assert response.status_code == 200
    answer = response.json
    event_id = answer["event_id"]
    assert answer == {
        "accepted": True,
        "http_status": 200,
        "message": "Pinterest accepted the test event (HTTP 200). It was sent in "
        "test mode: checked, not recorded.",
        "event_id": event_id,
        "payload": {
            "event_name": "checkout",
            "action_source": "web",
            "event_time": int(SCENARIO_NOW.timestamp()),
            "event_id": event_id,
            "user_data": {
                "em": [
                    "c31a3b580cd825307e15a491b3d93d2ed235f514df8b61b1bbf4c825cf7667f5"
                ]
            },
            "custom_data": {"currency": "USD", "value": "1.00"},
        },
    }
    assert event_id.startswith("relay-test-")
    assert [(r.test, r.status) for r in pinterest.requests] == [(True, 200)]
    assert pinterest.schema_errors == []
    with runtime.db.session() as session:
        assert session.scalar(select(func.count(Delivery.id))) == 0


def test_a_test_event_pinterest_refuses_says_why_and_pauses_nothing(
    client, runtime, installed, pinterest
):
    connect_pinterest(runtime, pinterest, SHOP)
    configure_destination(runtime, "pinterest", {"ad_account_id": "111"})

    response = call(client, "POST", "/api/destinations/pinterest/test-event")

    assert response.status_code == 200
    assert (response.json["accepted"], response.json["message"]) == (
        False,
        "Pinterest refused the credentials (HTTP 403): 29: You are not permitted "
        "to access that resource. Check the ad account id and the token.",
    )
    assert stored_setting(runtime).paused_reason is None


def test_a_test_event_before_setting_up_gets_409(client, installed):
    response = call(client, "POST", "/api/destinations/pinterest/test-event")

    assert (response.status_code, response.json) == (
        409,
        {"error": "Set up and enable Pinterest first."},
    )


def test_an_unknown_destination_gets_404(client, installed):
    for method, path in [
        ("GET", "/api/destinations/tiktok/settings"),
        ("POST", "/api/destinations/tiktok/settings"),
        ("POST", "/api/destinations/tiktok/test-event"),
    ]:
        response = call(client, method, path, json={})
        assert (response.status_code, response.json) == (
            404,
            {"error": "no destination named tiktok"},
        )


# Watching it work


def replay_orders(client, runtime, pinterest) -> None:
    """The fixture order sent, a test order skipped, and one Pinterest refuses."""
    connect_pinterest(runtime, pinterest, SHOP)
    post_fixture(client, "orders_create.json")
    order = json.loads((FIXTURES / "orders_create.json").read_text())
    post_signed(client, {**order, "id": 7001, "test": True}, "webhook-test-order")
    old = {**order, "id": 7002, "processed_at": "2026-07-06T10:00:00Z"}
    post_signed(client, old, "webhook-old-order")
    work(runtime)


def test_stats_count_each_outcome_with_rates_keys_and_accuracy(
    client, runtime, installed, pinterest
):
    replay_orders(client, runtime, pinterest)

    response = call(client, "GET", "/api/stats?period=7d")

    assert response.status_code == 200
    (pinterest_stats,) = response.json["destinations"]
    assert pinterest_stats["counts"] == {
        "received": 3,
        "sent": 1,
        "failed": 0,
        "retrying": 0,
        "held": 0,
        "queued": 0,
        "skipped": 2,
    }
    assert pinterest_stats["skipped_reasons"] == [
        {"reason": "test order", "count": 1},
        {"reason": "too old", "count": 1},
    ]
    assert pinterest_stats["delivery_rate"] == 1.0
    assert pinterest_stats["match_keys"] == {
        "email": 1.0,
        "phone": 1.0,
        "click_id": 1.0,
        "ip_user_agent": 1.0,
        "external_id": 1.0,
    }
    assert pinterest_stats["match_quality"] == {"score": 10.0, "label": "great"}
    series = pinterest_stats["series"]
    assert [b["start"] for b in series][-1] == "2026-07-13T14:30:00+00:00"
    assert series[-1] == {
        "start": "2026-07-13T14:30:00+00:00",
        "sent": 1,
        "failed": 0,
        "other": 2,
    }
    assert sum(b["sent"] + b["failed"] + b["other"] for b in series) == 3


def test_accuracy_sets_shopifys_orders_against_purchases_delivered(
    client, runtime, installed, pinterest, shopify
):
    replay_orders(client, runtime, pinterest)
    shopify.shops[SHOP].orders = [
        {"id": "7002", "test": False, "processed_at": "2026-07-06T10:00:00+00:00"},
        {"id": "7003", "test": False, "processed_at": "2026-07-14T10:00:00+00:00"},
        {"id": "7001", "test": True, "processed_at": "2026-07-14T14:21:32+00:00"},
        {"id": ORDER, "test": False, "processed_at": "2026-07-14T14:21:32+00:00"},
    ]

    response = call(client, "GET", "/api/accuracy?period=7d")

    assert response.status_code == 200
    assert response.json == {
        "period": "7d",
        "since": "2026-07-07T14:30:00+00:00",
        "shopify_orders": 3,
        "shopify_complete": True,
        "note": None,
        "destinations": [
            {
                "name": "pinterest",
                "title": "Pinterest",
                "orders": 3,
                "delivered": 1,
                "gaps": [
                    {"reason": "skipped: test order", "count": 1, "orders": ["7001"]},
                    {
                        "reason": "not made: Relay received no webhook for this order",
                        "count": 1,
                        "orders": ["7003"],
                    },
                ],
            }
        ],
    }


def test_accuracy_without_shopifys_list_counts_relays_orders_and_says_so(
    client, runtime, pinterest
):
    connect_pinterest(runtime, pinterest, SHOP)  # known, never opened: no token
    post_fixture(client, "orders_create.json")
    work(runtime)

    response = call(client, "GET", "/api/accuracy?period=24h")

    assert response.status_code == 200
    assert response.json["note"] == (
        "Shopify's list of orders could not be read (example-shop.myshopify.com: "
        "no access token; the merchant must open Relay in the Shopify admin); "
        "only the orders Relay received are counted."
    )
    (found,) = response.json["destinations"]
    assert (found["orders"], found["delivered"], found["gaps"]) == (1, 1, [])


def test_stats_for_a_period_not_offered_get_400(client, installed):
    response = call(client, "GET", "/api/stats?period=1y")

    assert (response.status_code, response.json) == (
        400,
        {"error": "period must be one of 24h, 7d"},
    )


def test_the_event_log_lists_deliveries_and_shows_the_payload_masked(
    client, runtime, installed, pinterest
):
    replay_orders(client, runtime, pinterest)

    listed = call(client, "GET", "/api/deliveries?limit=2")
    assert listed.status_code == 200
    assert [
        (d["event_id"], d["status"], d["reason"]) for d in listed.json["deliveries"]
    ] == [("7002", "skipped", "too old"), ("7001", "skipped", "test order")]
    skipped = call(client, "GET", "/api/deliveries?status=skipped")
    assert [d["event_id"] for d in skipped.json["deliveries"]] == ["7002", "7001"]
    first_id = listed.json["deliveries"][-1]["id"]
    older = call(client, "GET", f"/api/deliveries?before={first_id}")
    (sent,) = older.json["deliveries"]
    assert (sent["event_id"], sent["status"], sent["http_status"]) == (
        ORDER,
        "sent",
        200,
    )

    detail = call(client, "GET", f"/api/deliveries/{sent['id']}")
    user_data = detail.json["payload"]["user_data"]
    assert {k: user_data[k] for k in ("click_id", "client_ip_address")} == {
        "click_id": "[masked]",
        "client_ip_address": "[masked]",
    }
    raw = detail.data.decode()
    fixture = json.loads((FIXTURES / "orders_create.json").read_text())
    for personal in (fixture["email"], fixture["browser_ip"], fixture["phone"]):
        assert personal not in raw


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=201",
        "limit=x",
        "limit=²",
        "before=0",
        "before=9999999999",
        "status=lost",
    ],
)
def test_a_bad_event_log_query_gets_400(client, installed, query):
    response = call(client, "GET", f"/api/deliveries?{query}")

    assert response.status_code == 400


def test_health_shows_paused_destinations_and_the_last_webhook_per_topic(
    client, runtime, installed, pinterest
):
    connect_pinterest(runtime, pinterest, SHOP)
    post_fixture(client, "orders_create.json")
    with runtime.db.session() as session:
        row = session.scalars(select(DestinationSetting)).one()
        row.paused_reason = "Pinterest refused the credentials (HTTP 401)"
        row.paused_at = SCENARIO_NOW

    response = call(client, "GET", "/api/health")

    assert response.json == {
        "shop": {"domain": SHOP, "installed": True},
        "destinations": [
            {
                "name": "pinterest",
                "title": "Pinterest",
                "state": "paused",
                "reason": "Pinterest refused the credentials (HTTP 401)",
                "since": SCENARIO_NOW.isoformat(),
                "test_mode": False,
            }
        ],
        "webhooks": [
            {"topic": "orders/create", "last_received": SCENARIO_NOW.isoformat()}
        ],
    }


# Isolation: every admin endpoint, three kinds of bad session

ENDPOINTS = [
    ("GET", "/api/shop"),
    ("GET", "/api/privacy/reports"),
    ("GET", "/api/privacy/reports/1"),
    ("GET", "/api/destinations"),
    ("GET", "/api/destinations/pinterest/settings"),
    ("POST", "/api/destinations/pinterest/settings"),
    ("POST", "/api/destinations/pinterest/test-event"),
    ("GET", "/api/stats"),
    ("GET", "/api/accuracy"),
    ("GET", "/api/deliveries"),
    ("GET", "/api/deliveries/1"),
    ("GET", "/api/health"),
    ("POST", "/api/destinations/pinterest/connect"),
    ("GET", "/api/destinations/pinterest/accounts"),
    ("GET", f"/api/destinations/pinterest/accounts/{PINTEREST_ACCOUNT}/tags"),
    ("POST", "/api/destinations/pinterest/account"),
    ("GET", "/api/conflicts"),
    ("POST", "/api/conflicts/pinterest/acknowledge"),
]
BODIES = {
    "/api/destinations/pinterest/settings": settings_body(
        ad_account_id="999", conversion_token="stolen"
    ),
    "/api/destinations/pinterest/account": {"account_id": PINTEREST_ACCOUNT},
    "/api/conflicts/pinterest/acknowledge": {"key": "x"},
}


def test_every_admin_api_route_is_in_the_isolation_table(client):
    routes = {
        (method, rule.rule)
        for rule in client.application.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    # Placeholders and the table's values differ; their shapes must not.
    assert {(m, _shape(p)) for m, p in routes} == {(m, _shape(p)) for m, p in ENDPOINTS}


def _shape(path: str) -> str:
    """A path with each variable part (placeholder or value) as `*`."""
    parts = path.split("/")
    fixed = {"api", "shop", "privacy", "reports", "destinations", "settings"}
    fixed |= {"test-event", "stats", "accuracy", "deliveries", "health", "connect"}
    fixed |= {"accounts", "tags", "account", "conflicts", "acknowledge", ""}
    return "/".join(p if p in fixed else "*" for p in parts)


@pytest.fixture
def two_shops(client, runtime, installed, pinterest, pinterest_api, shopify):
    """Shop A with Pinterest set up and an order delivered; shop B installed."""
    connect_pinterest(runtime, pinterest, SHOP)
    post_fixture(client, "orders_create.json")
    work(runtime)
    client.get(
        f"/?shop={OTHER_SHOP}&host=YWRtaW4&embedded=1&id_token="
        f"{session_token(OTHER_SHOP, SECRET)}",
        base_url=APP_URL,
    )
    return pinterest


def _request(client, method: str, path: str, headers: dict):
    return client.open(
        path, method=method, base_url=APP_URL, headers=headers, json=BODIES.get(path)
    )


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_no_session_token_is_sent_for_one(client, runtime, two_shops, method, path):
    response = _request(client, method, path, {})

    # The package treats a request without a token as a page load, and sends
    # it to fetch one; no data is read or changed.
    assert response.status_code == 302
    assert response.headers["Location"].startswith(f"{APP_URL}/auth/patch-id-token")
    assert response.data == b""


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_a_forged_session_token_gets_401(client, runtime, two_shops, method, path):
    forged = session_token(SHOP, "not_the_apps_secret")

    response = _request(client, method, path, {"Authorization": f"Bearer {forged}"})

    assert response.status_code == 401
    assert response.headers["X-Shopify-Retry-Invalid-Session-Request"] == "1"
    assert stored_setting(runtime).values["ad_account_id"] == PINTEREST_ACCOUNT


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_another_shops_session_never_reads_or_changes_this_shops_data(
    client, runtime, two_shops, method, path
):
    requests_before = len(two_shops.requests)
    token = session_token(OTHER_SHOP, SECRET)

    response = _request(client, method, path, {"Authorization": f"Bearer {token}"})

    body = response.data.decode()
    for shop_a_data in (SHOP, ORDER, two_shops.token):
        assert shop_a_data not in body
    row = stored_setting(runtime)
    assert row.values["ad_account_id"] == PINTEREST_ACCOUNT
    assert runtime.keyring.decrypt(row.encrypted_secrets)["conversion_token"] == (
        two_shops.token
    )
    # Nothing was sent with shop A's credentials.
    assert len(two_shops.requests) == requests_before
    with runtime.db.session() as session:
        assert session.scalar(select(func.count(EventRecord.id))) == 1


def test_another_shops_delivery_id_answers_as_a_missing_one(client, runtime, two_shops):
    with runtime.db.session() as session:
        (delivery_id,) = session.scalars(select(Delivery.id)).all()

    theirs = call(client, "GET", f"/api/deliveries/{delivery_id}", shop=OTHER_SHOP)
    missing = call(client, "GET", "/api/deliveries/99999", shop=OTHER_SHOP)
    own = call(client, "GET", f"/api/deliveries/{delivery_id}")

    assert (theirs.status_code, theirs.data) == (missing.status_code, missing.data)
    assert theirs.json == {"error": "no such delivery"}
    assert (own.status_code, own.json["event_id"]) == (200, ORDER)
