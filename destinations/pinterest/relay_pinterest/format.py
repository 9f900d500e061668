"""Neutral events → Pinterest Conversions API events.

Follows Pinterest's v5 `events/create` schema: personal fields normalized
and sent as arrays of SHA-256 digests; `click_id` (the `epik`), IP and user
agent unhashed; money as decimal strings.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from relay import matchkeys
from relay.destinations import FormattedEvent, Skip
from relay.events import ActionSource, Event, EventName

EVENT_NAMES: dict[EventName, str] = {
    EventName.PURCHASE: "checkout",
    EventName.ADD_TO_CART: "add_to_cart",
    EventName.PAGE_VIEW: "page_visit",
    EventName.VIEW_ITEM: "page_visit",
    EventName.VIEW_CATEGORY: "view_category",
    EventName.SEARCH: "search",
    EventName.BEGIN_CHECKOUT: "initiate_checkout",
    EventName.ADD_PAYMENT_INFO: "add_payment_info",
}

ACTION_SOURCES: dict[ActionSource, str] = {
    ActionSource.WEB: "web",
    ActionSource.OFFLINE: "offline",
}

# Sent in clear, so masked in the delivery log.
UNHASHED = ("client_ip_address", "client_user_agent", "click_id")
MASK = "[masked]"


def format_event(event: Event) -> FormattedEvent:
    """The Pinterest event for `event`; raises Skip when it cannot be sent."""
    event_name = EVENT_NAMES.get(event.name)
    if event_name is None:
        raise Skip("unsupported event")
    action_source = ACTION_SOURCES.get(event.action_source)
    if action_source is None:
        raise Skip("unsupported action source")

    user_data = _user_data(event)
    if not _has_required_identifier(user_data):
        raise Skip("no match keys")

    payload: dict[str, Any] = {
        "event_name": event_name,
        "action_source": action_source,
        "event_time": int(event.occurred_at.timestamp()),
        "event_id": event.event_id,
        "user_data": user_data,
    }
    custom_data = _custom_data(event)
    if event.consent.sale_of_data is False:
        # The visitor refused the sale of their data: Pinterest is asked to
        # treat the event under Limited Data Processing.
        payload["opt_out"] = True
        custom_data["opt_out_type"] = "LDP"
    if custom_data:
        payload["custom_data"] = custom_data
    if event.source_url:
        payload["event_source_url"] = event.source_url

    return FormattedEvent(
        event_id=event.event_id,
        payload=payload,
        logged_payload=mask(payload),
        match_keys=tuple(sorted(user_data)),
    )


def mask(payload: dict[str, Any]) -> dict[str, Any]:
    """A copy of `payload` fit for the delivery log: digests kept, clear ids masked."""
    logged = copy.deepcopy(payload)
    user_data = logged.get("user_data", {})
    for key in UNHASHED:
        if key in user_data:
            user_data[key] = MASK
    return logged


def _user_data(event: Event) -> dict[str, Any]:
    person = event.person
    country = person.country
    digests = {
        "em": matchkeys.email_sha256(person.email) or person.email_sha256,
        "ph": matchkeys.phone_sha256(person.phone, country) or person.phone_sha256,
        "fn": matchkeys.hashed(matchkeys.name(person.first_name), person.first_name),
        "ln": matchkeys.hashed(matchkeys.name(person.last_name), person.last_name),
        "ct": matchkeys.hashed(matchkeys.city(person.city), person.city),
        "st": matchkeys.hashed(matchkeys.region(person.region), person.region),
        "zp": matchkeys.hashed(
            matchkeys.postal_code(person.postal_code, country), person.postal_code
        ),
        "country": matchkeys.hashed(matchkeys.country(country), country),
        "external_id": matchkeys.hashed(
            matchkeys.external_id(person.customer_id), person.customer_id
        ),
    }
    user_data: dict[str, Any] = {
        key: [value] for key, value in digests.items() if value
    }

    clear = {
        "click_id": person.click_ids.get("epik"),
        "client_ip_address": person.ip,
        "client_user_agent": person.user_agent,
    }
    user_data.update({key: value for key, value in clear.items() if value})
    return user_data


def _has_required_identifier(user_data: dict[str, Any]) -> bool:
    """Pinterest needs an email digest, or IP and user agent together."""
    return "em" in user_data or (
        "client_ip_address" in user_data and "client_user_agent" in user_data
    )


def _custom_data(event: Event) -> dict[str, Any]:
    commerce = event.commerce
    data: dict[str, Any] = {}
    if commerce.currency and commerce.value is not None:
        data["currency"] = commerce.currency
        data["value"] = _decimal_text(commerce.value)

    items = [item for item in commerce.items if item.variant_id]
    if items:
        data["content_ids"] = [item.variant_id for item in items]
        data["contents"] = [_content(item) for item in items]
        data["num_items"] = commerce.num_items
    if commerce.order_id:
        data["order_id"] = commerce.order_id
    if event.search_string:
        data["search_string"] = event.search_string
    return data


def _content(item: Any) -> dict[str, Any]:
    content: dict[str, Any] = {"id": item.variant_id, "quantity": item.quantity}
    if item.unit_price is not None:
        content["item_price"] = _decimal_text(item.unit_price)
    if item.name:
        content["item_name"] = item.name
    if item.brand:
        content["item_brand"] = item.brand
    return content


def _decimal_text(amount: Decimal) -> str:
    """Plain notation ("50", never "5E+1"): Pinterest parses it as a double."""
    return format(amount, "f")
