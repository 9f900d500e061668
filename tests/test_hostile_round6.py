"""Hostile input against the shared-browser, stated-identity, client-id and
cart fixes of the pixel's hostile round (a second round, kept)."""

from __future__ import annotations

import json

import pytest
import redis
from rq.registry import FailedJobRegistry
from sqlalchemy import select

from relay import carts, keys, matchkeys, privacy, visitors
from relay.models import EventRecord, PrivacyRequest
from tests.conftest import SHOP, fixture_bytes, post_fixture, post_signed, work
from tests.test_conversions import PIXEL_IP, release_waiting
from tests.test_pixel import CLIENT, envelope, post_beacon

PV = "pixel_page_viewed.json"
CO = "pixel_checkout_completed.json"
JANE_ID, JANE = "7712345678901", "jane@example.com"
MAX_ID, MAX = "7799999999999", "max@example.org"


def redact_payload(customer_id, email, phone=None, orders=()):
    return {
        "shop_id": 60123456789,
        "shop_domain": SHOP,
        "customer": {"id": int(customer_id), "email": email, "phone": phone},
        "orders_to_redact": list(orders),
    }


def logged_in(client_id, event_id, customer_id, email, ts="2026-07-14T14:25:00Z"):
    beacon = envelope(
        PV, cart_token=None, customer={"id": customer_id, "email": email, "phone": None}
    )
    beacon["event"].update(client_id=client_id, id=event_id, timestamp=ts)
    return beacon


def failed_jobs(runtime):
    return FailedJobRegistry(queue=runtime.queue).get_job_ids()


# A shared browser: another customer's pixel events are theirs.


def test_shared_browser_page_views_of_max_go_into_janes_report_and_redact(
    client, runtime, pinterest, connected_shop
):
    # Max, logged in on the family tablet, views a page: sent with his email.
    post_beacon(
        client,
        logged_in(CLIENT, "sh-max-pv", MAX_ID, MAX, "2026-07-14T14:00:00Z"),
        ip=PIXEL_IP,
    )
    work(runtime)
    (sent,) = [e for e in pinterest.events if e["event_name"] == "page_visit"]
    assert sent["user_data"]["em"] == [matchkeys.sha256(MAX)]
    # Jane then checks out on the same tablet; her order arrives.
    post_beacon(client, envelope(CO), ip=PIXEL_IP)
    post_fixture(client, "orders_create.json")
    work(runtime)

    post_fixture(client, "customers_data_request.json")  # about Jane
    work(runtime)
    with runtime.db.session() as session:
        report_id = session.scalars(select(PrivacyRequest.report_id)).one()
    report = privacy.read_report(runtime, SHOP, report_id)
    text = json.dumps(report)
    leaked = [e["event_id"] for e in report["events"] if e["event_id"] == "sh-max-pv"]
    # Should be: Max's page view (and his email digest) is not in Jane's report.
    assert (leaked, matchkeys.sha256(MAX) in text) == ([], False)


def test_shared_browser_janes_redact_deletes_maxs_page_views(
    client, runtime, pinterest, connected_shop
):
    post_beacon(
        client,
        logged_in(CLIENT, "sh-max-pv", MAX_ID, MAX, "2026-07-14T14:00:00Z"),
        ip=PIXEL_IP,
    )
    post_beacon(client, envelope(CO), ip=PIXEL_IP)
    post_fixture(client, "orders_create.json")
    work(runtime)
    post_fixture(client, "customers_redact.json")  # Jane
    work(runtime)
    with runtime.db.session() as session:
        left = session.scalars(select(EventRecord.event_id)).all()
    assert left == ["sh-max-pv"]  # Max's own page view should survive


# Forgetting a device takes it out of shared `stated-*` sets, no more.


@pytest.mark.parametrize("other", ["family-tablet", "stranger"])
def test_another_customers_redact_unindexes_janes_devices(
    client, runtime, pinterest, connected_shop, other
):
    # Jane, logged in on her phone, only browsed: found only by what it stated.
    post_beacon(client, logged_in("jane-phone", "sh-j1", JANE_ID, JANE), ip=PIXEL_IP)
    # Another device states Jane's identity and then Max's: the family tablet
    # both used, or a stranger's forged beacons.
    post_beacon(client, logged_in(other, "sh-o1", JANE_ID, JANE), ip="192.0.2.7")
    post_beacon(client, logged_in(other, "sh-o2", MAX_ID, MAX), ip="192.0.2.7")
    work(runtime)
    assert visitors.stating(runtime.redis, SHOP, "em", matchkeys.sha256(JANE)) == {
        "jane-phone",
        other,
    }
    # Max asks to be forgotten.
    privacy.redact_customer(runtime, SHOP, redact_payload(MAX_ID, MAX))
    # Then Jane does.
    privacy.redact_customer(runtime, SHOP, redact_payload(JANE_ID, JANE))
    # Her phone's profile (IP, UA, click id, her digests) is gone.
    assert visitors.profile(runtime.redis, SHOP, "jane-phone") == {}


