"""Sending one logged delivery to its destination and logging the outcome.

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
from datetime import timedelta

from sqlalchemy.orm import Session

from relay import conflicts, consent, keys, visitors
from relay.destinations import (
    Destination,
    DestinationConfig,
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
from relay.models import PENDING, Delivery, DestinationSetting, EventRecord
from relay.privacy import record_digests as privacy_digests
from relay.runtime import Runtime
from relay.shops import destination_config, setting_row

log = logging.getLogger(__name__)

RESENT_WITH_NEW_SETTINGS = "credentials changed while sending; sent again"
# Clocks disagree a little; an action hours ahead of ours is bad data, and
# platforms refuse future times.
FUTURE_TOLERANCE = timedelta(minutes=10)


@dataclass
class Prepared:
    destination: Destination
    config: DestinationConfig
    formatted: FormattedEvent
    # Set when a purchase goes out while a conflict stands unacknowledged.
    conflict: str | None = None
    # The settings as sent with (re-encrypted at every save, so any save
    # changes it): a refusal of older settings than the current pauses nothing.
    settings_stamp: str | None = None


def deliver(runtime: Runtime, delivery_id: int) -> None:
    """Send delivery `delivery_id` unless it is done or must be skipped.

    Raises RetryableDelivery, after marking the delivery `retrying`, when the
    platform or network failed: RQ retries the job, and once no retry is
    left its failure callback calls `give_up`.
    """
    with runtime.db.session() as session:
        delivery = session.get(Delivery, delivery_id)
        if delivery is None or delivery.status not in PENDING:
            status = "missing" if delivery is None else delivery.status
            log.info("delivery %s: nothing to do (%s)", delivery_id, status)
            return
        prepared = _prepare(runtime, session, delivery)
        if prepared is None:
            return
        delivery.attempts += 1
        delivery.test_mode = prepared.config.test_mode
        delivery.match_keys = list(prepared.formatted.match_keys)
        delivery.payload = prepared.formatted.logged_payload
        label = _label(delivery, prepared.formatted.event_id)

    try:
        results = prepared.destination.send_batch([prepared.formatted], prepared.config)
    except RetryableDelivery as error:
        log.warning("%s: will retry: %s", label, error.reason)
        _update(
            runtime,
            delivery_id,
            "retrying",
            error.reason,
            error.http_status,
            error.detail,
        )
        raise
    except CredentialsRefused as error:
        _pause(runtime, delivery_id, error, prepared.settings_stamp)
        return
    except PermanentDelivery as error:
        log.warning("%s: refused (%s): %s", label, error.http_status, error.reason)
        _update(
            runtime,
            delivery_id,
            "failed",
            error.reason,
            error.http_status,
            error.detail,
        )
        return

    if len(results) != 1:
        # A plugin bug; what the platform did with the event is unknown.
        log.error("%s: plugin returned %d results for 1 event", label, len(results))
        _update(runtime, delivery_id, "failed", "plugin answered wrongly", None, None)
        return
    (result,) = results
    status = "sent" if result.outcome == Outcome.SENT else "failed"
    log.info("%s: %s (HTTP %s)", label, status, result.http_status)
    warnings = [w for w in (result.warning, prepared.conflict) if w]
    if prepared.conflict:
        log.warning("%s: %s", label, prepared.conflict)
    _update(
        runtime,
        delivery_id,
        status,
        None,
        result.http_status,
        result.error,
        warning="; ".join(warnings) or None,
    )


def _prepare(runtime: Runtime, session: Session, delivery: Delivery) -> Prepared | None:
    """Everything needed to send, or None after logging why it is skipped."""
    now = runtime.clock.now()
    label = _label(delivery, delivery.event.event_id)

    def skip(reason: str, status: str = "skipped") -> Prepared | None:
        log.info("%s: %s, %s", label, status, reason)
        delivery.status = status
        delivery.reason = reason
        delivery.updated_at = now
        return None

    if not delivery.shop.installed:
        return skip("shop uninstalled")
    destination = runtime.plugins.destinations.get(delivery.destination)
    if destination is None:
        return skip("destination plugin not loaded")
    try:
        config = destination_config(
            session,
            runtime.keyring,
            runtime.plugins,
            delivery.shop,
            delivery.destination,
        )
    except ConfigError as error:
        return skip(f"settings incomplete: {error}", status="failed")
    if config is None:
        return skip("destination disabled")
    paused = _paused_reason(session, delivery)
    if paused is not None:
        return skip(f"destination paused: {paused}", status="held")

    stored = runtime.redis.get(keys.event(delivery.event_pk))
    if stored is None:
        return skip("event expired before delivery", status="failed")
    # The visitor's browser may have been seen since the event was made (a
    # purchase waits for it): what is known of the visitor now is used.
    event = visitors.resolve(runtime, Event.from_json(stored))
    _note_identity(delivery.event, event)
    held_back = consent.refusal(
        delivery.shop.consent_policy,
        event.consent,
        from_browser=event.origin.startswith("pixel:"),
    )
    if event.name is EventName.PURCHASE and held_back is None:
        held_back = conflicts.held_by_conflict(
            session, delivery.shop, delivery.destination
        )
    if held_back is not None:
        return skip(held_back)

    if event.test and not config.test_mode:
        return skip("test order")
    if (
        destination.max_event_age
        and now - event.occurred_at > destination.max_event_age
    ):
        return skip("too old")
    if event.occurred_at - now > FUTURE_TOLERANCE:
        return skip("in the future")
    try:
        formatted = destination.format_event(event, config)
    except Skip as reason:
        return skip(reason.reason)
    except Exception:
        # Formatting is deterministic: retrying would fail the same way.
        log.exception(
            "%s: the %s plugin could not format it", label, delivery.destination
        )
        return skip("destination could not format the event", status="failed")
    conflict = (
        conflicts.flag(session, delivery.shop, delivery.destination)
        if event.name is EventName.PURCHASE
        else None
    )
    setting = setting_row(session, delivery.shop, delivery.destination)
    return Prepared(destination, config, formatted, conflict, _stamp(setting))


def _paused_reason(session: Session, delivery: Delivery) -> str | None:
    setting = setting_row(session, delivery.shop, delivery.destination)
    return setting.paused_reason if setting is not None else None


def _stamp(setting: DestinationSetting | None) -> str | None:
    if setting is None:
        return None
    values = json.dumps(setting.values or {}, sort_keys=True)
    return f"{setting.encrypted_secrets}|{values}"


def _pause(
    runtime: Runtime,
    delivery_id: int,
    error: CredentialsRefused,
    stamp: str | None,
) -> None:
    """The platform refused the credentials: pause the destination, hold the
    event. `relay.deadletters.resume_held` sends what was held once the
    merchant has fixed the settings."""
    reason = f"{error.reason} (HTTP {error.http_status}): {error.detail}".rstrip(": ")
    now = runtime.clock.now()
    with runtime.db.session() as session:
        delivery = session.get(Delivery, delivery_id)
        if delivery is None:
            return
        setting = setting_row(session, delivery.shop, delivery.destination)
        changed = setting is not None and _stamp(setting) != stamp
        if changed and delivery.reason != RESENT_WITH_NEW_SETTINGS:
            # New settings were saved while this send was in flight: what
            # was refused is the old ones. Send again, with the new (once).
            log.info("delivery %s: old credentials refused; again", delivery_id)
            delivery.status = "queued"
            delivery.reason = RESENT_WITH_NEW_SETTINGS
            delivery.updated_at = now
            requeue = True
        else:
            requeue = False
            if setting is not None and setting.paused_reason is None:
                setting.paused_reason = reason
                setting.paused_at = now
                log.warning(
                    "shop %s: %s paused, its events are held until the settings "
                    "are fixed: %s",
                    delivery.shop.domain,
                    delivery.destination,
                    reason,
                )
            delivery.status = "held"
            delivery.reason = f"destination paused: {reason}"
            delivery.http_status = error.http_status
            delivery.error = error.detail or None
            delivery.updated_at = now
    if requeue:
        from relay.pipeline import enqueue_delivery  # the pipeline imports us

        enqueue_delivery(runtime, delivery_id)


def _note_identity(record: EventRecord, event: Event) -> None:
    """Whose identity the event goes out with, for privacy requests: on a
    shared browser, a page view sent with Max's email is Max's, not Jane's."""
    digests = privacy_digests(event.person)
    record.customer_id = record.customer_id or event.person.customer_id
    record.email_digest = record.email_digest or digests["email_digest"]
    record.phone_digest = record.phone_digest or digests["phone_digest"]


