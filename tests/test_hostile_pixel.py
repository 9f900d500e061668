"""Hostile input against the pixel, carts, consent and privacy.

Kept from the hostile round of the pixel work: each test is an attack that
once worked, or one that held and must keep holding.
"""

from __future__ import annotations

import json

import pytest
import redis
from rq.registry import FailedJobRegistry
from sqlalchemy import select

from relay import keys, visitors
from relay.models import Delivery, EventRecord
from tests.conftest import SHOP, fixture_bytes, post_fixture, post_signed, work
from tests.test_conversions import PIXEL_IP, release_waiting
from tests.test_pixel import CART, CLIENT, envelope, post_beacon

REFUSED_SALE = {
    "analytics": True,
    "marketing": True,
    "preferences": None,
    "sale_of_data": False,
}


def failed_jobs(runtime):
    return FailedJobRegistry(queue=runtime.queue).get_job_ids()


def statuses(runtime):
    with runtime.db.session() as session:
        return session.execute(
            select(
                EventRecord.name, EventRecord.event_id, Delivery.status, Delivery.reason
            )
            .join(Delivery, Delivery.event_pk == EventRecord.id)
            .order_by(EventRecord.id)
        ).all()


def test_concurrent_beacons_of_one_visitor(client, runtime, shop, monkeypatch):
    first = envelope("pixel_page_viewed.json")
    second = envelope("pixel_product_added_to_cart.json")
    original = redis.client.Pipeline.exists
    fired = []

    def exists(self, *names):
        # Another web process accepts the visitor's other beacon meanwhile.
        if not fired:
            fired.append(1)
            assert post_beacon(client, second).status_code == 204
        return original(self, *names)

    monkeypatch.setattr(redis.client.Pipeline, "exists", exists)
    response = post_beacon(client, first)
    monkeypatch.undo()
    # Both wait on the intake list for the one drain job.
    assert response.status_code == 204
    assert runtime.redis.llen(keys.intake()) == 2
    assert len(runtime.queue.get_job_ids()) == 1


def test_waiting_add_to_cart_then_sale_refusal(
    client, runtime, pinterest, connected_shop
):
    runtime.config = runtime.config.with_changes(browser_wait_seconds=60)
    post_beacon(client, envelope("pixel_page_viewed.json"), ip=PIXEL_IP)
    work(runtime)
    post_fixture(client, "carts_create.json")
    work(runtime)
    later = envelope("pixel_page_viewed.json", consent=REFUSED_SALE)
    later["event"].update(id="sh-later", timestamp="2026-07-14T14:13:00Z")
    post_beacon(client, later, ip=PIXEL_IP)
    work(runtime)
    release_waiting(runtime)
    work(runtime)
    # The cart names no one; without the refuser's browser data nothing
    # identifies them, so nothing is sent against the refusal.
    assert [e for e in pinterest.events if e["event_name"] == "add_to_cart"] == []
    with runtime.db.session() as session:
        reasons = set(
            session.scalars(
                select(Delivery.reason)
                .join(EventRecord, Delivery.event_pk == EventRecord.id)
                .where(EventRecord.name == "add_to_cart")
            )
        )
    assert reasons == {"no match keys"}


def test_waiting_add_to_cart_then_marketing_withdrawn(
    client, runtime, pinterest, connected_shop
):
    runtime.config = runtime.config.with_changes(browser_wait_seconds=60)
    post_beacon(client, envelope("pixel_page_viewed.json"), ip=PIXEL_IP)
    work(runtime)
    post_fixture(client, "carts_create.json")
    work(runtime)
    later = envelope(
        "pixel_page_viewed.json",
        consent={**REFUSED_SALE, "marketing": False, "sale_of_data": True},
    )
    later["event"].update(id="sh-later", timestamp="2026-07-14T14:13:00Z")
    post_beacon(client, later, ip=PIXEL_IP)
    work(runtime)
    print(visitors.profile(runtime.redis, SHOP, CLIENT))
    release_waiting(runtime)
    work(runtime)
    # The visitor withdrew marketing before the add-to-cart was sent.
    assert [e["event_name"] for e in pinterest.events] == ["page_visit"]


