"""Sending a batch of logged deliveries to their destination, and logging
each one's outcome (`relay.outbox` makes the batches).

Statuses in the delivery log: `queued` → `sent` | `failed` | `skipped`, with
`retrying` while RQ retries a delivery the platform or network failed, and
`held` while its destination is paused because the platform refused the
credentials (relay.deadletters resumes it).
The payload is logged as sent, with unhashed identifiers masked.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from rq import get_current_job
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from relay import conflicts, consent, keys, outbox, visitors
from relay.destinations import (
    Destination,
    DestinationConfig,
    EventResult,
    FormattedEvent,
    Outcome,
    Skip,
)
from relay.errors import (
    ConfigError,
    CredentialsRefused,
    DeliveryError,
    PermanentDelivery,
    RetryableDelivery,
)
from relay.events import Event, EventName
from relay.models import PENDING, Delivery, DestinationSetting, EventRecord, Shop
from relay.privacy import record_digests as privacy_digests
from relay.runtime import Runtime
from relay.shops import destination_config, find_shop, setting_row

log = logging.getLogger(__name__)

RESENT_WITH_NEW_SETTINGS = "credentials changed while sending; sent again"
# A request refused as a whole for what it carries (400) or its size (413)
# may hold good events: halving it isolates the bad ones.
SPLITTABLE = (400, 413)
# How a delivery that ran out of retries says why, whichever way it ran out.
GAVE_UP = "gave up after retrying"
# Clocks disagree a little; an action hours ahead of ours is bad data, and
# platforms refuse future times.
FUTURE_TOLERANCE = timedelta(minutes=10)


@dataclass
class Sending:
    """What one batch is sent with: the same shop, destination and settings."""

    shop: Shop
    destination: Destination
    config: DestinationConfig
    # The settings as sent with (re-encrypted at every save, so any save
    # changes it): a refusal of older settings than the current pauses nothing.
    settings_stamp: str | None
    # Set when a purchase goes out while a conflict stands unacknowledged;
    # None when it holds purchases back instead (`held_by_conflict`).
    conflict: str | None
    conflict_hold: str | None


@dataclass
class Ready:
    """One delivery of a batch, formatted and about to be sent."""

    delivery_id: int
    formatted: FormattedEvent
    label: str
    window_start: datetime  # of its retry window
    conflict: str | None = None


@dataclass(frozen=True)
class Result:
    status: str
    reason: str | None = None
    http_status: int | None = None
    error: str | None = None
    warning: str | None = None


def send_batch(
    runtime: Runtime, shop: str, destination: str, delivery_ids: list[int]
) -> None:
    """Send the deliveries among `delivery_ids` still to be sent, in one
    request when the platform takes them all (or in halves, to isolate events
    a 400 refused), and log each one's outcome.

    Raises RetryableDelivery, after marking the deliveries `retrying`, when
    the platform or network failed: RQ retries the batch, and once no retry
    is left its failure callback calls `give_up`.
    """
    with runtime.db.session() as session:
        sending = _sending(runtime, session, shop, destination, delivery_ids)
        if sending is None:
            return
        deliveries = _pending(session, sending.shop, destination, delivery_ids)
        # The batch's events in one round trip.
        stored = runtime.redis.mget([keys.event(d.event_pk) for d in deliveries])
        ready = [
            item
            for delivery, event in zip(deliveries, stored, strict=True)
            if (item := _prepare(runtime, delivery, event, sending)) is not None
        ]
    if ready:
        _send(runtime, sending, ready)


def _sending(
    runtime: Runtime,
    session: Session,
    shop: str,
    destination: str,
    delivery_ids: list[int],
) -> Sending | None:
    """The batch's shared settings, or None after logging why none is sent."""
    shop_row = find_shop(session, shop)
    if shop_row is None:
        return None  # deleted (shop/redact): so are its deliveries
    plugin = runtime.plugins.destinations.get(destination)

    def skip_all(reason: str, status: str = "skipped") -> Sending | None:
        deliveries = _pending(session, shop_row, destination, delivery_ids)
        log.info(
            "%s batch for %s: %d deliveries %s, %s",
            destination,
            shop,
            len(deliveries),
            status,
            reason,
        )
        now = runtime.clock.now()
        for delivery in deliveries:
            delivery.status = status
            delivery.reason = reason
            delivery.updated_at = now
        return None

    if not shop_row.installed:
        return skip_all("shop uninstalled")
    if plugin is None:
        return skip_all("destination plugin not loaded")
    try:
        config = destination_config(
            session, runtime.keyring, runtime.plugins, shop_row, destination
        )
    except ConfigError as error:
        return skip_all(f"settings incomplete: {error}", status="failed")
    if config is None:
        return skip_all("destination disabled")
    setting = setting_row(session, shop_row, destination)
    if setting is not None and setting.paused_reason is not None:
        return skip_all(f"destination paused: {setting.paused_reason}", "held")
    return Sending(
        shop=shop_row,
        destination=plugin,
        config=config,
        settings_stamp=_stamp(setting),
        conflict=conflicts.flag(session, shop_row, destination),
        conflict_hold=conflicts.held_by_conflict(session, shop_row, destination),
    )


