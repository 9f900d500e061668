"""Pixel beacons → neutral events, for the actions only the browser sees.

Which side makes which event:

| pixel event             | event made                                      |
| page_viewed             | page view, from the pixel                       |
| product_viewed          | item view, from the pixel                       |
| collection_viewed       | category view, from the pixel                   |
| search_submitted        | search, from the pixel                          |
| payment_info_submitted  | payment info, from the pixel                    |
| product_added_to_cart   | from `carts/*` when the beacon names its cart;  |
|                         |   from the pixel only when it cannot            |
| checkout_started        | begin checkout, from `checkouts/create`         |
| checkout_completed      | purchase, from `orders/create`                  |

Beacons are unauthenticated, so a purchase, a begun checkout or a cart's
additions are never made from one: a stranger could otherwise invent
purchases, or claim the next order id first with a made-up value. Their
beacons still lend the webhooks' events the visitor's browser data through
the visitor's profile (relay.visitors). An event made here keeps the
pixel's own event id, which Shopify gives every pixel subscribed to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from relay.events import (
    ActionSource,
    Commerce,
    Consent,
    Event,
    EventName,
    Item,
    Person,
)
from relay.shopify.normalize import clean_text, money_amount, shopify_id

PIXEL_ACTIONS = {
    "page_viewed": EventName.PAGE_VIEW,
    "product_viewed": EventName.VIEW_ITEM,
    "collection_viewed": EventName.VIEW_CATEGORY,
    "search_submitted": EventName.SEARCH,
    "product_added_to_cart": EventName.ADD_TO_CART,
    "payment_info_submitted": EventName.ADD_PAYMENT_INFO,
}
MAX_SEARCH = 500


def event_from_beacon(
    shop: str,
    envelope: Mapping[str, Any],
    ip: str | None,
    occurred_at: datetime,
) -> Event | None:
    """The event a beacon makes, or None when a webhook makes it instead."""
    beacon = envelope["event"]
    name = PIXEL_ACTIONS.get(beacon["name"])
    if name is None:
        return None
    if name is EventName.ADD_TO_CART and envelope.get("cart_token"):
        return None  # the cart's webhooks make it, with a deterministic id
    data = _mapping(beacon.get("data"))

    click = _mapping(envelope.get("click_id"))
    consent = _mapping(envelope.get("consent"))
    # Who was logged in when it happened: on a shared browser the profile's
    # identity may be someone else's by the time the event is sent.
    customer = _mapping(envelope.get("customer"))
    return Event(
        shop=shop,
        name=name,
        event_id=beacon["id"],
        occurred_at=occurred_at,
        action_source=ActionSource.WEB,
        person=Person(
            client_id=beacon["client_id"],
            ip=ip,
            user_agent=clean_text(beacon.get("user_agent")),
            click_ids={"epik": click["epik"]} if click.get("epik") else {},
            cart_token=envelope.get("cart_token"),
            customer_id=shopify_id(customer.get("id")),
            email=clean_text(customer.get("email")),
            phone=clean_text(customer.get("phone")),
        ),
        commerce=_commerce(name, data),
        consent=Consent(
            marketing=_flag(consent.get("marketing")),
            analytics=_flag(consent.get("analytics")),
            sale_of_data=_flag(consent.get("sale_of_data")),
        ),
        source_url=clean_text(beacon.get("url")),
        search_string=_search(name, data),
        origin=f"pixel:{beacon['name']}",
    )


def order_id(value: Any) -> str | None:
    """The order id a pixel event names: "123" and
    "gid://shopify/OrderIdentity/123" (checkout UI extensions) both mean 123."""
    return shopify_id(value)


def _commerce(name: EventName, data: Mapping[str, Any]) -> Commerce:
    if name is EventName.VIEW_ITEM:
        variant = _mapping(data.get("productVariant"))
        item = _item(variant, 1)
        price = _mapping(variant.get("price"))
        return _priced((item,) if item else (), price)
    if name is EventName.ADD_TO_CART:
        line = _mapping(data.get("cartLine"))
        quantity = line.get("quantity")
        item = _item(_mapping(line.get("merchandise")), quantity)
        total = _mapping(_mapping(line.get("cost")).get("totalAmount"))
        return _priced((item,) if item else (), total)
    if name is EventName.ADD_PAYMENT_INFO:
        checkout = _mapping(data.get("checkout"))
        return _priced((), _mapping(checkout.get("subtotalPrice")))
    return Commerce()


def _priced(items: tuple[Item, ...], money: Mapping[str, Any]) -> Commerce:
    """Value and currency from one MoneyV2, the buyer's currency."""
    currency, amount = money_amount(money)
    if currency is None or amount is None:
        return Commerce(items=items)
    return Commerce(currency=currency, value=amount, items=items)


def _item(variant: Mapping[str, Any], quantity: Any) -> Item | None:
    variant_id = shopify_id(variant.get("id"))
    if variant_id is None:
        return None
    product = _mapping(variant.get("product"))
    usable = isinstance(quantity, int) and not isinstance(quantity, bool)
    count = quantity if usable and 0 < quantity <= 1_000_000 else 1
    return Item(
        product_id=shopify_id(product.get("id")),
        variant_id=variant_id,
        sku=clean_text(variant.get("sku")),
        name=clean_text(product.get("title")),
        brand=clean_text(product.get("vendor")),
        unit_price=money_amount(_mapping(variant.get("price")))[1],
        quantity=count,
    )


def _search(name: EventName, data: Mapping[str, Any]) -> str | None:
    if name is not EventName.SEARCH:
        return None
    query = clean_text(_mapping(data.get("searchResult")).get("query"))
    return query[:MAX_SEARCH] if query else None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
