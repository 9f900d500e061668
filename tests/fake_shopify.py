"""A local Shopify, answering what Relay asks of a shop's own domain.

It serves, on a pytest-httpserver, the two endpoints the `shopifyapp`
package calls: the token endpoint (token exchange and refresh) and Admin
GraphQL (the Web Pixel queries and mutations). It answers as Shopify does,
errors included, and checks what real Shopify would check:

- token exchange: the app's credentials, and a session token signed with the
  app secret, for this app, for this shop, not expired;
- refresh: the shop's current refresh token; Shopify rotates it, so a second
  refresh with the same one fails with `invalid_grant`;
- Admin GraphQL: a current, unexpired access token with the scopes the app
  declares in `shopify.app.toml`, and pixel settings matching the fields
  declared in the extension's TOML.

The package always calls `https://{shop}.myshopify.com`; `transport` routes
those requests here over plain HTTP, keeping the shop in the Host header.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
from werkzeug import Request, Response

ROOT = Path(__file__).parent.parent
API_KEY = "test_client_id_not_real"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
OFFLINE_TOKEN = "urn:shopify:params:oauth:token-type:offline-access-token"
INVALID_TOKEN = (
    "[API] Invalid API key or access token (unrecognized login or wrong password)"
)


def declared_scopes() -> set[str]:
    app = tomllib.loads((ROOT / "shopify.app.toml").read_text())
    return set(app["access_scopes"]["scopes"].split(","))


def declared_pixel_fields() -> set[str]:
    path = ROOT / "extensions" / "relay-pixel" / "shopify.extension.toml"
    return set(tomllib.loads(path.read_text())["settings"]["fields"])


def session_token(
    shop: str,
    secret: str,
    *,
    audience: str = API_KEY,
    expires_in: int = 60,
    user: str = "42",
) -> str:
    """A session (ID) token as App Bridge gives one to Relay's pages."""
    now = int(time.time())
    claims = {
        "iss": f"https://{shop}/admin",
        "dest": f"https://{shop}",
        "aud": audience,
        "sub": user,
        "exp": now + expires_in,
        "nbf": now - 5,
        "iat": now - 5,
        "jti": f"jti-{now}-{shop}",
        "sid": f"sid-{shop}",
    }
    return jwt.encode(claims, secret, algorithm="HS256")


@dataclass
class ShopState:
    access_token: str = ""
    refresh_token: str = ""
    expires_at: float = 0.0
    scope: str = ""
    pixel_id: str | None = None
    pixel_settings: str | None = None
    calls: list[str] = field(default_factory=list)
    # The main theme's files, by name.
    theme_files: dict[str, str] = field(default_factory=dict)
    # What appByHandle("pinterest") answers: an app, None, or "denied".
    pinterest_app: dict[str, Any] | str | None = None
    # The sales channels' catalog titles; "denied" without read_publications,
    # which Relay does not ask for.
    publications: list[str] | str = "denied"
    # The shop's orders, as {"id", "test", "processed_at"} (ISO time), in
    # the order Shopify sorts them by processed_at.
    orders: list[dict[str, Any]] = field(default_factory=list)