def _pending(
    session: Session, shop: Shop, destination: str, delivery_ids: list[int]
) -> list[Delivery]:
    """The batch's deliveries still to be sent, in the batch's order.

    A delivery deleted meanwhile (a privacy request) is gone; its id, reused
    by another shop's delivery where the database reuses ids, is not ours.
    """
    if not delivery_ids:
        return []
    query = (
        select(Delivery)
        .options(joinedload(Delivery.event))
        .where(
            Delivery.id.in_(delivery_ids),
            Delivery.shop_id == shop.id,
            Delivery.destination == destination,
            Delivery.status.in_(PENDING),
        )
    )
    found = {delivery.id: delivery for delivery in session.scalars(query)}
    return [found[i] for i in dict.fromkeys(delivery_ids) if i in found]


def _prepare(
    runtime: Runtime, delivery: Delivery, stored: bytes | None, sending: Sending
) -> Ready | None:
    """The delivery formatted, or None after logging why it is skipped."""
    now = runtime.clock.now()
    label = _label(delivery, sending.shop.domain, delivery.event.event_id)

    def skip(reason: str, status: str = "skipped") -> Ready | None:
        log.info("%s: %s, %s", label, status, reason)
        delivery.status = status
        delivery.reason = reason
        delivery.updated_at = now
        return None

    if stored is None:
        return skip("event expired before delivery", status="failed")
    if delivery.status == "retrying" and now - delivery.window_start > timedelta(
        seconds=runtime.config.retry_window_seconds
    ):
        log.error(
            "%s: failed for good, retried for longer than "
            "RELAY_RETRY_WINDOW_SECONDS: %s",
            label,
            delivery.reason,
        )
        return skip(f"{GAVE_UP}: {delivery.reason}", status="failed")
    # The visitor's browser may have been seen since the event was made (a
    # purchase waits for it): what is known of the visitor now is used.
    event = visitors.resolve(runtime, Event.from_json(stored))
    _note_identity(delivery.event, event)
    held_back = consent.refusal(
        sending.shop.consent_policy,
        event.consent,
        from_browser=event.origin.startswith("pixel:"),
    )
    purchase = event.name is EventName.PURCHASE
    if purchase and held_back is None:
        held_back = sending.conflict_hold
    if held_back is not None:
        return skip(held_back)

    config = sending.config
    if event.test and not config.test_mode:
        return skip("test order")
    max_age = sending.destination.max_event_age
    if max_age and now - event.occurred_at > max_age:
        return skip("too old")
    if event.occurred_at - now > FUTURE_TOLERANCE:
        return skip("in the future")
    try:
        formatted = sending.destination.format_event(event, config)
    except Skip as reason:
        return skip(reason.reason)
    except Exception:
        # Formatting is deterministic: retrying would fail the same way.
        log.exception(
            "%s: the %s plugin could not format it", label, delivery.destination
        )
        return skip("destination could not format the event", status="failed")

    delivery.attempts += 1
    delivery.test_mode = config.test_mode
    delivery.match_keys = list(formatted.match_keys)
    delivery.payload = formatted.logged_payload
    return Ready(
        delivery_id=delivery.id,
        formatted=formatted,
        label=label,
        window_start=delivery.window_start,
        conflict=sending.conflict if purchase else None,
    )


