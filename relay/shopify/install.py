"""Installing Relay in a shop, setting it up, and uninstalling it.

Shopify installs the app itself (managed installation, scopes from
`shopify.app.toml`); Relay first hears of a shop when the merchant opens it
in the admin. `first_load` then exchanges the session token for an offline
access token, records the shop (again, after a reinstall) and queues
`set_up_shop`, which registers Relay's Web Pixel through Admin GraphQL.
Webhook subscriptions need nothing here: they are declared in the TOML.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from rq import Retry
from sqlalchemy.orm import Session

from relay.errors import ShopifyRefused, ShopifyUnavailable
from relay.models import Shop
from relay.runtime import Runtime
from relay.shopify import tokens
from relay.shopify.api import shop_domain, subdomain
from relay.shops import ensure_shop, find_shop

log = logging.getLogger(__name__)

SET_UP_SHOP = "relay.jobs.set_up_shop"

PIXEL_FIELDS = "webPixel { id settings } userErrors { code field message }"
CREATE_PIXEL = f"""
mutation RelayPixelCreate($webPixel: WebPixelInput!) {{
  webPixelCreate(webPixel: $webPixel) {{ {PIXEL_FIELDS} }}
}}"""
UPDATE_PIXEL = f"""
mutation RelayPixelUpdate($id: ID!, $webPixel: WebPixelInput!) {{
  webPixelUpdate(id: $id, webPixel: $webPixel) {{ {PIXEL_FIELDS} }}
}}"""
FIND_PIXEL = "query RelayPixel { webPixel { id settings } }"


def first_load(runtime: Runtime, verified: Any) -> Any | None:
    """Make sure the shop has a token and is set up.

    Returns None when all is well, or the package's failed result, whose
    `response` the web layer returns as is (it tells App Bridge to retry).
    """
    domain = shop_domain(verified.shop)
    with runtime.db.session() as session:
        # Recorded as installed only once Shopify has given a token.
        shop = find_shop(session, domain)
        needs_token = shop is None or not tokens.has_token(session, shop)
        # A set-up that failed for good (say, the extension not yet deployed)
        # is tried again when the merchant comes back.
        needs_set_up = shop is None or shop.web_pixel_id is None

    if not needs_token:
        try:
            tokens.access_token(runtime, domain)
        except ShopifyRefused:
            needs_token = True  # revoked or expired: a fresh exchange mends it
        except ShopifyUnavailable as error:
            # The page can still be shown; jobs refresh the token later.
            log.warning("shop %s: token not refreshed now: %s", domain, error.reason)

    if needs_token:
        exchanged = runtime.shopify.exchange(verified)
        if not exchanged.ok:
            log.warning(
                "shop %s: token exchange failed (%s)", domain, exchanged.log.code
            )
            return exchanged
        _installed(runtime, domain, exchanged.access_token)
    if needs_token or needs_set_up:
        queue_set_up(runtime, domain)
    return None


def _installed(runtime: Runtime, domain: str, token: Any) -> None:
    missing = missing_scopes(runtime, token.scope or "")
    if missing:
        # Shopify grants what shopify.app.toml asks; a gap means the deployed
        # configuration is older than this code (run `shopify app deploy`).
        log.warning(
            "shop %s: access token lacks scopes %s; Shopify will refuse what "
            "needs them (run `shopify app deploy`)",
            domain,
            ", ".join(missing),
        )
    now = runtime.clock.now()
    with runtime.db.session() as session:
        shop = ensure_shop(session, domain, now)
        tokens.save(session, runtime.keyring, shop, token)
        if not shop.installed or shop.installed_at is None:
            state = "reinstalled" if not shop.installed else "installed"
            shop.installed = True
            shop.uninstalled_at = None
            shop.installed_at = now
            log.info("shop %s: %s; access token stored", domain, state)
        else:
            log.info("shop %s: new access token stored", domain)


def missing_scopes(runtime: Runtime, granted: str) -> list[str]:
    """Scopes in SCOPES (the Shopify CLI sets it from the TOML) not granted."""
    wanted = {s.strip() for s in runtime.config.scopes.split(",") if s.strip()}
    have = {s.strip() for s in granted.split(",") if s.strip()}
    return sorted(wanted - have)


def queue_set_up(runtime: Runtime, domain: str) -> None:
    """Queue `set_up_shop`; a second load while it waits adds nothing."""
    config = runtime.config
    runtime.queue.enqueue_call(
        SET_UP_SHOP,
        args=(domain,),
        job_id=f"set-up-{subdomain(domain)}",
        description="set up shop",
        timeout=config.job_timeout_seconds,
        result_ttl=config.job_result_seconds,
        failure_ttl=config.job_failure_seconds,
        retry=Retry(max=5, interval=[10, 60, 300, 900, 3600]),
    )


def set_up_shop(runtime: Runtime, domain: str) -> str:
    """Create Relay's Web Pixel in the shop, or bring its settings up to date.

    Safe to run any number of times: an existing pixel is updated with the
    same settings. Returns the pixel's id.
    """
    with runtime.db.session() as session:
        shop = find_shop(session, domain)
        if shop is None or not shop.installed:
            log.info("shop %s: not installed, nothing to set up", domain)
            return ""
        known_id = shop.web_pixel_id

    token = tokens.access_token(runtime, domain)
    settings = json.dumps(pixel_settings(runtime, domain), sort_keys=True)
    pixel_id = _update_or_create(runtime, domain, token, known_id, settings)

    with runtime.db.session() as session:
        shop_row = find_shop(session, domain)
        if shop_row is not None:
            shop_row.web_pixel_id = pixel_id
    return pixel_id


def pixel_settings(runtime: Runtime, domain: str) -> dict[str, str]:
    """What the pixel needs to reach Relay for this shop.

    The fields are declared in the extension's `shopify.extension.toml`;
    Shopify refuses settings that do not match them.
    """
    return {"relayUrl": f"{runtime.config.app_url}/pixel", "shopDomain": domain}


def _update_or_create(
    runtime: Runtime, domain: str, token: str, known_id: str | None, settings: str
) -> str:
    if known_id:
        errors = _update(runtime, domain, token, known_id, settings)
        if not errors:
            return known_id
        if not _has_code(errors, "NOT_FOUND"):
            raise _refused(domain, "webPixelUpdate", errors)
        log.info("shop %s: stored web pixel %s is gone", domain, known_id)

    data = runtime.shopify.graphql(
        domain, token, CREATE_PIXEL, {"webPixel": {"settings": settings}}
    )["webPixelCreate"]
    if not data["userErrors"]:
        pixel_id = str(data["webPixel"]["id"])
        log.info("shop %s: web pixel %s created", domain, pixel_id)
        return pixel_id
    if not _has_code(data["userErrors"], "TAKEN"):
        raise _refused(domain, "webPixelCreate", data["userErrors"])

    # The shop has Relay's pixel but this database lost its id.
    found = runtime.shopify.graphql(domain, token, FIND_PIXEL)["webPixel"]
    pixel_id = str(found["id"])
    errors = _update(runtime, domain, token, pixel_id, settings)
    if errors:
        raise _refused(domain, "webPixelUpdate", errors)
    return pixel_id


def _update(
    runtime: Runtime, domain: str, token: str, pixel_id: str, settings: str
) -> list[dict[str, Any]]:
    data = runtime.shopify.graphql(
        domain,
        token,
        UPDATE_PIXEL,
        {"id": pixel_id, "webPixel": {"settings": settings}},
    )["webPixelUpdate"]
    errors: list[dict[str, Any]] = data["userErrors"]
    if not errors:
        log.info("shop %s: web pixel %s settings up to date", domain, pixel_id)
    return errors


def _has_code(errors: list[dict[str, Any]], code: str) -> bool:
    return any(error.get("code") == code for error in errors)


def _refused(
    domain: str, mutation: str, errors: list[dict[str, Any]]
) -> ShopifyRefused:
    described = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    return ShopifyRefused(
        f"{domain}: {mutation} refused: {described}", code="user_errors"
    )


def uninstall(session: Session, shop: Shop, now: datetime) -> None:
    """Stop everything for `shop`; its other data waits for shop/redact.

    Shopify has already revoked the tokens and removed the app's pixel.
    Deliveries queued for the shop find it uninstalled and are dropped, each
    with a log line and a `skipped` entry saying so.
    """
    removed = tokens.forget(session, shop)
    shop.installed = False
    shop.uninstalled_at = now
    shop.web_pixel_id = None
    log.info(
        "shop %s: uninstalled; %d access token(s) deleted, deliveries stop, data "
        "kept until shop/redact",
        shop.domain,
        removed,
    )
