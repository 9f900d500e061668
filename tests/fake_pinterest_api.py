"""A local stand-in for Pinterest's OAuth and ads API, at the HTTP boundary.

It answers as Pinterest does: the authorization page redirects back with a
code; `POST /v5/oauth/token` takes form-encoded grants with HTTP Basic app
credentials; the ads endpoints take the OAuth access token as Bearer. Every
request body and every answer is checked against Pinterest's own schemas
(tests/specs/pinterest-oauth-ads.schema.json, extracted from the published
OpenAPI description); a mismatch is recorded in `schema_errors`.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jsonschema
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

SCHEMAS = json.loads(
    (Path(__file__).parent / "specs" / "pinterest-oauth-ads.schema.json").read_text()
)


def _check(name: str, document: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"#/$defs/{name}", "$defs": SCHEMAS["$defs"]}
    )
    return [f"{name}: {error.message}" for error in validator.iter_errors(document)]


@dataclass
class Token:
    scope: str
    expires_at: float


@dataclass
class FakePinterestAPI:
    server: HTTPServer
    app_id: str = "1480000"
    app_secret: str = "fake-app-secret"
    access_seconds: int = 30 * 24 * 3600
    # ad account id → {"name", "currency", "tags": [ConversionTag, ...]}
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Conversion tokens minted, so the events fake can accept them.
    minted: list[str] = field(default_factory=list)
    schema_errors: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    # The next answers of the ads endpoints, e.g. (401, code, message).
    forced: list[tuple[int, int, str]] = field(default_factory=list)
    deny_authorization: bool = False
    _codes: dict[str, str] = field(default_factory=dict)  # code → redirect_uri
    _tokens: dict[str, Token] = field(default_factory=dict)
    _refresh_tokens: set[str] = field(default_factory=set)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        route = self.server.expect_request
        route("/oauth/", method="GET").respond_with_handler(self._authorize)
        route("/v5/oauth/token", method="POST").respond_with_handler(self._token)
        route("/v5/oauth/conversion_token", method="POST").respond_with_handler(
            self._conversion_token
        )
        route("/v5/ad_accounts", method="GET").respond_with_handler(self._accounts)
        route(
            re.compile(r"^/v5/ad_accounts/[0-9]+/conversion_tags$"), method="GET"
        ).respond_with_handler(self._tags)

    @property
    def environment(self) -> dict[str, str]:
        """What Relay's process needs to talk to this fake."""
        base = self.server.url_for("").rstrip("/")
        return {
            "RELAY_PINTEREST_APP_ID": self.app_id,
            "RELAY_PINTEREST_APP_SECRET": self.app_secret,
            "RELAY_PINTEREST_API_BASE": base,
            "RELAY_PINTEREST_OAUTH_URL": f"{base}/oauth/",
        }

    def expire_access_tokens(self) -> None:
        for token in self._tokens.values():
            token.expires_at = time.time() - 1

    def revoke_refresh_tokens(self) -> None:
        self._refresh_tokens.clear()

    # -- OAuth -----------------------------------------------------------------

    def _authorize(self, request: Request) -> Response:
        self.calls.append("authorize")
        args = request.args
        redirect = args.get("redirect_uri", "")
        if args.get("client_id") != self.app_id or args.get("response_type") != "code":
            return _error(400, 1, "Invalid client or response type.")
        if self.deny_authorization:
            query = {"error": "access_denied", "state": args.get("state", "")}
        else:
            code = f"code-{next(self._ids)}"
            self._codes[code] = redirect
            query = {"code": code, "state": args.get("state", "")}
        return Response(
            status=302, headers={"Location": f"{redirect}?{urlencode(query)}"}
        )

    def _token(self, request: Request) -> Response:
        form = dict(request.form)
        grant = form.get("grant_type")
        self.calls.append(f"token:{grant}")
        if request.headers.get("Authorization") != _basic(self.app_id, self.app_secret):
            return _error(401, 2, "Authentication failed.")
        if grant == "authorization_code":
            self.schema_errors += _check("OauthAccessTokenRequestCode", form)
            if self._codes.pop(form.get("code", ""), None) != form.get("redirect_uri"):
                return _error(400, 1, "Invalid authorization code.")
            return self._issue("OauthAccessTokenResponseCode", "authorization_code")
        if grant == "refresh_token":
            self.schema_errors += _check("OauthAccessTokenRequestRefresh", form)
            if form.get("refresh_token") not in self._refresh_tokens:
                return _error(400, 1, "Invalid refresh token.")
            self._refresh_tokens.discard(form["refresh_token"])
            return self._issue("OauthAccessTokenResponseRefresh", "refresh_token")
        return _error(400, 1, "Unsupported grant type.")

    def _issue(self, schema: str, response_type: str) -> Response:
        serial = next(self._ids)
        access, refresh = f"pina_access_{serial}", f"pinr_refresh_{serial}"
        scope = "ads:read,ads:write"
        self._tokens[access] = Token(scope, time.time() + self.access_seconds)
        self._refresh_tokens.add(refresh)
        answer = {
            "access_token": access,
            "refresh_token": refresh,
            "response_type": response_type,
            "token_type": "bearer",
            "expires_in": self.access_seconds,
            "refresh_token_expires_in": 60 * 24 * 3600,
            "refresh_token_expires_at": int(time.time()) + 60 * 24 * 3600,
            "scope": scope,
        }
        return self._answer(schema, answer)

    def _conversion_token(self, request: Request) -> Response:
        self.calls.append("conversion_token")
        refused = self._refused(request, needs="ads:write")
        if refused:
            return refused
        token = f"pina_conversion_{next(self._ids)}"
        self.minted.append(token)
        return self._answer(
            "ConversionAccessTokenResponse",
            {"access_token": token, "token_type": "conversion"},
        )

    # -- ads -------------------------------------------------------------------

    def _accounts(self, request: Request) -> Response:
        self.calls.append("ad_accounts")
        refused = self._refused(request, needs="ads:read")
        if refused:
            return refused
        items = [
            {"id": account_id, "name": a["name"], "currency": a["currency"]}
            for account_id, a in sorted(self.accounts.items())
        ]
        for item in items:
            self.schema_errors += _check("AdAccount", item)
        return _json(200, {"items": items, "bookmark": None})

    def _tags(self, request: Request) -> Response:
        self.calls.append("conversion_tags")
        refused = self._refused(request, needs="ads:read")
        if refused:
            return refused
        account = self.accounts.get(request.path.split("/")[3])
        if account is None:
            return _error(403, 29, "You are not permitted to access that resource.")
        items = account.get("tags", [])
        for item in items:
            self.schema_errors += _check("ConversionTag", item)
        return _json(200, {"items": items})

    def _refused(self, request: Request, needs: str) -> Response | None:
        if self.forced:
            status, code, message = self.forced.pop(0)
            return _error(status, code, message)
        header = request.headers.get("Authorization", "")
        token = self._tokens.get(header.removeprefix("Bearer "))
        if token is None or token.expires_at <= time.time():
            return _error(401, 2, "Authentication failed.")
        if needs not in token.scope.split(","):
            return _error(403, 3, "Not authorized to access the user or resource.")
        return None

    def _answer(self, schema: str, answer: dict[str, Any]) -> Response:
        self.schema_errors += _check(schema, answer)
        return _json(200, answer)


def tag(
    tag_id: str,
    account_id: str,
    *,
    last_fired_ms: int | None = None,
    no_code_domains: list[str] | None = None,
) -> dict[str, Any]:
    """A ConversionTag as Pinterest lists it."""
    return {
        "ad_account_id": account_id,
        "id": tag_id,
        "name": f"Tag {tag_id}",
        "status": "ACTIVE",
        "version": "3",
        "code_snippet": "<script>…</script>",
        "enhanced_match_status": "VALIDATION_COMPLETE",
        "last_fired_time_ms": last_fired_ms,
        "configs": {
            "aem_enabled": True,
            "md_frequency": 1.0,
            "aem_fnln_enabled": False,
            "aem_ph_enabled": False,
            "aem_ge_enabled": False,
            "aem_db_enabled": False,
            "aem_loc_enabled": False,
            "no_code_capi_domains": no_code_domains or [],
        },
    }


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _error(status: int, code: int, message: str) -> Response:
    answer = {"code": code, "message": message}
    assert not _check("Error", answer)
    return _json(status, answer)


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")