def _send(runtime: Runtime, sending: Sending, batch: list[Ready]) -> None:
    destination = sending.destination
    try:
        results = destination.send_batch(
            [item.formatted for item in batch], sending.config
        )
    except RetryableDelivery as error:
        if _retrying(runtime, sending, batch, error):
            raise
        return
    except CredentialsRefused as error:
        _pause(runtime, sending, batch, error)
        return
    except PermanentDelivery as error:
        if len(batch) > 1 and error.http_status in SPLITTABLE:
            # One bad event refuses the whole request: halve until each bad
            # event is alone, and the good ones go.
            half = len(batch) // 2
            log.info(
                "%s batch for %s: %d events refused together (HTTP %s), "
                "sending in halves",
                destination.name,
                sending.shop.domain,
                len(batch),
                error.http_status,
            )
            _send(runtime, sending, batch[:half])
            _send(runtime, sending, batch[half:])
            return
        for item in batch:
            log.warning(
                "%s: refused (%s): %s %s",
                item.label,
                error.http_status,
                error.reason,
                error.detail,
            )
        refused = Result("failed", error.reason, error.http_status, error.detail)
        _record(runtime, {item.delivery_id: refused for item in batch})
        return

    _record_results(runtime, sending, batch, results)


def _record_results(
    runtime: Runtime, sending: Sending, batch: list[Ready], results: list[EventResult]
) -> None:
    if len(results) != len(batch):
        # A plugin bug; what the platform did with the events is unknown.
        log.error(
            "%s batch for %s: plugin returned %d results for %d events",
            sending.destination.name,
            sending.shop.domain,
            len(results),
            len(batch),
        )
        wrong = Result("failed", "plugin answered wrongly")
        _record(runtime, {item.delivery_id: wrong for item in batch})
        return

    outcomes = {}
    for item, result in zip(batch, results, strict=True):
        sent = result.outcome == Outcome.SENT
        if item.conflict:
            log.warning("%s: %s", item.label, item.conflict)
        if not sent:
            log.warning(
                "%s: refused by the platform (HTTP %s): %s",
                item.label,
                result.http_status,
                result.error,
            )
        warnings = [w for w in (result.warning, item.conflict) if w]
        outcomes[item.delivery_id] = Result(
            "sent" if sent else "failed",
            None,
            result.http_status,
            result.error,
            "; ".join(warnings) or None,
        )
    sent_count = sum(result.status == "sent" for result in outcomes.values())
    log.info(
        "%s batch for %s: %d sent, %d refused (HTTP %s)",
        sending.destination.name,
        sending.shop.domain,
        sent_count,
        len(outcomes) - sent_count,
        results[0].http_status if results else None,
    )
    _record(runtime, outcomes)


def _retrying(
    runtime: Runtime, sending: Sending, batch: list[Ready], error: RetryableDelivery
) -> int:
    """Mark a batch's deliveries retrying, those past the retry window
    failed; returns how many are left to retry."""
    now = runtime.clock.now()
    window = timedelta(seconds=runtime.config.retry_window_seconds)
    expired = [item for item in batch if now - item.window_start > window]
    outcomes = {
        item.delivery_id: Result(
            "failed",
            f"{GAVE_UP}: {error.reason}",
            error.http_status,
            error.detail,
        )
        for item in expired
    }
    retrying = [item for item in batch if item not in expired]
    for item in retrying:
        outcomes[item.delivery_id] = Result(
            "retrying", error.reason, error.http_status, error.detail
        )
    _record(runtime, outcomes)

    name, shop = sending.destination.name, sending.shop.domain
    if expired:
        log.error(
            "%s batch for %s: %s failed for good, retried for longer than "
            "RELAY_RETRY_WINDOW_SECONDS (%d s): %s",
            name,
            shop,
            _events(len(expired)),
            runtime.config.retry_window_seconds,
            error.reason,
        )
    if retrying and _retries_left():
        log.warning(
            "%s batch for %s: %s will be retried: %s",
            name,
            shop,
            _events(len(retrying)),
            error.reason,
        )
    return len(retrying)


def _retries_left() -> bool:
    """Whether RQ will run this job again (true outside a job: a caller
    that is not RQ decides for itself). On the last attempt `give_up`
    says what happened instead."""
    job = get_current_job()
    return job is None or bool(job.retries_left)


def _events(count: int) -> str:
    return f"{count} event" if count == 1 else f"{count} events"


def _stamp(setting: DestinationSetting | None) -> str | None:
    if setting is None:
        return None
    values = json.dumps(setting.values or {}, sort_keys=True)
    return f"{setting.encrypted_secrets}|{values}"


