"""Every kind of stored data lives as long as its setting says, no longer."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from click.testing import CliRunner
from sqlalchemy import select

from relay import keys
from relay.cli import cli
from relay.models import EventRecord, PrivacyReport, PrivacyRequest, Shop
from relay.scheduling import cron_scheduler
from tests.conftest import (
    SHOP,
    connect_pinterest,
    fixture_bytes,
    post_fixture,
    post_signed,
    work,
)

DAY = timedelta(days=1)


def data_request(client, request_id: str) -> None:
    payload = json.loads(fixture_bytes("customers_data_request.json"))
    payload["data_request"]["id"] = request_id
    post_signed(client, payload, f"request-{request_id}", "customers/data_request")


def add_shop(runtime, domain: str, uninstalled_days_ago: int) -> None:
    now = runtime.clock.now()
    with runtime.db.session() as session:
        session.add(
            Shop(
                domain=domain,
                installed=False,
                uninstalled_at=now - uninstalled_days_ago * DAY,
                created_at=now - 400 * DAY,
            )
        )


def test_retention_job_deletes_what_outlived_its_lifetime_and_keeps_the_rest(
    client, runtime, pinterest
):
    clock = runtime.clock
    connect_pinterest(runtime, pinterest, SHOP)
    post_fixture(client, "orders_create.json")  # day 0
    data_request(client, "old")  # day 0: report kept until day 30
    work(runtime)

    clock.advance(80 * DAY)
    later_order = json.loads(fixture_bytes("orders_create.json"))
    later_order["id"] = 6123456789099
    post_signed(client, later_order, "later-order")  # day 80
    data_request(client, "recent")  # day 80: report kept until day 110
    work(runtime)
    with runtime.db.session() as session:
        session.add(
            PrivacyRequest(
                shop_domain=SHOP,
                topic="customers/redact",
                webhook_id="long-ago",
                received_at=clock.now() - 3 * 365 * DAY - DAY,
                completed_at=clock.now() - 3 * 365 * DAY - DAY,
                outcome={},
            )
        )
    cart_key = keys.cart(SHOP, "no-ttl")
    runtime.redis.set(cart_key, "{}")  # as if written without a lifetime

    clock.advance(11 * DAY)  # day 91
    add_shop(runtime, "gone-shop.myshopify.com", uninstalled_days_ago=31)
    add_shop(runtime, "recent-shop.myshopify.com", uninstalled_days_ago=29)
    runtime.queue.enqueue("relay.jobs.enforce_retention")
    work(runtime)

    with runtime.db.session() as session:
        events = session.scalars(select(EventRecord)).all()
        assert [e.order_id for e in events] == ["6123456789099"]
        reports = session.scalars(select(PrivacyReport)).all()
        assert [r.data_request_id for r in reports] == ["recent"]
        ledger = session.scalars(select(PrivacyRequest)).all()
        assert sorted(r.webhook_id for r in ledger) == ["request-old", "request-recent"]
        shops = session.scalars(select(Shop.domain).order_by(Shop.domain)).all()
        assert shops == [SHOP, "recent-shop.myshopify.com"]
    assert 0 < runtime.redis.ttl(cart_key) <= 30 * 24 * 3600


def test_nothing_within_its_lifetime_is_touched(client, runtime, pinterest, cli_env):
    # Made 29 days before `relay retention`, which runs on the real clock.
    runtime.clock.set(datetime.now(timezone.utc) - 29 * DAY)
    connect_pinterest(runtime, pinterest, SHOP)
    post_fixture(client, "orders_create.json")
    data_request(client, "fresh")
    work(runtime)

    result = CliRunner().invoke(cli, ["retention"], env=cli_env)

    assert result.exit_code == 0, result.output
    assert result.output == (
        "delivery log entries deleted: 0\n"
        "events deleted: 0\n"
        "privacy reports deleted: 0\n"
        "privacy request records deleted: 0\n"
        "Redis keys found without a lifetime and given one: 0\n"
        "uninstalled shops deleted: 0\n"
    )
    with runtime.db.session() as session:
        assert len(session.scalars(select(EventRecord)).all()) == 1
        assert len(session.scalars(select(PrivacyReport)).all()) == 1


def test_cron_queues_retention_hourly_and_conflict_checks_daily(runtime):
    scheduler = cron_scheduler(runtime)

    assert sorted(
        (job.func_name, job.interval, job.queue_name) for job in scheduler.get_jobs()
    ) == [
        ("relay.jobs.check_every_shop", 86400, runtime.queue.name),
        ("relay.jobs.enforce_retention", 3600, runtime.queue.name),
    ]
    scheduler.enqueue_jobs()
    assert sorted(job.func_name for job in runtime.queue.get_jobs()) == [
        "relay.jobs.check_every_shop",
        "relay.jobs.enforce_retention",
    ]
