"""Shopify webhook payloads → neutral events.

Parsing is lenient about fields Shopify adds or leaves null, and strict about
the few that an event cannot exist without (an id, a time): those raise
`BadInput`, which the job logs and drops instead of retrying forever.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, urlsplit

from relay.errors import BadInput
from relay.events import (
    ActionSource,
    Commerce,
    Event,
    EventName,
    Item,
    Person,
)

log = logging.getLogger(__name__)

Payload = Mapping[str, Any]

_SHOPIFY_ID = re.compile(r"^[1-9][0-9]{0,19}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_\-=+/.]{1,255}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
EARLIEST_YEAR, LATEST_YEAR = 2000, 2100
MAX_QUANTITY = 1_000_000
MAX_TEXT = 2_000


def order_to_purchase(shop: str, order: Payload, topic: str) -> Event:
    """The purchase an order webhook reports.

    The event id is the order id, so a browser tag reporting the same order
    deduplicates against it. The time is `processed_at`, when the buyer paid
    or the order was placed, not when the webhook fired.
    """
    order_id = _required_id(order, "id", "order")
    occurred_at = parse_time(order.get("processed_at") or order.get("created_at"))
    currency, value = _order_value(order, shop, order_id)

    return Event(
        shop=shop,
        name=EventName.PURCHASE,
        event_id=order_id,
        occurred_at=occurred_at,
        action_source=_action_source(order),
        person=_person(order),
        commerce=Commerce(
            currency=currency,
            value=value,
            order_id=order_id,
            items=_items(order.get("line_items"), _money_side(order)),
            amounts=_amounts(order),
        ),
        # Anything but an explicit false counts as a test: sending a test
        # order live is worse than holding back a real one.
        test=order.get("test") not in (False, None, "false"),
        origin=f"webhook:{topic}",
    )


def checkout_to_begin_checkout(shop: str, checkout: Payload, topic: str) -> Event:
    """The begun checkout a `checkouts/create` webhook reports.

    Its event id is the checkout token. Checkout payloads carry amounts in
    the shop's currency only, so value and currency both come from there.
    """
    token = _token(checkout.get("token"))
    if token is None:
        raise BadInput("checkout has no usable token")
    occurred_at = parse_time(checkout.get("created_at"))
    currency = _currency(checkout.get("currency"))
    value = _decimal(checkout.get("subtotal_price"))
    log.info(
        "checkout %s for %s: valued in shop currency %s "
        "(checkout payloads carry no buyer-currency amounts)",
        token,
        shop,
        currency,
    )

    return Event(
        shop=shop,
        name=EventName.BEGIN_CHECKOUT,
        event_id=token,
        occurred_at=occurred_at,
        action_source=_action_source(checkout),
        # A checkout payload is the checkout: its own token is the one.
        person=dataclasses.replace(_person(checkout), checkout_token=token),
        commerce=Commerce(
            currency=currency,
            value=value,
            items=_items(checkout.get("line_items"), "shop_money"),
        ),
        origin=f"webhook:{topic}",
    )


def cart_summary(cart: Payload) -> dict[str, Any]:
    """What Relay keeps of a cart: its token and lines, no personal data.

    Shopify's cart token may carry a `?key=` suffix (as `/cart.js` returns
    it); orders and checkouts refer to the part before it.
    """
    raw = cart.get("token") or cart.get("id")
    token = _token(raw.split("?", 1)[0]) if isinstance(raw, str) else None
    if token is None:
        raise BadInput("cart has no usable token")

    lines = []
    for line in _list(cart.get("line_items")):
        if not isinstance(line, Mapping):
            continue
        # The buyer's price where the payload has it, with its own currency.
        currency, price = _money(line.get("price_set"), "presentment_money")
        if price is None:
            currency, price = None, _decimal(line.get("price"))
        lines.append(
            {
                "variant_id": shopify_id(line.get("variant_id")),
                "product_id": shopify_id(line.get("product_id")),
                "quantity": _quantity(line.get("quantity")),
                "price": None if price is None else format(price, "f"),
                "currency": currency,
            }
        )
    return {
        "token": token,
        "updated_at": clean_text(cart.get("updated_at")),
        "lines": lines,
    }


# -- value -------------------------------------------------------------------


def _money_side(order: Payload) -> str:
    """Which side of Shopify's money sets this order's amounts come from.

    The buyer's (presentment) money where the payload has it, so the value
    is what the buyer saw; the shop's otherwise.
    """
    currency, amount = _money(order.get("subtotal_price_set"), "presentment_money")
    return "presentment_money" if currency and amount is not None else "shop_money"


def _order_value(
    order: Payload, shop: str, order_id: str
) -> tuple[str | None, Decimal | None]:
    """Subtotal after discounts, without shipping and tax, with its currency.

    In stores whose prices include tax, Shopify's subtotal includes the tax
    on the items; it is taken out so the value means the same everywhere.
    """
    side = _money_side(order)
    currency, subtotal = _money(order.get("subtotal_price_set"), side)
    if side == "shop_money":
        log.info(
            "order %s for %s: no buyer-currency amounts, valued in shop money",
            order_id,
            shop,
        )
        currency = currency or _currency(order.get("currency"))
        if subtotal is None:
            subtotal = _decimal(order.get("subtotal_price"))
    if subtotal is None:
        return currency, None

    if order.get("taxes_included") is True:
        included = _included_item_tax(order.get("line_items"), side)
        if included is None:
            log.warning(
                "order %s for %s: included tax unreadable, no value", order_id, shop
            )
            return currency, None
        subtotal -= included
        if subtotal.is_signed():
            log.warning(
                "order %s for %s: included tax exceeds subtotal", order_id, shop
            )
            return currency, None
    return currency, subtotal


# Value policies' names for the two sides of Shopify's money sets.
MONEY_SIDES = {"buyer": "presentment_money", "shop": "shop_money"}


def _amounts(order: Payload) -> dict[str, tuple[str, str]]:
    """Every value a destination's value policy may choose, from the money
    sets: the subtotal (as `_order_value` makes it) and the total, in the
    buyer's and the shop's money. Only what the payload states is included.
    """
    found: dict[str, tuple[str, str]] = {}
    for money, side in MONEY_SIDES.items():
        currency, subtotal = _money(order.get("subtotal_price_set"), side)
        if subtotal is not None and order.get("taxes_included") is True:
            included = _included_item_tax(order.get("line_items"), side)
            if included is None or included > subtotal:
                subtotal = None
            else:
                subtotal -= included
        if currency and subtotal is not None:
            found[f"subtotal:{money}"] = (currency, str(subtotal))
        currency, total = _money(order.get("total_price_set"), side)
        if currency and total is not None:
            found[f"total:{money}"] = (currency, str(total))
    return found


def _included_item_tax(lines: Any, side: str) -> Decimal | None:
    """Tax included in the items, on `side`; None if a tax line lacks it."""
    total = Decimal("0")
    for line in _list(lines):
        if not isinstance(line, Mapping):
            continue
        for tax in _list(line.get("tax_lines")):
            if not isinstance(tax, Mapping):
                continue
            amount = _money(tax.get("price_set"), side)[1]
            if amount is None and side == "shop_money":
                amount = _decimal(tax.get("price"))
            if amount is None:
                return None
            total += amount
    return total


def _money(money_set: Any, side: str) -> tuple[str | None, Decimal | None]:
    if not isinstance(money_set, Mapping):
        return None, None
    money = money_set.get(side)
    if not isinstance(money, Mapping):
        return None, None
    return _currency(money.get("currency_code")), _decimal(money.get("amount"))


def money_amount(money: Any) -> tuple[str | None, Decimal | None]:
    """A pixel event's MoneyV2 (`{amount, currencyCode}`, the buyer's money)."""
    if not isinstance(money, Mapping):
        return None, None
    return _currency(money.get("currencyCode")), _decimal(money.get("amount"))


def _items(lines: Any, side: str) -> tuple[Item, ...]:
    items = []
    for line in _list(lines):
        if not isinstance(line, Mapping):
            continue
        price = _money(line.get("price_set"), side)[1]
        if price is None and side == "shop_money":
            # `price` is shop money; never label it with the buyer's currency.
            price = _decimal(line.get("price"))
        items.append(
            Item(
                product_id=shopify_id(line.get("product_id")),
                variant_id=shopify_id(line.get("variant_id")),
                sku=clean_text(line.get("sku")),
                name=clean_text(line.get("title")) or clean_text(line.get("name")),
                brand=clean_text(line.get("vendor")),
                unit_price=price,
                quantity=_quantity(line.get("quantity")),
            )
        )
    return tuple(items)


# -- person ------------------------------------------------------------------


def _person(payload: Payload) -> Person:
    """The buyer as the payload describes them.

    Billing address first (Pinterest asks for the residence, mostly billing),
    then shipping, then the customer's default address.
    """
    customer = _mapping(payload.get("customer"))
    address = _first_address(
        payload.get("billing_address"),
        payload.get("shipping_address"),
        customer.get("default_address"),
    )
    client = _mapping(payload.get("client_details"))

    return Person(
        email=_first_text(
            payload.get("email"), payload.get("contact_email"), customer.get("email")
        ),
        phone=_first_text(
            payload.get("phone"),
            address.get("phone"),
            customer.get("phone"),
        ),
        first_name=_first_text(address.get("first_name"), customer.get("first_name")),
        last_name=_first_text(address.get("last_name"), customer.get("last_name")),
        city=clean_text(address.get("city")),
        region=clean_text(address.get("province_code")),
        postal_code=clean_text(address.get("zip")),
        country=clean_text(address.get("country_code")),
        customer_id=shopify_id(customer.get("id")),
        ip=_first_text(payload.get("browser_ip"), client.get("browser_ip")),
        user_agent=clean_text(client.get("user_agent")),
        click_ids=_click_ids(payload.get("landing_site")),
        cart_token=_token(payload.get("cart_token")),
        checkout_token=_token(payload.get("checkout_token")),
    )


def _first_address(*candidates: Any) -> Mapping[str, Any]:
    for candidate in candidates:
        if isinstance(candidate, Mapping) and any(candidate.values()):
            return candidate
    return {}


def _click_ids(landing_site: Any) -> dict[str, str]:
    """Ad click ids on the landing URL; Pinterest's arrives as `epik`."""
    url = clean_text(landing_site)
    if url is None or "?" not in url:
        return {}
    try:
        query = parse_qs(urlsplit(url).query)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return {}
    epik = clean_text(query.get("epik", [""])[0])
    return {"epik": epik} if epik else {}


