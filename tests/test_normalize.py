"""Shopify payloads → neutral events → Pinterest events, on edited fixtures.

Each test loads a fixture, changes a copy the way a real store's payload
would differ, and checks the exact event and Pinterest payload that result.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import cache
from typing import Any

import pytest
from relay_pinterest.format import format_event

from relay.destinations import Skip
from relay.errors import BadInput
from relay.events import ActionSource, Event, EventName
from relay.shopify.normalize import checkout_to_begin_checkout, order_to_purchase
from tests.conftest import FIXTURES, SHOP

TOPIC = "orders/create"
IP = "203.0.113.42"
USER_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
EPIK = "dj0yJnU9RkFLRV9FUElLX0ZPUl9URVNUUyZwPTEmbj1leGFtcGxlJnQ9QUFBQUFBQUFBQUFB"


@cache
def _fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


def fixture(name: str = "orders_create.json") -> dict[str, Any]:
    """A fresh copy of a fixture, free to edit."""
    return json.loads(_fixture_text(name))


def digest(text: str) -> list[str]:
    return [hashlib.sha256(text.encode("utf-8")).hexdigest()]


def purchase(order: dict[str, Any]) -> Event:
    return order_to_purchase(SHOP, order, TOPIC)


def without_money_sets(value: Any) -> Any:
    """`value` with every `*_set` key removed, at any depth."""
    if isinstance(value, dict):
        return {
            key: without_money_sets(item)
            for key, item in value.items()
            if not key.endswith("_set")
        }
    if isinstance(value, list):
        return [without_money_sets(item) for item in value]
    return value


def without_email(order: dict[str, Any]) -> None:
    order["email"] = None
    order["contact_email"] = None
    order["customer"]["email"] = None


def without_phone(order: dict[str, Any]) -> None:
    order["phone"] = None
    order["customer"]["phone"] = None
    for address in (
        order["billing_address"],
        order["shipping_address"],
        order["customer"]["default_address"],
    ):
        address["phone"] = None


def without_browser(order: dict[str, Any]) -> None:
    order["browser_ip"] = None
    order["client_details"] = None


# -- the unedited fixture ------------------------------------------------------


def test_order_fixture_becomes_a_web_purchase_in_the_buyers_currency():
    event = purchase(fixture())

    assert event.name is EventName.PURCHASE
    assert event.event_id == "6123456789012"
    assert event.occurred_at == datetime(
        2026, 7, 14, 10, 21, 32, tzinfo=timezone(timedelta(hours=-4))
    )
    assert event.action_source is ActionSource.WEB
    assert (event.commerce.currency, event.commerce.value) == ("CAD", Decimal("135.00"))
    assert event.commerce.order_id == "6123456789012"
    assert event.test is False
    assert event.origin == "webhook:orders/create"


# -- who the buyer is ----------------------------------------------------------


def test_guest_order_has_no_external_id_but_is_sent_with_email():
    order = fixture()
    order["customer"] = None

    event = purchase(order)
    formatted = format_event(event)

    assert event.person.customer_id is None
    assert event.person.email == "jane@example.com"
    assert "external_id" not in formatted.payload["user_data"]
    assert formatted.payload["user_data"]["em"] == digest("jane@example.com")
    assert formatted.match_keys == (
        "click_id",
        "client_ip_address",
        "client_user_agent",
        "country",
        "ct",
        "em",
        "fn",
        "ln",
        "ph",
        "st",
        "zp",
    )


def test_pos_order_is_offline_without_click_id_ip_or_user_agent():
    order = fixture()
    order["source_name"] = "pos"
    order["landing_site"] = None
    without_browser(order)

    event = purchase(order)
    formatted = format_event(event)

    assert event.action_source is ActionSource.OFFLINE
    assert (event.person.ip, event.person.user_agent) == (None, None)
    assert event.person.click_ids == {}
    assert formatted.payload["action_source"] == "offline"
    assert formatted.match_keys == (
        "country",
        "ct",
        "em",
        "external_id",
        "fn",
        "ln",
        "ph",
        "st",
        "zp",
    )


def test_order_without_email_or_phone_is_sent_with_ip_and_user_agent():
    order = fixture()
    without_email(order)
    without_phone(order)

    formatted = format_event(purchase(order))

    user_data = formatted.payload["user_data"]
    assert "em" not in user_data
    assert "ph" not in user_data
    assert user_data["client_ip_address"] == IP
    assert user_data["client_user_agent"] == USER_AGENT
    assert user_data["click_id"] == EPIK


def test_order_with_nothing_but_a_browser_is_sent_with_ip_and_user_agent_only():
    order = fixture()
    without_email(order)
    without_phone(order)
    order["customer"] = None
    order["billing_address"] = None
    order["shipping_address"] = None
    order["landing_site"] = None

    formatted = format_event(purchase(order))

    assert formatted.payload["user_data"] == {
        "client_ip_address": IP,
        "client_user_agent": USER_AGENT,
    }
    assert formatted.logged_payload["user_data"] == {
        "client_ip_address": "[masked]",
        "client_user_agent": "[masked]",
    }


def _only_ip(order: dict[str, Any]) -> None:
    order["client_details"]["user_agent"] = None


def _only_user_agent(order: dict[str, Any]) -> None:
    order["browser_ip"] = None
    order["client_details"]["browser_ip"] = None


@pytest.mark.parametrize(
    "edit",
    [without_browser, _only_ip, _only_user_agent],
    ids=["no-browser", "ip-without-user-agent", "user-agent-without-ip"],
)
def test_order_without_email_or_ip_and_user_agent_is_skipped(edit):
    order = fixture()
    without_email(order)
    edit(order)  # phone, name and address remain: not enough on their own

    with pytest.raises(Skip) as raised:
        format_event(purchase(order))

    assert raised.value.reason == "no match keys"


# -- flags and ids -------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "expected"),
    [(True, True), (False, False), (None, False)],
)
def test_test_order_flag_carries_into_the_event(flag, expected):
    order = fixture()
    order["test"] = flag

    assert purchase(order).test is expected


@pytest.mark.parametrize(
    "order_id",
    ["missing", None, "", "   ", True],
)
def test_order_without_a_usable_id_is_bad_input(order_id):
    order = fixture()
    if order_id == "missing":
        del order["id"]
    else:
        order["id"] = order_id

    with pytest.raises(BadInput):
        purchase(order)


@pytest.mark.parametrize(
    ("order_id", "expected"),
    [
        (123, "123"),
        ("123", "123"),
        (" 123 ", "123"),
        ("gid://shopify/Order/123", "123"),
    ],
)
def test_order_id_becomes_the_plain_numeric_event_id(order_id, expected):
    order = fixture()
    order["id"] = order_id

    event = purchase(order)

    assert (event.event_id, event.commerce.order_id) == (expected, expected)
    assert format_event(event).payload["event_id"] == expected


# -- value and currency ----------------------------------------------------------


def test_order_without_money_sets_is_valued_in_shop_money():
    order = without_money_sets(fixture())

    event = purchase(order)
    custom_data = format_event(event).payload["custom_data"]

    assert (event.commerce.currency, event.commerce.value) == ("USD", Decimal("100.00"))
    assert (custom_data["currency"], custom_data["value"]) == ("USD", "100.00")
    assert [content["item_price"] for content in custom_data["contents"]] == [
        "38.00",
        "24.00",
    ]


def test_discounted_order_is_valued_at_the_discounted_subtotal():
    order = fixture()
    order["subtotal_price_set"]["presentment_money"]["amount"] = "121.50"

    event = purchase(order)
    custom_data = format_event(event).payload["custom_data"]

    assert (event.commerce.currency, event.commerce.value) == ("CAD", Decimal("121.50"))
    assert (custom_data["currency"], custom_data["value"]) == ("CAD", "121.50")


def test_tax_inclusive_order_is_valued_without_the_included_item_tax():
    order = fixture("orders_create_taxes_included.json")

    event = purchase(order)
    custom_data = format_event(event).payload["custom_data"]

    # French VAT at 20% is inside every EUR price, so each tax is 20/120 of it:
    #   apron line 2 x 41.40 = 82.80, tax 82.80 / 6 = 13.80
    #   mug line   1 x 27.60 = 27.60, tax 27.60 / 6 =  4.60
    #   subtotal 82.80 + 27.60 = 110.40, less 13.80 + 4.60 = 18.40 -> 92.00
    # Shipping (6.90, tax 1.15) is outside the subtotal and stays out.
    assert event.event_id == "6123456789099"
    assert (event.commerce.currency, event.commerce.value) == ("EUR", Decimal("92.00"))
    assert (custom_data["currency"], custom_data["value"]) == ("EUR", "92.00")
    assert [content["item_price"] for content in custom_data["contents"]] == [
        "41.40",
        "27.60",
    ]


def _amounts(money_set: dict[str, Any]) -> tuple[Decimal, Decimal]:
    """(shop, presentment) amounts of a Shopify money set."""
    return (
        Decimal(money_set["shop_money"]["amount"]),
        Decimal(money_set["presentment_money"]["amount"]),
    )


def _added(*pairs: tuple[Decimal, Decimal]) -> tuple[Decimal, Decimal]:
    return (sum(p[0] for p in pairs), sum(p[1] for p in pairs))


def test_tax_inclusive_fixture_amounts_add_up():
    order = fixture("orders_create_taxes_included.json")
    shipping = order["shipping_lines"][0]
    line_prices = []
    line_taxes = []
    for line in order["line_items"]:
        shop, buyer = _amounts(line["price_set"])
        line_prices.append((shop * line["quantity"], buyer * line["quantity"]))
        line_taxes.append(_amounts(line["tax_lines"][0]["price_set"]))
    shipping_price = _amounts(shipping["price_set"])
    shipping_tax = _amounts(shipping["tax_lines"][0]["price_set"])
    subtotal = _amounts(order["subtotal_price_set"])

    # 20% VAT included in a price is a sixth of it.
    for (price_shop, price_buyer), (tax_shop, tax_buyer) in zip(
        [*line_prices, shipping_price], [*line_taxes, shipping_tax], strict=True
    ):
        assert (tax_shop, tax_buyer) == (price_shop / 6, price_buyer / 6)
    assert _added(*line_prices) == subtotal == (Decimal("96.00"), Decimal("110.40"))
    assert _added(*line_taxes) == (Decimal("16.00"), Decimal("18.40"))
    assert _added(*line_taxes, shipping_tax) == _amounts(order["total_tax_set"])
    assert _added(subtotal, shipping_price) == _amounts(order["total_price_set"])
    assert (order["taxes_included"], order["currency"]) == (True, "GBP")
    assert order["presentment_currency"] == "EUR"
    assert order["admin_graphql_api_id"] == "gid://shopify/Order/6123456789099"


# -- checkouts -----------------------------------------------------------------


def test_checkout_becomes_begin_checkout_keyed_by_its_token():
    checkout = fixture("checkouts_create.json")

    event = checkout_to_begin_checkout(SHOP, checkout, "checkouts/create")

    assert event.name is EventName.BEGIN_CHECKOUT
    assert event.event_id == "7c1f2e3d4b5a69788796a5b4c3d2e1f0"
    assert (event.commerce.currency, event.commerce.value) == ("USD", Decimal("100.00"))
    assert event.commerce.order_id is None
    assert format_event(event).payload["event_name"] == "initiate_checkout"


# -- serialization -------------------------------------------------------------


def _guest_pos_order() -> Event:
    order = fixture()
    order["customer"] = None
    order["source_name"] = "pos"
    order["test"] = True
    without_browser(order)
    return purchase(order)


@pytest.mark.parametrize(
    "make",
    [
        lambda: purchase(fixture()),
        lambda: purchase(without_money_sets(fixture())),
        lambda: purchase(fixture("orders_create_taxes_included.json")),
        _guest_pos_order,
        lambda: checkout_to_begin_checkout(
            SHOP, fixture("checkouts_create.json"), "checkouts/create"
        ),
    ],
    ids=["purchase", "shop-money", "taxes-included", "guest-pos-test", "checkout"],
)
def test_event_survives_a_json_round_trip(make):
    event = make()

    assert Event.from_json(event.to_json()) == event