def redis_dump(runtime):
    return sorted(k.decode() for k in runtime.redis.keys("relay:*"))


def test_redact_logged_in_visitor_without_order(
    client, runtime, pinterest, connected_shop
):
    # Device 2: the customer only browsed, logged in; first anonymously.
    anon = envelope("pixel_page_viewed.json", cart_token=None, customer=None)
    anon["event"].update(client_id="device-2", id="sh-anon")
    post_beacon(client, anon, ip="198.51.100.77")
    logged = envelope(
        "pixel_page_viewed.json",
        cart_token=None,
        customer={
            "id": "7712345678901",
            "email": "jane@example.com",
            "phone": "+15555550100",
        },
    )
    logged["event"].update(
        client_id="device-2", id="sh-logged", timestamp="2026-07-14T14:25:00Z"
    )
    post_beacon(client, logged, ip="198.51.100.77")
    work(runtime)
    print("before", redis_dump(runtime), statuses(runtime))
    post_fixture(client, "customers_redact.json")
    work(runtime)
    left = redis_dump(runtime)
    print(
        "after",
        left,
        statuses(runtime),
        visitors.profile(runtime.redis, SHOP, "device-2"),
    )
    assert visitors.profile(runtime.redis, SHOP, "device-2") == {}
    assert statuses(runtime) == []


def test_shop_redact_after_uninstall_leaves_visitor_shop(
    client, runtime, pinterest, connected_shop
):
    post_fixture(client, "app_uninstalled.json")  # queued first
    # Accepted: the web app still sees the shop installed (30 s cache, or
    # simply because the uninstall job has not run yet).
    assert (
        post_beacon(client, envelope("pixel_page_viewed.json"), ip=PIXEL_IP).status_code
        == 204
    )
    bad_date = envelope("pixel_page_viewed.json")  # schema-valid, not a date
    bad_date["event"].update(
        client_id="bad-date-visitor", timestamp="2026-02-30T10:00:00Z"
    )
    assert post_beacon(client, bad_date).status_code == 204
    work(runtime)  # uninstall, then both beacons dropped / unreadable
    post_fixture(client, "shop_redact.json")
    work(runtime)
    left = redis_dump(runtime)
    assert [k for k in left if "visitor" in k or "cart" in k] == []


def _variant(name, fn):
    beacon = envelope(name)
    fn(beacon)
    return beacon


def _set(path, value):
    def apply(beacon):
        target = beacon
        for part in path[:-1]:
            target = target.setdefault(part, {}) if isinstance(target, dict) else target
        target[path[-1]] = value

    return apply


