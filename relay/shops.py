"""Shops and their destination settings."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from relay.destinations import DestinationConfig, SettingKind
from relay.models import DestinationSetting, Shop
from relay.plugins import Plugins
from relay.secrets import KeyRing

log = logging.getLogger(__name__)


def find_shop(session: Session, domain: str) -> Shop | None:
    return session.scalars(select(Shop).where(Shop.domain == domain)).one_or_none()


def ensure_shop(session: Session, domain: str, now: datetime) -> Shop:
    """The shop's row, created on first sight."""
    shop = find_shop(session, domain)
    if shop is None:
        shop = Shop(domain=domain, installed=True, created_at=now)
        session.add(shop)
        session.flush()
        log.info("shop %s: first seen", domain)
    return shop


def active_destinations(session: Session, shop: Shop) -> list[str]:
    """Names of the destinations this shop has set up and enabled."""
    query = select(DestinationSetting.destination).where(
        DestinationSetting.shop_id == shop.id, DestinationSetting.enabled.is_(True)
    )
    return sorted(session.scalars(query))


def save_destination(
    session: Session,
    keyring: KeyRing,
    plugins: Plugins,
    shop: Shop,
    name: str,
    changes: Mapping[str, Any],
    now: datetime,
    *,
    enabled: bool | None = None,
    test_mode: bool | None = None,
) -> DestinationSetting:
    """Merge `changes` into a shop's settings; secrets are stored encrypted."""
    destination = plugins.destination(name)
    secret_names = {
        s.name for s in destination.settings if s.kind == SettingKind.SECRET
    }
    row = setting_row(session, shop, name)
    if row is None:
        row = DestinationSetting(
            shop_id=shop.id,
            destination=name,
            enabled=True,
            test_mode=False,
            values={},
            updated_at=now,
        )
        session.add(row)

    secrets = keyring.decrypt(row.encrypted_secrets) if row.encrypted_secrets else {}
    values = dict(row.values or {})
    for key, value in changes.items():
        (secrets if key in secret_names else values)[key] = value

    row.values = values
    row.encrypted_secrets = keyring.encrypt(secrets) if secrets else None
    if enabled is not None:
        row.enabled = enabled
    if test_mode is not None:
        row.test_mode = test_mode
    row.updated_at = now
    session.flush()
    log.info(
        "shop %s: %s settings saved (%s)", shop.domain, name, ", ".join(sorted(changes))
    )
    return row


def destination_config(
    session: Session, keyring: KeyRing, plugins: Plugins, shop: Shop, name: str
) -> DestinationConfig | None:
    """The shop's resolved settings for `name`; None if not set up or disabled.

    Raises ConfigError when a required setting is missing.
    """
    row = setting_row(session, shop, name)
    if row is None or not row.enabled:
        return None
    secrets = keyring.decrypt(row.encrypted_secrets) if row.encrypted_secrets else {}
    return plugins.config_for(
        shop.domain, name, row.values or {}, secrets, row.test_mode
    )


def setting_row(session: Session, shop: Shop, name: str) -> DestinationSetting | None:
    """The shop's stored settings for destination `name`, if any."""
    query = select(DestinationSetting).where(
        DestinationSetting.shop_id == shop.id, DestinationSetting.destination == name
    )
    return session.scalars(query).one_or_none()
