"""The neutral event: one customer action, described without any platform.

Normalizers turn Shopify inputs into `Event`s; destination plugins turn
`Event`s into their platform's format. Nothing here knows about Pinterest.

Personal fields hold raw values as the store gave them; a destination
normalizes and hashes them as its platform requires. Events with personal
data live only in Redis between normalizing and delivery, with a TTL, and are
never written to a log line.

Money is `Decimal`. `Commerce.value` and `Commerce.currency` always come from
the same Shopify money set (the buyer's where the payload has it).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any


class EventName(StrEnum):
    """Relay's own vocabulary of customer actions."""

    PAGE_VIEW = "page_view"
    VIEW_ITEM = "view_item"
    VIEW_CATEGORY = "view_category"
    SEARCH = "search"
    ADD_TO_CART = "add_to_cart"
    BEGIN_CHECKOUT = "begin_checkout"
    ADD_PAYMENT_INFO = "add_payment_info"
    PURCHASE = "purchase"


class ActionSource(StrEnum):
    """Where the action happened."""

    WEB = "web"
    OFFLINE = "offline"  # in a physical store, or with no browser involved
    APP = "app"


@dataclass(frozen=True)
class Consent:
    """What the visitor allowed; None where the input did not say."""

    marketing: bool | None = None
    analytics: bool | None = None
    sale_of_data: bool | None = None


@dataclass(frozen=True)
class Person:
    """Who acted, as far as the input tells. Raw values, never hashed here."""

    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    city: str | None = None
    region: str | None = None  # the store's province/state code, e.g. "ON"
    postal_code: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2, e.g. "CA"
    customer_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    click_ids: dict[str, str] = field(default_factory=dict)  # {"epik": "..."}
    client_id: str | None = None  # the Web Pixel's visitor id
    # The cart and checkout the action came through, which tie it to the
    # pixel's visitor (relay.visitors).
    cart_token: str | None = None
    checkout_token: str | None = None
    # Digests (SHA-256 of the normalized value, as relay.matchkeys makes
    # them) where only those are known: a visitor's profile keeps no raw
    # email or phone.
    email_sha256: str | None = None
    phone_sha256: str | None = None


@dataclass(frozen=True)
class Item:
    """One line of a cart, checkout or order, priced in `Commerce.currency`."""

    product_id: str | None
    variant_id: str | None
    sku: str | None
    name: str | None
    brand: str | None
    unit_price: Decimal | None
    quantity: int


@dataclass(frozen=True)
class Commerce:
    """What the action was worth and what it involved."""

    currency: str | None = None
    value: Decimal | None = None
    order_id: str | None = None
    items: tuple[Item, ...] = ()
    # The values a destination's value policy may choose instead (orders
    # only): "subtotal" or "total", in the "buyer"'s or the "shop"'s money,
    # keyed "subtotal:buyer" and so on, as (currency, amount).
    amounts: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def num_items(self) -> int:
        return sum(item.quantity for item in self.items)

    def valued(self, basis: str, money: str) -> Commerce:
        """This commerce valued as `basis` in `money`, when known; else as is.

        Item prices are in the buyer's money: valued in another currency,
        they are left out rather than mislabelled.
        """
        found = self.amounts.get(f"{basis}:{money}")
        if found is None:
            return self
        currency, amount = found
        items = self.items
        if currency != self.currency:
            items = tuple(dataclasses.replace(i, unit_price=None) for i in items)
        return dataclasses.replace(
            self, currency=currency, value=Decimal(amount), items=items
        )


@dataclass(frozen=True)
class Event:
    """One customer action, ready for any destination.

    `event_id` is stable for the action: a purchase's is the Shopify order id,
    so a browser tag that reports the same order id is deduplicated against
    it; a begun checkout's is the checkout token; an add-to-cart from the
    cart webhooks names the cart, the variant and the quantity reached; an
    event only the pixel sees keeps the pixel's own event id.
    """

    shop: str
    name: EventName
    event_id: str
    occurred_at: datetime
    action_source: ActionSource
    person: Person = field(default_factory=Person)
    commerce: Commerce = field(default_factory=Commerce)
    consent: Consent = field(default_factory=Consent)
    source_url: str | None = None
    search_string: str | None = None  # what the visitor searched for
    test: bool = False  # a Shopify test order: never sent to a live destination
    origin: str = ""  # what produced it, e.g. "webhook:orders/create"

    def valued(self, basis: str, money: str) -> Event:
        """The event with its value chosen by a value policy (`Commerce.valued`)."""
        return dataclasses.replace(self, commerce=self.commerce.valued(basis, money))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), default=_encode, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        data = json.loads(text)
        commerce = data["commerce"]
        items = tuple(
            Item(**{**item, "unit_price": _decimal(item["unit_price"])})
            for item in commerce["items"]
        )
        return cls(
            shop=data["shop"],
            name=EventName(data["name"]),
            event_id=data["event_id"],
            occurred_at=datetime.fromisoformat(data["occurred_at"]),
            action_source=ActionSource(data["action_source"]),
            person=Person(**data["person"]),
            commerce=Commerce(
                currency=commerce["currency"],
                value=_decimal(commerce["value"]),
                order_id=commerce["order_id"],
                items=items,
                # Events stored before value policies carry none.
                amounts={
                    key: (pair[0], pair[1])
                    for key, pair in (commerce.get("amounts") or {}).items()
                },
            ),
            consent=Consent(**data["consent"]),
            source_url=data["source_url"],
            search_string=data.get("search_string"),
            test=data["test"],
            origin=data["origin"],
        )


def _encode(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)