CO = "pixel_checkout_completed.json"
PV = "pixel_page_viewed.json"
ATC = "pixel_product_added_to_cart.json"
HOSTILE = [
    (
        PV,
        _set(
            ["customer"],
            {"id": "1" * 20, "email": "a\x00b@example.com", "phone": "\x00" * 64},
        ),
    ),
    (PV, _set(["customer"], {"email": "x" * 320, "phone": "+" + "9" * 63})),
    (PV, _set(["customer"], {"email": "A" * 64, "phone": "F" * 64})),
    (PV, _set(["customer"], {"id": None, "email": None, "phone": None})),
    (PV, _set(["customer"], {})),
    (CO, _set(["event", "data", "checkout"], [1, 2])),
    (CO, _set(["event", "data", "checkout"], "a string")),
    (CO, _set(["event", "data", "checkout"], None)),
    (CO, _set(["event", "data"], {"checkout": {"order": {"id": 1e300}}})),
    (CO, _set(["event", "data"], {"checkout": {"order": {"id": -5}}})),
    (CO, _set(["event", "data"], {"checkout": {"order": {"id": 10**40}}})),
    (
        CO,
        _set(
            ["event", "data"],
            {"checkout": {"order": {"id": "gid://shopify/Customer/6123456789012"}}},
        ),
    ),
    (CO, _set(["event", "data"], {"checkout": {"order": [1]}, "token": ["x"]})),
    (
        CO,
        _set(
            ["event", "data"],
            {
                "checkout": {
                    "token": "ä" * 64,
                    "email": ["x"],
                    "phone": {"a": 1},
                    "billingAddress": {"countryCode": "ßß"},
                }
            },
        ),
    ),
    (
        CO,
        _set(
            ["event", "data"],
            {"checkout": {"phone": "12345", "billingAddress": {"countryCode": "ǅǅ"}}},
        ),
    ),
    (
        CO,
        _set(
            ["event", "data"],
            {"checkout": {"phone": "5555550100", "billingAddress": {"countryCode": 7}}},
        ),
    ),
    (
        CO,
        _set(
            ["event", "data"],
            {"checkout": {"phone": "5555550100", "billingAddress": "CA"}},
        ),
    ),
    (CO, _set(["event", "name"], "payment_info_submitted")),
    (
        "pixel_checkout_completed.json",
        lambda b: (
            b["event"].update(name="payment_info_submitted"),
            b["event"]["data"]["checkout"].update(
                subtotalPrice={"amount": "NaN", "currencyCode": "CAD"}
            ),
        ),
    ),
    (
        CO,
        lambda b: (
            b["event"].update(name="payment_info_submitted"),
            b["event"]["data"]["checkout"].update(
                subtotalPrice={"amount": 1e308, "currencyCode": "CAD"}
            ),
        ),
    ),
    (
        CO,
        lambda b: (
            b["event"].update(name="payment_info_submitted"),
            b["event"]["data"]["checkout"].update(
                subtotalPrice={"amount": -1, "currencyCode": "CAD"}
            ),
        ),
    ),
    (
        CO,
        lambda b: (
            b["event"].update(name="payment_info_submitted"),
            b["event"]["data"]["checkout"].update(
                subtotalPrice={"amount": "1e-400", "currencyCode": "cad"}
            ),
        ),
    ),
    (
        CO,
        lambda b: (
            b["event"].update(name="payment_info_submitted"),
            b["event"]["data"]["checkout"].update(
                subtotalPrice={"amount": "١٢٫٥", "currencyCode": "CAD"}
            ),
        ),
    ),
    (
        CO,
        lambda b: (
            b["event"].update(name="payment_info_submitted"),
            b["event"]["data"].update(checkout=[]),
        ),
    ),
    (
        PV,
        lambda b: b["event"].update(
            name="search_submitted",
            data={"searchResult": {"query": "a\r\nb\x1b[31m\x07" * 300}},
        ),
    ),
    (
        PV,
        lambda b: b["event"].update(
            name="search_submitted", data={"searchResult": "q"}
        ),
    ),
    (
        PV,
        lambda b: b["event"].update(
            name="search_submitted", data={"searchResult": {"query": ["q"]}}
        ),
    ),
    (
        PV,
        lambda b: b["event"].update(
            name="product_viewed",
            data={
                "productVariant": {
                    "id": "abc",
                    "price": {"amount": "Infinity", "currencyCode": "CAD"},
                }
            },
        ),
    ),
    (
        PV,
        lambda b: b["event"].update(
            name="product_viewed",
            data={
                "productVariant": {
                    "id": "gid://shopify/ProductVariant/",
                    "product": "x",
                }
            },
        ),
    ),
    (
        PV,
        lambda b: b["event"].update(
            name="product_viewed",
            data={
                "productVariant": {
                    "id": 44012345678901,
                    "product": {"id": True, "title": "\ud7ff" * 2001},
                }
            },
        ),
    ),
    (
        PV,
        lambda b: b["event"].update(
            name="collection_viewed", data={"collection": None}
        ),
    ),
    (
        ATC,
        lambda b: (
            b.update(cart_token=None)
            or b["event"]["data"]["cartLine"].update(quantity=10**30)
        ),
    ),
    (
        ATC,
        lambda b: b.update(cart_token=None) or b["event"]["data"].update(cartLine="x"),
    ),
    (
        ATC,
        lambda b: (
            b.update(cart_token=None)
            or b["event"]["data"]["cartLine"].update(
                cost={"totalAmount": {"amount": "1" * 13, "currencyCode": "CAD"}}
            )
        ),
    ),
    (PV, _set(["cart_token"], "a" * 255)),
    (PV, _set(["cart_token"], "../../etc/passwd")),
    (PV, _set(["cart_token"], "..")),
    (PV, _set(["event", "timestamp"], "2099-12-31T23:59:59-23:59")),
    (PV, _set(["event", "timestamp"], "2000-01-01T00:00:00+23:59")),
    (PV, _set(["event", "timestamp"], "2026-13-45T99:99:99Z")),
    (PV, _set(["event", "url"], "javascript:alert(1)\x00")),
    (PV, _set(["event", "user_agent"], "\x00\r\n")),
    (PV, _set(["event", "seq"], 10**100)),
    (PV, _set(["event", "client_id"], "a:b:c")),
    (PV, _set(["event", "id"], "x:" * 64)),
]


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_hostile_beacons_do_not_crash(
    client, runtime, pinterest, connected_shop, index
):
    name, change = HOSTILE[index]
    beacon = envelope(name)
    change(beacon)
    body = json.dumps(beacon).encode()
    response = post_beacon(client, body)
    assert response.status_code in (204, 400), response.data
    work(runtime)
    release_waiting(runtime)
    work(runtime)
    assert failed_jobs(runtime) == []
    assert pinterest.schema_errors == []
    with runtime.db.session() as session:
        bad = session.scalars(select(Delivery).where(Delivery.status == "failed")).all()
        assert [(d.reason, d.error) for d in bad] == []


