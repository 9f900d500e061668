"""Sending one made-up purchase to a destination in its test mode.

The merchant's "Send test event": the shop's saved settings, with test mode
forced on (Pinterest's `test=true` validates the event and records
nothing), and the destination's own `format_event` and `send_batch`, as a
delivery uses them. Nothing is written to the delivery log or the queue,
and a refusal of the credentials pauses nothing: the answer is shown to the
merchant in plain words instead.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from decimal import Decimal
from typing import Any

from relay.destinations import Outcome, Skip
from relay.errors import (
    ConfigError,
    CredentialsRefused,
    PermanentDelivery,
    RetryableDelivery,
)
from relay.events import ActionSource, Commerce, Event, EventName, Person
from relay.runtime import Runtime
from relay.shops import destination_config, find_shop

log = logging.getLogger(__name__)

# A reserved domain (RFC 2606): the digest matches nobody at any platform.
TEST_EMAIL = "test-event@relay.invalid"


class NotReady(Exception):
    """The destination cannot send yet; the message says what to do."""


def test_purchase(shop: str, runtime: Runtime) -> Event:
    """A purchase of 1.00 USD by nobody, made now."""
    token = uuid.uuid4().hex[:12]
    return Event(
        shop=shop,
        name=EventName.PURCHASE,
        event_id=f"relay-test-{token}",
        occurred_at=runtime.clock.now(),
        action_source=ActionSource.WEB,
        person=Person(email=TEST_EMAIL),
        commerce=Commerce(currency="USD", value=Decimal("1.00")),
        test=True,
        origin="relay:test-event",
    )


def send(runtime: Runtime, shop: str, name: str) -> dict[str, Any]:
    """Send a test purchase with the shop's settings; the platform's answer.

    Raises NotReady when the destination is not set up.
    """
    destination = runtime.plugins.destination(name)
    with runtime.db.session() as session:
        shop_row = find_shop(session, shop)
        try:
            config = (
                destination_config(
                    session, runtime.keyring, runtime.plugins, shop_row, name
                )
                if shop_row
                else None
            )
        except ConfigError as error:
            raise NotReady(f"Save the settings first: {error}") from None
    if config is None:
        raise NotReady(f"Set up and enable {destination.title} first.")
    config = dataclasses.replace(config, test_mode=True)

    event = test_purchase(shop, runtime)
    try:
        formatted = destination.format_event(event, config)
    except Skip as skip:
        return _answer(event, False, None, f"Relay would not send it: {skip.reason}.")

    title = destination.title
    try:
        (result,) = destination.send_batch([formatted], config)
    except CredentialsRefused as error:
        if error.http_status is None:
            message = f"{error.reason}: {error.detail}."
        else:
            message = (
                f"{title} refused the credentials (HTTP {error.http_status}): "
                f"{error.detail.rstrip('.')}. Check the ad account id and the "
                "token."
            )
        return _answer(event, False, error.http_status, message, formatted)
    except PermanentDelivery as error:
        message = (
            f"{title} refused the request (HTTP {error.http_status}): {error.detail}"
        )
        return _answer(event, False, error.http_status, message, formatted)
    except RetryableDelivery as error:
        message = f"{error.reason}. Try again in a minute."
        return _answer(event, False, error.http_status, message, formatted)

    log.info(
        "shop %s: test event %s to %s: %s (HTTP %s)",
        shop,
        event.event_id,
        name,
        result.outcome,
        result.http_status,
    )
    if result.outcome == Outcome.SENT:
        message = (
            f"{title} accepted the test event (HTTP {result.http_status}). "
            "It was sent in test mode: checked, not recorded."
        )
        if result.warning:
            message += f" {title} warns: {result.warning}"
        return _answer(event, True, result.http_status, message, formatted)
    message = f"{title} refused the test event: {result.error or 'no reason given'}"
    return _answer(event, False, result.http_status, message, formatted)


def _answer(
    event: Event,
    accepted: bool,
    http_status: int | None,
    message: str,
    formatted: Any = None,
) -> dict[str, Any]:
    return {
        "accepted": accepted,
        "http_status": http_status,
        "message": message,
        "event_id": event.event_id,
        # As the delivery log keeps it: digests, clear identifiers masked.
        "payload": formatted.logged_payload if formatted is not None else None,
    }
