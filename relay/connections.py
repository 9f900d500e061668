"""Connecting a shop to a destination's platform by OAuth.

A destination that offers it (`Destination.oauth`) lets the merchant click
"Connect" instead of copying ids and tokens by hand:

1. `start` gives the platform's authorization URL. Its `state` is a
   document encrypted with Relay's key ring (so it cannot be forged or
   read) naming the shop, the destination and when it was issued.
2. The platform sends the merchant back to `/connect/<destination>/callback`
   (or to the CLI's local listener); `finish` checks the state, exchanges
   the code and stores the grant encrypted in `destination_connections`.
3. `accounts` lists what the merchant may choose; `choose_account` saves the
   destination's settings for the chosen one (the plugin may mint a token
   for sending) and queues a conflict check.

`access_token` refreshes the grant before it expires, under a Redis lock,
since platforms rotate refresh tokens. A refused refresh deletes the grant:
the merchant connects again.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography.fernet import InvalidToken
from sqlalchemy import delete, select

from relay import keys, matchkeys
from relay.destinations import Account, Grant, OAuthClient
from relay.errors import BadInput, ConfigError, PlatformRefused, PlatformUnavailable
from relay.models import DestinationConnection
from relay.runtime import Runtime
from relay.shops import ensure_shop, find_shop, save_destination

log = logging.getLogger(__name__)

# The merchant has this long between clicking "Connect" and coming back.
STATE_SECONDS = 15 * 60
# A grant expiring sooner than this is refreshed before use.
REFRESH_MARGIN = timedelta(minutes=5)
LOCK_SECONDS = 30


def oauth_of(runtime: Runtime, destination: str) -> OAuthClient:
    client = runtime.plugins.destination(destination).oauth
    if client is None:
        raise ConfigError(f"{destination} cannot be connected by OAuth")
    return client


def callback_uri(runtime: Runtime, destination: str) -> str:
    if not runtime.config.app_url:
        raise ConfigError("SHOPIFY_APP_URL must be set to connect by OAuth")
    return f"{runtime.config.app_url}/connect/{destination}/callback"


def start(
    runtime: Runtime, shop: str, destination: str, redirect_uri: str | None = None
) -> str:
    """The URL that asks the merchant to let Relay in."""
    redirect = redirect_uri or callback_uri(runtime, destination)
    state = runtime.keyring.encrypt(
        {
            "shop": shop,
            "destination": destination,
            "redirect_uri": redirect,
            "issued": int(time.time()),
        }
    )
    return oauth_of(runtime, destination).authorize_url(state, redirect)


def finish(runtime: Runtime, destination: str, state: str, code: str) -> str:
    """Store the grant a callback's code is worth; returns the shop.

    Raises BadInput for a state Relay did not issue, or one too old.
    """
    claims = _read_state(runtime, state)
    if claims.get("destination") != destination:
        raise BadInput("this authorization was started for another destination")
    # One callback per state: a leaked callback address cannot be replayed to
    # attach another account.
    used = runtime.redis.set(
        keys.oauth_state(matchkeys.sha256(state)), 1, nx=True, ex=STATE_SECONDS
    )
    if not used:
        raise BadInput("this authorization was already used; start connecting again")
    shop = str(claims["shop"])
    grant = oauth_of(runtime, destination).exchange(code, claims["redirect_uri"])
    save_grant(runtime, shop, destination, grant)
    log.info("shop %s: connected to %s (scope %s)", shop, destination, grant.scope)
    return shop


def _read_state(runtime: Runtime, state: str) -> dict[str, Any]:
    try:
        claims = runtime.keyring.decrypt(state)
    except (ConfigError, InvalidToken, ValueError, TypeError):
        raise BadInput("the authorization state is not one Relay issued") from None
    issued = claims.get("issued")
    if not isinstance(issued, int) or time.time() - issued > STATE_SECONDS:
        raise BadInput("the authorization took too long; start connecting again")
    return claims


def save_grant(runtime: Runtime, shop: str, destination: str, grant: Grant) -> None:
    now = runtime.clock.now()
    secret = {"access_token": grant.access_token, "refresh_token": grant.refresh_token}
    with runtime.db.session() as session:
        shop_row = ensure_shop(session, shop, now)
        row = _row(session, shop_row.id, destination)
        if row is None:
            row = DestinationConnection(
                shop_id=shop_row.id, destination=destination, connected_at=now
            )
            session.add(row)
        row.encrypted_grant = runtime.keyring.encrypt(secret)
        row.scope = grant.scope
        row.expires_at = grant.expires_at
        row.refresh_expires_at = grant.refresh_expires_at
        row.updated_at = now


def is_connected(runtime: Runtime, shop: str, destination: str) -> bool:
    return _load(runtime, shop, destination) is not None


def access_token(runtime: Runtime, shop: str, destination: str) -> str | None:
    """A usable access token, refreshed first if about to expire; None if the
    shop never connected. Raises PlatformRefused when the platform refused
    the refresh (the grant is then deleted) and PlatformUnavailable when it
    could not be reached."""
    grant = _load(runtime, shop, destination)
    if grant is None:
        return None
    if not _expiring(grant):
        return grant.access_token

    lock = runtime.redis.lock(
        keys.connection_refresh(shop, destination),
        timeout=LOCK_SECONDS,
        blocking_timeout=LOCK_SECONDS,
    )
    if not lock.acquire():
        raise PlatformUnavailable(f"{destination}: another process is refreshing")
    try:
        # Whoever held the lock may have refreshed the grant already.
        grant = _load(runtime, shop, destination)
        if grant is None:
            return None
        if not _expiring(grant):
            return grant.access_token
        return _refresh(runtime, shop, destination, grant)
    finally:
        lock.release()


def _refresh(runtime: Runtime, shop: str, destination: str, grant: Grant) -> str:
    try:
        fresh = oauth_of(runtime, destination).refresh(grant)
    except PlatformRefused as refused:
        forget(runtime, shop, destination)
        log.warning(
            "shop %s: %s refused to refresh the connection (%s); it is deleted, "
            "the merchant must connect again",
            shop,
            destination,
            refused.reason,
        )
        raise
    save_grant(runtime, shop, destination, fresh)
    log.info("shop %s: %s connection refreshed", shop, destination)
    return fresh.access_token


def forget(runtime: Runtime, shop: str, destination: str) -> None:
    with runtime.db.session() as session:
        shop_row = find_shop(session, shop)
        if shop_row is not None:
            session.execute(
                delete(DestinationConnection).where(
                    DestinationConnection.shop_id == shop_row.id,
                    DestinationConnection.destination == destination,
                )
            )


def accounts(runtime: Runtime, shop: str, destination: str) -> list[Account]:
    token = _required_token(runtime, shop, destination)
    return oauth_of(runtime, destination).accounts(token)


def tags(
    runtime: Runtime, shop: str, destination: str, account_id: str
) -> list[Account]:
    token = _required_token(runtime, shop, destination)
    return oauth_of(runtime, destination).tags(token, account_id)


def choose_account(
    runtime: Runtime,
    shop: str,
    destination: str,
    account_id: str,
    tag_id: str | None = None,
) -> dict[str, Any]:
    """Save the settings for sending to `account_id`; returns them, secrets
    left out. Raises BadInput for an account or tag the connection cannot
    see."""
    client = oauth_of(runtime, destination)
    token = _required_token(runtime, shop, destination)
    if account_id not in {account.id for account in client.accounts(token)}:
        raise BadInput(f"ad account {account_id} is not one this connection can use")
    if tag_id is not None and tag_id not in {
        tag.id for tag in client.tags(token, account_id)
    }:
        raise BadInput(f"tag {tag_id} is not in ad account {account_id}")
    settings = client.settings_for(token, account_id, tag_id)
    now = runtime.clock.now()
    with runtime.db.session() as session:
        shop_row = ensure_shop(session, shop, now)
        save_destination(
            session,
            runtime.keyring,
            runtime.plugins,
            shop_row,
            destination,
            settings,
            now,
            enabled=True,
        )
    from relay.deadletters import resume_held  # it imports the pipeline

    resume_held(runtime, shop, destination)
    secret_names = {
        s.name
        for s in runtime.plugins.destination(destination).settings
        if s.kind == "secret"
    }
    return {k: v for k, v in settings.items() if k not in secret_names}


def _required_token(runtime: Runtime, shop: str, destination: str) -> str:
    token = access_token(runtime, shop, destination)
    if token is None:
        raise BadInput(f"{shop} has not connected {destination} yet")
    return token


def _expiring(grant: Grant) -> bool:
    if grant.expires_at is None:
        return False
    return datetime.now(timezone.utc) + REFRESH_MARGIN >= grant.expires_at


def _load(runtime: Runtime, shop: str, destination: str) -> Grant | None:
    with runtime.db.session() as session:
        shop_row = find_shop(session, shop)
        row = None if shop_row is None else _row(session, shop_row.id, destination)
        if row is None:
            return None
        secret = runtime.keyring.decrypt(row.encrypted_grant)
        return Grant(
            access_token=secret["access_token"],
            refresh_token=secret.get("refresh_token"),
            expires_at=row.expires_at,
            refresh_expires_at=row.refresh_expires_at,
            scope=row.scope,
        )


def _row(session: Any, shop_id: int, destination: str) -> DestinationConnection | None:
    query = select(DestinationConnection).where(
        DestinationConnection.shop_id == shop_id,
        DestinationConnection.destination == destination,
    )
    return session.scalars(query).one_or_none()
