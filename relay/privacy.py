"""Shopify's privacy webhooks, carried out for real.

Where Relay keeps anything about a customer, and how each request reaches it:

| store                         | what                        | found by               |
| events (database)             | order, customer, email hash | customer id, order ids,|
|                               |                             |   email digest         |
| deliveries (database)         | payload as sent: digests,   | their event            |
|                               |   masked IP/UA/click id     |                        |
| `relay:event:{pk}` (Redis)    | the neutral event, raw      | their event            |
| `relay:inbox:{shop}:*` (Redis)| webhook bodies not yet      | the body's customer,   |
|                               |   processed                 |   email or order id    |
| privacy_reports (database)    | earlier data-request reports| the customer they are  |
|                               |   (encrypted)               |   about; shop          |

`shop/redact` also deletes the shop's row, settings, tokens, carts, dedupe
markers and the RQ jobs that name it. Each request leaves a row in
`privacy_requests` with counts only; after a shop/redact even the shop's
name there is replaced by its digest.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
from rq.job import Job
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
)
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from relay import keys, matchkeys, outbox, visitors
from relay.events import Person
from relay.models import (
    PENDING,
    Delivery,
    EventRecord,
    PrivacyReport,
    PrivacyRequest,
    Shop,
)
from relay.runtime import Runtime
from relay.shopify.normalize import clean_text, shopify_id
from relay.shops import find_shop

log = logging.getLogger(__name__)

TOPICS = ("customers/data_request", "customers/redact", "shop/redact")
# Ids per IN (...) clause; PostgreSQL takes at most 65,535 parameters a query.
IN_SLICE = 1000


@dataclass(frozen=True)
class Customer:
    """Who a request is about, in the forms Relay may have kept.

    Ids and contact details are read as the order pipeline reads them, so a
    request finds what the pipeline stored whatever form the payload used.
    """

    customer_id: str | None
    email_digest: str | None
    phone_digest: str | None
    order_ids: frozenset[str]

    @classmethod
    def from_payload(cls, payload: dict[str, Any], orders_field: str) -> Customer:
        customer = _object(payload.get("customer"))
        orders = payload.get(orders_field)
        order_ids = (
            shopify_id(o) for o in (orders if isinstance(orders, list) else [])
        )
        return cls(
            customer_id=shopify_id(customer.get("id")),
            email_digest=_email_digest(customer.get("email")),
            phone_digest=_phone_digest(customer.get("phone"), None),
            order_ids=frozenset(o for o in order_ids if o),
        )

    def matches_body(self, body: dict[str, Any]) -> bool:
        """Whether a stored webhook body (order, checkout, ...) is about them."""
        customer = _object(body.get("customer"))
        if self.customer_id and shopify_id(customer.get("id")) == self.customer_id:
            return True
        is_order = "order_number" in body or "financial_status" in body
        order_id = shopify_id(body.get("id") if is_order else body.get("order_id"))
        if order_id and order_id in self.order_ids:
            return True
        emails = (body.get("email"), body.get("contact_email"), customer.get("email"))
        if self.email_digest and self.email_digest in map(_email_digest, emails):
            return True
        phones = (body.get("phone"), customer.get("phone"))
        return bool(self.phone_digest) and self.phone_digest in (
            _phone_digest(p, None) for p in phones
        )

    def owns(self, record: EventRecord) -> bool:
        """Whether an event is theirs or no one's in particular, not another
        customer's (who may have used the same browser)."""
        for mine, its in (
            (self.customer_id, record.customer_id),
            (self.email_digest, record.email_digest),
            (self.phone_digest, record.phone_digest),
        ):
            if its is not None and mine is not None and its != mine:
                return False
        return True

    def own_view(self, profile: dict[str, str]) -> dict[str, str]:
        """A visitor profile without identity that is someone else's."""
        theirs = {
            "customer_id": self.customer_id,
            "em": self.email_digest,
            "ph": self.phone_digest,
        }
        return {k: v for k, v in profile.items() if k not in theirs or v == theirs[k]}

    def is_empty(self) -> bool:
        return not (
            self.customer_id or self.email_digest or self.phone_digest or self.order_ids
        )


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _email_digest(raw: Any) -> str | None:
    email = matchkeys.email(clean_text(raw))
    return matchkeys.sha256(email) if email else None


def _phone_digest(raw: Any, country: str | None) -> str | None:
    phone = matchkeys.phone(clean_text(raw), country)
    return matchkeys.sha256(phone) if phone else None


