"""Carts: each quantity increase in a cart becomes one add-to-cart.

`carts/create` and `carts/update` carry the whole cart, not what changed,
and Shopify may deliver them out of order or twice. So Relay keeps the
cart's states (lines only, no personal data) ordered by the cart's
`updated_at`, and reads the increases off the whole ordered history each
time. An increase's event id names the cart, the variant and the quantity
reached, so a redelivered or late webhook finds the add-to-cart it already
made instead of making another.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import redis

from relay import keys, matchkeys
from relay.errors import BadInput
from relay.events import ActionSource, Commerce, Event, EventName, Item, Person
from relay.shopify.normalize import parse_time

log = logging.getLogger(__name__)

CART_SECONDS = 30 * 24 * 3600
# A cart edited more often than this keeps only its latest states.
MAX_STATES = 100
# As for one line of an order: more is no real cart.
MAX_QUANTITY = 1_000_000
# Event ids are at most 255 characters in the events table.
MAX_TOKEN_IN_ID = 128


@dataclass(frozen=True)
class Increase:
    """One line's quantity going up between two states of a cart."""

    variant_id: str
    product_id: str | None
    before: int
    reached: int
    price: Decimal | None
    currency: str | None
    updated_at: str


def remember(connection: redis.Redis, shop: str, summary: dict[str, Any]) -> list:
    """Add a state to the cart's history; returns the history, oldest first."""
    if not summary.get("updated_at"):
        raise BadInput("cart has no updated_at, so its changes cannot be ordered")
    parse_time(summary["updated_at"])  # BadInput before anything is kept
    key = keys.cart(shop, summary["token"])
    with connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                states = _states(pipe.get(key))
                # A redelivery of the same state replaces it.
                states = [s for s in states if s["updated_at"] != summary["updated_at"]]
                states.append(summary)
                states.sort(key=lambda state: parse_time(state["updated_at"]))
                states = states[-MAX_STATES:]
                pipe.multi()
                pipe.set(key, json.dumps({"states": states}), ex=CART_SECONDS)
                pipe.execute()
                return states
            except redis.WatchError:
                continue  # another webhook of this cart was kept meanwhile


def increases(
    states: list[dict[str, Any]], around: str | None = None
) -> Iterator[Increase]:
    """The quantity increases along the history, from an empty cart.

    With `around` (a state's `updated_at`), only those into that state and
    into the one after it: the others are unchanged by its arrival.
    """
    times = [state["updated_at"] for state in states]
    wanted = set(times)
    if around is not None:
        # A state older than the kept history changes nothing kept.
        at = times.index(around) if around in times else len(times)
        wanted = set(times[at : at + 2])
    previous: dict[str, int] = {}
    for state in states:
        current = _quantities(state)
        if state["updated_at"] not in wanted:
            previous = {variant_id: q for variant_id, (q, _) in current.items()}
            continue
        for variant_id, (quantity, line) in current.items():
            before = previous.get(variant_id, 0)
            if quantity > before:
                yield Increase(
                    variant_id=variant_id,
                    product_id=line.get("product_id"),
                    before=before,
                    reached=quantity,
                    price=None if line.get("price") is None else Decimal(line["price"]),
                    currency=line.get("currency"),
                    updated_at=state["updated_at"],
                )
        previous = {variant_id: q for variant_id, (q, _) in current.items()}


def add_to_cart(shop: str, token: str, increase: Increase, topic: str) -> Event:
    """The add-to-cart event of one increase."""
    added = increase.reached - increase.before
    price = increase.price
    return Event(
        shop=shop,
        name=EventName.ADD_TO_CART,
        event_id=event_id(token, increase.variant_id, increase.reached),
        occurred_at=parse_time(increase.updated_at),
        action_source=ActionSource.WEB,
        person=Person(cart_token=token),
        commerce=Commerce(
            currency=increase.currency if price is not None else None,
            value=None if price is None else price * added,
            items=(
                Item(
                    product_id=increase.product_id,
                    variant_id=increase.variant_id,
                    sku=None,
                    name=None,
                    brand=None,
                    unit_price=price,
                    quantity=added,
                ),
            ),
        ),
        origin=f"webhook:{topic}",
    )


def event_id(token: str, variant_id: str, reached: int) -> str:
    """`{cart token}:{variant id}:{quantity reached}`, the same on every retry."""
    if len(token) > MAX_TOKEN_IN_ID:
        token = matchkeys.sha256(token)
    return f"{token}:{variant_id}:{reached}"


def revised(made: Event, again: Event) -> Event | None:
    """`made` with `again`'s quantity and value where they differ, else None.

    They differ when a late webhook with an earlier state split an increase
    already made: 0 → 2 becomes 0 → 1 → 2, and the add-to-cart that reached
    2 added one, not two.
    """
    if made.commerce == again.commerce:
        return None
    return dataclasses.replace(made, commerce=again.commerce)


def _quantities(state: dict[str, Any]) -> dict[str, tuple[int, dict[str, Any]]]:
    """Quantity per variant; a variant on two lines (say, engraved and not)
    counts once with both quantities."""
    found: dict[str, tuple[int, dict[str, Any]]] = {}
    for line in state.get("lines", []):
        variant_id = line.get("variant_id")
        if not variant_id:
            continue
        quantity, first = found.get(variant_id, (0, line))
        total = quantity + int(line.get("quantity") or 0)
        found[variant_id] = (min(total, MAX_QUANTITY), first)
    return found


def _states(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    stored = json.loads(raw)
    if "states" in stored:
        return list(stored["states"])
    # Kept by an earlier Relay, one state per cart.
    return [stored] if stored.get("updated_at") else []