@pytest.mark.parametrize(
    "raw",
    [
        b'"quantity": true',
        b'"quantity": NaN',
        b'"quantity": 1.5',
    ],
)
def test_pixel_add_to_cart_odd_quantity(
    client, runtime, pinterest, connected_shop, raw
):
    beacon = envelope(ATC, cart_token=None)
    beacon["event"]["data"]["cartLine"]["quantity"] = 987654
    body = json.dumps(beacon).encode().replace(b'"quantity": 987654', raw)
    assert post_beacon(client, body, ip=PIXEL_IP).status_code == 204
    work(runtime)
    print([e["custom_data"] for e in pinterest.events], pinterest.schema_errors)
    assert pinterest.schema_errors == []
    (event,) = pinterest.events
    assert type(event["custom_data"]["contents"][0]["quantity"]) is int


@pytest.mark.parametrize(
    "raw", [b'"\\ud800@x.com"', b'"a\\u0000@x.com"', b"NaN", b"1e999"]
)
def test_raw_json_oddities(client, runtime, pinterest, connected_shop, raw):
    beacon = envelope(PV, customer={"email": "PLACEHOLDER"})
    body = json.dumps(beacon).encode().replace(b'"PLACEHOLDER"', raw)
    response = post_beacon(client, body, ip=PIXEL_IP)
    print(response.status_code, response.data)
    assert response.status_code in (204, 400)
    work(runtime)
    assert failed_jobs(runtime) == []


def cart_payload(updated_at, lines, token=CART):
    cart = json.loads(fixture_bytes("carts_update.json"))
    template = cart["line_items"][0]
    cart["token"] = cart["id"] = token
    cart["updated_at"] = updated_at
    cart["line_items"] = [
        {**template, "variant_id": v, "id": v, "quantity": q} for v, q in lines
    ]
    return cart


def add_to_cart_units(pinterest):
    return sum(
        e["custom_data"]["num_items"]
        for e in pinterest.events
        if e["event_name"] == "add_to_cart"
    )


@pytest.mark.parametrize(
    "updated_at",
    [
        None,
        "",
        12345,
        "yesterday",
        "2026-07-14T14:15:02",
        "9999-01-01T00:00:00Z",
        "2026-07-14T14:15:02.611+25:00",
        ["2026"],
        {"a": 1},
        "2026-07-14T14:15:02\x00Z",
    ],
)
def test_cart_garbage_updated_at(
    client, runtime, pinterest, connected_shop, updated_at
):
    cart = cart_payload("x", [(44012345678901, 1)])
    cart["updated_at"] = updated_at
    assert post_signed(client, cart, "c1", "carts/update").status_code == 200
    work(runtime)
    assert failed_jobs(runtime) == []
    assert pinterest.events == []