def record_digests(person: Person) -> dict[str, str | None]:
    """The digests an event row keeps so a privacy request can find it."""
    return {
        "email_digest": _email_digest(person.email) or person.email_sha256,
        "phone_digest": _phone_digest(person.phone, person.country)
        or person.phone_sha256,
    }


def handle(
    runtime: Runtime, domain: str, topic: str, webhook_id: str, payload: dict[str, Any]
) -> None:
    """Carry out one privacy request and record that it was done."""
    received = runtime.clock.now()
    request_key = keys.inbox(domain, webhook_id)
    if topic == "customers/data_request":
        outcome, report_id = data_request(runtime, domain, payload, request_key)
    elif topic == "customers/redact":
        outcome = redact_customer(runtime, domain, payload, request_key)
        report_id = None
    else:
        outcome, report_id = redact_shop(runtime, domain), None

    with runtime.db.session() as session:
        session.add(
            PrivacyRequest(
                shop_domain=_ledger_name(domain) if topic == "shop/redact" else domain,
                topic=topic,
                webhook_id=webhook_id,
                received_at=received,
                completed_at=runtime.clock.now(),
                outcome=outcome,
                report_id=report_id,
            )
        )
    summary = ", ".join(f"{k} {v}" for k, v in sorted(outcome.items())) or "nothing"
    log.info("privacy %s for %s: done (%s)", topic, _log_name(domain, topic), summary)


# customers/data_request


def data_request(
    runtime: Runtime, domain: str, payload: dict[str, Any], request_key: str = ""
) -> tuple[dict[str, int], int | None]:
    """Assemble what Relay holds about the customer into a stored report."""
    customer = Customer.from_payload(payload, "orders_requested")
    now = runtime.clock.now()
    with runtime.db.session() as session:
        shop = find_shop(session, domain)
        if shop is None:
            return {"events": 0}, None
        events, clients = _events_and_visitors(runtime, session, shop, customer)
        content = {
            "shop": domain,
            "data_request_id": _request_id(payload),
            "created_at": now.isoformat(),
            "about": {
                "shopify_customer_id": customer.customer_id,
                "email_sha256": customer.email_digest,
                "phone_sha256": customer.phone_digest,
                "orders_requested": sorted(customer.order_ids),
            },
            "what_relay_keeps": (
                "Ids and digests only: for each conversion Relay made, its "
                "delivery log entry with the payload as sent (email and phone "
                "as SHA-256 digests; IP address, user agent and click id "
                "masked). Raw webhook bodies are kept only until processed."
            ),
            "events": [_event_entry(record, session) for record in events],
            "visitor_profiles": [
                customer.own_view(visitors.profile(runtime.redis, domain, client_id))
                for client_id in sorted(clients)
            ],
            "waiting_for_processing": {
                "webhook_bodies": len(
                    _matching_inbox_keys(runtime, domain, customer, request_key)
                ),
            },
        }
        report = PrivacyReport(
            shop_id=shop.id,
            data_request_id=_request_id(payload),
            encrypted_content=runtime.keyring.encrypt(content),
            created_at=now,
            expires_at=now + timedelta(days=runtime.config.privacy_report_days),
        )
        session.add(report)
        session.flush()
        return {"events": len(events)}, report.id


def _event_entry(record: EventRecord, session: Session) -> dict[str, Any]:
    deliveries = session.scalars(
        select(Delivery).where(Delivery.event_pk == record.id).order_by(Delivery.id)
    )
    return {
        "event": record.name,
        "event_id": record.event_id,
        "order_id": record.order_id,
        "occurred_at": record.occurred_at.isoformat(),
        "source": record.origin,
        "deliveries": [
            {
                "destination": d.destination,
                "status": d.status,
                "reason": d.reason,
                "last_attempt_at": d.updated_at.isoformat(),
                "match_keys": d.match_keys,
                "payload_as_sent": d.payload,
            }
            for d in deliveries
        ],
    }


def _request_id(payload: dict[str, Any]) -> str | None:
    request = payload.get("data_request")
    raw = request.get("id") if isinstance(request, dict) else None
    return str(raw)[:64] if isinstance(raw, (int, str)) else None


def list_reports(runtime: Runtime, domain: str) -> list[dict[str, Any]]:
    with runtime.db.session() as session:
        rows = session.scalars(
            select(PrivacyReport)
            .join(Shop)
            .where(Shop.domain == domain)
            .order_by(PrivacyReport.id.desc())
        )
        return [
            {
                "id": row.id,
                "data_request_id": row.data_request_id,
                "created_at": row.created_at.isoformat(),
                "expires_at": row.expires_at.isoformat(),
            }
            for row in rows
        ]


