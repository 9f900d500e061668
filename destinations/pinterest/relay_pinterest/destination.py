"""The Pinterest destination: settings, formatting and sending."""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import certifi
import httpx

from relay.destinations import (
    Destination,
    DestinationConfig,
    EventResult,
    FormattedEvent,
    Outcome,
    Setting,
    SettingKind,
    Skip,
    platform_text,
)
from relay.errors import CredentialsRefused, PermanentDelivery, RetryableDelivery
from relay.events import Event
from relay_pinterest.api import PinterestOAuth
from relay_pinterest.format import EVENT_NAMES, format_event

log = logging.getLogger(__name__)

API_BASE = "https://api.pinterest.com"
TIMEOUT = httpx.Timeout(15.0, connect=5.0)
# Pinterest's names of the events Relay makes.
SENDABLE = tuple(dict.fromkeys(EVENT_NAMES.values()))
_ONE_OF = "|".join(SENDABLE)


class PinterestDestination(Destination):
    name = "pinterest"
    title = "Pinterest"
    batch_limit = 1000  # Pinterest's maximum per request
    # Pinterest refuses events older than seven days.
    max_event_age = timedelta(days=7)
    settings = (
        Setting(
            "ad_account_id",
            "Ad account ID",
            required=True,
            pattern=r"[0-9]{1,18}",
            help="digits only, as shown in Pinterest Ads Manager",
        ),
        Setting(
            "conversion_token",
            "Conversion access token",
            kind=SettingKind.SECRET,
            required=True,
            # Sent in an HTTP header: printable ASCII only.
            pattern=r"[!-~]{1,2000}",
            help="Ads Manager → Conversions → Conversion access token; "
            "letters, digits and punctuation, no spaces",
        ),
        Setting(
            "tag_id",
            "Pinterest Tag ID",
            pattern=r"[0-9]{1,18}",
            help="digits only; the tag a browser Pinterest Tag on the store uses, "
            "compared by the conflict check",
        ),
        Setting(
            "events",
            "Events to send",
            default=",".join(SENDABLE),
            pattern=f"({_ONE_OF})(,({_ONE_OF}))*",
            choices=SENDABLE,
            multiple=True,
            help="Pinterest event names, comma-separated; leave out any a "
            "browser Pinterest Tag already sends with other event ids "
            "(docs/pinterest.md)",
        ),
        Setting(
            "value",
            "Purchase value",
            default="subtotal",
            pattern="subtotal|total",
            choices=("subtotal", "total"),
            help="subtotal: after discounts, without shipping and tax; "
            "total: what the buyer paid",
        ),
        Setting(
            "currency",
            "Purchase currency",
            default="buyer",
            pattern="buyer|shop",
            choices=("buyer", "shop"),
            help="the currency the buyer paid in, or the shop's own",
        ),
        Setting(
            "api_base",
            "API base URL",
            kind=SettingKind.URL,
            default=API_BASE,
            help="change only to send through a proxy",
            operator=True,
        ),
    )

    def __init__(self, transport: httpx.BaseTransport | None = None) -> None:
        self._transport = transport
        self.oauth = PinterestOAuth(transport)
        self._client: httpx.Client | None = None
        self._client_pid = 0
        # Loading the CA bundle costs tens of milliseconds; done once, the
        # context is inherited by every forked work horse.
        self._ssl_context = ssl.create_default_context(cafile=certifi.where())

    def format_event(self, event: Event, config: DestinationConfig) -> FormattedEvent:
        # The shop's value policy: which of the order's values is sent.
        event = event.valued(
            config.get("value", "subtotal"), config.get("currency", "buyer")
        )
        formatted = format_event(event)
        wanted = str(config.get("events", ",".join(SENDABLE))).split(",")
        if formatted.payload["event_name"] not in wanted:
            raise Skip("event type turned off")
        return formatted

    def request_body(self, batch: Sequence[FormattedEvent]) -> dict[str, Any]:
        return {"data": [formatted.payload for formatted in batch]}

    def send_batch(
        self, batch: Sequence[FormattedEvent], config: DestinationConfig
    ) -> list[EventResult]:
        account = config.get("ad_account_id")
        base = str(config.get("api_base", API_BASE)).rstrip("/")
        url = f"{base}/v5/ad_accounts/{account}/events"
        params = {"test": "true"} if config.test_mode else {}
        headers = {"Authorization": f"Bearer {config.get('conversion_token')}"}

        started = time.monotonic()
        try:
            response = self._http().post(
                url, params=params, headers=headers, json=self.request_body(batch)
            )
        except UnicodeEncodeError:
            # A token saved before tokens were checked, or by hand: held
            # until the merchant pastes it again, rather than retried.
            raise CredentialsRefused(
                "Pinterest conversion token cannot be sent",
                detail="it holds characters an HTTP header cannot carry; "
                "paste the token again",
            ) from None
        except httpx.TransportError as error:
            log.warning(
                "pinterest POST ad account %s: %d events, no answer: %s",
                account,
                len(batch),
                type(error).__name__,
            )
            # The host says which API base (a proxy? a typo?) was tried.
            raise RetryableDelivery(
                f"no answer from Pinterest at {httpx.URL(url).host} "
                f"({type(error).__name__})"
            ) from None

        log.info(
            "pinterest POST ad account %s: %d events%s → HTTP %d in %.0f ms",
            account,
            len(batch),
            " (test)" if config.test_mode else "",
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return _results(batch, response)

    def _http(self) -> httpx.Client:
        # One client per process: a forked worker must not share its parent's
        # connection pool.
        if self._client is None or self._client_pid != os.getpid():
            self._client = httpx.Client(
                timeout=TIMEOUT, transport=self._transport, verify=self._ssl_context
            )
            self._client_pid = os.getpid()
        return self._client


def _results(
    batch: Sequence[FormattedEvent], response: httpx.Response
) -> list[EventResult]:
    status = response.status_code
    body = _json(response)

    if status == 200:
        return _per_event(batch, body.get("events"), status)
    if status == 422 and isinstance(body.get("details"), dict):
        # Some events were refused; details has the 200 answer's shape.
        return _per_event(batch, body["details"].get("events"), status)

    message = _message(body, response)
    if status == 429:
        raise RetryableDelivery(
            "Pinterest rate limit",
            http_status=status,
            detail=message,
            retry_after=_retry_after(response),
        )
    if status >= 500:
        raise RetryableDelivery(
            "Pinterest server error", http_status=status, detail=message
        )
    if status in (401, 403):
        raise CredentialsRefused(
            "Pinterest refused the credentials", http_status=status, detail=message
        )
    raise PermanentDelivery(
        "Pinterest refused the request", http_status=status, detail=message
    )


def _per_event(
    batch: Sequence[FormattedEvent], events: Any, status: int
) -> list[EventResult]:
    if not isinstance(events, list) or len(events) != len(batch):
        raise RetryableDelivery(
            "Pinterest's answer does not list every event", http_status=status
        )
    results = []
    for formatted, answer in zip(batch, events, strict=True):
        answer = answer if isinstance(answer, dict) else {}
        processed = answer.get("status") == "processed"
        results.append(
            EventResult(
                event_id=formatted.event_id,
                outcome=Outcome.SENT if processed else Outcome.FAILED,
                http_status=status,
                error=_quoted(answer.get("error_message")),
                warning=_quoted(answer.get("warning_message")),
            )
        )
    return results


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(body: dict[str, Any], response: httpx.Response) -> str:
    if "message" in body:
        return platform_text(f"{body.get('code')}: {body['message']}")
    return platform_text(response.text, limit=200)


def _quoted(message: Any) -> str | None:
    return platform_text(message) if message else None


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None
