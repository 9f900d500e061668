"""Visitor profiles: who a storefront visitor is, across pixel events.

Per shop and pixel client id, a Redis hash keeps what later conversions need
and only the pixel sees: the latest Pinterest click id with when it was
seen, the IP address and user agent, and the visitor's consent. Link keys
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
import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import redis

from relay import keys, matchkeys
from relay.events import Event
from relay.runtime import Runtime
from relay.shops import find_shop

log = logging.getLogger(__name__)

CLOCK_SKEW = timedelta(minutes=10)
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


def process_beacon(runtime: Runtime, shop: str, client_id: str, event_id: str) -> None:
    """Fold one stored beacon into its visitor's profile."""
    beacon_key = keys.beacon(shop, client_id, event_id)
    raw = runtime.redis.get(beacon_key)
    if raw is None:
        log.warning("beacon %s from %s: no longer stored", event_id, shop)
        return

    with runtime.db.session() as session:
        shop_row = find_shop(session, shop)
        installed = shop_row is not None and shop_row.installed
    try:
        stored = json.loads(raw)
    except (ValueError, RecursionError):
        stored = None  # intake checked it; only a foreign writer gets here
    if stored is None or not installed:
        log.info(
            "beacon %s from %s: dropped (shop not installed or unreadable)",
            event_id,
            shop,
        )
    else:
        received_at = _time(stored.get("received_at"))
        observe(runtime, shop, stored["envelope"], stored.get("ip"), received_at)
    runtime.redis.delete(beacon_key)


def observe(
    runtime: Runtime,
    shop: str,
    envelope: dict[str, Any],
    ip: str | None,
    received_at: datetime | None,
) -> None:
    event = envelope["event"]
    client_id = event["client_id"]
    seconds = runtime.config.visitor_profile_days * 24 * 3600
    seen_at = _time(event.get("timestamp"))
    if seen_at is None:
        return
    # The browser's clock is the visitor's to set: a time ahead of Relay's
    # would freeze the profile against every later beacon.
    if received_at is not None and seen_at > received_at + CLOCK_SKEW:
        seen_at = received_at

    fields: dict[str, str] = {"last_event": event["name"]}
    if _valid_ip(ip):
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
    log.info(
        "visitor profile for %s updated from %s (%s)", shop, event["name"], event["id"]
    )


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
    """`event` with what the pixel knew of its visitor, and the visitor linked.

    The visitor is found through the event's order, checkout or cart; the
    event then gets the visitor's click id, IP and user agent where it has
    none of its own, and its order, checkout, customer and email are linked
    to the visitor for the events that follow.
    """
    person = event.person
    order_id = event.commerce.order_id
    candidates = [
        ("order", order_id),
        ("checkout", person.checkout_token),
        ("cart", person.cart_token),
    ]
    client_id = person.client_id or next(
        (
            found
            for kind, value in candidates
            if value and (found := client_for(runtime.redis, event.shop, kind, value))
        ),
        None,
    )
    if client_id is None:
        return event

    seconds = runtime.config.visitor_profile_days * 24 * 3600
    email = matchkeys.email(person.email)
    for kind, value in [
        *candidates,
        ("customer", person.customer_id),
        ("email", matchkeys.sha256(email) if email else None),
    ]:
        if value:
            link(runtime.redis, event.shop, client_id, kind, value, seconds)

    known = profile(runtime.redis, event.shop, client_id)
    if (
        known.get("consent_marketing") == "0"
        or known.get("consent_sale_of_data") == "0"
    ):
        # The visitor refused: what the browser told Relay is not used.
        log.info(
            "%s %s for %s: visitor refused marketing or sale of data, "
            "browser data not used",
            event.name,
            event.event_id,
            event.shop,
        )
        return dataclasses.replace(
            event, person=dataclasses.replace(person, client_id=client_id)
        )
    click_ids = dict(person.click_ids)
    if "epik" not in click_ids and known.get("click_id"):
        click_ids["epik"] = known["click_id"]
    enriched = dataclasses.replace(
        person,
        client_id=client_id,
        ip=person.ip or known.get("ip") or None,
        user_agent=person.user_agent or known.get("user_agent") or None,
        click_ids=click_ids,
    )
    filled = [
        name
        for name, before, after in (
            ("click id", person.click_ids.get("epik"), click_ids.get("epik")),
            ("IP", person.ip, enriched.ip),
            ("user agent", person.user_agent, enriched.user_agent),
        )
        if before != after
    ]
    log.info(
        "%s %s for %s: visitor found; from the pixel's profile: %s",
        event.name,
        event.event_id,
        event.shop,
        ", ".join(filled) or "nothing (the payload had it all)",
    )
    return dataclasses.replace(event, person=enriched)


def profile(connection: redis.Redis, shop: str, client_id: str) -> dict[str, str]:
    raw = connection.hgetall(keys.visitor(shop, client_id))
    return {_text(k) or "": _text(v) or "" for k, v in raw.items()}


def client_for(connection: redis.Redis, shop: str, kind: str, value: str) -> str | None:
    """The client id a cart, checkout or order is linked to, if any."""
    return _text(connection.get(keys.visitor_link(shop, kind, value)))


def forget(connection: redis.Redis, shop: str, client_id: str) -> int:
    """Delete a visitor's profile and every link to it; returns keys deleted."""
    links_key = keys.visitor_links(shop, client_id)
    link_keys = list(connection.smembers(links_key))
    return int(connection.delete(keys.visitor(shop, client_id), links_key, *link_keys))


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def _valid_ip(ip: str | None) -> bool:
    """An address a platform can match: not loopback, link-local or a LAN's.

    A beacon from a machine on the same network as Relay (a developer, a
    proxy that does not forward the client's address) carries no visitor's
    address worth sending.
    """
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return False
    internal = (
        address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or any(address in network for network in INTERNAL_NETWORKS)
    )
    return not internal


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
