"""Relay's tables. Migrations in `relay/migrations` create exactly these.

What is kept, and why:
- shops: which stores Relay serves and whether they still have it installed;
- destination_settings: each shop's settings per destination, secrets
  encrypted with the key ring in `relay.secrets`;
- events: one row per neutral event made (ids only, no personal data), so
  an order produces one purchase whichever order webhook comes first;
- deliveries: the delivery log, one row per event and destination, with the
  payload as sent (digests kept; IP, user agent and click id masked);
- shop_tokens: each shop's Admin API access token, encrypted;
- privacy_requests: what Shopify's privacy webhooks asked and what was done,
  without the data itself;
- privacy_reports: the answers to customers/data_request, encrypted, until
  the merchant has had time to fetch them.

How long each is kept is in docs/privacy.md and `relay.retention`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: datetime | None, dialect: Any
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc)

    def process_result_value(
        self, value: datetime | None, dialect: Any
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# Delivery statuses that still expect a send ("held": its destination is
# paused until the merchant fixes its credentials).
PENDING = ("queued", "retrying", "held")


class Base(DeclarativeBase):
    pass


class Shop(Base):
    __tablename__ = "shops"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain: Mapped[str] = mapped_column(String(255), unique=True)
    installed: Mapped[bool] = mapped_column(Boolean, default=True)
    uninstalled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    installed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    web_pixel_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Which events the visitor's consent lets Relay send (relay.consent).
    consent_policy: Mapped[str] = mapped_column(
        String(16), default="standard", server_default="standard"
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ShopToken(Base):
    """A shop's expiring offline Admin API token; the secrets encrypted."""

    __tablename__ = "shop_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(
        ForeignKey("shops.id", ondelete="CASCADE"), unique=True
    )
    # The access and refresh tokens, as one encrypted JSON document.
    encrypted_token: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text, default="")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    refresh_expires_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, nullable=True
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    shop: Mapped[Shop] = relationship()


class DestinationSetting(Base):
    __tablename__ = "destination_settings"
    __table_args__ = (UniqueConstraint("shop_id", "destination"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    destination: Mapped[str] = mapped_column(String(64))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    test_mode: Mapped[bool] = mapped_column(Boolean, default=False)
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    encrypted_secrets: Mapped[str | None] = mapped_column(Text, nullable=True)
    # While a conflict with a native integration stands unacknowledged:
    # "send" keeps sending purchases (and flags them), "hold" skips them.
    conflict_policy: Mapped[str] = mapped_column(
        String(16), default="send", server_default="send"
    )
    # Set when the platform refused the credentials; events are held.
    paused_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    shop: Mapped[Shop] = relationship()


class DestinationConnection(Base):
    """A shop's OAuth grant at a destination's platform, encrypted."""

    __tablename__ = "destination_connections"
    __table_args__ = (UniqueConstraint("shop_id", "destination"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    destination: Mapped[str] = mapped_column(String(64))
    # Access and refresh tokens, as one encrypted JSON document.
    encrypted_grant: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text, default="")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    refresh_expires_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, nullable=True
    )
    connected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    shop: Mapped[Shop] = relationship()


class ConflictCheck(Base):
    """The last conflict check of a shop's destination, and what was acknowledged."""

    __tablename__ = "conflict_checks"
    __table_args__ = (UniqueConstraint("shop_id", "destination"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    destination: Mapped[str] = mapped_column(String(64))
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Finding keys (signal and evidence digest) the merchant acknowledged.
    acknowledged: Mapped[list[str]] = mapped_column(JSON, default=list)

    shop: Mapped[Shop] = relationship()


class EventRecord(Base):
    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("shop_id", "name", "event_id"),
        Index("ix_events_shop_order", "shop_id", "order_id"),
        Index("ix_events_shop_customer", "shop_id", "customer_id"),
        Index("ix_events_shop_email", "shop_id", "email_digest"),
        Index("ix_events_shop_phone", "shop_id", "phone_digest"),
        Index("ix_events_shop_client", "shop_id", "client_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(255))
    order_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    customer_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The Web Pixel's visitor id, so a privacy request finds the visitor's
    # page views along with their orders.
    client_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # SHA-256 of the normalized email and phone, as platforms receive them:
    # what lets a privacy request find a guest's events.
    email_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    phone_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    origin: Mapped[str] = mapped_column(String(64))
    test: Mapped[bool] = mapped_column(Boolean, default=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    shop: Mapped[Shop] = relationship()


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("event_pk", "destination"),
        Index("ix_deliveries_shop_created", "shop_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_pk: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    destination: Mapped[str] = mapped_column(String(64))
    # queued → sent | failed | skipped; retrying while RQ retries it
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    warning: Mapped[str | None] = mapped_column(Text, nullable=True)
    test_mode: Mapped[bool] = mapped_column(Boolean, default=False)
    match_keys: Mapped[list[str]] = mapped_column(JSON, default=list)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When `relay retry` or a resumed destination sent it again: its retry
    # window starts here rather than at created_at.
    retry_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    event: Mapped[EventRecord] = relationship()
    shop: Mapped[Shop] = relationship()

    @property
    def window_start(self) -> datetime:
        """Where the retry window of the current run of attempts begins."""
        return self.retry_since or self.created_at


class PrivacyRequest(Base):
    """One privacy webhook: what was asked, when, and what Relay did.

    It names the shop and Shopify's request id, never the customer.
    """

    __tablename__ = "privacy_requests"
    __table_args__ = (Index("ix_privacy_requests_shop", "shop_domain"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_domain: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(64))
    webhook_id: Mapped[str] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Counts per kind of data found or deleted, e.g. {"events": 2}.
    outcome: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    report_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class PrivacyReport(Base):
    """What Relay holds about one customer, for the merchant to fetch."""

    __tablename__ = "privacy_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    data_request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    encrypted_content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    shop: Mapped[Shop] = relationship()