@pytest.mark.parametrize(
    "token",
    [
        "",
        None,
        5,
        ["a"],
        "a" * 256,
        "a?key=b",
        "?key=b",
        "tok:en",
        "tok*en",
        "tok en",
        "a/../b",
        "é",
    ],
)
def test_cart_odd_tokens(client, runtime, pinterest, connected_shop, token):
    cart = cart_payload("2026-07-14T14:15:02.611Z", [(44012345678901, 1)])
    cart["token"] = cart["id"] = token
    assert post_signed(client, cart, "c1", "carts/update").status_code == 200
    work(runtime)
    assert failed_jobs(runtime) == []
    print(redis_dump(runtime), [e["event_id"] for e in pinterest.events])


def test_cart_quantity_history(client, runtime, pinterest, connected_shop):
    post_beacon(client, envelope(PV), ip=PIXEL_IP)
    # 0 -> 2, down to 1, up to 3, to 0, up to 2 (already reached), up to 5
    history = [2, 1, 3, 0, 2, 5]
    for i, q in enumerate(history):
        cart = cart_payload(f"2026-07-14T14:1{i}:00.000Z", [(44012345678901, q)])
        post_signed(client, cart, f"h{i}", "carts/update")
    # duplicates and out of order
    post_signed(
        client,
        cart_payload("2026-07-14T14:12:00.000Z", [(44012345678901, 3)]),
        "dup",
        "carts/update",
    )
    work(runtime)
    real = sum(max(0, b - a) for a, b in zip([0] + history, history))
    print(
        "real",
        real,
        "sent",
        add_to_cart_units(pinterest),
        sorted(e["event_id"][-6:] for e in pinterest.events),
    )


def test_cart_same_variant_on_many_lines_and_huge(
    client, runtime, pinterest, connected_shop
):
    post_beacon(client, envelope(PV), ip=PIXEL_IP)
    lines = [(44012345678901, 1_000_000)] * 300
    post_signed(
        client, cart_payload("2026-07-14T14:10:00.000Z", lines), "big", "carts/update"
    )
    work(runtime)
    print(
        [
            (e["custom_data"]["num_items"], e["custom_data"]["value"])
            for e in pinterest.events
            if e["event_name"] == "add_to_cart"
        ],
        pinterest.schema_errors,
    )
    assert failed_jobs(runtime) == []


def test_a_new_cart_state_records_only_the_increases_it_can_change(
    client, runtime, shop, process_log
):
    """A shopper can edit an anonymous cart many times with many lines; a new
    state must not re-record every increase of the history."""
    lines, kept = 50, 20
    states = [
        {
            "updated_at": f"2026-07-14T14:{i // 60:02d}:{i % 60:02d}.000Z",
            "lines": [
                {
                    "variant_id": str(40000000000000 + v),
                    "product_id": None,
                    "quantity": i + 1,
                    "price": "1.00",
                    "currency": "CAD",
                }
                for v in range(lines)
            ],
            "token": CART,
        }
        for i in range(kept - 1)
    ]
    runtime.redis.set(keys.cart(SHOP, CART), json.dumps({"states": states}))
    cart = cart_payload(
        "2026-07-14T14:59:00.000Z", [(40000000000000 + v, kept) for v in range(lines)]
    )
    for attempt in range(2):  # the second is a redelivery: nothing new to make
        post_signed(client, cart, f"last-{attempt}", "carts/update")
        work(runtime)

    line = f"cart for {SHOP}: {kept} state(s) known, {lines} increase(s) around"
    assert process_log().count(line) == 2
    with runtime.db.session() as session:
        assert len(session.scalars(select(EventRecord)).all()) == lines
    assert failed_jobs(runtime) == []


