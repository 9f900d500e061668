"""Talking to Shopify as the app: session tokens, access tokens, Admin GraphQL.

Everything here goes through Shopify's maintained `shopifyapp` package: it
verifies session (ID) tokens, exchanges them for expiring offline access
tokens, refreshes those, and makes Admin GraphQL calls. Relay adds three
things around it:

- one HTTP client per process, which tests point at a local fake Shopify by
  giving the runtime a transport (the package always calls the shop's own
  `https://{shop}.myshopify.com`);
- a bound on rate-limit waits: the package sleeps for whatever Retry-After a
  429 asks, inside a web request or a worker. `BoundedRetryAfter` lets it
  wait out a short one and turns a long (or unreadable) one into
  `ShopifyUnavailable`, so the caller reschedules instead of blocking;
- Relay's errors instead of result codes, for the worker and CLI paths.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import httpx
from shopify_app import RequestInput, ShopifyApp

from relay.config import Config
from relay.errors import ConfigError, ShopifyRefused, ShopifyUnavailable

log = logging.getLogger(__name__)

# The longest a 429's Retry-After may make the package sleep in-process.
MAX_IN_PROCESS_WAIT = 2
# Shopify answers Admin API calls in well under this; a stuck connection
# must not hold a worker or a web request for long.
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
PATCH_ID_TOKEN_PATH = "/auth/patch-id-token"

# The package's result codes that mean "try again later".
TRANSIENT_CODES = frozenset(
    {
        "network_error",
        "server_error",
        "rate_limited",
        "rate_limit_exceeded",
        "http_error_500",
        "http_error_502",
        "http_error_503",
        "http_error_504",
    }
)


class BoundedRetryAfter(httpx.BaseTransport):
    """Passes requests through; refuses to let a 429 ask for a long wait."""

    def __init__(self, inner: httpx.BaseTransport, max_wait: int) -> None:
        self._inner = inner
        self._max_wait = max_wait

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if response.status_code != 429:
            return response

        header = response.headers.get("Retry-After", "1")
        wait = _seconds(header)
        # The package reads the header with int(); anything else would crash it.
        if wait is not None and header.strip().isdigit() and wait <= self._max_wait:
            return response
        response.close()
        raise ShopifyUnavailable(
            "Shopify is rate limiting this app",
            code="rate_limited",
            retry_after=wait,
        )

    def close(self) -> None:
        self._inner.close()


def _seconds(header: str) -> float | None:
    try:
        value = float(header)
    except ValueError:
        return None
    return value if value >= 0 else None


class Shopify:
    """The app's side of Shopify, built once per process from the config."""

    def __init__(
        self, config: Config, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.config = config
        self.api_version = config.shopify_api_version
        self._transport = transport
        self._app: ShopifyApp | None = None
        self._client: httpx.Client | None = None
        self._client_pid = 0

    @property
    def app(self) -> ShopifyApp:
        if self._app is None:
            if not (self.config.shopify_api_key and self.config.shopify_api_secret):
                raise ConfigError(
                    "SHOPIFY_API_KEY and SHOPIFY_API_SECRET must be set to talk to "
                    "Shopify (the Shopify CLI sets both in development)"
                )
            self._app = ShopifyApp(
                client_id=self.config.shopify_api_key,
                client_secret=self.config.shopify_api_secret,
                old_client_secret=self.config.shopify_previous_api_secret or None,
            )
        return self._app

    @property
    def http(self) -> httpx.Client:
        # One client per process: a forked worker must not share its parent's
        # connections.
        if self._client is None or self._client_pid != os.getpid():
            inner = self._transport or httpx.HTTPTransport(retries=0)
            self._client = httpx.Client(
                transport=BoundedRetryAfter(inner, MAX_IN_PROCESS_WAIT),
                timeout=TIMEOUT,
            )
            self._client_pid = os.getpid()
        return self._client

    # Requests from the embedded admin

    def verify_app_home(self, request: RequestInput) -> Any:
        """The package's verdict on a page load or fetch from the admin."""
        return self.app.verify_app_home_req(
            request, app_home_patch_id_token_path=PATCH_ID_TOKEN_PATH
        )

    def patch_id_token_page(self, request: RequestInput) -> Any:
        return self.app.app_home_patch_id_token(request)

    def exchange(self, verified: Any) -> Any:
        """Exchange a verified session token for an expiring offline token.

        Returns the package's result; its `response` is what to answer when
        `ok` is false (it lets App Bridge retry with a fresh session token).
        """
        return self.app.exchange_using_token_exchange(
            access_mode="offline",
            id_token=verified.id_token,
            invalid_token_response=verified.invalid_token_response,
            expiring=True,
            http_client=self.http,
        )

    def refresh(self, token: dict[str, Any]) -> Any:
        """The package's refresh: a new token if `token` is about to expire."""
        return self.app.refresh_token_exchanged_access_token(
            token, http_client=self.http
        )

    # Admin GraphQL, from jobs

    def graphql(
        self,
        shop: str,
        access_token: str,
        query: str,
        variables: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run `query` for `shop` (its myshopify domain); returns `data`.

        Raises ShopifyUnavailable for what may pass (network, 5xx, throttling)
        and ShopifyRefused for what will not (revoked token, missing scope,
        a query Shopify rejects).
        """
        result = self._graphql_request(shop, access_token, query, variables)
        if result.ok:
            return result.data or {}
        raise _graphql_error(shop, result)

    def _graphql_request(
        self,
        shop: str,
        access_token: str,
        query: str,
        variables: dict[str, Any] | None,
    ) -> Any:
        return self.app.admin_graphql_request(
            query,
            shop=subdomain(shop),
            access_token=access_token,
            api_version=self.api_version,
            invalid_token_response=None,
            variables=variables,
            # One in-process retry at most; RQ retries the job after that.
            max_retries=1,
            http_client=self.http,
        )

    def graphql_answer(
        self,
        shop: str,
        access_token: str,
        query: str,
        variables: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Like `graphql`, but a query answered with GraphQL errors (a field
        the app may not read: `ACCESS_DENIED`) returns `(data, errors)`, with
        whatever data Shopify gave, instead of raising."""
        result = self._graphql_request(shop, access_token, query, variables)
        if result.ok:
            return result.data or {}, []
        body = result.response.body if result.response is not None else ""
        if result.log.code == "graphql_errors" and not _throttled(body):
            try:
                answer = json.loads(body)
            except (ValueError, RecursionError):
                answer = {}
            if not isinstance(answer, dict):
                answer = {}
            errors = answer.get("errors")
            data = answer.get("data")
            return (
                data if isinstance(data, dict) else {},
                [e for e in errors if isinstance(e, dict)]
                if isinstance(errors, list)
                else [],
            )
        raise _graphql_error(shop, result)


def _graphql_error(shop: str, result: Any) -> ShopifyUnavailable | ShopifyRefused:
    code = result.log.code
    if code == "graphql_errors" and _throttled(result.response.body):
        return ShopifyUnavailable(
            f"{shop}: Admin API query cost throttled", code="throttled", retry_after=2
        )
    if code in TRANSIENT_CODES:
        return ShopifyUnavailable(f"{shop}: Shopify unavailable ({code})", code=code)
    return ShopifyRefused(f"{shop}: {result.log.detail}", code=code)


def _throttled(body: str) -> bool:
    try:
        errors = json.loads(body).get("errors") or []
    except (ValueError, AttributeError, RecursionError):
        return False
    return isinstance(errors, list) and "THROTTLED" in map(error_code, errors)


def error_code(error: Any) -> str | None:
    """A GraphQL error's `extensions.code`, whatever shape the error has."""
    extensions = error.get("extensions") if isinstance(error, dict) else None
    code = extensions.get("code") if isinstance(extensions, dict) else None
    return code if isinstance(code, str) else None


def subdomain(shop: str) -> str:
    """The package names a shop by its myshopify subdomain."""
    suffix = ".myshopify.com"
    return shop[: -len(suffix)] if shop.endswith(suffix) else shop


def shop_domain(subdomain: str) -> str:
    return f"{subdomain}.myshopify.com"
