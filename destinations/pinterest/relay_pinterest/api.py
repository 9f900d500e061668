"""Pinterest's API as the merchant's connected app: OAuth, ad accounts, tags.

Sending events uses the conversion token (relay_pinterest.destination);
everything here uses the OAuth grant the merchant gave Relay.

The Pinterest app's credentials come from the environment:
RELAY_PINTEREST_APP_ID and RELAY_PINTEREST_APP_SECRET. RELAY_PINTEREST_API_BASE
and RELAY_PINTEREST_OAUTH_URL move the API and the authorization page, for a
proxy or a local fake.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import httpx

from relay.destinations import Account, Grant, OAuthClient
from relay.errors import ConfigError, PlatformRefused, PlatformUnavailable

log = logging.getLogger(__name__)

API_BASE = "https://api.pinterest.com"
OAUTH_URL = "https://www.pinterest.com/oauth/"
# Reading tags needs ads:read; minting a conversion token needs ads:write.
SCOPES = "ads:read,ads:write"
TIMEOUT = httpx.Timeout(15.0, connect=5.0)
MAX_PAGES = 10
MAX_TOKEN_SECONDS = 366 * 24 * 3600


class PinterestOAuth(OAuthClient):
    def __init__(self, transport: httpx.BaseTransport | None = None) -> None:
        self._transport = transport

    # -- OAuth --------------------------------------------------------------

    def authorize_url(self, state: str, redirect_uri: str) -> str:
        app_id, _ = _credentials()
        query = urlencode(
            {
                "client_id": app_id,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": SCOPES,
                "state": state,
            }
        )
        return f"{os.environ.get('RELAY_PINTEREST_OAUTH_URL', OAUTH_URL)}?{query}"

    def exchange(self, code: str, redirect_uri: str) -> Grant:
        return self._token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                # Apps made before 2025-09-25 get the renewable 60-day refresh
                # token only when they ask for it.
                "continuous_refresh": "true",
            }
        )

    def refresh(self, grant: Grant) -> Grant:
        if not grant.refresh_token:
            raise PlatformRefused("Pinterest gave no refresh token; connect again")
        fresh = self._token(
            {
                "grant_type": "refresh_token",
                "refresh_token": grant.refresh_token,
                "continuous_refresh": "true",
            }
        )
        if fresh.refresh_token is None:  # the old one stays valid
            return Grant(
                fresh.access_token,
                grant.refresh_token,
                fresh.expires_at,
                grant.refresh_expires_at,
                fresh.scope or grant.scope,
            )
        return fresh

    def _token(self, form: dict[str, str]) -> Grant:
        app_id, secret = _credentials()
        answer = self._call(
            "POST", "/v5/oauth/token", data=form, auth=httpx.BasicAuth(app_id, secret)
        )
        try:
            now = datetime.now(timezone.utc)
            # Bounded: a token "valid for 1e20 seconds" is a broken answer.
            lives = min(int(answer["expires_in"]), MAX_TOKEN_SECONDS)
            refresh_at = answer.get("refresh_token_expires_at")
            refresh_token = answer.get("refresh_token")
            return Grant(
                access_token=str(answer["access_token"]),
                refresh_token=refresh_token if isinstance(refresh_token, str) else None,
                expires_at=now + timedelta(seconds=lives),
                refresh_expires_at=(
                    datetime.fromtimestamp(int(refresh_at), timezone.utc)
                    if refresh_at
                    else None
                ),
                scope=str(answer.get("scope", "")),
            )
        except (KeyError, TypeError, ValueError, OverflowError, OSError):
            raise PlatformUnavailable(
                "Pinterest's token answer was unreadable"
            ) from None

    # -- what the merchant chooses from -------------------------------------

    def accounts(self, access_token: str) -> list[Account]:
        found = []
        for item in self._pages("/v5/ad_accounts", access_token, {"page_size": 100}):
            found.append(
                Account(
                    id=str(item.get("id", "")),
                    name=str(item.get("name") or item.get("id")),
                    detail=str(item.get("currency") or ""),
                )
            )
        return [account for account in found if account.id.isdigit()]

    def tags(self, access_token: str, account_id: str) -> list[Account]:
        return [
            Account(
                id=str(tag["id"]),
                name=str(tag.get("name") or tag["id"]),
                detail=str(tag.get("status") or ""),
            )
            for tag in self.conversion_tags(access_token, account_id)
            if str(tag.get("id", "")).isdigit()
        ]

    def settings_for(
        self, access_token: str, account_id: str, tag_id: str | None = None
    ) -> dict[str, Any]:
        token = self._call("POST", "/v5/oauth/conversion_token", token=access_token)
        conversion_token = token.get("access_token")
        if not isinstance(conversion_token, str) or not conversion_token:
            raise PlatformUnavailable("Pinterest minted no conversion token")
        settings: dict[str, Any] = {
            "ad_account_id": account_id,
            "conversion_token": conversion_token,
        }
        if tag_id is None:
            tags = self.tags(access_token, account_id)
            tag_id = tags[0].id if len(tags) == 1 else None
        if tag_id:
            settings["tag_id"] = tag_id
        return settings

    # -- reads for the conflict check ---------------------------------------

    def conversion_tags(
        self, access_token: str, account_id: str
    ) -> list[dict[str, Any]]:
        answer = self._call(
            "GET",
            f"/v5/ad_accounts/{account_id}/conversion_tags",
            token=access_token,
            params={"filter_deleted": "true"},
        )
        items = answer.get("items")
        return (
            [item for item in items if isinstance(item, dict)]
            if isinstance(items, list)
            else []
        )

    # -- HTTP -----------------------------------------------------------------

    def _pages(
        self, path: str, access_token: str, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        bookmark = None
        for _ in range(MAX_PAGES):
            query = {**params, **({"bookmark": bookmark} if bookmark else {})}
            answer = self._call("GET", path, token=access_token, params=query)
            items += [i for i in answer.get("items") or [] if isinstance(i, dict)]
            bookmark = answer.get("bookmark")
            if not bookmark:
                break
        return items

    def _call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        base = os.environ.get("RELAY_PINTEREST_API_BASE", API_BASE).rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            with httpx.Client(transport=self._transport, timeout=TIMEOUT) as client:
                response = client.request(
                    method, base + path, headers=headers, **options
                )
        except httpx.HTTPError as error:
            raise PlatformUnavailable(
                f"no answer from Pinterest ({type(error).__name__})"
            ) from None
        detail = _message(response)
        if response.status_code == 429 or response.status_code >= 500:
            raise PlatformUnavailable(
                f"Pinterest is unavailable (HTTP {response.status_code})",
                http_status=response.status_code,
                detail=detail,
            )
        if response.status_code >= 400:
            raise PlatformRefused(
                f"Pinterest refused (HTTP {response.status_code}): {detail}",
                http_status=response.status_code,
                detail=detail,
            )
        try:
            answer = response.json()
        except ValueError:
            raise PlatformUnavailable("Pinterest's answer was not JSON") from None
        return answer if isinstance(answer, dict) else {"items": answer}


def _credentials() -> tuple[str, str]:
    app_id = os.environ.get("RELAY_PINTEREST_APP_ID", "")
    secret = os.environ.get("RELAY_PINTEREST_APP_SECRET", "")
    if not app_id or not secret:
        raise ConfigError(
            "connecting with Pinterest needs RELAY_PINTEREST_APP_ID and "
            "RELAY_PINTEREST_APP_SECRET (your app at developers.pinterest.com)"
        )
    return app_id, secret


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and "message" in body:
        return f"{body.get('code', '')}: {body['message']}".strip(": ")
    return ""