def test_data_request_on_a_shared_browser_reports_another_customer(
    client, runtime, pinterest, connected_shop
):
    from relay import matchkeys, privacy
    from relay.models import PrivacyRequest

    # Jane checks out on the family tablet (client CLIENT), her order arrives.
    post_beacon(client, envelope(CO), ip=PIXEL_IP)
    post_fixture(client, "orders_create.json")
    work(runtime)
    # Later Max, on the same browser, checks out with his own checkout.
    max_beacon = envelope(CO, cart_token="maxcart")
    max_beacon["event"].update(id="sh-max", timestamp="2026-07-14T14:25:00Z")
    max_beacon["event"]["data"]["checkout"].update(
        token="maxcheckout0001", email="max@example.org"
    )
    post_beacon(client, max_beacon, ip=PIXEL_IP)
    work(runtime)
    order = json.loads(fixture_bytes("orders_create.json"))
    order.update(
        id=6999999999999,
        checkout_token="maxcheckout0001",
        cart_token="maxcart",
        email="max@example.org",
        contact_email="max@example.org",
        phone="+15555550199",
        order_number=2000,
    )
    order["customer"] = {
        "id": 7799999999999,
        "email": "max@example.org",
        "phone": "+15555550199",
    }
    post_signed(client, order, "max-order", "orders/create")
    work(runtime)

    post_fixture(client, "customers_data_request.json")  # about Jane
    work(runtime)
    with runtime.db.session() as session:
        report_id = session.scalars(select(PrivacyRequest.report_id)).one()
    report = privacy.read_report(runtime, SHOP, report_id)
    text = json.dumps(report)
    max_email = matchkeys.sha256("max@example.org")
    print([e["order_id"] for e in report["events"]], report["visitor_profiles"])
    assert "6999999999999" not in text  # Max's order
    assert max_email not in text and "7799999999999" not in text


PII = [
    "jane@example.com",
    "Jane@Example.com",
    "5555550100",
    "Jane",
    "Doe",
    "Example St",
    "Toronto",
    "X0X",
    "203.0.113.42",
    "198.51.100.23",
    "max@example.org",
    "Max",
]


def test_no_personal_data_in_logs(
    client, runtime, pinterest, connected_shop, process_log
):
    from tests.test_conversions import post_beacons, post_webhooks

    runtime.config = runtime.config.with_changes(browser_wait_seconds=60)
    logged = envelope(
        PV,
        customer={
            "id": "7712345678901",
            "email": "Jane@Example.com",
            "phone": "+15555550100",
        },
    )
    logged["event"].update(id="sh-logged")
    post_beacon(client, logged, ip=PIXEL_IP)
    bad = envelope(
        PV,
        customer={
            "email": "Jane@Example.com",
            "phone": "+15555550100",
            "name": "Jane Doe",
        },
    )
    post_beacon(client, bad, ip=PIXEL_IP)  # refused: unknown field
    other = envelope(PV, shop="other-shop.myshopify.com")
    post_beacon(client, other, ip="203.0.113.42")
    search = envelope(PV)
    search["event"].update(
        id="sh-search",
        name="search_submitted",
        data={"searchResult": {"query": "jane@example.com Toronto"}},
    )
    post_beacon(client, search, ip=PIXEL_IP)
    post_beacons(client)
    post_webhooks(client)
    work(runtime)
    release_waiting(runtime)
    work(runtime)
    bad_cart = cart_payload("garbage", [(44012345678901, 1)])
    post_signed(client, bad_cart, "bad-cart", "carts/update")
    post_fixture(client, "customers_data_request.json")
    post_fixture(client, "customers_redact.json")
    work(runtime)
    log = process_log()
    found = {
        p: [line for line in log.splitlines() if p in line][:2] for p in PII if p in log
    }
    print(json.dumps(found, indent=1))
    assert found == {}