# Stated sets are bounded; a privacy request walks every member.


def test_a_stated_identity_indexes_a_bounded_number_of_devices(runtime, shop):
    n = 300
    base = logged_in("x", "sh-x", JANE_ID, JANE)
    for i in range(n):
        base["event"].update(client_id=f"forged-{i}", id=f"sh-{i}")
        visitors.observe(runtime, SHOP, base, "192.0.2.9", runtime.clock.now())
    em = matchkeys.sha256(JANE)
    size = runtime.redis.scard(keys.visitor_link(SHOP, "stated-em", em))
    outcome = privacy.redact_customer(runtime, SHOP, redact_payload(JANE_ID, JANE))
    assert size == visitors.MAX_STATING
    assert outcome["visitor_profiles"] == visitors.MAX_STATING


def test_a_data_request_lists_a_bounded_number_of_stated_profiles(
    client, runtime, shop
):
    base = logged_in("x", "sh-x", JANE_ID, JANE)
    for i in range(300):
        base["event"].update(client_id=f"forged-{i}", id=f"sh-{i}")
        visitors.observe(
            runtime, SHOP, base, f"192.0.2.{i % 250 + 1}", runtime.clock.now()
        )
    payload = json.loads(fixture_bytes("customers_data_request.json"))
    _, report_id = privacy.data_request(runtime, SHOP, payload)
    report = privacy.read_report(runtime, SHOP, report_id)
    assert len(report["visitor_profiles"]) == visitors.MAX_STATING


def test_stated_set_outlives_its_members_when_refreshed(runtime, shop):
    """A stranger restating an email keeps its set alive with members whose
    profiles are gone (expired)."""
    em = matchkeys.sha256(JANE)
    visitors.observe(
        runtime, SHOP, logged_in("jane-phone", "a", JANE_ID, JANE), None, None
    )
    runtime.redis.delete(
        keys.visitor(SHOP, "jane-phone"), keys.visitor_links(SHOP, "jane-phone")
    )  # expired
    visitors.observe(
        runtime, SHOP, logged_in("stranger", "b", JANE_ID, JANE), None, None
    )
    assert "jane-phone" in visitors.stating(runtime.redis, SHOP, "em", em)
    assert runtime.redis.ttl(keys.visitor_link(SHOP, "stated-em", em)) > 29 * 86400


# Customer.owns: what is hers on her own device.


def test_a_guest_checkout_on_her_device_with_another_email_is_not_hers(
    client, runtime, pinterest, connected_shop
):
    """Nothing but the device ties it to her; on a shared device that is
    someone else's as often as hers, so her redaction leaves it."""
    post_beacon(client, envelope(CO), ip=PIXEL_IP)
    post_fixture(client, "orders_create.json")
    # Earlier, on the same device, a guest checkout typed with her work email.
    checkout = json.loads(fixture_bytes("checkouts_create.json"))
    checkout.update(
        token="abandoned000000000000000000000001",
        email="jane.work@example.net",
        customer=None,
    )
    post_signed(client, checkout, "ck-guest", "checkouts/create")
    work(runtime)
    post_fixture(client, "customers_redact.json")
    work(runtime)
    with runtime.db.session() as session:
        left = session.scalars(select(EventRecord.event_id)).all()
    assert checkout["token"] in left


# Claiming a client id for a shop.


def test_an_owner_key_that_is_not_utf8_is_no_crash(client, runtime, shop):
    runtime.redis.set(keys.visitor_shop(CLIENT), b"\xff\xfe")
    response = post_beacon(client, envelope(PV))
    assert response.status_code in (204, 409)


def test_owner_expiring_between_set_and_get_leaves_no_claim(
    client, runtime, shop, monkeypatch
):
    runtime.redis.set(keys.visitor_shop(CLIENT), "other-shop.myshopify.com")
    original = redis.Redis.get

    def get(self, name, *a, **k):
        if name == keys.visitor_shop(CLIENT):
            self.delete(name)  # its TTL ran out just now
        return original(self, name, *a, **k)

    monkeypatch.setattr(redis.Redis, "get", get)
    response = post_beacon(client, envelope(PV))
    monkeypatch.undo()
    assert response.status_code == 204
    assert runtime.redis.get(keys.visitor_shop(CLIENT)) is None  # accepted, unclaimed