def give_up(runtime: Runtime, delivery_id: int, error: BaseException) -> None:
    """Mark a delivery failed after its job's last attempt raised `error`."""
    if isinstance(error, DeliveryError):
        reason, http_status, detail = error.reason, error.http_status, error.detail
    else:
        reason, http_status, detail = type(error).__name__, None, ""
    log.error(
        "delivery %s: failed for good after its last retry: %s", delivery_id, reason
    )
    _update(runtime, delivery_id, "failed", f"gave up: {reason}", http_status, detail)


def _update(
    runtime: Runtime,
    delivery_id: int,
    status: str,
    reason: str | None,
    http_status: int | None,
    error: str | None,
    *,
    warning: str | None = None,
) -> None:
    with runtime.db.session() as session:
        delivery = session.get(Delivery, delivery_id)
        if delivery is None:
            return  # deleted meanwhile (a privacy request); nothing to record
        delivery.status = status
        delivery.reason = reason
        delivery.http_status = http_status
        delivery.error = error or None
        delivery.warning = warning or None
        delivery.updated_at = runtime.clock.now()


def _label(delivery: Delivery, event_id: str) -> str:
    return (
        f"delivery {delivery.id} ({delivery.destination}, {delivery.event.name} "
        f"{event_id}, {delivery.shop.domain})"
    )
