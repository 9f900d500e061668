"""What a destination is, for the core and for plugin authors.

A destination plugin registers `Destination` objects through the
`relay_register_destinations` hook (see `relay.hookspecs`). The core calls
their methods; a destination never touches Redis, the database or the queue.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from relay.events import Event


class SettingKind(StrEnum):
    TEXT = "text"
    SECRET = "secret"  # encrypted at rest, never shown again once saved
    BOOLEAN = "boolean"
    URL = "url"


@dataclass(frozen=True)
class Setting:
    """One field of a destination's settings form.

    `pattern` (a regular expression the whole value must match) and
    `help` give the admin form and the CLI what they need to say what is
    wrong with a value. `choices`, when given, are the values the setting
    may take, which the admin form offers as a list to pick one from; with
    `multiple`, a comma-separated selection of them, offered as boxes to
    tick. An `operator` setting is Relay's operator's to set (`relay
    destinations set`, plugins.toml), never a merchant's: the admin form
    neither shows nor takes it. Where requests go is one, as a merchant
    able to set it could make Relay's servers call any address.
    """

    name: str
    label: str
    kind: SettingKind = SettingKind.TEXT
    required: bool = False
    default: Any = None
    pattern: str | None = None
    help: str = ""
    choices: tuple[str, ...] = ()
    multiple: bool = False
    operator: bool = False


@dataclass(frozen=True)
class FormattedEvent:
    """One event in the platform's own format.

    `payload` is sent. `logged_payload` is what the delivery log keeps: the
    same, with unhashed identifiers (IP, user agent, click ids) masked.
    `match_keys` names the identifiers present, never their values.
    """

    event_id: str
    payload: dict[str, Any]
    logged_payload: dict[str, Any]
    match_keys: tuple[str, ...] = ()


class Skip(Exception):
    """Raised by `format_event` for an event this destination does not send.

    `reason` is a short, stable phrase ("unsupported event", "no match keys")
    that the delivery log and the merchant's counts group by.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# What a platform may quote back of what it was sent, in clear: an email
# or phone digest is a digest, but an address typed wrong, or the client IP
# Pinterest takes unhashed, would be in the text.
_QUOTED_PERSONAL = re.compile(
    r"[^\s@\"'<>(),;:]+@[^\s@\"'<>(),;:]+"  # an email address
    r"|\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b"  # an IPv4 address
    r"|\b(?:[0-9A-Fa-f]{1,4}:){3,7}[0-9A-Fa-f]{1,4}\b"  # an IPv6 address
    r"|[0-9A-Fa-f:]*::[0-9A-Fa-f:]*[0-9A-Fa-f]"  # a shortened IPv6 address
)


def platform_text(text: Any, limit: int = 300) -> str:
    """A platform's message made safe to log and keep: email and IP
    addresses it quotes are replaced, and it is cut to `limit` characters.

    Plugins pass every message of the platform's through it before putting
    it in an exception, a result or a log line.
    """
    cleaned = _QUOTED_PERSONAL.sub("[redacted]", str(text))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


class Outcome(StrEnum):
    SENT = "sent"  # the platform accepted the event
    FAILED = "failed"  # the platform rejected this event


@dataclass(frozen=True)
class EventResult:
    """What the platform said about one event of a batch."""

    event_id: str
    outcome: Outcome
    http_status: int | None = None
    error: str | None = None
    warning: str | None = None


@dataclass(frozen=True)
class DestinationConfig:
    """A shop's settings for a destination, secrets already decrypted.

    `values` holds every declared setting, defaults filled in; `test_mode`
    is the core's own switch for sending as a test (e.g. Pinterest's
    `?test=true`).
    """

    shop: str
    values: Mapping[str, Any] = field(default_factory=dict)
    test_mode: bool = False

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name)
        return default if value is None else value


@dataclass(frozen=True)
class Grant:
    """What a platform's OAuth token endpoint gave: tokens and their lives."""

    access_token: str
    refresh_token: str | None
    expires_at: datetime | None
    refresh_expires_at: datetime | None = None
    scope: str = ""


@dataclass(frozen=True)
class Account:
    """An account the connected user may send events to (an ad account)."""

    id: str
    name: str
    detail: str = ""  # e.g. the currency, for telling accounts apart


class OAuthClient(ABC):
    """How a destination connects to its platform by OAuth.

    The core signs the `state`, receives the callback, stores the grant
    encrypted, refreshes it before it expires, and saves the settings
    `settings_for` returns. Raise `relay.errors.PlatformRefused` for a
    refused code, token or request, and `PlatformUnavailable` for what may
    pass.
    """

    @abstractmethod
    def authorize_url(self, state: str, redirect_uri: str) -> str:
        """Where to send the merchant to allow Relay access."""

    @abstractmethod
    def exchange(self, code: str, redirect_uri: str) -> Grant:
        """The grant an authorization code is worth."""

    @abstractmethod
    def refresh(self, grant: Grant) -> Grant:
        """A fresh grant (some platforms rotate the refresh token too)."""

    @abstractmethod
    def accounts(self, access_token: str) -> list[Account]:
        """The accounts the merchant can choose from."""

    def tags(self, access_token: str, account_id: str) -> list[Account]:
        """The account's browser tags (pixels), for the merchant to pick one."""
        return []

    @abstractmethod
    def settings_for(
        self, access_token: str, account_id: str, tag_id: str | None = None
    ) -> dict[str, Any]:
        """The destination settings for sending to `account_id` (and `tag_id`).

        May create what sending needs, such as a dedicated conversion token.
        """


class Destination(ABC):
    """An ad platform Relay can send events to.

    Subclasses set the class attributes and implement the three methods.
    Methods may be called from several worker processes at once; keep no
    per-shop state on the object.
    """

    #: Stable identifier, used in plugins.toml, the CLI and the delivery log.
    name: str
    #: What the merchant sees.
    title: str
    #: The most events one request may carry.
    batch_limit: int = 1
    #: Events older than this are not sent (the platform would refuse them).
    max_event_age: timedelta | None = None
    #: The settings form.
    settings: tuple[Setting, ...] = ()
    #: How to connect by OAuth, for destinations that offer it.
    oauth: OAuthClient | None = None

    @abstractmethod
    def format_event(self, event: Event, config: DestinationConfig) -> FormattedEvent:
        """The event in the platform's format; raise `Skip` to not send it."""

    @abstractmethod
    def request_body(self, batch: Sequence[FormattedEvent]) -> Any:
        """The JSON body one request for `batch` carries (for `relay preview`)."""

    @abstractmethod
    def send_batch(
        self, batch: Sequence[FormattedEvent], config: DestinationConfig
    ) -> list[EventResult]:
        """Send `batch` in one request; one result per event, in order.

        Raise `relay.errors.RetryableDelivery` when the whole batch may
        succeed later (network, timeout, 429, 5xx) and
        `relay.errors.PermanentDelivery` when it cannot (bad credentials,
        a request the platform refuses as a whole).
        """
