"""The shop's own list of orders, for the dashboard's accuracy view.

Relay counts the purchases it made from order webhooks; Shopify's list
shows the orders whose webhook never came. Read with the shop's offline
token (`read_orders` gives the last 60 days, more than the 7 the dashboard
looks at), a bounded number of pages so a page load stays quick.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from relay.runtime import Runtime
from relay.shopify import tokens

PAGE_SIZE = 250
MAX_PAGES = 4

ORDERS = """
query RelayOrders($query: String!, $after: String) {
  orders(first: 250, after: $after, query: $query, sortKey: PROCESSED_AT) {
    nodes { legacyResourceId test }
    pageInfo { hasNextPage endCursor }
  }
}
"""


@dataclass(frozen=True)
class ShopOrders:
    """Order ids Shopify lists for a period; `complete` unless cut short."""

    ids: tuple[str, ...]
    test_ids: frozenset[str]
    complete: bool


def orders_since(runtime: Runtime, shop: str, since: datetime) -> ShopOrders:
    """The shop's orders processed since `since`, oldest first.

    Raises ShopifyRefused (no token, scope missing) or ShopifyUnavailable.
    """
    token = tokens.access_token(runtime, shop)
    stamp = since.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    variables: dict[str, Any] = {"query": f"processed_at:>='{stamp}'"}
    ids: list[str] = []
    tests: set[str] = set()
    for _ in range(MAX_PAGES):
        data = runtime.shopify.graphql(shop, token, ORDERS, variables)
        page = data.get("orders") or {}
        for node in page.get("nodes") or []:
            order_id = str(node.get("legacyResourceId") or "")
            if order_id:
                ids.append(order_id)
                if node.get("test"):
                    tests.add(order_id)
        info = page.get("pageInfo") or {}
        if not info.get("hasNextPage"):
            return ShopOrders(tuple(ids), frozenset(tests), complete=True)
        variables["after"] = info.get("endCursor")
    return ShopOrders(tuple(ids), frozenset(tests), complete=False)
