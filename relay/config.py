"""Configuration, read from the environment when a process starts.

Names follow Shopify CLI (`SHOPIFY_*`, `SCOPES`) and Heroku (`REDIS_URL`,
`DATABASE_URL`, `PORT`); everything else is `RELAY_`-prefixed. Nothing is
read at import time: `Config.from_env()` is called by the app factory, the
worker and the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from relay.errors import ConfigError

MiB = 1024 * 1024
HOUR = 3600
DAY = 24 * HOUR


@dataclass(frozen=True)
class Config:
    """Everything a Relay process needs to know about its deployment."""

    instance_path: Path = Path("instance")
    shopify_api_key: str = ""
    shopify_api_secret: str = ""
    # Shopify may keep signing with the old secret for a while after a
    # rotation; webhooks signed with either are accepted.
    shopify_previous_api_secret: str = ""
    shopify_app_url: str = ""
    scopes: str = ""
    redis_url: str | None = None  # None: an embedded Redis in the instance folder
    database_url: str | None = None  # None: SQLite in the instance folder
    port: int = 8000
    secret_keys: tuple[str, ...] = ()
    plugins_file: Path = Path("plugins.toml")
    queue_name: str = "relay"
    log_level: str = "INFO"
    webhook_max_bytes: int = 5 * MiB
    # A pixel beacon is one event; a checkout with many lines stays far below.
    pixel_max_bytes: int = 64 * 1024
    # How long a visitor's profile (ids, click id, IP, user agent) is kept.
    visitor_profile_days: int = 30
    # A webhook about a browser action whose visitor is not known yet waits
    # this long for the pixel's beacons before it is sent.
    browser_wait_seconds: int = 60
    # Longer than Shopify's 4-hour retry window, so a redelivery is recognised.
    webhook_dedupe_seconds: int = 24 * HOUR
    # How long a webhook body may wait in Redis for its job.
    inbox_seconds: int = 7 * DAY
    # How long a normalized event (personal data included) waits for delivery.
    event_seconds: int = 7 * DAY
    # RQ keeps finished jobs this long; failed ones (ids only) longer, to debug.
    job_result_seconds: int = 10 * 60
    job_failure_seconds: int = 7 * DAY
    job_timeout_seconds: int = 120
    # Deliveries wait this long for others to share their request; a full
    # batch goes at once.
    batch_wait_seconds: int = 2
    # At most this many events per request; 0 means the platform's maximum.
    batch_size: int = 0
    # A batch the platform or network keeps failing is retried this long.
    retry_window_seconds: int = DAY
    # How often a worker looks for jobs a killed worker abandoned. RQ sees a
    # job as abandoned 90 s after its worker's last heartbeat.
    maintenance_seconds: int = 60
    # One Admin API version for GraphQL calls and `shopify.app.toml`.
    shopify_api_version: str = "2026-07"
    # Retention: how long each kind of stored data lives (docs/privacy.md).
    delivery_log_days: int = 90
    privacy_report_days: int = 30
    privacy_request_days: int = 3 * 365
    # Shopify sends shop/redact 48 hours after an uninstall; if it never
    # comes, an uninstalled shop's data is deleted after this long anyway.
    uninstalled_shop_days: int = 30
    # Development only: the admin pages outside Shopify (RELAY_DEV_ADMIN).
    dev_admin: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        keys = tuple(
            k.strip() for k in env.get("RELAY_SECRET_KEY", "").split(",") if k.strip()
        )
        dev_admin = _dev_admin(env)

        config = cls(
            instance_path=Path(env.get("RELAY_INSTANCE_PATH", "instance")).resolve(),
            shopify_api_key=env.get("SHOPIFY_API_KEY", ""),
            shopify_api_secret=env.get("SHOPIFY_API_SECRET", ""),
            shopify_previous_api_secret=env.get(
                "RELAY_PREVIOUS_SHOPIFY_API_SECRET", ""
            ),
            shopify_app_url=env.get("SHOPIFY_APP_URL", ""),
            scopes=env.get("SCOPES", ""),
            redis_url=env.get("REDIS_URL") or None,
            database_url=env.get("DATABASE_URL") or None,
            port=_int(env, "PORT", 8000),
            secret_keys=keys,
            plugins_file=Path(env.get("RELAY_PLUGINS_FILE", "plugins.toml")),
            queue_name=env.get("RELAY_QUEUE", "relay"),
            log_level=env.get("RELAY_LOG_LEVEL", "INFO").upper(),
            webhook_max_bytes=_int(env, "RELAY_WEBHOOK_MAX_BYTES", 5 * MiB),
            pixel_max_bytes=_int(env, "RELAY_PIXEL_MAX_BYTES", 64 * 1024),
            visitor_profile_days=_days(env, "RELAY_VISITOR_PROFILE_DAYS", 30, least=1),
            browser_wait_seconds=_seconds(env, "RELAY_BROWSER_WAIT_SECONDS", 60),
            webhook_dedupe_seconds=_int(env, "RELAY_WEBHOOK_DEDUPE_SECONDS", 24 * HOUR),
            inbox_seconds=_int(env, "RELAY_INBOX_SECONDS", 7 * DAY),
            event_seconds=_int(env, "RELAY_EVENT_SECONDS", 7 * DAY),
            job_result_seconds=_int(env, "RELAY_JOB_RESULT_SECONDS", 10 * 60),
            job_failure_seconds=_int(env, "RELAY_JOB_FAILURE_SECONDS", 7 * DAY),
            job_timeout_seconds=_int(env, "RELAY_JOB_TIMEOUT_SECONDS", 120),
            batch_wait_seconds=_seconds(env, "RELAY_BATCH_WAIT_SECONDS", 2),
            batch_size=_int(env, "RELAY_BATCH_SIZE", 0),
            retry_window_seconds=_retry_window(env),
            maintenance_seconds=_int(env, "RELAY_MAINTENANCE_SECONDS", 60, least=1),
            shopify_api_version=env.get("RELAY_SHOPIFY_API_VERSION", "2026-07"),
            # The delivery log must outlive a delivery's wait (7 days at most).
            delivery_log_days=_days(env, "RELAY_DELIVERY_LOG_DAYS", 90, least=8),
            privacy_report_days=_days(env, "RELAY_PRIVACY_REPORT_DAYS", 30, least=1),
            privacy_request_days=_days(env, "RELAY_PRIVACY_REQUEST_DAYS", 3 * 365),
            uninstalled_shop_days=_days(env, "RELAY_UNINSTALLED_SHOP_DAYS", 30),
            dev_admin=dev_admin,
        )
        if dev_admin:
            # Session tokens are minted locally, signed with a secret
            # anyone can read here: no real shop's secret is ever in reach.
            config = config.with_changes(
                shopify_api_key=DEV_API_KEY, shopify_api_secret=DEV_API_SECRET
            )
        return config

    def with_changes(self, **changes: object) -> Config:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def webhook_secrets(self) -> tuple[str, ...]:
        return tuple(
            s for s in (self.shopify_api_secret, self.shopify_previous_api_secret) if s
        )

    @property
    def app_url(self) -> str:
        """SHOPIFY_APP_URL without a trailing slash, for building links."""
        return self.shopify_app_url.rstrip("/")

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL in SQLAlchemy's form, psycopg 3 for PostgreSQL."""
        if self.database_url is None:
            return f"sqlite:///{self.instance_path / 'relay.db'}"
        url = self.database_url
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url


