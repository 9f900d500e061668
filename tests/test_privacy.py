"""Shopify's privacy webhooks, carried out, and checked by looking everywhere.

The story: Jane and Sam both bought from the example shop; Jane also bought
from another shop that uses Relay. Each request must reach exactly its
customer or shop, in the database and in Redis (RQ's jobs included), and
leave every other customer and shop as it was.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from click.testing import CliRunner
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select, text

from relay import keys
from relay.cli import cli
from relay.models import Base, Delivery, EventRecord, PrivacyReport, PrivacyRequest
from tests.conftest import (
    SECRET,
    SHOP,
    connect_pinterest,
    fixture_bytes,
    post_fixture,
    post_signed,
    work,
)
from tests.fake_shopify import session_token

OTHER_SHOP = "other-shop.myshopify.com"
JANE_ORDER = "6123456789012"
SAM_ORDER = "6199999999999"


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# Everything that identifies Jane, raw or as the digests platforms get.
JANE = [
    "jane@example.com",
    sha256("jane@example.com"),
    "5555550100",
    sha256("15555550100"),
    "7712345678901",
    JANE_ORDER,
    "203.0.113.42",
    "Jane",
    sha256("jane"),
    sha256("doe"),
    "123 Example St",
]
SAM_CHANGES = {
    "jane@example.com": "sam@example.org",
    "+15555550100": "+15555550199",
    JANE_ORDER: SAM_ORDER,
    "7712345678901": "7719999999999",
    "203.0.113.42": "198.51.100.7",
    "Jane": "Sam",
    "Doe": "Roe",
    "123 Example St": "9 Other Ave",
}


def sams_order() -> dict[str, Any]:
    text_body = fixture_bytes("orders_create.json").decode()
    for jane, sam in SAM_CHANGES.items():
        text_body = text_body.replace(jane, sam)
    return json.loads(text_body)


def janes_order() -> dict[str, Any]:
    return json.loads(fixture_bytes("orders_create.json"))


@pytest.fixture
def story(client, runtime, pinterest):
    """Jane and Sam at the example shop, Jane at the other shop, all sent."""
    connect_pinterest(runtime, pinterest, SHOP)
    connect_pinterest(runtime, pinterest, OTHER_SHOP)
    post_fixture(client, "orders_create.json")
    post_signed(client, sams_order(), "sam-order")
    post_signed(client, janes_order(), "jane-elsewhere", shop=OTHER_SHOP)
    work(runtime)
    assert len(pinterest.events) == 3
    return runtime


def database_rows(runtime) -> list[tuple[str, str]]:
    """Every row of every table as (table, text), encrypted columns opened.

    A row with a shop id also names its shop, so `outside` can tell whose
    it is.
    """
    rows = []
    with runtime.db.session() as session:
        domains = dict(session.execute(text("SELECT id, domain FROM shops")).all())
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)).mappings():
                values = dict(row)
                if "shop_id" in values:
                    values["shop"] = domains.get(values["shop_id"])
                if table.name == "privacy_reports":
                    values["encrypted_content"] = runtime.keyring.decrypt(
                        values["encrypted_content"]
                    )
                if table.name == "shop_tokens":
                    values["encrypted_token"] = runtime.keyring.decrypt(
                        values["encrypted_token"]
                    )
                rows.append((table.name, json.dumps(values, default=str)))
    return rows


def redis_entries(runtime) -> list[tuple[str, str]]:
    """Every Redis key with its value; RQ's jobs with their arguments."""
    connection = runtime.redis
    entries = []
    for raw_key in connection.scan_iter(count=1000):
        key = raw_key.decode()
        kind = connection.type(raw_key).decode()
        if kind == "string":
            value: Any = connection.get(raw_key)
        elif kind == "hash":
            value = connection.hgetall(raw_key)
        elif kind == "list":
            value = connection.lrange(raw_key, 0, -1)
        elif kind == "set":
            value = connection.smembers(raw_key)
        elif kind == "zset":
            value = connection.zrange(raw_key, 0, -1)
        elif kind == "stream":  # RQ's job results
            value = connection.xrange(raw_key)
        else:
            value = f"<{kind}>"
        if key.startswith("rq:job:") and kind == "hash":
            job = Job.fetch(key.removeprefix("rq:job:"), connection=connection)
            value = {"stored": value, "args": job.args}
        entries.append((key, repr(value)))
    return entries


def everything(runtime) -> list[tuple[str, str]]:
    return database_rows(runtime) + redis_entries(runtime)


def mentions(entries: list[tuple[str, str]], markers: list[str]) -> list[str]:
    return [
        f"{where}: {marker}"
        for where, content in entries
        for marker in markers
        if marker in where or marker in content
    ]


def other_shops_data(runtime) -> list[tuple[str, str]]:
    """The other shop's rows and keys (RQ's bookkeeping aside, which moves)."""
    return [
        entry
        for entry in everything(runtime)
        if OTHER_SHOP in entry[1] and not entry[0].startswith("rq:")
    ]


