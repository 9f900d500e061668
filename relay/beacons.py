"""Beacons from Relay's Web Pixel: their envelope, checked, then queued.

The pixel (extensions/relay-pixel/src/relay.js) sends one envelope per
standard event, as `text/plain` JSON. Beacons are unauthenticated: anyone can
send one. So the envelope is checked against `ENVELOPE` (JSON Schema, by the
`jsonschema` library), it must name a shop that has Relay installed, and what
a beacon can change is limited to its own visitor's profile (`relay.visitors`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from jsonschema import Draft202012Validator
from rq import Queue, Retry

from relay import intake_queue, keys
from relay.config import Config
from relay.errors import BadInput

log = logging.getLogger(__name__)

PROCESS_BEACON = "relay.jobs.process_beacon"

# Patterns end in \Z, not $, which would let a trailing newline through
# (Python's `re`, which jsonschema uses, reads them).
_ID = {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}\\Z"}
# No colon: cart increases' event ids have them, and a pixel event must not
# be able to take one first.
_EVENT_ID = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}\\Z"}
_SHORT_TEXT = {"type": ["string", "null"], "maxLength": 2048}
_FLAG = {"type": ["boolean", "null"]}
EVENT_NAMES = [
    "page_viewed",
    "product_viewed",
    "collection_viewed",
    "search_submitted",
    "product_added_to_cart",
    "checkout_started",
    "payment_info_submitted",
    "checkout_completed",
]

ENVELOPE: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["v", "shop", "consent", "event"],
    "properties": {
        "v": {"const": 1},
        "shop": {
            "type": "string",
            "pattern": "^[a-z0-9][a-z0-9-]{0,61}\\.myshopify\\.com\\Z",
        },
        "sent_at": _SHORT_TEXT,
        "consent": {
            "type": "object",
            "properties": {
                "analytics": _FLAG,
                "marketing": _FLAG,
                "preferences": _FLAG,
                "sale_of_data": _FLAG,
            },
            "additionalProperties": False,
        },
        "click_id": {
            "type": ["object", "null"],
            "required": ["epik", "source"],
            "properties": {
                "epik": {"type": "string", "minLength": 1, "maxLength": 512},
                "source": {"enum": ["url", "cookie"]},
            },
            "additionalProperties": False,
        },
        # The logged-in customer, as Shopify tells the pixel (init.data).
        "customer": {
            "type": ["object", "null"],
            "properties": {
                "id": {"type": ["string", "null"], "pattern": "^[0-9]{1,20}\\Z"},
                "email": {"type": ["string", "null"], "maxLength": 320},
                "phone": {"type": ["string", "null"], "maxLength": 64},
            },
            "additionalProperties": False,
        },
        # As the cart webhooks' tokens are; none of these is a glob character.
        "cart_token": {
            "type": ["string", "null"],
            "pattern": "^[A-Za-z0-9_=+/.-]{1,255}\\Z",
        },
        "event": {
            "type": "object",
            "required": ["id", "name", "client_id", "timestamp"],
            "properties": {
                "id": _EVENT_ID,
                "name": {"enum": EVENT_NAMES},
                "client_id": _ID,
                "timestamp": {
                    "type": "string",
                    "pattern": "^20[0-9]{2}-[0-9]{2}-[0-9]{2}"
                    "T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?"
                    "(Z|[+-][0-9]{2}:[0-9]{2})\\Z",
                },
                "seq": {"type": ["integer", "null"]},
                "url": _SHORT_TEXT,
                "referrer": _SHORT_TEXT,
                "user_agent": {"type": ["string", "null"], "maxLength": 1024},
                "data": {"type": "object"},
            },
        },
    },
}
_VALIDATOR = Draft202012Validator(ENVELOPE)


# Shopify's standard events nest about ten levels deep.
MAX_DEPTH = 32


def _depth(value: Any) -> int:
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        pending.extend((child, level + 1) for child in children)
    return deepest


@dataclass(frozen=True)
class Beacon:
    shop: str
    event_id: str
    client_id: str
    envelope: dict[str, Any]


def read_beacon(body: bytes) -> Beacon:
    """The checked envelope; raises BadInput (400) saying what is wrong."""
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        raise BadInput("body is not valid JSON") from None

    if _depth(envelope) > MAX_DEPTH:
        # Checked without recursion; every later step (the schema, storing,
        # the job's parsing) recurses and would fail near Python's limit.
        raise BadInput("envelope is nested too deeply")
    error = next(iter(_VALIDATOR.iter_errors(envelope)), None)
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "envelope"
        # The validator's message quotes the bad value, which may be anything
        # a stranger sent; the reason names the field and the rule only.
        raise BadInput(f"{where}: does not match the beacon schema ({error.validator})")

    try:
        # Stored and read back by a job as UTF-8: a lone surrogate from a
        # \ud800 escape stops here.
        json.dumps(envelope, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput("envelope holds text that is not valid Unicode") from None

    event = envelope["event"]
    return Beacon(envelope["shop"], event["id"], event["client_id"], envelope)


def _claim_client_id(connection: redis.Redis, config: Config, beacon: Beacon) -> None:
    """Record the shop a client id belongs to; BadInput (409) if another.

    Not in the beacon's transaction: a visitor's beacons arrive together,
    and watching this shared key would drop all but one of them.
    """
    owner_key = keys.visitor_shop(beacon.client_id)
    seconds = config.visitor_profile_days * 24 * 3600
    connection.set(owner_key, beacon.shop, nx=True, ex=seconds)
    owner = connection.get(owner_key)
    if owner is not None and owner.decode("utf-8", "replace") != beacon.shop:
        raise BadInput("event/client_id: belongs to a visitor of another shop", 409)
    links = keys.visitor_links(beacon.shop, beacon.client_id)
    with connection.pipeline(transaction=False) as pipe:
        pipe.expire(owner_key, seconds)
        # Deleting the visitor (privacy) deletes this record too, even when
        # the beacon's job never runs.
        pipe.sadd(links, owner_key)
        pipe.expire(links, seconds)
        pipe.execute()


def accept_beacon(
    queue: Queue,
    config: Config,
    beacon: Beacon,
    client_ip: str | None,
    received_at: datetime,
) -> bool:
    """Keep the beacon briefly and queue its job; False for a repeat.

    Raises BadInput when the client id belongs to another shop's visitor,
    and redis.RedisError when Redis cannot be reached.
    """
    connection: redis.Redis = queue.connection
    stored = json.dumps(
        {
            "envelope": beacon.envelope,
            "ip": client_ip,
            "received_at": received_at.isoformat(),
        }
    )
    key = keys.beacon(beacon.shop, beacon.client_id, beacon.event_id)
    _claim_client_id(connection, config, beacon)
    with connection.pipeline() as pipe:
        try:
            pipe.watch(key)
            if pipe.exists(key):
                return False
            pipe.multi()
            pipe.set(key, stored, ex=config.inbox_seconds)
            intake_queue.push(
                pipe, "beacon", beacon.shop, beacon.client_id, beacon.event_id
            )
            pipe.execute()
        except redis.WatchError:
            return False  # the same beacon, accepted a moment ago
    intake_queue.schedule_drain(queue, config)
    return True


def enqueue_processing(
    queue: Queue, config: Config, shop: str, client_id: str, event_id: str
) -> None:
    """Queue a job of its own for a stored beacon (one that failed in a
    batch), with RQ's retries."""
    queue.enqueue_call(
        PROCESS_BEACON,
        args=(shop, client_id, event_id),
        description="process pixel beacon",
        timeout=config.job_timeout_seconds,
        # Thousands a minute, each naming a visitor: none is kept done.
        result_ttl=0,
        failure_ttl=config.job_failure_seconds,
        retry=Retry(max=3, interval=[10, 60, 300]),
    )
