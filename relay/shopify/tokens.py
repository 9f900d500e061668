"""Each shop's expiring offline access token: stored encrypted, refreshed once.

Public apps must use expiring offline tokens: an access token lives about an
hour and comes with a refresh token that Shopify rotates on every refresh.
Two processes refreshing one shop's token at once would each spend the same
refresh token, and the loser's answer would be `invalid_grant`; so the web
process and every worker load tokens through `access_token`, which refreshes
under a per-shop Redis lock and reads the row again once it holds the lock.

Expiry times come from the `shopifyapp` package, which judges them against
the real clock, so this module does too (not the runtime's clock).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from relay import keys
from relay.errors import ShopifyRefused, ShopifyUnavailable
from relay.models import Shop, ShopToken
from relay.runtime import Runtime
from relay.secrets import KeyRing
from relay.shopify.api import TRANSIENT_CODES, subdomain
from relay.shops import find_shop

log = logging.getLogger(__name__)

# The package refreshes a token expiring within 60 s; a token further from
# expiry than this is used without taking the lock.
NO_LOCK_NEEDED = timedelta(seconds=90)
# A refresh is one HTTPS round trip, bounded by the client's timeouts.
LOCK_SECONDS = 30
LOCK_WAIT_SECONDS = 15


def save(session: Session, keyring: KeyRing, shop: Shop, token: Any) -> None:
    """Store the package's access token for `shop`, encrypted."""
    secrets = {"token": token.token, "refresh_token": token.refresh_token}
    row = session.scalars(
        select(ShopToken).where(ShopToken.shop_id == shop.id)
    ).one_or_none()
    if row is None:
        row = ShopToken(shop_id=shop.id)
        session.add(row)
    row.encrypted_token = keyring.encrypt(secrets)
    row.scope = token.scope or ""
    row.expires_at = _parse(token.expires)
    row.refresh_expires_at = _parse(token.refresh_token_expires)
    row.updated_at = _now()
    session.flush()


def forget(session: Session, shop: Shop) -> int:
    """Delete the shop's tokens; returns how many rows went."""
    result = session.execute(delete(ShopToken).where(ShopToken.shop_id == shop.id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def has_token(session: Session, shop: Shop) -> bool:
    query = select(ShopToken.id).where(ShopToken.shop_id == shop.id)
    return session.scalars(query).first() is not None


def access_token(runtime: Runtime, domain: str) -> str:
    """A usable access token for `domain`, refreshed first if about to expire.

    Raises ShopifyRefused when the shop has no token (never loaded the app,
    or uninstalled) or its refresh token was revoked or expired, which only
    the merchant opening the app can mend; ShopifyUnavailable when Shopify
    or the lock holder is slow, which a retry mends.
    """
    stored = _load(runtime, domain)
    if not _needs_refresh(stored):
        return str(stored["token"])

    lock = runtime.redis.lock(
        keys.token_refresh(domain),
        timeout=LOCK_SECONDS,
        blocking_timeout=LOCK_WAIT_SECONDS,
    )
    if not lock.acquire():
        raise ShopifyUnavailable(
            f"{domain}: another process is still refreshing the access token",
            code="refresh_in_progress",
        )
    try:
        # Whoever held the lock before may have refreshed it already.
        return _refresh(runtime, domain, _load(runtime, domain))
    finally:
        lock.release()


def _refresh(runtime: Runtime, domain: str, stored: dict[str, Any]) -> str:
    result = runtime.shopify.refresh(stored)
    if result.ok and result.access_token is None:
        return str(stored["token"])  # still valid, the package says
    if result.ok:
        with runtime.db.session() as session:
            shop = find_shop(session, domain)
            if shop is None:
                raise ShopifyRefused(f"{domain}: shop deleted meanwhile")
            save(session, runtime.keyring, shop, result.access_token)
        log.info("shop %s: access token refreshed", domain)
        return str(result.access_token.token)

    code = result.log.code
    if code in TRANSIENT_CODES:
        raise ShopifyUnavailable(
            f"{domain}: token refresh failed ({code}), will retry", code=code
        )
    # Revoked or expired refresh token, or the app's credentials refused:
    # the token is useless; the next admin page load exchanges a new one.
    with runtime.db.session() as session:
        shop = find_shop(session, domain)
        if shop is not None:
            forget(session, shop)
    log.warning(
        "shop %s: access token refresh refused (%s); the merchant must open "
        "Relay in the Shopify admin to grant a new one",
        domain,
        code,
    )
    raise ShopifyRefused(f"{domain}: access token refresh refused ({code})", code=code)


def _load(runtime: Runtime, domain: str) -> dict[str, Any]:
    """The stored token in the shape the package's refresh expects."""
    with runtime.db.session() as session:
        row = session.scalars(
            select(ShopToken).join(Shop).where(Shop.domain == domain)
        ).one_or_none()
        if row is None:
            raise ShopifyRefused(
                f"{domain}: no access token; the merchant must open Relay in the "
                "Shopify admin",
                code="no_token",
            )
        secrets = runtime.keyring.decrypt(row.encrypted_token)
        return {
            "shop": subdomain(domain),
            "access_mode": "offline",
            "token": secrets["token"],
            "refresh_token": secrets.get("refresh_token"),
            "scope": row.scope,
            "expires": _format(row.expires_at),
            "refresh_token_expires": _format(row.refresh_expires_at),
        }


def _needs_refresh(stored: dict[str, Any]) -> bool:
    expires = _parse(stored["expires"])
    if expires is None:
        return bool(stored["refresh_token"])
    return expires - _now() <= NO_LOCK_NEEDED


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _format(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