def _int(env: Mapping[str, str], name: str, default: int, least: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < least:
        raise ConfigError(f"{name} must be at least {least}, got {value}")
    return value


# Pinterest wants events within minutes; an hour is already long.
MAX_WAIT_SECONDS = 3600


def _seconds(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value > MAX_WAIT_SECONDS:
        raise ConfigError(
            f"{name} must be at most {MAX_WAIT_SECONDS} seconds, got {value}"
        )
    return value


# Platforms refuse events older than a week (Pinterest: 7 days); retrying
# longer could only end in that refusal.
MAX_RETRY_WINDOW_SECONDS = 7 * DAY


def _retry_window(env: Mapping[str, str]) -> int:
    value = _int(env, "RELAY_RETRY_WINDOW_SECONDS", DAY, least=60)
    if value > MAX_RETRY_WINDOW_SECONDS:
        raise ConfigError(
            "RELAY_RETRY_WINDOW_SECONDS must be at most "
            f"{MAX_RETRY_WINDOW_SECONDS} (7 days, Pinterest's event age limit), "
            f"got {value}"
        )
    return value


# A century: longer is "forever", which datetime arithmetic cannot reach.
MAX_DAYS = 36500


def _days(env: Mapping[str, str], name: str, default: int, least: int = 0) -> int:
    value = _int(env, name, default)
    if not least <= value <= MAX_DAYS:
        raise ConfigError(
            f"{name} must be between {least} and {MAX_DAYS} days, got {value}"
        )
    return value


DEV_API_KEY = "relay-dev-admin"
# 32 bytes or more, as PyJWT wants for HS256.
DEV_API_SECRET = "relay-dev-admin-secret-that-is-not-secret"
# Any of these means a deployment talking to Shopify or keeping real data.
PRODUCTION_MARKERS = ("SHOPIFY_API_SECRET", "DATABASE_URL")


def _dev_admin(env: Mapping[str, str]) -> bool:
    """RELAY_DEV_ADMIN=1, refused where it could expose a real shop.

    The development pages hand a session token for any shop to whoever asks,
    so they run only with SQLite in the instance folder and no app secret.
    """
    raw = env.get("RELAY_DEV_ADMIN", "")
    if raw in ("", "0"):
        return False
    if raw != "1":
        raise ConfigError(f"RELAY_DEV_ADMIN must be 1 or 0, got {raw!r}")
    present = [name for name in PRODUCTION_MARKERS if env.get(name)]
    if present:
        raise ConfigError(
            "RELAY_DEV_ADMIN=1 is for development only and is refused with "
            f"{', '.join(present)} set"
        )
    return True
