"""Visitor profiles: who a storefront visitor is, across pixel events.

Per shop and pixel client id, a Redis hash keeps what later conversions need
and only the pixel sees: the latest Pinterest click id with when it was
seen, the IP address and user agent, the visitor's consent, and who the
visitor is once known: email and phone digests and the customer id, from a
webhook that found the visitor or, until one does, as the visitor's own
browser states them. Link keys
map a cart or checkout token (from beacons and webhooks) and an order id,
customer id or email digest (from webhooks only) to the client id, so a webhook
about that cart, checkout or order finds the visitor (`resolve`).

Beacons are unauthenticated, so a beacon only ever writes its own client
id's profile, and a link is only created, never moved: the first client id
to claim a cart, checkout or order keeps it. Everything expires after
RELAY_VISITOR_PROFILE_DAYS; `relay.privacy` deletes profiles on request.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import redis

from relay import keys, matchkeys
from relay.events import Consent, Event, Person
from relay.runtime import Runtime
from relay.shopify.normalize import shopify_id

log = logging.getLogger(__name__)

CLOCK_SKEW = timedelta(minutes=10)
# More devices than this stating one email or customer id are not indexed
# (a person has a few; a stranger forging many would slow privacy requests).
MAX_STATING = 20
# Private (RFC 1918, unique local) and carrier-grade NAT ranges.
INTERNAL_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "fc00::/7",
    )
)


def observe(
    runtime: Runtime,
    shop: str,
    envelope: dict[str, Any],
    ip: str | None,
    received_at: datetime | None,
) -> datetime | None:
    """Fold a checked beacon into its visitor's profile; returns its time.

    The time is the browser's, unless it is ahead of Relay's clock; None if
    the beacon's time is unreadable, and then nothing is written.
    """
    event = envelope["event"]
    client_id = event["client_id"]
    seconds = runtime.config.visitor_profile_days * 24 * 3600
    seen_at = parse_time(event.get("timestamp"))
    if seen_at is None:
        return None
    # The browser's clock is the visitor's to set: a time ahead of Relay's
    # would freeze the profile against every later beacon.
    if received_at is not None and seen_at > received_at + CLOCK_SKEW:
        seen_at = received_at

    fields: dict[str, str] = {"last_event": event["name"]}
    if usable_ip(ip):
        fields["ip"] = str(ip)
    if event.get("user_agent"):
        fields["user_agent"] = event["user_agent"]
    consent = envelope.get("consent") or {}
    for name in ("marketing", "sale_of_data"):
        if isinstance(consent.get(name), bool):
            fields[f"consent_{name}"] = "1" if consent[name] else "0"
    click = envelope.get("click_id")

    _update_profile(
        runtime.redis, keys.visitor(shop, client_id), fields, click, seen_at, seconds
    )
    for kind, value in links(envelope):
        link(runtime.redis, shop, client_id, kind, value, seconds)
    _note_stated_identity(runtime.redis, shop, client_id, envelope, seconds)
    log.info(
        "visitor profile for %s updated from %s (%s)", shop, event["name"], event["id"]
    )
    return seen_at


def _update_profile(
    connection: redis.Redis,
    key: str,
    fields: dict[str, str],
    click: dict[str, Any] | None,
    seen_at: datetime,
    seconds: int,
) -> None:
    """Write `fields` unless a later event already did; beacons arrive out of order."""
    stamp = seen_at.astimezone(timezone.utc).isoformat()
    with connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                last_seen = _text(pipe.hget(key, "last_seen"))
                click_at = _text(pipe.hget(key, "click_id_at"))
                update: dict[str | bytes, bytes | float | int | str] = {}
                if not last_seen or stamp >= last_seen:
                    update.update(fields)
                if update:
                    update["last_seen"] = stamp
                if click and (not click_at or stamp >= click_at):
                    update["click_id"] = click["epik"]
                    update["click_id_at"] = stamp
                pipe.multi()
                if update:
                    pipe.hset(key, mapping=update)
                pipe.expire(key, seconds)
                pipe.execute()
                return
            except redis.WatchError:
                continue  # another beacon of this visitor was written; again


def link(
    connection: redis.Redis,
    shop: str,
    client_id: str,
    kind: str,
    value: str,
    seconds: int,
) -> bool:
    """Point `kind:value` at `client_id` unless another visitor has it."""
    link_key = keys.visitor_link(shop, kind, value)
    created = connection.set(link_key, client_id, nx=True, ex=seconds)
    owner = client_id if created else _text(connection.get(link_key))
    if owner != client_id:
        # Routine (a second device); the value itself may be personal data.
        log.info("%s of %s already linked to another visitor", kind, shop)
        return False
    pipe = connection.pipeline()
    pipe.expire(link_key, seconds)
    pipe.sadd(keys.visitor_links(shop, client_id), link_key)
    pipe.expire(keys.visitor_links(shop, client_id), seconds)
    pipe.execute()
    return True


def links(envelope: dict[str, Any]) -> list[tuple[str, str]]:
    """The cart and checkout the beacon ties its visitor to.

    Only unguessable tokens: an order id in a beacon is not linked, because
    order ids are sequential and a stranger could claim the next one and
    have their click id sent with someone else's purchase. The order's own
    webhook links it, through its checkout or cart token.
    """
    found: list[tuple[str, str]] = []
    if envelope.get("cart_token"):
        found.append(("cart", envelope["cart_token"]))
    checkout = envelope["event"].get("data", {}).get("checkout")
    if isinstance(checkout, dict):
        token = checkout.get("token")
        if isinstance(token, str) and token.isalnum() and len(token) <= 64:
            found.append(("checkout", token))
    return found


def resolve(runtime: Runtime, event: Event) -> Event:
    """`event` with what Relay knows of its visitor, and the visitor linked.

    The visitor is the event's own pixel client id, or is found through the
    event's order, checkout or cart. The event then gets the visitor's
    consent, and, unless the visitor refused, the click id, IP, user agent
    and identity (email and phone digests, customer id) it has none of.
    A webhook's event also links its order, checkout, customer and email to
    the visitor and leaves its identity in the profile, for the visitor's
    later pixel events.
    """
    identified = identify(runtime, event)
    client_id = identified.person.client_id
    if client_id is None:
        return event

    known = profile(runtime.redis, event.shop, client_id)
    consent = _consent(event.consent, known)
    person = identified.person
    if consent.marketing is False or consent.sale_of_data is False:
        # The visitor refused: what the browser told Relay is not used.
        log.info(
            "%s %s for %s: visitor refused marketing or sale of data, "
            "browser data not used",
            event.name,
            event.event_id,
            event.shop,
        )
        return dataclasses.replace(event, person=person, consent=consent)

    enriched = _fill(person, known)
    filled = [
        label
        for label, name in (
            ("click id", "click_ids"),
            ("IP", "ip"),
            ("user agent", "user_agent"),
            ("email", "email_sha256"),
            ("phone", "phone_sha256"),
            ("customer id", "customer_id"),
        )
        if getattr(person, name) != getattr(enriched, name)
    ]
    log.info(
        "%s %s for %s: visitor found; from the profile: %s",
        event.name,
        event.event_id,
        event.shop,
        ", ".join(filled) or "nothing (the event had it all)",
    )
    return dataclasses.replace(event, person=enriched, consent=consent)


def identify(runtime: Runtime, event: Event) -> Event:
    """`event` with its visitor's client id, and the visitor linked; nothing
    else filled in.

    Events are stored like this: what the browser told Relay is added only
    when each delivery is sent (`resolve`), with the visitor's consent as it
    stands then.
    """
    person = event.person
    client_id = person.client_id or _find_client(runtime.redis, event)
    if client_id is None:
        return event
    seconds = runtime.config.visitor_profile_days * 24 * 3600
    if event.origin.startswith("webhook:"):
        # Only an authenticated webhook may say who the visitor is.
        _link_webhook_ids(runtime.redis, event, client_id, seconds)
        _remember_identity(runtime.redis, event, client_id, seconds)
    # A refusal known now stays with the event: the profile may expire or
    # be deleted (another customer's redaction) before the event is sent.
    known = _consent(Consent(), profile(runtime.redis, event.shop, client_id))
    consent = dataclasses.replace(
        event.consent,
        marketing=False if known.marketing is False else event.consent.marketing,
        sale_of_data=(
            False if known.sale_of_data is False else event.consent.sale_of_data
        ),
    )
    return dataclasses.replace(
        event,
        person=dataclasses.replace(person, client_id=client_id),
        consent=consent,
    )


def _find_client(connection: redis.Redis, event: Event) -> str | None:
    # One round trip for the three links, taken in the order of trust.
    links = [
        keys.visitor_link(event.shop, kind, value)
        for kind, value in _token_links(event)
        if value
    ]
    for found in connection.mget(links) if links else []:
        if client_id := _text(found):
            return client_id
    return None


def _token_links(event: Event) -> list[tuple[str, str | None]]:
    return [
        ("order", event.commerce.order_id),
        ("checkout", event.person.checkout_token),
        ("cart", event.person.cart_token),
    ]


def _link_webhook_ids(
    connection: redis.Redis, event: Event, client_id: str, seconds: int
) -> None:
    person = event.person
    email = matchkeys.email(person.email)
    for kind, value in [
        *_token_links(event),
        ("customer", person.customer_id),
        ("email", matchkeys.sha256(email) if email else None),
    ]:
        if value:
            link(connection, event.shop, client_id, kind, value, seconds)


def _remember_identity(
    connection: redis.Redis, event: Event, client_id: str, seconds: int
) -> None:
    """Keep who a webhook says the visitor is, as digests and an id."""
    person = event.person
    identity = {
        "em": matchkeys.email_sha256(person.email),
        "ph": matchkeys.phone_sha256(person.phone, person.country),
        "customer_id": person.customer_id,
    }
    found = {name: value for name, value in identity.items() if value}
    if found:
        key = keys.visitor(event.shop, client_id)
        pipe = connection.pipeline()
        pipe.hset(key, mapping=found)  # type: ignore[arg-type]
        pipe.expire(key, seconds)
        pipe.execute()


def _note_stated_identity(
    connection: redis.Redis,
    shop: str,
    client_id: str,
    envelope: dict[str, Any],
    seconds: int,
) -> None:
    """Keep who the visitor's own browser says they are, if nothing better.

    A logged-in customer, or the contact typed into the checkout. It is
    only ever used for this visitor's own events (a stranger's beacon can
    claim any email, as it could on any browser tag), it never links, and
    a webhook's identity replaces it.
    """
    customer = envelope.get("customer") or {}
    checkout = envelope["event"].get("data", {}).get("checkout")
    checkout = checkout if isinstance(checkout, dict) else {}
    billing = checkout.get("billingAddress")
    country = billing.get("countryCode") if isinstance(billing, dict) else None
    stated = {
        "em": matchkeys.email_sha256(
            _text_or_none(customer.get("email") or checkout.get("email"))
        ),
        "ph": matchkeys.phone_sha256(
            _text_or_none(customer.get("phone") or checkout.get("phone")),
            _text_or_none(country),
        ),
        "customer_id": shopify_id(customer.get("id")),
    }
    key = keys.visitor(shop, client_id)
    links_key = keys.visitor_links(shop, client_id)
    pipe = connection.pipeline()
    for name, value in stated.items():
        if value:
            pipe.hsetnx(key, name, value)
            # Indexed for privacy requests only: every visitor stating it,
            # never one owner, so a stranger's claim blocks no one.
            stated_key = keys.visitor_link(shop, f"stated-{name}", value)
            # Bounded: anyone may state any email, and a privacy request
            # walks every member.
            if connection.scard(stated_key) < MAX_STATING:
                pipe.sadd(stated_key, client_id)
                pipe.expire(stated_key, seconds)
                pipe.sadd(links_key, stated_key)
    pipe.expire(key, seconds)
    pipe.expire(links_key, seconds)
    pipe.execute()


def _consent(own: Consent, known: dict[str, str]) -> Consent:
    """The event's own consent, else the visitor's last known; a refusal on
    either side wins, so a withdrawal reaches events made before it."""

    def flag(value: bool | None, stored: str | None) -> bool | None:
        latest = {"1": True, "0": False}.get(stored or "")
        if value is False or latest is False:
            return False
        return value if value is not None else latest

    return Consent(
        marketing=flag(own.marketing, known.get("consent_marketing")),
        analytics=own.analytics,
        sale_of_data=flag(own.sale_of_data, known.get("consent_sale_of_data")),
    )


def _fill(person: Person, known: dict[str, str]) -> Person:
    click_ids = dict(person.click_ids)
    if "epik" not in click_ids and known.get("click_id"):
        click_ids["epik"] = known["click_id"]
    browser = dataclasses.replace(
        person,
        ip=person.ip or known.get("ip") or None,
        user_agent=person.user_agent or known.get("user_agent") or None,
        click_ids=click_ids,
    )
    identified = (
        person.email,
        person.email_sha256,
        person.phone,
        person.phone_sha256,
        person.customer_id,
    )
    if any(identified):
        # The event says who it is; on a shared browser the profile's
        # identity may be someone else's, and the two must not be mixed.
        return browser
    return dataclasses.replace(
        browser,
        email_sha256=known.get("em") or None,
        phone_sha256=known.get("ph") or None,
        customer_id=known.get("customer_id") or None,
    )


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and len(value) <= 320 else None


def profile(connection: redis.Redis, shop: str, client_id: str) -> dict[str, str]:
    raw = connection.hgetall(keys.visitor(shop, client_id))
    return {_text(k) or "": _text(v) or "" for k, v in raw.items()}


def client_for(connection: redis.Redis, shop: str, kind: str, value: str) -> str | None:
    """The client id a cart, checkout or order is linked to, if any."""
    return _text(connection.get(keys.visitor_link(shop, kind, value)))


def stating(connection: redis.Redis, shop: str, name: str, value: str) -> set[str]:
    """The visitors whose browser stated `name` (em, ph, customer_id) as `value`."""
    members = connection.smembers(keys.visitor_link(shop, f"stated-{name}", value))
    return {_text(member) or "" for member in members} - {""}


def forget(connection: redis.Redis, shop: str, client_id: str) -> int:
    """Delete a visitor's profile and every link to it; returns keys deleted."""
    links_key = keys.visitor_links(shop, client_id)
    link_keys = list(connection.smembers(links_key))
    # The carts the visitor filled: their lines name no one, but together
    # with the visitor they tell what this person put in their cart.
    cart_prefix = keys.visitor_link(shop, "cart", "")
    stated_prefix = keys.visitor_link(shop, "stated-", "")[:-1]
    names = [name for name in map(_text, link_keys) if name]
    carts = [
        keys.cart(shop, name[len(cart_prefix) :])
        for name in names
        if name.startswith(cart_prefix)
    ]
    # An identity stated on several devices: only this one leaves its index.
    stated = [name for name in names if name.startswith(stated_prefix)]
    owned = [name for name in names if name not in stated]
    pipe = connection.pipeline()
    for name in stated:
        pipe.srem(name, client_id)
    pipe.delete(keys.visitor(shop, client_id), links_key, *owned, *carts)
    return int(pipe.execute()[-1])


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def usable_ip(ip: str | None) -> str | None:
    """`ip` if a platform can match it: not loopback, link-local or a LAN's.

    A beacon from a machine on the same network as Relay (a developer, a
    proxy that does not forward the client's address) carries no visitor's
    address worth sending.
    """
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return None
    internal = (
        address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or any(address in network for network in INTERNAL_NETWORKS)
    )
    return None if internal else str(address)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