def read_report(runtime: Runtime, domain: str, report_id: int) -> dict[str, Any] | None:
    """Report `report_id`, only if it belongs to `domain`."""
    with runtime.db.session() as session:
        row = session.scalars(
            select(PrivacyReport)
            .join(Shop)
            .where(PrivacyReport.id == report_id, Shop.domain == domain)
        ).one_or_none()
        if row is None:
            return None
        return runtime.keyring.decrypt(row.encrypted_content)


# customers/redact


def redact_customer(
    runtime: Runtime, domain: str, payload: dict[str, Any], request_key: str = ""
) -> dict[str, int]:
    """Delete everything Relay holds about one customer of one shop.

    `request_key` is the request's own body, which its job deletes last.
    """
    customer = Customer.from_payload(payload, "orders_to_redact")
    if customer.is_empty():
        return {}

    inbox_keys = _matching_inbox_keys(runtime, domain, customer, request_key)
    beacon_keys = _matching_beacon_keys(runtime, domain, customer)
    with runtime.db.session() as session:
        shop = find_shop(session, domain)
        events, visitors_found = (
            _events_and_visitors(runtime, session, shop, customer)
            if shop
            else ([], set())
        )
        order_ids = {record.order_id for record in events if record.order_id}
        event_pks, deliveries = _delete_events(
            runtime, session, EventRecord.id.in_([record.id for record in events])
        )
        reports = (
            _delete_reports_about(runtime, session, shop, customer, order_ids)
            if shop
            else 0
        )

    event_keys = [keys.event(pk) for pk in event_pks]
    _delete_keys(runtime.redis, [*inbox_keys, *beacon_keys, *event_keys])
    for client_id in visitors_found:
        visitors.forget(runtime.redis, domain, client_id)
    return {
        "events": len(event_pks),
        "deliveries": deliveries,
        "webhook_bodies": len(inbox_keys),
        "pixel_beacons": len(beacon_keys),
        "privacy_reports": reports,
        "visitor_profiles": len(visitors_found),
    }


def _events_and_visitors(
    runtime: Runtime, session: Session, shop: Shop, customer: Customer
) -> tuple[list[EventRecord], set[str]]:
    """The customer's events, including their pixel visitors' own events
    (page views and the like), and those visitors' client ids."""
    events = _customer_events(session, shop, customer)
    clients = _visitors_of(runtime, shop.domain, customer, events)
    known = {record.id for record in events}
    for client_id in sorted(clients):
        query = select(EventRecord).where(
            EventRecord.shop_id == shop.id, EventRecord.client_id == client_id
        )
        # A shared browser: another customer's events there are theirs.
        events += [
            r for r in session.scalars(query) if r.id not in known and customer.owns(r)
        ]
        known = {record.id for record in events}
    return sorted(events, key=lambda record: record.id), clients


def _visitors_of(
    runtime: Runtime, domain: str, customer: Customer, events: list[EventRecord]
) -> set[str]:
    """The pixel visitors linked to the customer, their orders or checkouts."""
    orders = customer.order_ids | {e.order_id for e in events if e.order_id}
    checkouts = {e.event_id for e in events if e.name == "begin_checkout"}
    wanted = [("order", o) for o in orders] + [("checkout", c) for c in checkouts]
    wanted += [
        (kind, value)
        for kind, value in (
            ("customer", customer.customer_id),
            ("email", customer.email_digest),
        )
        if value
    ]
    found = {
        visitors.client_for(runtime.redis, domain, kind, value)
        for kind, value in wanted
    }
    # Devices where they were logged in, or typed their contact, and the
    # devices their own events came from.
    for name, value in (
        ("customer_id", customer.customer_id),
        ("em", customer.email_digest),
        ("ph", customer.phone_digest),
    ):
        if value:
            found |= visitors.stating(runtime.redis, domain, name, value)
    found |= {e.client_id for e in events if e.client_id and customer.owns(e)}
    return {client_id for client_id in found if client_id}


