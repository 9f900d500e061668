"""Connecting with Pinterest by OAuth: the admin API, the callback, the CLI.

Against the fake Pinterest OAuth and ads API (tests/fake_pinterest_api.py),
which checks Relay's requests against Pinterest's published schemas, and
the fake Shopify for session tokens.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from relay.models import DestinationConnection, DestinationSetting
from relay.shops import destination_config, find_shop
from tests.conftest import (
    PINTEREST_ACCOUNT,
    PINTEREST_TAG,
    SECRET,
    SHOP,
    configure_destination,
    post_fixture,
    work,
)
from tests.fake_shopify import session_token
from tests.test_shopify_app import APP_URL

ACCOUNT = PINTEREST_ACCOUNT
TAG = PINTEREST_TAG


def call(client, method: str, path: str, shop: str = SHOP, **options):
    """App Bridge's authenticated fetch from Relay's pages."""
    headers = {"Authorization": f"Bearer {session_token(shop, SECRET)}"}
    return client.open(
        path, method=method, base_url=APP_URL, headers=headers, **options
    )


def authorize(authorize_url: str) -> dict[str, str]:
    """The merchant allows Relay at Pinterest: the redirect's query."""
    answer = httpx.get(authorize_url, follow_redirects=False)
    assert answer.status_code == 302
    return {
        k: v[0] for k, v in parse_qs(urlsplit(answer.headers["location"]).query).items()
    }


def connect(client) -> dict[str, str]:
    started = call(client, "POST", "/api/destinations/pinterest/connect")
    assert started.status_code == 200, started.json
    query = authorize(started.json["authorize_url"])
    answer = client.get("/connect/pinterest/callback", query_string=query)
    assert answer.status_code == 200, answer.data
    return query


def test_the_merchant_connects_chooses_an_account_and_a_token_is_minted(
    client, runtime, installed, pinterest, pinterest_api
):
    started = call(client, "POST", "/api/destinations/pinterest/connect")
    url = urlsplit(started.json["authorize_url"])
    params = parse_qs(url.query)
    assert url.path == "/oauth/"
    assert {k: v[0] for k, v in params.items() if k != "state"} == {
        "client_id": "1480000",
        "redirect_uri": "https://relay.example/connect/pinterest/callback",
        "response_type": "code",
        "scope": "ads:read,ads:write",
    }

    query = authorize(started.json["authorize_url"])
    page = client.get("/connect/pinterest/callback", query_string=query)
    assert page.status_code == 200
    assert (
        "Relay is connected with Pinterest for example-shop.myshopify.com. Return "
        "to Relay in your Shopify admin to choose the ad account."
    ) in page.get_data(as_text=True)

    accounts = call(client, "GET", "/api/destinations/pinterest/accounts")
    assert accounts.json == {
        "result": [{"id": ACCOUNT, "name": "Example Shop Ads", "detail": "USD"}]
    }
    tags = call(client, "GET", f"/api/destinations/pinterest/accounts/{ACCOUNT}/tags")
    assert tags.json == {
        "result": [{"id": TAG, "name": f"Tag {TAG}", "detail": "ACTIVE"}]
    }

    # Sending goes to the fake's events endpoint with the minted token.
    configure_destination(runtime, "pinterest", {"api_base": pinterest.api_base})
    chosen = call(
        client,
        "POST",
        "/api/destinations/pinterest/account",
        json={"account_id": ACCOUNT},
    )
    assert chosen.json == {
        "result": {
            "saved": {"ad_account_id": ACCOUNT, "tag_id": TAG},
            "conflict_check": "queued",
        }
    }
    (minted,) = pinterest_api.minted
    pinterest.token = minted
    assert pinterest_api.schema_errors == []

    with runtime.db.session() as session:
        shop = find_shop(session, SHOP)
        config = destination_config(
            session, runtime.keyring, runtime.plugins, shop, "pinterest"
        )
        stored = session.scalars(select(DestinationConnection)).one()
        raw_settings = session.scalars(select(DestinationSetting)).one()
        assert config.get("conversion_token") == minted
        # Tokens are stored encrypted, never as they are.
        assert minted not in (raw_settings.encrypted_secrets or "")
        assert "pina_access" not in stored.encrypted_grant
        assert stored.scope == "ads:read,ads:write"

    post_fixture(client, "orders_create.json")
    work(runtime)
    assert [e["event_id"] for e in pinterest.events] == ["6123456789012"]


def test_an_account_the_connection_cannot_see_is_refused(
    client, installed, pinterest_api
):
    connect(client)

    chosen = call(
        client,
        "POST",
        "/api/destinations/pinterest/account",
        json={"account_id": "1234"},
    )

    assert (chosen.status_code, chosen.json) == (
        400,
        {"error": "ad account 1234 is not one this connection can use"},
    )
    assert pinterest_api.minted == []


@pytest.mark.parametrize(
    "body, reason",
    [
        (None, "expected a JSON object with account_id"),
        ({"account_id": 549755885175}, "account_id must be a string of digits"),
        ({"account_id": "549-755"}, "account_id must be a string of digits"),
        ({"account_id": ACCOUNT, "tag_id": "x"}, "tag_id must be a string of digits"),
    ],
)
def test_a_malformed_choice_is_refused_with_the_reason(
    client, installed, pinterest_api, body, reason
):
    connect(client)
    answer = call(client, "POST", "/api/destinations/pinterest/account", json=body)
    assert (answer.status_code, answer.json) == (400, {"error": reason})


