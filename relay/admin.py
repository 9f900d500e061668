"""What the operator's CLI commands do, on the database alone (no Redis)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from relay.config import Config
from relay.database import Database
from relay.destinations import SettingKind
from relay.errors import ConfigError
from relay.models import (
    Delivery,
    DestinationConnection,
    DestinationSetting,
    EventRecord,
    PrivacyReport,
    Shop,
    ShopToken,
)
from relay.plugins import Plugins, validate_setting
from relay.secrets import KeyRing
from relay.shopify.webhooks import SHOP_DOMAIN
from relay.shops import ensure_shop, find_shop, save_destination


def _open(config: Config) -> Database:
    db = Database(config.sqlalchemy_url)
    if config.database_url is None:
        # The development SQLite file is migrated on first use; a deployment's
        # database is migrated by its release process.
        db.upgrade()
    return db


def describe_destinations(config: Config, shop_domain: str | None) -> Iterator[str]:
    plugins = Plugins.load(config.plugins_file)
    if shop_domain is None:
        for name, destination in sorted(plugins.destinations.items()):
            limit = destination.batch_limit
            yield f"{name}: {destination.title} (up to {limit} events a request)"
            for setting in destination.settings:
                required = (
                    "required" if setting.required else f"default {setting.default!r}"
                )
                yield f"  {setting.name} ({setting.kind}, {required}): {setting.label}"
        return

    db = _open(config)
    with db.session() as session:
        shop = find_shop(session, shop_domain)
        rows = (
            []
            if shop is None
            else session.scalars(
                select(DestinationSetting).where(DestinationSetting.shop_id == shop.id)
            ).all()
        )
        if not rows:
            yield f"{shop_domain}: no destinations set up"
        keyring = KeyRing.from_config(config) if rows else None
        for row in rows:
            mode = "test mode" if row.test_mode else "live"
            state = "enabled" if row.enabled else "disabled"
            paused = f", PAUSED: {row.paused_reason}" if row.paused_reason else ""
            yield (
                f"{row.destination} for {shop_domain}: {state}, {mode}, "
                f"conflict policy {row.conflict_policy}{paused}"
            )
            secrets = (
                keyring.decrypt(row.encrypted_secrets)
                if keyring and row.encrypted_secrets
                else {}
            )
            loaded = plugins.destinations.get(row.destination)
            for setting in loaded.settings if loaded else ():
                if setting.kind == SettingKind.SECRET:
                    shown = "set" if secrets.get(setting.name) else "not set"
                else:
                    value = (row.values or {}).get(setting.name, setting.default)
                    shown = "not set" if value is None else repr(value)
                yield f"  {setting.name}: {shown}"


def set_destination(
    config: Config,
    shop_domain: str,
    name: str,
    changes: Mapping[str, str],
    test_mode: bool | None,
    enabled: bool | None,
    conflict_policy: str | None = None,
) -> Iterator[str]:
    if not SHOP_DOMAIN.fullmatch(shop_domain):
        raise ConfigError(f"{shop_domain!r} is not a myshopify.com domain")
    plugins = Plugins.load(config.plugins_file)
    destination = plugins.destination(name)
    declared = {setting.name: setting for setting in destination.settings}
    unknown = sorted(set(changes) - set(declared))
    if unknown:
        raise ConfigError(
            f"{name} has no setting {', '.join(unknown)} "
            f"(settings: {', '.join(declared)})"
        )
    values = {key: validate_setting(declared[key], raw) for key, raw in changes.items()}

    db = _open(config)
    keyring = KeyRing.from_config(config)
    now = datetime.now(timezone.utc)
    with db.session() as session:
        shop = ensure_shop(session, shop_domain, now)
        row = save_destination(
            session,
            keyring,
            plugins,
            shop,
            name,
            values,
            now,
            enabled=enabled,
            test_mode=test_mode,
        )
        if conflict_policy is not None:
            row.conflict_policy = conflict_policy
        plugins.config_for(shop_domain, name, *_stored(session, keyring, shop, name))
    yield f"{name} for {shop_domain}: saved"


def _stored(
    session: Session, keyring: KeyRing, shop: Shop, name: str
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    row = session.scalars(
        select(DestinationSetting).where(
            DestinationSetting.shop_id == shop.id,
            DestinationSetting.destination == name,
        )
    ).one()
    secrets = keyring.decrypt(row.encrypted_secrets) if row.encrypted_secrets else {}
    return row.values or {}, secrets, row.test_mode


@dataclass(frozen=True)
class DeliveryFilter:
    """Which delivery log rows to show; None means any."""

    shop: str | None = None
    status: str | None = None
    order_id: str | None = None
    customer_id: str | None = None
    since: datetime | None = None


def recent_deliveries(
    config: Config, wanted: DeliveryFilter, limit: int
) -> Iterator[str]:
    db = _open(config)
    with db.session() as session:
        query = (
            select(Delivery)
            .join(Shop, Delivery.shop_id == Shop.id)
            .join(EventRecord, Delivery.event_pk == EventRecord.id)
            .order_by(Delivery.id.desc())
            .limit(limit)
        )
        if wanted.shop:
            query = query.where(Shop.domain == wanted.shop)
        if wanted.status:
            query = query.where(Delivery.status == wanted.status)
        if wanted.order_id:
            query = query.where(EventRecord.order_id == wanted.order_id)
        if wanted.customer_id:
            query = query.where(EventRecord.customer_id == wanted.customer_id)
        if wanted.since:
            query = query.where(Delivery.created_at >= wanted.since)
        rows = session.scalars(query).all()
        if not rows:
            what = (
                f"no {wanted.status} deliveries" if wanted.status else "no deliveries"
            )
            yield what + (
                f" since {wanted.since:%Y-%m-%d %H:%M} UTC" if wanted.since else ""
            )
        for row in rows:
            # Relay's reason, then the platform's own words.
            detail = "; ".join(
                text for text in (row.reason, row.error, row.warning) if text
            )
            http = row.http_status if row.http_status is not None else "-"
            keys = ",".join(row.match_keys or []) or "-"
            yield (
                f"{row.created_at:%Y-%m-%d %H:%M:%S} {row.shop.domain} "
                f"{row.destination} "
                f"{row.event.name} {row.event.event_id} {row.status} http={http} "
                f"attempts={row.attempts} keys={keys}"
                + (f" ({detail})" if detail else "")
                + (" [test]" if row.test_mode else "")
            )


def rotate_secrets(config: Config) -> int:
    db = _open(config)
    keyring = KeyRing.from_config(config)
    count = 0
    with db.session() as session:
        for row in session.scalars(select(DestinationSetting)):
            if row.encrypted_secrets:
                row.encrypted_secrets = keyring.rotate(row.encrypted_secrets)
                count += 1
        for token in session.scalars(select(ShopToken)):
            token.encrypted_token = keyring.rotate(token.encrypted_token)
            count += 1
        for report in session.scalars(select(PrivacyReport)):
            report.encrypted_content = keyring.rotate(report.encrypted_content)
            count += 1
        for connection in session.scalars(select(DestinationConnection)):
            connection.encrypted_grant = keyring.rotate(connection.encrypted_grant)
            count += 1
    return count


def list_shops(config: Config) -> Iterator[str]:
    db = _open(config)
    with db.session() as session:
        rows = session.scalars(select(Shop).order_by(Shop.domain)).all()
        if not rows:
            yield "no shops"
        with_token = set(session.scalars(select(ShopToken.shop_id)))
        for shop in rows:
            if not shop.installed:
                state = f"uninstalled {shop.uninstalled_at:%Y-%m-%d %H:%M}"
            elif shop.id in with_token:
                pixel = "pixel on" if shop.web_pixel_id else "pixel not set up"
                state = f"installed, access token stored, {pixel}"
            else:
                state = (
                    "known from webhooks or the CLI; the merchant has not opened "
                    "Relay yet"
                )
            yield f"{shop.domain}: {state}; consent policy {shop.consent_policy}"


def set_consent_policy(config: Config, domain: str, policy: str) -> str:
    db = _open(config)
    with db.session() as session:
        shop = find_shop(session, domain)
        if shop is None:
            raise ConfigError(f"no shop {domain!r} (see `relay shops list`)")
        shop.consent_policy = policy
    return f"{domain}: consent policy {policy}; applies to every delivery from now on"


def delivery_summary(
    config: Config, shop_domain: str | None, since: datetime, status: str | None = None
) -> Iterator[str]:
    """Deliveries since `since` counted by destination, status and reason."""
    db = _open(config)
    with db.session() as session:
        query = (
            select(
                Delivery.destination,
                Delivery.status,
                # An event the platform refused alone has its words, no reason.
                func.coalesce(Delivery.reason, Delivery.error),
                func.count(Delivery.id),
            )
            .join(Shop, Delivery.shop_id == Shop.id)
            .where(Delivery.created_at >= since)
            .group_by(
                Delivery.destination,
                Delivery.status,
                func.coalesce(Delivery.reason, Delivery.error),
            )
            .order_by(
                Delivery.destination,
                Delivery.status,
                func.coalesce(Delivery.reason, Delivery.error),
            )
        )
        if shop_domain:
            query = query.where(Shop.domain == shop_domain)
        if status:
            query = query.where(Delivery.status == status)
        rows = session.execute(query).all()
    if not rows:
        what = f"no {status} deliveries" if status else "no deliveries"
        yield f"{what} since {since:%Y-%m-%d %H:%M} UTC"
    for destination, status, reason, count in rows:
        yield f"{destination} {status}: {count}" + (f" ({reason})" if reason else "")


def reinstall_shop(config: Config, domain: str) -> str:
    db = _open(config)
    with db.session() as session:
        shop = find_shop(session, domain)
        if shop is None:
            raise ConfigError(f"no shop {domain!r} (see `relay shops list`)")
        if shop.installed:
            return f"{domain}: already installed"
        shop.installed = True
        shop.uninstalled_at = None
    return f"{domain}: installed again; new events will be sent"