def _delete_reports_about(
    runtime: Runtime,
    session: Session,
    shop: Shop,
    customer: Customer,
    order_ids: set[str],
) -> int:
    """Earlier data-request reports about this customer, or their orders, go too.

    `order_ids` adds the orders of the events just deleted, so a report made
    from a request that named the customer differently is found as well.
    """
    orders = order_ids | customer.order_ids
    deleted = 0
    query = select(PrivacyReport).where(PrivacyReport.shop_id == shop.id)
    for report in session.scalars(query):
        content = runtime.keyring.decrypt(report.encrypted_content)
        about = content.get("about", {})
        identifiers = {
            ("customer", about.get("shopify_customer_id")),
            ("email", about.get("email_sha256")),
            ("phone", about.get("phone_sha256")),
        }
        theirs = {
            ("customer", customer.customer_id),
            ("email", customer.email_digest),
            ("phone", customer.phone_digest),
        }
        reported_orders = set(about.get("orders_requested", [])) | {
            event.get("order_id") for event in content.get("events", [])
        }
        same_customer = any(value for kind, value in identifiers & theirs)
        if same_customer or reported_orders & orders:
            session.delete(report)
            deleted += 1
    return deleted


def _customer_events(
    session: Session, shop: Shop, customer: Customer
) -> list[EventRecord]:
    conditions: list[ColumnElement[bool]] = []
    if customer.customer_id:
        conditions.append(EventRecord.customer_id == customer.customer_id)
    if customer.email_digest:
        conditions.append(EventRecord.email_digest == customer.email_digest)
    if customer.phone_digest:
        conditions.append(EventRecord.phone_digest == customer.phone_digest)
    # In slices: a customer may name more orders than a query takes parameters.
    orders = sorted(customer.order_ids)
    slices: list[ColumnElement[bool]] = [
        EventRecord.order_id.in_(orders[start : start + IN_SLICE])
        for start in range(0, len(orders), IN_SLICE)
    ]
    batches: list[list[ColumnElement[bool]]] = [conditions + slices[:1]]
    batches += [[order_slice] for order_slice in slices[1:]]

    found: dict[int, EventRecord] = {}
    for batch in batches:
        if not batch:
            continue
        query = select(EventRecord).where(EventRecord.shop_id == shop.id, or_(*batch))
        found.update((record.id, record) for record in session.scalars(query))
    return [found[pk] for pk in sorted(found)]


def _delete_events(
    runtime: Runtime, session: Session, which: ColumnElement[bool]
) -> tuple[list[int], int]:
    """Delete the events `which` selects, their deliveries and pending jobs.

    Returns the events' ids (their Redis keys are the caller's to delete)
    and how many deliveries went. Selecting by condition rather than by a
    list of ids keeps a whole shop's deletion within one query's parameters.
    A delivery's retry job left scheduled would outlive its row; where the
    database reuses ids (SQLite), it could even send a newer delivery early.
    """
    events = select(EventRecord.id).where(which)
    event_pks = list(session.scalars(events))
    pending = list(
        session.scalars(
            select(Delivery.id).where(
                Delivery.event_pk.in_(events), Delivery.status.in_(PENDING)
            )
        )
    )
    result = session.execute(delete(Delivery).where(Delivery.event_pk.in_(events)))
    session.execute(delete(EventRecord).where(which))
    for start in range(0, len(pending), 500):
        batch = [keys.delivery_job(i) for i in pending[start : start + 500]]
        for job in Job.fetch_many(batch, connection=runtime.redis):
            if job is not None:
                job.delete()
    outbox.discard(runtime, pending)
    return event_pks, int(result.rowcount or 0)  # type: ignore[attr-defined]


def _matching_inbox_keys(
    runtime: Runtime, domain: str, customer: Customer, exclude: str
) -> list[bytes]:
    """The shop's waiting webhook bodies about `customer`, except `exclude`.

    Keys stay bytes: one written by anything but Relay need not be UTF-8.
    """
    skip = exclude.encode()
    found = []
    for key in runtime.redis.scan_iter(match=keys.inbox(_glob(domain), "*"), count=500):
        body = runtime.redis.get(key) if key != skip else None
        if body is None:
            continue
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            continue
        if isinstance(parsed, dict) and customer.matches_body(parsed):
            found.append(key)
    return found


def _matching_beacon_keys(
    runtime: Runtime, domain: str, customer: Customer
) -> list[bytes]:
    """The shop's pixel beacons still waiting whose checkout or logged-in
    customer names them."""
    found = []
    for key in runtime.redis.scan_iter(
        match=keys.beacon(_glob(domain), "*", "*"), count=500
    ):
        raw = runtime.redis.get(key)
        if raw is None:
            continue
        try:
            envelope = json.loads(raw)["envelope"]
        except (ValueError, RecursionError, KeyError, TypeError):
            continue
        if not isinstance(envelope, dict):
            continue
        checkout = _object(
            _object(_object(envelope.get("event")).get("data")).get("checkout")
        )
        logged_in = _object(envelope.get("customer"))
        order = _object(checkout.get("order"))
        named = [
            {
                "email": checkout.get("email"),
                "phone": checkout.get("phone"),
                "order_id": order.get("id"),
            },
            {
                "email": logged_in.get("email"),
                "phone": logged_in.get("phone"),
                "customer": {"id": logged_in.get("id")},
            },
        ]
        if any(customer.matches_body(body) for body in named):
            found.append(key)
    return found