def test_a_state_relay_did_not_issue_is_refused(client, installed, pinterest_api):
    started = call(client, "POST", "/api/destinations/pinterest/connect")
    query = authorize(started.json["authorize_url"])

    forged = client.get(
        "/connect/pinterest/callback",
        query_string={**query, "state": query["state"][:-4] + "AAAA"},
    )

    assert forged.status_code == 400
    assert "the authorization state is not one Relay issued" in forged.get_data(
        as_text=True
    )
    assert pinterest_api.calls == ["authorize"]  # no code was exchanged


def test_a_refused_authorization_says_so(client, installed, pinterest_api):
    pinterest_api.deny_authorization = True
    started = call(client, "POST", "/api/destinations/pinterest/connect")
    query = authorize(started.json["authorize_url"])

    page = client.get("/connect/pinterest/callback", query_string=query)

    assert page.status_code == 400
    assert "The connection was not allowed." in page.get_data(as_text=True)


def test_an_expired_access_token_is_refreshed_before_use(
    client, installed, pinterest_api
):
    connect(client)
    pinterest_api.expire_access_tokens()
    with_expired_row(client)

    accounts = call(client, "GET", "/api/destinations/pinterest/accounts")

    assert accounts.status_code == 200
    assert pinterest_api.calls.count("token:refresh_token") == 1
    assert pinterest_api.schema_errors == []


def with_expired_row(client) -> None:
    runtime = client.application.extensions["relay"]
    with runtime.db.session() as session:
        row = session.scalars(select(DestinationConnection)).one()
        row.expires_at = row.updated_at  # in the past


def test_a_revoked_refresh_token_deletes_the_connection_and_asks_to_reconnect(
    client, runtime, installed, pinterest_api
):
    connect(client)
    pinterest_api.revoke_refresh_tokens()
    with_expired_row(client)

    accounts = call(client, "GET", "/api/destinations/pinterest/accounts")

    assert (accounts.status_code, accounts.json) == (
        409,
        {
            "error": "Pinterest refused (HTTP 400): 1: Invalid refresh token.",
            "reconnect": True,
        },
    )
    with runtime.db.session() as session:
        assert session.scalars(select(DestinationConnection)).all() == []


@pytest.mark.parametrize(
    "status, code, message",
    [
        (401, 2, "Authentication failed."),
        (403, 3, "Not authorized to access the user or resource."),
    ],
)
def test_pinterest_refusing_the_token_asks_to_reconnect(
    client, installed, pinterest_api, status, code, message
):
    connect(client)
    pinterest_api.forced.append((status, code, message))

    accounts = call(client, "GET", "/api/destinations/pinterest/accounts")

    assert (accounts.status_code, accounts.json) == (
        409,
        {
            "error": f"Pinterest refused (HTTP {status}): {code}: {message}",
            "reconnect": True,
        },
    )


def test_another_shop_s_session_sees_no_connection(client, installed, pinterest_api):
    connect(client)
    other = "other-shop.myshopify.com"

    accounts = call(client, "GET", "/api/destinations/pinterest/accounts", shop=other)

    assert (accounts.status_code, accounts.json) == (
        400,
        {"error": f"{other} has not connected pinterest yet"},
    )


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/api/destinations/pinterest/connect"),
        ("GET", "/api/destinations/pinterest/accounts"),
        ("GET", f"/api/destinations/pinterest/accounts/{ACCOUNT}/tags"),
        ("POST", "/api/destinations/pinterest/account"),
        ("GET", "/api/conflicts"),
        ("POST", "/api/conflicts/pinterest/acknowledge"),
    ],
)
def test_every_connection_endpoint_refuses_a_forged_session(
    client, installed, method, path
):
    forged = session_token(SHOP, "not-the-app-secret")
    answer = client.open(
        path,
        method=method,
        base_url=APP_URL,
        headers={"Authorization": f"Bearer {forged}"},
    )
    assert answer.status_code == 401


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_cli_runs_the_flow_from_a_terminal(
    runtime, installed, pinterest_api, cli_env, redis_url
):
    port = free_port()
    env = {
        **os.environ,
        **cli_env,
        **pinterest_api.environment,
        "REDIS_URL": redis_url,
        "SHOPIFY_APP_URL": "https://relay.example",
    }
    command = [sys.executable, "-m", "relay.cli", "destinations", "connect"]
    process = subprocess.Popen(
        [*command, "pinterest", "--shop", SHOP, "--port", str(port), "--wait", "30"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        while not any("/oauth/?" in line for line in lines):
            lines.append(process.stdout.readline())
            assert lines[-1], "".join(lines)
        url = next(line.strip() for line in lines if "/oauth/?" in line)
        assert f"redirect_uri=http%3A%2F%2Flocalhost%3A{port}%2Fcallback" in url
        deadline = time.monotonic() + 10
        while True:  # the listener may need a moment to open its port
            try:
                httpx.get(url, follow_redirects=True)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()

    assert process.returncode == 0, output
    assert output.splitlines()[-3:] == [
        f"pinterest connected for {SHOP}.",
        f"saved: ad_account_id={ACCOUNT}, tag_id={TAG} (and a conversion token, "
        "never shown)",
        "conflict check queued; see `relay check-conflicts`",
    ]
    assert pinterest_api.minted[0] not in output
    job_ids = runtime.queue.get_job_ids()
    assert "check-conflicts-pinterest-example-shop_myshopify_com" in job_ids
    assert json.dumps(pinterest_api.schema_errors) == "[]"
