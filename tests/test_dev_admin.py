"""Development mode: the admin pages outside Shopify, refused in a deployment.

In production the app home loads App Bridge and Polaris from Shopify's CDN;
in development mode the same page loads nothing from outside, and session
tokens come from Relay itself, verified like Shopify's.
"""

from __future__ import annotations

import dataclasses

import pytest

from relay.config import DEV_API_KEY, DEV_API_SECRET, Config
from relay.errors import ConfigError
from tests.conftest import SECRET, SHOP
from tests.fake_shopify import session_token
from tests.test_shopify_app import APP_URL
from webapp import create_app


def test_dev_mode_is_off_unless_asked_for():
    assert Config.from_env({}).dev_admin is False
    assert Config.from_env({"RELAY_DEV_ADMIN": "0"}).dev_admin is False


def test_dev_mode_signs_its_own_session_tokens_with_a_development_key():
    config = Config.from_env({"RELAY_DEV_ADMIN": "1"})

    assert (config.dev_admin, config.shopify_api_key, config.shopify_api_secret) == (
        True,
        DEV_API_KEY,
        DEV_API_SECRET,
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"RELAY_DEV_ADMIN": "1", "SHOPIFY_API_SECRET": "real"},
            "RELAY_DEV_ADMIN=1 is for development only and is refused with "
            "SHOPIFY_API_SECRET set",
        ),
        (
            {"RELAY_DEV_ADMIN": "1", "DATABASE_URL": "postgres://db/relay"},
            "RELAY_DEV_ADMIN=1 is for development only and is refused with "
            "DATABASE_URL set",
        ),
        ({"RELAY_DEV_ADMIN": "yes"}, "RELAY_DEV_ADMIN must be 1 or 0, got 'yes'"),
    ],
    ids=["app secret", "database", "not 1"],
)
def test_dev_mode_is_refused_in_a_deployment(environ, message):
    with pytest.raises(ConfigError) as refused:
        Config.from_env(environ)

    assert str(refused.value) == message


def test_without_dev_mode_there_are_no_dev_routes(client):
    assert client.get(f"/dev/admin?shop={SHOP}").status_code == 404
    assert client.get(f"/dev/session-token?shop={SHOP}").status_code == 404


@pytest.fixture
def dev_client(runtime):
    config = runtime.config.with_changes(dev_admin=True)
    return create_app(runtime=dataclasses.replace(runtime, config=config)).test_client()


def test_the_dev_page_is_the_app_home_without_shopifys_cdn(dev_client, client, shopify):
    dev = dev_client.get(f"/dev/admin?shop={SHOP}")
    home = client.get(
        f"/?shop={SHOP}&host=YWRtaW4&embedded=1&id_token={session_token(SHOP, SECRET)}",
        base_url=APP_URL,
    )

    assert (dev.status_code, home.status_code) == (200, 200)
    assert b"cdn.shopify.com" not in dev.data
    assert b"/static/dev-bridge.js" in dev.data
    assert home.data.count(b"https://cdn.shopify.com/shopifycloud/") == 2
    assert b"dev-bridge" not in home.data
    for page in (dev.data, home.data):
        assert b"Relay is installed" in page
        assert b'src="/static/relay.js"' in page


def test_a_dev_session_token_is_verified_like_shopifys(dev_client):
    token = dev_client.get(f"/dev/session-token?shop={SHOP}")
    dev_client.get(f"/dev/admin?shop={SHOP}")

    answer = dev_client.get(
        "/api/shop", headers={"Authorization": f"Bearer {token.data.decode()}"}
    )

    assert token.headers["Cache-Control"] == "no-store"
    assert (answer.status_code, answer.json["shop"]) == (200, SHOP)


@pytest.mark.parametrize(
    "shop", ["", "evil.example.com", "x.myshopify.com.evil.com", "a b.myshopify.com"]
)
def test_the_dev_routes_refuse_what_is_not_a_shop(dev_client, shop):
    for path in ("/dev/admin", "/dev/session-token"):
        response = dev_client.get(path, query_string={"shop": shop})
        assert response.status_code == 400


def test_static_files_are_served(client):
    for name in ("relay.js", "relay.css", "dev-bridge.js"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200
        response.close()