class LocalShopify(httpx.BaseTransport):
    """Sends requests for `*.myshopify.com` to the fake; nothing else leaves."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not request.url.host.endswith(".myshopify.com"):
            raise httpx.ConnectError(f"not a shop: {request.url.host}", request=request)
        # A copy: the original keeps its URL, so redirects resolve against
        # the shop's address, as they would in a browser.
        forwarded = httpx.Request(
            request.method,
            request.url.copy_with(scheme="http", host="127.0.0.1", port=self._port),
            headers=request.headers,
            content=request.read(),
            extensions=request.extensions,
        )
        return self._inner.handle_request(forwarded)

    def close(self) -> None:
        self._inner.close()


class FakeShopify:
    def __init__(self, httpserver: Any, secret: str, *, access_seconds: int = 3600):
        self.secret = secret
        self.access_seconds = access_seconds
        self.scopes = declared_scopes()
        self.pixel_fields = declared_pixel_fields()
        self.shops: dict[str, ShopState] = {}
        # Answers to give before the real ones: (status, headers, body).
        self.forced: list[tuple[int, dict[str, str], dict[str, Any]]] = []
        self.requests: list[tuple[str, str]] = []  # (shop, what)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.transport = LocalShopify(httpserver.port)
        httpserver.expect_request(
            "/admin/oauth/access_token", method="POST"
        ).respond_with_handler(self._token_endpoint)
        httpserver.expect_request(
            re.compile(r"^/admin/api/[0-9]{4}-[0-9]{2}/graphql\.json$"), method="POST"
        ).respond_with_handler(self._graphql)
        # The storefront: what `storefront_html` holds, or the password page.
        self.storefront_html: str | None = None
        self.storefront_locked = False
        httpserver.expect_request("/", method="GET").respond_with_handler(
            self._storefront
        )
        httpserver.expect_request("/password", method="GET").respond_with_handler(
            self._password_page
        )

    def shop(self, domain: str) -> ShopState:
        return self.shops.setdefault(domain, ShopState())

    def count(self, what: str, shop: str | None = None) -> int:
        return sum(1 for s, w in self.requests if w == what and shop in (None, s))

    def uninstall(self, domain: str) -> None:
        """What Shopify does on uninstall: revoke tokens, remove the pixel."""
        with self._lock:
            self.shops[domain] = ShopState()

    def expire_access_token(self, domain: str) -> None:
        with self._lock:
            self.shops[domain].expires_at = time.time() - 1

    # The token endpoint

    def _token_endpoint(self, request: Request) -> Response:
        shop = request.host.split(":")[0]
        body = request.get_json(silent=True) or {}
        with self._lock:
            forced = self._forced()
            if forced:
                return forced
            if (
                body.get("client_id") != API_KEY
                or body.get("client_secret") != self.secret
            ):
                return _json(401, {"error": "invalid_client"})
            grant = body.get("grant_type")
            if grant == TOKEN_EXCHANGE:
                self.requests.append((shop, "exchange"))
                return self._exchange(shop, body)
            if grant == "refresh_token":
                self.requests.append((shop, "refresh"))
                return self._refresh(shop, body)
            return _json(400, {"error": "unsupported_grant_type"})

    def _exchange(self, shop: str, body: dict[str, Any]) -> Response:
        if (
            body.get("subject_token_type") != ID_TOKEN_TYPE
            or body.get("requested_token_type") != OFFLINE_TOKEN
            or body.get("expiring") != 1
        ):
            return _json(400, {"error": "invalid_request"})
        try:
            claims = jwt.decode(
                body.get("subject_token", ""),
                self.secret,
                algorithms=["HS256"],
                audience=API_KEY,
            )
        except jwt.PyJWTError:
            return _json(400, {"error": "invalid_subject_token"})
        if claims.get("dest") != f"https://{shop}":
            return _json(400, {"error": "invalid_subject_token"})
        return self._issue(shop)

    def _refresh(self, shop: str, body: dict[str, Any]) -> Response:
        state = self.shops.get(shop)
        if state is None or not state.refresh_token:
            return _json(400, {"error": "invalid_grant"})
        if body.get("refresh_token") != state.refresh_token:
            return _json(400, {"error": "invalid_grant"})
        return self._issue(shop)

    def _issue(self, shop: str) -> Response:
        state = self.shop(shop)
        serial = next(self._ids)
        state.access_token = f"shpat_{shop.split('.')[0]}_{serial}"
        state.refresh_token = f"shprt_{shop.split('.')[0]}_{serial}"
        state.expires_at = time.time() + self.access_seconds
        state.scope = ",".join(sorted(self.scopes))
        return _json(
            200,
            {
                "access_token": state.access_token,
                "expires_in": self.access_seconds,
                "refresh_token": state.refresh_token,
                "refresh_token_expires_in": 30 * 24 * 3600,
                "scope": state.scope,
            },
        )

    # Admin GraphQL

    def _graphql(self, request: Request) -> Response:
        shop = request.host.split(":")[0]
        with self._lock:
            forced = self._forced()
            if forced:
                self.requests.append((shop, "graphql (forced)"))
                return forced
            state = self.shops.get(shop)
            token = request.headers.get("X-Shopify-Access-Token", "")
            if state is None or token != state.access_token or not token:
                return _json(401, {"errors": INVALID_TOKEN})
            if time.time() >= state.expires_at:
                return _json(401, {"errors": INVALID_TOKEN})

            body = request.get_json(silent=True) or {}
            query = str(body.get("query", ""))
            variables = body.get("variables") or {}
            for name, handler in (
                ("webPixelCreate", self._pixel_create),
                ("webPixelUpdate", self._pixel_update),
                ("webPixel", self._pixel_find),
                ("themes", self._theme_files),
                ("appByHandle", self._app_by_handle),
                ("publications", self._publications),
                ("orders(", self._orders),
            ):
                if name in query:
                    self.requests.append((shop, name))
                    state.calls.append(name)
                    return _json(200, handler(state, variables))
            return _json(
                200,
                {"errors": [{"message": "Field doesn't exist on type 'QueryRoot'"}]},
            )

    def _pixel_create(
        self, state: ShopState, variables: dict[str, Any]
    ) -> dict[str, Any]:
        if denied := self._scope_denied(state, "webPixelCreate"):
            return denied
        settings = (variables.get("webPixel") or {}).get("settings")
        errors = self._settings_errors(settings)
        if state.pixel_id is not None:
            errors.append(
                {
                    "code": "TAKEN",
                    "field": ["webPixel"],
                    "message": "Web pixel is taken.",
                }
            )
        if errors:
            return {
                "data": {"webPixelCreate": {"webPixel": None, "userErrors": errors}}
            }
        state.pixel_id = f"gid://shopify/WebPixel/{next(self._ids)}"
        state.pixel_settings = settings
        return {
            "data": {
                "webPixelCreate": {"webPixel": self._pixel(state), "userErrors": []}
            }
        }

    def _pixel_update(
        self, state: ShopState, variables: dict[str, Any]
    ) -> dict[str, Any]:
        if denied := self._scope_denied(state, "webPixelUpdate"):
            return denied
        settings = (variables.get("webPixel") or {}).get("settings")
        errors = self._settings_errors(settings)
        if state.pixel_id is None or variables.get("id") != state.pixel_id:
            errors.append(
                {
                    "code": "NOT_FOUND",
                    "field": ["id"],
                    "message": "Pixel does not exist",
                }
            )
        if errors:
            return {
                "data": {"webPixelUpdate": {"webPixel": None, "userErrors": errors}}
            }
        state.pixel_settings = settings
        return {
            "data": {
                "webPixelUpdate": {"webPixel": self._pixel(state), "userErrors": []}
            }
        }

    def _pixel_find(
        self, state: ShopState, variables: dict[str, Any]
    ) -> dict[str, Any]:
        if state.pixel_id is None:
            return {
                "data": {"webPixel": None},
                "errors": [
                    {
                        "message": "No web pixel was found for this app.",
                        "extensions": {"code": "NOT_FOUND"},
                    }
                ],
            }
        return {"data": {"webPixel": self._pixel(state)}}

    def _theme_files(
        self, state: ShopState, variables: dict[str, Any]
    ) -> dict[str, Any]:
        if "read_themes" not in state.scope.split(","):
            return _denied("themes")
        files = [
            {
                "filename": name,
                "body": {
                    "__typename": "OnlineStoreThemeFileBodyText",
                    "content": content,
                },
            }
            for name, content in sorted(state.theme_files.items())
        ]
        return {
            "data": {"themes": {"nodes": [{"name": "Dawn", "files": {"nodes": files}}]}}
        }

    def _app_by_handle(
        self, state: ShopState, variables: dict[str, Any]
    ) -> dict[str, Any]:
        if state.pinterest_app == "denied":
            return _denied("appByHandle")
        return {"data": {"appByHandle": state.pinterest_app}}

    def _publications(
        self, state: ShopState, variables: dict[str, Any]
    ) -> dict[str, Any]:
        if state.publications == "denied":
            return _denied("publications")
        nodes = [{"catalog": {"title": title}} for title in state.publications]
        return {"data": {"publications": {"nodes": nodes}}}

    def _orders(self, state: ShopState, variables: dict[str, Any]) -> dict[str, Any]:
        """Orders processed since the search's `processed_at:>=`, in pages."""
        if "read_orders" not in state.scope.split(","):
            return _denied("orders")
        found = re.fullmatch(r"processed_at:>='([^']+)'", variables.get("query", ""))
        if found is None:
            return {"errors": [{"message": "Relay asks for processed_at only"}]}
        since = datetime.fromisoformat(found.group(1).replace("Z", "+00:00"))
        matching = [
            order
            for order in state.orders
            if datetime.fromisoformat(order["processed_at"]) >= since
        ]
        start = int(variables.get("after") or 0)
        page = matching[start : start + 250]
        more = start + 250 < len(matching)
        return {
            "data": {
                "orders": {
                    "nodes": [
                        {"legacyResourceId": o["id"], "test": o["test"]} for o in page
                    ],
                    "pageInfo": {
                        "hasNextPage": more,
                        "endCursor": str(start + 250) if more else None,
                    },
                }
            }
        }

    def _storefront(self, request: Request) -> Response:
        if self.storefront_locked:
            return Response(status=302, headers={"Location": "/password"})
        if self.storefront_html is None:
            return Response("Not Found", status=404)
        return Response(self.storefront_html, mimetype="text/html")

    def _password_page(self, request: Request) -> Response:
        return Response(
            '<form method="post" action="/password">'
            '<input type="hidden" name="form_type" value="storefront_password">'
            '<input type="password" name="password"></form>',
            mimetype="text/html",
        )

    def _scope_denied(self, state: ShopState, field_name: str) -> dict[str, Any] | None:
        needed = {"write_pixels", "read_customer_events"}
        if needed <= set(state.scope.split(",")):
            return None
        return _denied(field_name)

    def _settings_errors(self, settings: Any) -> list[dict[str, Any]]:
        try:
            parsed = json.loads(settings) if isinstance(settings, str) else None
        except ValueError:
            parsed = None
        if (
            not isinstance(parsed, dict)
            or set(parsed) != self.pixel_fields
            or not all(isinstance(v, str) and v for v in parsed.values())
        ):
            return [
                {
                    "code": "INVALID_SETTINGS",
                    "field": ["webPixel", "settings"],
                    "message": "Settings do not match the extension's fields.",
                }
            ]
        return []

    @staticmethod
    def _pixel(state: ShopState) -> dict[str, Any]:
        return {"id": state.pixel_id, "settings": state.pixel_settings}

    def _forced(self) -> Response | None:
        if not self.forced:
            return None
        status, headers, body = self.forced.pop(0)
        return _json(status, body, headers)


def _denied(field_name: str) -> dict[str, Any]:
    """Shopify's answer to a query for a field the app's scopes do not cover."""
    return {
        "data": None,
        "errors": [
            {
                "message": f"Access denied for {field_name} field.",
                "extensions": {"code": "ACCESS_DENIED"},
            }
        ],
    }


def _json(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(body),
        status=status,
        headers=headers or {},
        mimetype="application/json",
    )