def test_concurrent_claims_by_two_shops_one_wins(client, runtime, shop):
    import threading

    from relay.shops import ensure_shop

    other = "example-shop-ca.myshopify.com"
    with runtime.db.session() as session:
        ensure_shop(session, other, runtime.clock.now())
    codes = []
    barrier = threading.Barrier(2)

    def send(s):
        c = client.application.test_client()
        barrier.wait()
        codes.append(post_beacon(c, envelope(PV, shop=s)).status_code)

    threads = [threading.Thread(target=send, args=(s,)) for s in (SHOP, other)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(codes) == [204, 409]


# Carts: only the increases around a new state.


def _state(ts, lines):
    return {
        "token": "T",
        "updated_at": ts,
        "lines": [
            {
                "variant_id": v,
                "product_id": None,
                "quantity": q,
                "price": "1.00",
                "currency": "CAD",
            }
            for v, q in lines
        ],
    }


def _simulate(arrivals):
    """Every id `_cart` would record, arriving in `arrivals` order."""
    store: list = []
    made: set = set()
    for ts, lines in arrivals:
        store = [s for s in store if s["updated_at"] != ts] + [_state(ts, lines)]
        store.sort(key=lambda s: s["updated_at"])
        store = store[-carts.MAX_STATES :]
        for inc in carts.increases(store, around=ts):
            made.add(carts.event_id("T", inc.variant_id, inc.reached))
    full = {
        carts.event_id("T", i.variant_id, i.reached) for i in carts.increases(store)
    }
    return made, full


@pytest.mark.parametrize(
    "order",
    [
        (3, 1, 2),
        (2, 3, 1),
        (3, 2, 1),
        (1, 3, 2, 2),
        (2, 1, 3, 1),
        (3, 1, 3, 2),
    ],
)
def test_around_records_every_increase_full_history_has(order):
    qs = {1: [("V", 1), ("W", 3)], 2: [("V", 3), ("W", 1)], 3: [("V", 2), ("W", 4)]}
    ts = {i: f"2026-07-14T14:1{i}:00Z" for i in qs}
    made, full = _simulate([(ts[i], qs[i]) for i in order])
    assert full <= made


def test_a_state_older_than_the_kept_history_changes_nothing():
    # 101 states; then one older than all of them arrives late and is dropped.
    arrivals = [
        (f"2026-07-14T14:{i // 60:02d}:{i % 60:02d}Z", [("V", 5 + i)])
        for i in range(1, 102)
    ]
    store = []
    for ts, lines in arrivals:
        store = sorted(store + [_state(ts, lines)], key=lambda s: s["updated_at"])[
            -100:
        ]
    late = sorted(
        store + [_state("2026-07-14T13:00:00Z", [("V", 1)])],
        key=lambda s: s["updated_at"],
    )[-100:]
    found = list(carts.increases(late, around="2026-07-14T13:00:00Z"))
    # Walked "from an empty cart", the first kept state (V: 7) would read
    # 0 -> 7 and revise the waiting 6 -> 7 to seven units.
    assert found == []


# A refusal known when an event is made stays with it.

REFUSED_SALE = {
    "analytics": True,
    "marketing": True,
    "preferences": None,
    "sale_of_data": False,
}


@pytest.mark.parametrize("redact", [False, True], ids=["control", "after-redact"])
def test_a_sale_refusal_stays_when_another_customer_s_redact_forgets_the_browser(
    client, runtime, pinterest, connected_shop, redact
):
    # Max once logged in on the family tablet.
    post_beacon(
        client,
        logged_in(CLIENT, "sh-max-pv", MAX_ID, MAX, "2026-07-14T13:00:00Z"),
        ip=PIXEL_IP,
    )
    # Jane checks out there, refusing the sale of her data.
    post_beacon(client, envelope(CO, consent=REFUSED_SALE), ip=PIXEL_IP)
    work(runtime)
    pinterest.forced = (503, {"code": 4197, "message": "endpoint ramped down"})
    post_fixture(client, "orders_create.json")
    work(runtime)  # the purchase is retrying
    if redact:
        privacy.redact_customer(runtime, SHOP, redact_payload(MAX_ID, MAX))
    pinterest.forced = None
    release_waiting(runtime)
    work(runtime)
    (purchase,) = [e for e in pinterest.events if e["event_name"] == "checkout"]
    # Should be: still sent with opt_out (Limited Data Processing).
    assert purchase.get("opt_out") is True


# Carts: a cart past MAX_STATES, end to end.


def test_late_state_older_than_kept_history_inflates_a_waiting_add_to_cart(
    client, runtime, pinterest, connected_shop
):
    from tests.test_hostile_pixel import cart_payload

    runtime.config = runtime.config.with_changes(browser_wait_seconds=60)
    post_beacon(client, envelope(PV), ip=PIXEL_IP)  # the cart's visitor
    v = 44012345678901
    for i in range(1, 102):  # quantities 6, 7, ..., 106
        ts = f"2026-07-14T14:{i // 60:02d}:{i % 60:02d}.000Z"
        post_signed(client, cart_payload(ts, [(v, 5 + i)]), f"c{i}", "carts/update")
    post_signed(
        client,
        cart_payload("2026-07-14T13:00:00.000Z", [(v, 1)]),
        "late",
        "carts/update",
    )
    work(runtime)
    release_waiting(runtime)
    work(runtime)
    units = {
        e["event_id"].rsplit(":", 1)[1]: e["custom_data"]["num_items"]
        for e in pinterest.events
        if e["event_name"] == "add_to_cart"
    }
    assert units.get("7") == 1  # 6 -> 7 added one
    assert FailedJobRegistry(queue=runtime.queue).get_job_ids() == []