def outside(entries, shop: str) -> list[tuple[str, str]]:
    """Entries that do not name `shop`."""
    return [(where, content) for where, content in entries if shop not in content]


def shop_id(runtime, domain: str) -> int:
    with runtime.db.session() as session:
        return session.execute(
            text("SELECT id FROM shops WHERE domain = :d"), {"d": domain}
        ).scalar_one()


# customers/redact


def test_customer_redact_leaves_nothing_of_that_customer_and_spares_the_rest(
    client, story
):
    runtime = story
    # A body of Jane's still waiting for its job (say, delayed by a retry).
    runtime.redis.set(keys.inbox(SHOP, "pending-1"), json.dumps(janes_order()))
    other_shop_before = other_shops_data(runtime)

    post_fixture(client, "customers_redact.json")
    work(runtime)

    # Nothing of Jane's at the example shop, anywhere.
    example_shop_data = outside(everything(runtime), OTHER_SHOP)
    assert mentions(example_shop_data, JANE) == []

    # Sam's purchase and its delivery log are untouched.
    with runtime.db.session() as session:
        events = session.scalars(select(EventRecord).order_by(EventRecord.id)).all()
        assert [(e.order_id, e.shop.domain) for e in events] == [
            (SAM_ORDER, SHOP),
            (JANE_ORDER, OTHER_SHOP),
        ]
        assert len(session.scalars(select(Delivery)).all()) == 2
    assert runtime.redis.exists(keys.event(events[0].id))

    # Jane's data at the other shop is that shop's business: still there.
    other_shop_after = other_shops_data(runtime)
    assert other_shop_after == other_shop_before


def test_customer_redact_is_recorded_without_the_customer(client, story):
    runtime = story
    post_fixture(client, "customers_redact.json")
    work(runtime)

    with runtime.db.session() as session:
        record = session.scalars(select(PrivacyRequest)).one()
        assert (record.shop_domain, record.topic, record.webhook_id) == (
            SHOP,
            "customers/redact",
            "7025d74f-04db-5e6b-a7b8-2d0fc1cbdabb",
        )
        assert record.outcome == {
            "events": 1,
            "deliveries": 1,
            "webhook_bodies": 0,
            "pixel_beacons": 0,
            "privacy_reports": 0,
            "visitor_profiles": 0,
        }
        assert record.completed_at == runtime.clock.now()
        assert mentions([("ledger", json.dumps(record.outcome))], JANE) == []


def test_customer_redact_also_deletes_earlier_reports_about_them(client, story):
    runtime = story
    post_fixture(client, "customers_data_request.json")
    work(runtime)
    post_fixture(client, "customers_redact.json")
    work(runtime)

    with runtime.db.session() as session:
        assert session.scalars(select(PrivacyReport)).all() == []


# shop/redact


def test_shop_redact_deletes_everything_of_the_shop_and_spares_the_others(
    client, story, shopify
):
    runtime = story
    # The shop also has tokens, a pixel, a cart, a report and pending work.
    client.get(f"/?shop={SHOP}&id_token={session_token(SHOP, SECRET)}")
    post_fixture(client, "carts_create.json")
    post_fixture(client, "customers_data_request.json")
    work(runtime)
    post_fixture(client, "orders_paid.json")  # queued, not yet processed
    other_shop_before = other_shops_data(runtime)
    other_shop_id = shop_id(runtime, OTHER_SHOP)

    post_fixture(client, "shop_redact.json")
    work(runtime)

    assert mentions(everything(runtime), [SHOP, "example-shop"]) == []
    with runtime.db.session() as session:
        events = session.scalars(select(EventRecord)).all()
        assert [(e.order_id, e.shop_id) for e in events] == [
            (JANE_ORDER, other_shop_id)
        ]
    other_shop_after = other_shops_data(runtime)
    assert other_shop_after == other_shop_before


def test_shop_redact_ledger_keeps_only_a_digest_of_the_shop(client, story):
    runtime = story
    post_fixture(client, "customers_redact.json")
    post_fixture(client, "shop_redact.json")
    work(runtime)

    with runtime.db.session() as session:
        ledger = session.scalars(
            select(PrivacyRequest).order_by(PrivacyRequest.id)
        ).all()
        assert [(r.shop_domain, r.topic) for r in ledger] == [
            (f"sha256:{sha256(SHOP)}", "customers/redact"),
            (f"sha256:{sha256(SHOP)}", "shop/redact"),
        ]
        # Redis: four dedupe markers, this request's body and the last
        # webhook time per topic; jobs: the finished batch job that sent the
        # purchase (drain and privacy jobs keep no result).
        assert ledger[1].outcome == {
            "shop": 1,
            "events": 1,
            "deliveries": 1,
            "redis_keys": 6,
            "jobs": 1,
        }


# customers/data_request