# shop/redact


def redact_shop(runtime: Runtime, domain: str) -> dict[str, int]:
    """Delete everything Relay holds for the shop, in Redis and the database."""
    with runtime.db.session() as session:
        shop = find_shop(session, domain)
        event_pks: list[int] = []
        deliveries = 0
        if shop is not None:
            event_pks, deliveries = _delete_events(
                runtime, session, EventRecord.shop_id == shop.id
            )
            session.delete(shop)  # settings, tokens and reports go with it
        session.execute(
            update(PrivacyRequest)
            .where(PrivacyRequest.shop_domain == domain)
            .values(shop_domain=_ledger_name(domain))
        )

    # Each kind's own pattern, anchored at the start: a key of another shop
    # that merely contains this domain (in a webhook id, say) is not matched.
    escaped = _glob(domain)
    patterns = [
        keys.webhook_seen(escaped, "*"),
        keys.webhook_last(escaped),
        keys.inbox(escaped, "*"),
        keys.cart(escaped, "*"),
        keys.token_refresh(escaped),
        keys.connection_refresh(escaped, "*"),
        keys.beacon(escaped, "*", "*"),
        keys.visitor(escaped, "*"),
        keys.visitor_link(escaped, "*", "*"),
        keys.visitor_links(escaped, "*"),
        keys.outbox("*", escaped),
        keys.outbox_flush("*", escaped),
    ]
    outbox.forget_shop(runtime, domain)
    shop_keys = [
        key
        for pattern in patterns
        for key in runtime.redis.scan_iter(match=pattern, count=500)
    ]
    # Which shop each visitor belongs to is keyed by client id alone; the
    # visitors' own link sets name those keys.
    links_prefix = keys.visitor_links(domain, "").encode()
    shop_keys += [
        member
        for key in shop_keys
        if (key if isinstance(key, bytes) else key.encode()).startswith(links_prefix)
        for member in runtime.redis.smembers(key)
        if (member if isinstance(member, bytes) else member.encode()).startswith(
            keys.visitor_shop("").encode()
        )
    ]
    _delete_keys(runtime.redis, [*shop_keys, *(keys.event(pk) for pk in event_pks)])
    jobs = _delete_shop_jobs(runtime, domain)
    return {
        "shop": 1 if shop is not None else 0,
        "events": len(event_pks),
        "deliveries": deliveries,
        "redis_keys": len(shop_keys),
        "jobs": jobs,
    }


def _delete_shop_jobs(runtime: Runtime, domain: str) -> int:
    """Drop RQ jobs whose arguments name the shop, queued or remembered.

    Webhook-processing, set-up and batch jobs carry a shop's name; a
    waiting delivery's job carries a delivery id, whose row is already gone.
    """
    queue = runtime.queue
    connection = runtime.redis
    registries = (
        FinishedJobRegistry(queue=queue),
        FailedJobRegistry(queue=queue),
        ScheduledJobRegistry(queue=queue),
        DeferredJobRegistry(queue=queue),
    )
    job_ids = set(queue.get_job_ids())
    for registry in registries:
        job_ids.update(registry.get_job_ids())

    current = _current_job_id()
    deleted = 0
    for job in Job.fetch_many(list(job_ids), connection=connection):
        if job is None or job.id == current:
            continue
        if domain in (job.args or ()):
            job.delete()
            deleted += 1
    return deleted


def _current_job_id() -> str | None:
    from rq import get_current_job

    job = get_current_job()
    return job.id if job else None


def _delete_keys(connection: redis.Redis, names: Iterable[str | bytes]) -> None:
    batch = list(names)
    for start in range(0, len(batch), 500):
        connection.delete(*batch[start : start + 500])


def _glob(domain: str) -> str:
    """`domain` with Redis glob characters escaped (a shop name is plain)."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in domain)


def _ledger_name(domain: str) -> str:
    return "sha256:" + matchkeys.sha256(domain)


def _log_name(domain: str, topic: str) -> str:
    return _ledger_name(domain)[:19] if topic == "shop/redact" else domain


def stale_privacy(session: Session, before: datetime) -> int:
    """Delete privacy request records received before `before`."""
    result = session.execute(
        delete(PrivacyRequest).where(PrivacyRequest.received_at < before)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
