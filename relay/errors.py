"""Every error Relay raises on purpose, under one root.

    RelayError
    ├── ConfigError              the deployment is set up wrong; fix and restart
    ├── BadInput                 a request or file Relay cannot use (has an HTTP status)
    │   └── BadWebhook
    ├── PlatformAnswer           an ad platform said no, or nothing (status, message)
    │   ├── DeliveryError        a destination did not take an event
    │   │   ├── RetryableDelivery    try again later: network, timeout, 429, 5xx
    │   │   └── PermanentDelivery    sending the same thing again cannot work
    │   │       └── CredentialsRefused   the account's token or access was refused
    │   └── PlatformError        its own API (OAuth, accounts, tags)
    │       ├── PlatformUnavailable  try again later: network, timeout, 429, 5xx
    │       └── PlatformRefused      the merchant must act: code, token, access
    └── ShopifyError             Shopify's Admin API did not do what was asked
        ├── ShopifyUnavailable   try again later: network, 5xx, rate limit
        └── ShopifyRefused       the shop must act: uninstalled, token revoked,
                                 scope missing, or a mutation's user errors

Destination plugins raise the delivery errors; the core decides what a retry
means. Anything else that escapes is a bug and is logged with its traceback.
"""

from __future__ import annotations


class RelayError(Exception):
    """Root of every error Relay raises on purpose."""


class ConfigError(RelayError):
    """The deployment's configuration is missing or contradictory."""


class BadInput(RelayError):
    """Input Relay refuses; `status` is the HTTP status that says why."""

    status: int = 400

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status


class BadWebhook(BadInput):
    """A webhook delivery that fails verification or cannot be parsed."""


class PlatformAnswer(RelayError):
    """An ad platform did not do what was asked.

    `http_status` is the platform's answer when there was one; `detail` is the
    platform's own message, safe to log (it never carries personal data that
    Relay sent, only what the platform says about it).
    """

    def __init__(
        self, reason: str, *, http_status: int | None = None, detail: str = ""
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.http_status = http_status
        self.detail = detail


class DeliveryError(PlatformAnswer):
    """A destination did not accept a batch."""


class RetryableDelivery(DeliveryError):
    """The platform or the network failed; the same batch may succeed later."""

    def __init__(
        self,
        reason: str,
        *,
        http_status: int | None = None,
        detail: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason, http_status=http_status, detail=detail)
        self.retry_after = retry_after


class PermanentDelivery(DeliveryError):
    """The platform refused the batch; resending it unchanged cannot help."""


class CredentialsRefused(PermanentDelivery):
    """The platform refused the destination's credentials (401, 403).

    The core pauses the destination and holds its events until the merchant
    fixes the settings; nothing is dropped.
    """


class PlatformError(PlatformAnswer):
    """A call to a destination platform's API, other than sending, failed."""


class PlatformUnavailable(PlatformError):
    """The platform or the network failed; the same call may work later."""


class PlatformRefused(PlatformError):
    """The platform refused: a bad code, a revoked token, missing access."""


class ShopifyError(RelayError):
    """A call to Shopify as the app (token or Admin GraphQL) did not succeed.

    `code` is the `shopifyapp` package's own log code, or Relay's for what the
    package does not cover (a mutation's user errors).
    """

    def __init__(self, reason: str, *, code: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class ShopifyUnavailable(ShopifyError):
    """Shopify or the network failed, or asked Relay to slow down."""

    def __init__(
        self, reason: str, *, code: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(reason, code=code)
        self.retry_after = retry_after


class ShopifyRefused(ShopifyError):
    """Asking again will not help until the merchant or the code changes."""