def _action_source(payload: Payload) -> ActionSource:
    """Web when a browser was involved; offline for POS and browserless orders."""
    if payload.get("source_name") == "pos":
        return ActionSource.OFFLINE
    client = _mapping(payload.get("client_details"))
    if (
        payload.get("browser_ip")
        or client.get("browser_ip")
        or client.get("user_agent")
    ):
        return ActionSource.WEB
    if payload.get("source_name") == "web":
        return ActionSource.WEB
    return ActionSource.OFFLINE


# -- small parsers -------------------------------------------------------------


def _required_id(payload: Payload, key: str, what: str) -> str:
    value = shopify_id(payload.get(key))
    if value is None:
        raise BadInput(f"{what} has no {key}")
    return value


def shopify_id(value: Any) -> str | None:
    """A Shopify numeric id as a string, or None.

    Webhooks send ids as JSON integers, the pixel as strings, Admin GraphQL
    as `gid://shopify/Order/123`. Anything else (negative, fractional, huge,
    not digits) is no Shopify id and is treated as missing.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        text = str(value) if value > 0 else ""
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("gid://shopify/"):
            text = text.rsplit("/", 1)[-1]
    else:
        return None
    return text if _SHOPIFY_ID.fullmatch(text) else None


def _token(value: Any) -> str | None:
    """A cart or checkout token: URL-safe characters, bounded length."""
    if isinstance(value, str) and _TOKEN.fullmatch(value):
        return value
    return None


def parse_time(value: Any) -> datetime:
    """An ISO 8601 time with an offset, within the years a store can act in."""
    if not isinstance(value, str):
        raise BadInput("payload has no usable timestamp")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput("payload timestamp is not ISO 8601") from None
    if parsed.tzinfo is None:
        raise BadInput("payload timestamp has no UTC offset")
    # Far-off years overflow conversions downstream and no store acts in them.
    if not EARLIEST_YEAR <= parsed.year <= LATEST_YEAR:
        raise BadInput(f"payload timestamp is outside {EARLIEST_YEAR}–{LATEST_YEAR}")
    return parsed


def _decimal(value: Any) -> Decimal | None:
    """A non-negative amount of money, or None.

    Amounts past a trillion, negative or not finite are not prices any store
    charges; they are treated as missing rather than sent to a platform.
    """
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite() or number.is_signed() or number.adjusted() > 12:
        return None
    # Past ten decimal places no currency means anything; refusing them also
    # keeps "0E-999999999" from becoming a billion zeros in plain notation.
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -10:
        return None
    return number


def _quantity(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return value if 0 <= value <= MAX_QUANTITY else 0


def _currency(value: Any) -> str | None:
    """An ISO 4217 code such as "CAD"."""
    if isinstance(value, str) and _CURRENCY.fullmatch(value):
        return value
    return None


def clean_text(value: Any) -> str | None:
    """Trimmed text, or None for empty, oversized or unencodable values."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > MAX_TEXT or "\x00" in text:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape
        return None
    return text


def _first_text(*values: Any) -> str | None:
    for value in values:
        text = clean_text(value)
        if text:
            return text
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


EVENT_TOPICS = {
    "orders/create": order_to_purchase,
    "orders/paid": order_to_purchase,
    "orders/updated": order_to_purchase,
    "checkouts/create": checkout_to_begin_checkout,
}


def event_for_topic(shop: str, topic: str, payload: Payload) -> Event:
    """The event a webhook of `topic` makes; BadInput if the topic makes none."""
    build = EVENT_TOPICS.get(topic)
    if build is None:
        known = ", ".join(EVENT_TOPICS)
        raise BadInput(
            f"{topic} makes no event from its payload alone (topics that do: "
            f"{known}; a cart's add-to-carts depend on its earlier states)"
        )
    return build(shop, payload, topic)
