"""Hostile input against dead letters, pausing and resuming a destination."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from relay import delivery as delivery_module
from relay import keys
from relay.deadletters import requeue_stranded, resume_held, retry_failed
from relay.errors import CredentialsRefused
from relay.models import Delivery, DestinationSetting
from tests.conftest import (
    SHOP,
    configure_destination,
    fixture_bytes,
    invoke,
    post_fixture,
    post_signed,
    work,
)

REFUSED = (401, {"code": 2, "message": "Authentication failed."})


run = invoke


def rows(runtime):
    with runtime.db.session() as session:
        return [
            (d.id, d.status, d.reason)
            for d in session.scalars(select(Delivery).order_by(Delivery.id))
        ]


def paused(runtime):
    with runtime.db.session() as session:
        return session.scalars(select(DestinationSetting.paused_reason)).one()


def hold_one(client, runtime, pinterest):
    pinterest.forced = REFUSED
    post_fixture(client, "orders_create.json")
    work(runtime)
    pinterest.forced = None
    assert rows(runtime)[0][1] == "held"


def second_order(client):
    order = json.loads(fixture_bytes("orders_create.json"))
    post_signed(client, dict(order, id=6123456789099), "second-order")


# --- CLI input -------------------------------------------------------------


def test_retry_since_garbage_is_a_clean_error(cli_env, runtime):
    result = run(cli_env, "retry", "--since", "yesterday")
    assert result.exit_code == 2, result.output
    assert "is not an ISO 8601 time" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_retry_since_out_of_range_time_is_a_clean_error(cli_env, runtime):
    # Parses, but cannot be converted to UTC.
    result = run(cli_env, "retry", "--since", "9999-12-31T23:59:59-01:00")
    assert isinstance(result.exception, SystemExit), repr(result.exception)


def test_retry_unknown_shop_says_so(cli_env, runtime):
    result = run(cli_env, "retry", "--shop", "no-such-shop.myshopify.com")
    assert result.exit_code != 0 or "no-such-shop" in result.output, result.output


# --- double sends ----------------------------------------------------------


def test_retry_twice_before_the_worker_runs_sends_once(
    client, runtime, pinterest, connected_shop, cli_env
):
    pinterest.forced = (400, {"code": 4196, "message": "The request was invalid."})
    post_fixture(client, "orders_create.json")
    work(runtime)
    pinterest.forced = None

    first = run(cli_env, "retry")
    second = run(cli_env, "retry")
    work(runtime)

    assert first.output.startswith("1 failed")
    assert second.output.startswith("0 failed")
    assert len(pinterest.events) == 1


def test_resume_twice_before_the_worker_runs_sends_once(
    client, runtime, pinterest, connected_shop, cli_env
):
    hold_one(client, runtime, pinterest)
    assert resume_held(runtime, SHOP, "pinterest") == 1
    assert retry_failed(runtime).resumed == 0
    work(runtime)
    assert len(pinterest.events) == 1
    assert rows(runtime)[0][1] == "sent"


# --- pause / resume races --------------------------------------------------


def test_stale_401_after_new_settings_does_not_pause_again(
    client, runtime, pinterest, connected_shop
):
    """A send with the old token is in flight; the merchant saves a new
    token; then the old send's 401 arrives: nothing pauses, and the event
    goes again with the new token."""
    runtime.config = runtime.config.with_changes(browser_wait_seconds=60)
    post_fixture(client, "orders_create.json")
    work(runtime)  # the purchase is made; its delivery waits, not yet sent
    with runtime.db.session() as session:
        (delivery_id,) = session.scalars(select(Delivery.id)).all()
        sending = delivery_module._sending(
            runtime, session, SHOP, "pinterest", [delivery_id]
        )
        assert sending is not None
        (delivery,) = delivery_module._pending(
            session, sending.shop, "pinterest", [delivery_id]
        )
        stored = runtime.redis.get(keys.event(delivery.event_pk))
        ready = delivery_module._prepare(runtime, delivery, stored, sending)
        assert ready is not None
    configure_destination(runtime, "pinterest", {"conversion_token": pinterest.token})

    refused = CredentialsRefused(
        "Pinterest refused the credentials",
        http_status=401,
        detail="2: Authentication failed.",
    )
    delivery_module._pause(runtime, sending, [ready], refused)
    work(runtime)

    assert paused(runtime) is None
    assert [r[1] for r in rows(runtime)] == ["sent"]


def test_event_held_while_resume_commits_is_not_stranded(
    client, runtime, pinterest, connected_shop, monkeypatch, tmp_path
):
    """_sending reads the pause, resume_held commits, then _sending commits
    `held`: the delivery is held under a destination no longer paused."""
    hold_one(client, runtime, pinterest)
    original = delivery_module.setting_row
    flag = tmp_path / "raced"

    def racing(session, shop, name):
        setting = original(session, shop, name)
        if not flag.exists():  # once, across forked work horses
            flag.write_text("raced")
            resume_held(runtime, SHOP, "pinterest")  # another process
        return setting

    second_order(client)
    monkeypatch.setattr(delivery_module, "setting_row", racing)
    work(runtime)
    monkeypatch.setattr(delivery_module, "setting_row", original)
    work(runtime)
    # The hourly retention job sends what the race left held.
    requeue_stranded(runtime)
    work(runtime)

    statuses = [r[1] for r in rows(runtime)]
    assert paused(runtime) is None
    assert "held" not in statuses, rows(runtime)


def test_disabling_a_paused_destination_keeps_its_held_events(
    client, runtime, pinterest, connected_shop, cli_env
):
    hold_one(client, runtime, pinterest)
    disabled = run(
        cli_env, "destinations", "set", "pinterest", "--shop", SHOP, "--disable"
    )
    work(runtime)
    assert "held deliveries queued again" not in disabled.output
    run(cli_env, "destinations", "set", "pinterest", "--shop", SHOP, "--enable")
    work(runtime)
    assert len(pinterest.events) == 1, rows(runtime)


def test_test_mode_destination_is_paused_and_resumed(
    client, runtime, pinterest, connected_shop, cli_env
):
    configure_destination(runtime, "pinterest", {}, test_mode=True)
    hold_one(client, runtime, pinterest)
    result = run(cli_env, "retry")
    work(runtime)
    assert "1 held delivery resumed" in result.output
    assert [r.test for r in pinterest.requests] == [True, True]
    assert rows(runtime)[0][1] == "sent"


def test_uninstall_while_held_then_retry(
    client, runtime, pinterest, connected_shop, cli_env
):
    hold_one(client, runtime, pinterest)
    post_fixture(client, "app_uninstalled.json")
    work(runtime)
    result = run(cli_env, "retry")
    work(runtime)
    assert len(pinterest.events) == 0
    assert rows(runtime)[0][1] == "held"  # kept until a reinstall or shop/redact
    assert "resumed" not in result.output, result.output


def test_customer_redact_deletes_held_deliveries_and_they_are_never_sent(
    client, runtime, pinterest, connected_shop, cli_env
):
    hold_one(client, runtime, pinterest)
    post_fixture(client, "customers_redact.json")
    work(runtime)
    assert rows(runtime) == []
    run(cli_env, "retry")
    work(runtime)
    assert pinterest.events == []


def test_shop_redact_deletes_held_deliveries(
    client, runtime, pinterest, connected_shop, cli_env
):
    hold_one(client, runtime, pinterest)
    post_fixture(client, "app_uninstalled.json")
    post_fixture(client, "shop_redact.json")
    work(runtime)
    assert rows(runtime) == []
    run(cli_env, "retry")
    work(runtime)
    assert pinterest.events == []


# --- retention -------------------------------------------------------------


def test_a_held_delivery_whose_event_expired_is_failed_not_resumed(
    client, runtime, pinterest, connected_shop, cli_env
):
    hold_one(client, runtime, pinterest)
    with runtime.db.session() as session:
        pk = session.scalars(select(Delivery.event_pk)).one()
    runtime.redis.delete(keys.event(pk))  # RELAY_EVENT_SECONDS went by

    result = run(cli_env, "retry")
    work(runtime)

    assert "resumed" not in result.output, result.output
    assert rows(runtime)[0][1:] == (
        "failed",
        "event expired while the destination was paused",
    )


def test_held_delivery_row_outlives_its_event(
    client, runtime, pinterest, connected_shop, cli_env
):
    from relay import retention

    hold_one(client, runtime, pinterest)
    runtime.clock.advance(timedelta(days=8)) if hasattr(
        runtime.clock, "advance"
    ) else None
    retention.enforce(runtime)
    assert [r[1] for r in rows(runtime)] == ["held"]


# --- personal data in logs -------------------------------------------------


def test_pause_and_resume_log_no_personal_data(
    client, runtime, pinterest, connected_shop, process_log
):
    hold_one(client, runtime, pinterest)
    second_order(client)
    work(runtime)
    resume_held(runtime, SHOP, "pinterest")
    work(runtime)
    text = process_log()
    order = json.loads(fixture_bytes("orders_create.json"))
    email = order.get("email") or order["customer"]["email"]
    assert email not in text
    assert "pina_fake_conversion_token" not in text