def _pause(
    runtime: Runtime, sending: Sending, batch: list[Ready], error: CredentialsRefused
) -> None:
    """The platform refused the credentials: pause the destination, hold the
    events. `relay.deadletters.resume_held` sends what was held once the
    merchant has fixed the settings."""
    answer = f" (HTTP {error.http_status})" if error.http_status else ""
    reason = f"{error.reason}{answer}: {error.detail}".rstrip(": ")
    now = runtime.clock.now()
    shop, name = sending.shop.domain, sending.destination.name
    again = []
    with runtime.db.session() as session:
        shop_row = find_shop(session, shop)
        setting = setting_row(session, shop_row, name) if shop_row else None
        changed = setting is not None and _stamp(setting) != sending.settings_stamp
        held = 0
        for delivery in (
            _pending(session, shop_row, name, [i.delivery_id for i in batch])
            if shop_row
            else []
        ):
            if changed and delivery.reason != RESENT_WITH_NEW_SETTINGS:
                # New settings were saved while this send was in flight:
                # what was refused is the old ones. Send again with the new
                # (once).
                delivery.status = "queued"
                delivery.reason = RESENT_WITH_NEW_SETTINGS
                again.append(delivery.id)
            else:
                delivery.status = "held"
                delivery.reason = f"destination paused: {reason}"
                delivery.http_status = error.http_status
                delivery.error = error.detail or None
                held += 1
            delivery.updated_at = now
        if held and setting is not None and setting.paused_reason is None:
            setting.paused_reason = reason
            setting.paused_at = now
            log.warning(
                "shop %s: %s paused, its events are held until the settings "
                "are fixed: %s",
                shop,
                name,
                reason,
            )
    if again:
        log.info(
            "%s batch for %s: old credentials refused; %d sent again",
            name,
            shop,
            len(again),
        )
        outbox.add(runtime, shop, name, again)


def _note_identity(record: EventRecord, event: Event) -> None:
    """Whose identity the event goes out with, for privacy requests: on a
    shared browser, a page view sent with Max's email is Max's, not Jane's."""
    digests = privacy_digests(event.person)
    record.customer_id = record.customer_id or event.person.customer_id
    record.email_digest = record.email_digest or digests["email_digest"]
    record.phone_digest = record.phone_digest or digests["phone_digest"]


def give_up(runtime: Runtime, delivery_ids: list[int], error: BaseException) -> None:
    """Mark a batch's deliveries failed after its last attempt raised `error`.

    Deliveries that already have an outcome (sent by an earlier half of the
    batch, or refused) keep it.
    """
    if isinstance(error, DeliveryError):
        reason, http_status, detail = error.reason, error.http_status, error.detail
    else:
        reason, http_status, detail = type(error).__name__, None, ""
    with runtime.db.session() as session:
        pending = session.scalars(
            select(Delivery).where(
                Delivery.id.in_(delivery_ids), Delivery.status.in_(PENDING)
            )
        ).all()
        now = runtime.clock.now()
        for delivery in pending:
            delivery.status = "failed"
            delivery.reason = f"{GAVE_UP}: {reason}"
            delivery.http_status = http_status
            delivery.error = detail or None
            delivery.updated_at = now
    if pending:
        log.error(
            "%s failed for good after their last retry: %s "
            "(relay deliveries --failed lists them, relay retry sends them again)",
            _events(len(pending)),
            reason,
        )


def _record(runtime: Runtime, outcomes: dict[int, Result]) -> None:
    """Log each delivery's outcome, in one transaction."""
    with runtime.db.session() as session:
        deliveries = session.scalars(
            select(Delivery).where(Delivery.id.in_(list(outcomes)))
        ).all()
        now = runtime.clock.now()
        # A delivery deleted meanwhile (a privacy request) records nothing.
        for delivery in deliveries:
            result = outcomes[delivery.id]
            delivery.status = result.status
            delivery.reason = result.reason
            delivery.http_status = result.http_status
            delivery.error = result.error or None
            delivery.warning = result.warning or None
            delivery.updated_at = now


def _label(delivery: Delivery, shop: str, event_id: str) -> str:
    return (
        f"delivery {delivery.id} ({delivery.destination}, {delivery.event.name} "
        f"{event_id}, {shop})"
    )