def test_data_request_report_holds_what_relay_keeps_about_the_customer(client, story):
    runtime = story
    post_fixture(client, "customers_data_request.json")
    work(runtime)

    with runtime.db.session() as session:
        record = session.scalars(select(PrivacyRequest)).one()
        assert (record.topic, record.outcome) == (
            "customers/data_request",
            {"events": 1},
        )
        report_id = record.report_id

    response = client.get(
        f"/api/privacy/reports/{report_id}",
        headers={"Authorization": f"Bearer {session_token(SHOP, SECRET)}"},
    )
    assert response.status_code == 200
    report = response.json
    assert report["about"] == {
        "shopify_customer_id": "7712345678901",
        "email_sha256": sha256("jane@example.com"),
        "phone_sha256": sha256("15555550100"),
        "orders_requested": [JANE_ORDER, "6123456789013"],
    }
    assert (report["shop"], report["data_request_id"]) == (SHOP, "9912")
    (event,) = report["events"]
    assert (event["event"], event["event_id"], event["order_id"]) == (
        "purchase",
        JANE_ORDER,
        JANE_ORDER,
    )
    (delivery,) = event["deliveries"]
    assert (delivery["destination"], delivery["status"]) == ("pinterest", "sent")
    sent = delivery["payload_as_sent"]
    assert sent["user_data"]["em"] == [sha256("jane@example.com")]
    assert sent["user_data"]["ph"] == [sha256("15555550100")]
    assert sent["event_id"] == JANE_ORDER
    assert report["waiting_for_processing"] == {"webhook_bodies": 0}
    # Digests and masked values only: no raw email, phone or IP in it.
    assert mentions([("report", json.dumps(report))], JANE[2:3] + JANE[6:7]) == []
    assert "jane@example.com" not in json.dumps(report)


def test_reports_are_listed_and_opened_only_for_their_own_shop(client, story):
    runtime = story
    post_fixture(client, "customers_data_request.json")
    work(runtime)
    with runtime.db.session() as session:
        report = session.scalars(select(PrivacyReport)).one()
        report_id, created = report.id, report.created_at

    def get(path: str, shop: str):
        token = session_token(shop, SECRET)
        return client.get(path, headers={"Authorization": f"Bearer {token}"})

    mine = get("/api/privacy/reports", SHOP)
    assert mine.json == {
        "reports": [
            {
                "id": report_id,
                "data_request_id": "9912",
                "created_at": created.isoformat(),
                "expires_at": "2026-08-13T14:30:00+00:00",
            }
        ]
    }
    assert get("/api/privacy/reports", OTHER_SHOP).json == {"reports": []}
    theirs = get(f"/api/privacy/reports/{report_id}", OTHER_SHOP)
    assert (theirs.status_code, theirs.json) == (404, {"error": "no such report"})
    forged = client.get(
        f"/api/privacy/reports/{report_id}",
        headers={"Authorization": f"Bearer {session_token(SHOP, 'forged' * 6)}"},
    )
    assert forged.status_code == 401


def test_relay_privacy_report_lists_and_prints_reports(client, story, cli_env):
    runtime = story
    post_fixture(client, "customers_data_request.json")
    work(runtime)
    with runtime.db.session() as session:
        report = session.scalars(select(PrivacyReport)).one()
        report_id, created = report.id, report.created_at

    listed = CliRunner().invoke(cli, ["privacy", "report", "--shop", SHOP], env=cli_env)
    printed = CliRunner().invoke(
        cli, ["privacy", "report", "--shop", SHOP, "--id", str(report_id)], env=cli_env
    )
    elsewhere = CliRunner().invoke(
        cli,
        ["privacy", "report", "--shop", OTHER_SHOP, "--id", str(report_id)],
        env=cli_env,
    )

    assert listed.output == (
        f"{report_id}: data request 9912, made {created.isoformat()}, "
        "kept until 2026-08-13T14:30:00+00:00\n"
    )
    assert json.loads(printed.output)["about"]["shopify_customer_id"] == (
        "7712345678901"
    )
    assert (elsewhere.exit_code, elsewhere.output) == (
        1,
        f"Error: no report {report_id} for {OTHER_SHOP}\n",
    )


def test_customer_redact_drops_a_pending_retry_of_their_delivery(
    client, runtime, pinterest
):
    connect_pinterest(runtime, pinterest, SHOP)
    pinterest.forced = (503, {"code": 4197, "message": "endpoint ramped down"})
    post_fixture(client, "orders_create.json")
    work(runtime)
    scheduled = ScheduledJobRegistry(queue=runtime.queue)
    (job_id,) = scheduled.get_job_ids()
    with runtime.db.session() as session:
        delivery_id = session.scalars(select(Delivery.id)).one()
    assert runtime.redis.lrange(keys.batch(job_id), 0, -1) == [
        str(delivery_id).encode()
    ]

    post_fixture(client, "customers_redact.json")
    work(runtime)

    # The batch's retry may carry other customers' events; theirs is gone
    # from it, so running the retry now sends nothing.
    assert runtime.redis.lrange(keys.batch(job_id), 0, -1) == []
    scheduled.remove(job_id)
    runtime.queue.enqueue_job(Job.fetch(job_id, connection=runtime.redis))
    pinterest.forced = None
    work(runtime)
    assert len(pinterest.requests) == 1
