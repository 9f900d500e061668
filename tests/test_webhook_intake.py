"""POST /webhooks with bad, odd and hostile input: each gets its status."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from relay.config import Config
from relay.plugins import Plugins
from relay.redisconn import connect
from relay.runtime import Runtime
from relay.shopify.webhooks import sign
from tests.conftest import SECRET, fixture_bytes, fixture_headers
from webapp import create_app

ORDER = "orders_create.json"


def post(client: FlaskClient, body: bytes, headers: dict[str, str]) -> Any:
    return client.post("/webhooks", data=body, headers=headers)


def signed(body: bytes, **changes: str) -> dict[str, str]:
    headers = {**fixture_headers(ORDER), "X-Shopify-Hmac-Sha256": sign(body, SECRET)}
    headers.update(changes)
    return headers


def without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {key: value for key, value in headers.items() if key != name}


def hex_signature(body: bytes) -> str:
    return hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


BODY = fixture_bytes(ORDER)
RESERIALIZED = json.dumps(json.loads(BODY)).encode()

REFUSED = [
    (
        "no signature",
        BODY,
        without(fixture_headers(ORDER), "X-Shopify-Hmac-Sha256"),
        401,
    ),
    ("empty signature", BODY, signed(BODY, **{"X-Shopify-Hmac-Sha256": ""}), 401),
    (
        "wrong secret",
        BODY,
        signed(BODY, **{"X-Shopify-Hmac-Sha256": sign(BODY, "x")}),
        401,
    ),
    (
        "hex not base64",
        BODY,
        signed(BODY, **{"X-Shopify-Hmac-Sha256": hex_signature(BODY)}),
        401,
    ),
    (
        "non-ascii signature",
        BODY,
        signed(BODY, **{"X-Shopify-Hmac-Sha256": "Mi3y\xe9=="}),
        401,
    ),
    (
        "body re-serialized after signing",
        RESERIALIZED,
        fixture_headers(ORDER),
        401,
    ),
    ("no topic", BODY, without(signed(BODY), "X-Shopify-Topic"), 400),
    ("no shop", BODY, without(signed(BODY), "X-Shopify-Shop-Domain"), 400),
    (
        "shop not on myshopify.com",
        BODY,
        signed(BODY, **{"X-Shopify-Shop-Domain": "evil.example.com"}),
        400,
    ),
    ("no webhook id", BODY, without(signed(BODY), "X-Shopify-Webhook-Id"), 400),
    ("broken JSON", b'{"id": 1,', signed(b'{"id": 1,'), 400),
    ("JSON array", b"[1, 2]", signed(b"[1, 2]"), 400),
    ("JSON string", b'"order"', signed(b'"order"'), 400),
    ("not UTF-8", b"\xff\xfe{\x00", signed(b"\xff\xfe{\x00"), 400),
    ("nested too deep", b"[" * 100_000, signed(b"[" * 100_000), 400),
    ("empty body", b"", signed(b""), 400),
]


@pytest.mark.parametrize(
    "body, headers, status",
    [case[1:] for case in REFUSED],
    ids=[case[0] for case in REFUSED],
)
def test_bad_delivery_gets_its_status_and_queues_nothing(
    client, runtime, body, headers, status
):
    response = post(client, body, headers)

    assert response.status_code == status
    assert response.json["error"]
    assert runtime.queue.count == 0


def test_refusal_says_what_is_wrong(client):
    response = post(client, BODY, without(signed(BODY), "X-Shopify-Topic"))

    assert response.json == {"error": "missing X-Shopify-Topic header"}


def test_body_above_the_size_limit_gets_413(client, runtime):
    body = b'{"padding": "' + b"x" * runtime.config.webhook_max_bytes + b'"}'

    response = post(client, body, signed(body))

    assert response.status_code == 413
    assert runtime.queue.count == 0


def test_size_limit_is_above_any_real_order(runtime):
    assert runtime.config.webhook_max_bytes >= 5 * 1024 * 1024


def test_unknown_topic_is_acknowledged_and_not_queued(client, runtime):
    body = b'{"id": 1}'
    response = post(
        client, body, signed(body, **{"X-Shopify-Topic": "products/update"})
    )

    assert (response.status_code, response.json) == (200, {"status": "ignored"})
    assert runtime.queue.count == 0


def test_header_names_are_case_insensitive(client, runtime):
    headers = {key.lower(): value for key, value in fixture_headers(ORDER).items()}

    response = post(client, BODY, headers)

    assert (response.status_code, response.json) == (200, {"status": "queued"})


def test_previous_secret_is_accepted_during_rotation(runtime):
    rotated = runtime.config.with_changes(
        shopify_api_secret="the_new_secret", shopify_previous_api_secret=SECRET
    )
    runtime.config = rotated
    client = create_app(runtime=runtime).test_client()

    assert post(client, BODY, fixture_headers(ORDER)).json == {"status": "queued"}
    wrong = signed(BODY, **{"X-Shopify-Hmac-Sha256": sign(BODY, "neither")})
    assert post(client, BODY, wrong).status_code == 401


def test_no_configured_secret_refuses_everything(runtime):
    runtime.config = runtime.config.with_changes(shopify_api_secret="")
    client = create_app(runtime=runtime).test_client()

    assert (
        post(
            client, BODY, signed(BODY, **{"X-Shopify-Hmac-Sha256": sign(BODY, "")})
        ).status_code
        == 401
    )


def test_redis_unreachable_answers_503_so_shopify_retries(
    config: Config, db, plugins: Plugins, clock
):
    # Nothing listens on port 1: every Redis call fails to connect.
    down = Runtime(
        config=config,
        redis=connect("redis://127.0.0.1:1/0"),
        db=db,
        plugins=plugins,
        clock=clock,
    )
    client = create_app(runtime=down).test_client()

    response = post(client, BODY, fixture_headers(ORDER))

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"


def test_wrong_method_is_a_json_405(client):
    response = client.get("/webhooks")

    assert response.status_code == 405
    assert "error" in response.json


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"id": null}',
        b'{"id": "not-a-number", "line_items": "nope", "customer": 7}',
        b'{"id": 1, "processed_at": "yesterday"}',
        b'{"id": 1, "processed_at": "2026-07-14T10:21:32", "line_items": [null, 1]}',
        json.dumps(
            {"id": 2**80, "subtotal_price_set": {"presentment_money": []}}
        ).encode(),
    ],
)
def test_signed_but_unusable_orders_are_accepted_then_dropped_by_the_job(
    client, runtime, connected_shop, body
):
    """Shopify signed it, so the request is fine; the job logs and drops it."""
    from tests.conftest import work

    webhook_id = base64.b16encode(hashlib.sha256(body).digest()[:8]).decode()
    response = post(client, body, signed(body, **{"X-Shopify-Webhook-Id": webhook_id}))
    assert response.json == {"status": "queued"}

    work(runtime)

    assert runtime.queue.failed_job_registry.count == 0
