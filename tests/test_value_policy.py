"""The value policy: which of an order's values goes to Pinterest.

The subtotal after discounts (without shipping and tax) or the total the
buyer paid, in the buyer's currency or the shop's. Through the real
pipeline and worker, against the fake Pinterest.
"""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal

import pytest

from relay.events import Event
from relay.shopify.normalize import order_to_purchase
from tests.conftest import (
    FIXTURES,
    SHOP,
    configure_destination,
    post_fixture,
    work,
)


def purchase(name: str) -> Event:
    order = json.loads((FIXTURES / name).read_text())
    return order_to_purchase(SHOP, order, "orders/create")


@pytest.mark.parametrize(
    ("fixture", "amounts"),
    [
        (
            "orders_create.json",
            {
                "subtotal:buyer": ("CAD", "135.00"),
                "total:buyer": ("CAD", "153.90"),
                "subtotal:shop": ("USD", "100.00"),
                "total:shop": ("USD", "114.00"),
            },
        ),
        (
            # Prices include tax: the subtotals have the items' tax taken out.
            "orders_create_taxes_included.json",
            {
                "subtotal:buyer": ("EUR", "92.00"),
                "total:buyer": ("EUR", "117.30"),
                "subtotal:shop": ("GBP", "80.00"),
                "total:shop": ("GBP", "102.00"),
            },
        ),
    ],
)
def test_an_order_carries_every_value_a_policy_may_choose(fixture, amounts):
    event = purchase(fixture)

    assert event.commerce.amounts == amounts
    # The default policy's value is the one the event already had.
    currency, value = amounts["subtotal:buyer"]
    assert (event.commerce.currency, event.commerce.value) == (
        currency,
        Decimal(value),
    )


def test_an_event_stored_before_value_policies_still_reads_and_keeps_its_value():
    event = purchase("orders_create.json")
    stored = json.loads(event.to_json())
    del stored["commerce"]["amounts"]

    read = Event.from_json(json.dumps(stored))

    assert read == dataclasses.replace(
        event, commerce=dataclasses.replace(event.commerce, amounts={})
    )
    assert read.valued("total", "shop") == read


@pytest.mark.parametrize(
    ("value", "currency", "sent", "item_prices"),
    [
        ("subtotal", "buyer", ("CAD", "135.00"), ["51.30", "32.40"]),
        ("total", "buyer", ("CAD", "153.90"), ["51.30", "32.40"]),
        ("subtotal", "shop", ("USD", "100.00"), [None, None]),
        ("total", "shop", ("USD", "114.00"), [None, None]),
    ],
)
def test_pinterest_receives_the_value_the_policy_chooses(
    client, runtime, pinterest, connected_shop, value, currency, sent, item_prices
):
    configure_destination(runtime, "pinterest", {"value": value, "currency": currency})

    post_fixture(client, "orders_create.json")
    work(runtime)

    (event,) = pinterest.events
    custom = event["custom_data"]
    assert (custom["currency"], custom["value"]) == sent
    # Item prices are the buyer's: in the shop's currency they are left out.
    assert [c.get("item_price") for c in custom["contents"]] == item_prices
    assert pinterest.schema_errors == []