def test_keys_left_after_customer_redact(client, runtime, pinterest, connected_shop):
    from tests.test_conversions import post_beacons, post_webhooks

    post_beacons(client)
    post_webhooks(client)
    work(runtime)
    post_fixture(client, "customers_redact.json")
    work(runtime)
    # Webhook ids and each topic's last arrival time name no customer.
    shop_level = ("relay:webhook-seen:", "relay:webhook-last:")
    left = [k for k in redis_dump(runtime) if not k.startswith(shop_level)]
    print(left)
    assert left == []


def test_waiting_logged_in_beacon_survives_customer_redact(
    client, runtime, pinterest, connected_shop
):
    from relay import privacy

    logged = envelope(
        PV,
        cart_token=None,
        customer={"id": "7712345678901", "email": "jane@example.com", "phone": None},
    )
    logged["event"].update(client_id="device-3")
    post_beacon(client, logged, ip=PIXEL_IP)  # queued, not processed yet
    payload = json.loads(fixture_bytes("customers_redact.json"))
    outcome = privacy.redact_customer(runtime, SHOP, payload)
    print(outcome)
    work(runtime)
    assert visitors.profile(runtime.redis, SHOP, "device-3").get("customer_id") is None


def test_stranger_cannot_make_webhook_only_events(
    client, runtime, pinterest, connected_shop
):
    started = envelope(CO, cart_token="strangercart")
    started["event"].update(name="checkout_started", id="sh-s1", client_id="stranger")
    done = envelope(CO, cart_token="strangercart")
    done["event"].update(id="sh-s2", client_id="stranger")
    done["event"]["data"]["checkout"]["order"] = {"id": "6123456789099"}
    added = envelope(ATC, cart_token=CART)  # names the victim's cart
    added["event"].update(id="sh-s3", client_id="stranger")
    for beacon in (started, done, added):
        assert post_beacon(client, beacon, ip="192.0.2.77").status_code == 204
    work(runtime)
    assert statuses(runtime) == []
    # the victim's cart is not the stranger's
    assert visitors.client_for(runtime.redis, SHOP, "cart", CART) == "stranger"


def test_pixel_event_id_can_preclaim_a_cart_increase(
    client, runtime, pinterest, connected_shop
):
    """Whoever knows a cart token can occupy its add-to-cart event ids."""
    post_beacon(client, envelope(PV), ip=PIXEL_IP)  # the real visitor, owning the cart
    forged = envelope(ATC, cart_token=None)
    forged["event"].update(id=f"{CART}:44012345678901:1", client_id="stranger")
    forged["event"]["data"]["cartLine"]["cost"]["totalAmount"]["amount"] = 99999
    post_beacon(client, forged, ip="192.0.2.77")
    work(runtime)
    post_fixture(client, "carts_create.json")
    work(runtime)
    sent = [
        (
            e["event_id"],
            e["custom_data"].get("value"),
            e["user_data"].get("client_ip_address"),
        )
        for e in pinterest.events
        if e["event_name"] == "add_to_cart"
    ]
    print(sent)
    assert all(ip == PIXEL_IP for _, _, ip in sent)


def test_sale_of_data_refusal_page_view_carries_browser_data(
    client, runtime, pinterest, connected_shop
):
    refused = envelope("pixel_page_viewed.json", consent=REFUSED_SALE)
    post_beacon(client, refused, ip=PIXEL_IP)
    work(runtime)
    # docs/consent.md: none of what their browser told Relay is used.
    for event in pinterest.events:
        assert not {"click_id", "client_ip_address", "client_user_agent"} & set(
            event["user_data"]
        )


def test_a_visitor_of_two_shops_of_one_merchant_is_refused_on_the_second(
    client, runtime, shop
):
    """If a merchant's stores share the client-id cookie (sub-domains of one
    site), every beacon to the first renews a 30-day lock on the second."""
    from relay.shops import ensure_shop

    other = "example-shop-ca.myshopify.com"
    with runtime.db.session() as session:
        ensure_shop(session, other, runtime.clock.now())
    assert post_beacon(client, envelope(PV)).status_code == 204
    response = post_beacon(client, envelope(CO, shop=other))
    assert response.status_code == 409
    assert runtime.redis.ttl(keys.visitor_shop(CLIENT)) > 29 * 86400
