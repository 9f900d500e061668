"""Checking whether a native integration also sends a shop's conversions.

If Shopify's own Pinterest app shares the same purchases, Pinterest counts
them twice, or a browser Tag's events fail to deduplicate against Relay's.
Each destination plugin looks for this through the `relay_check_conflicts`
hook, with what `CheckContext` gives it: the public storefront, the Admin
API with Relay's scopes, and the platform's API through the shop's OAuth
connection. It answers with `Finding`s: a verdict, the evidence it rests on,
and the steps the merchant must take.

Checks run when a destination is connected or its settings change, daily
for every installed shop (`relay cron`), and on demand (`relay
check-conflicts`). The last result is kept per shop and destination. While a
`conflict` stands unacknowledged, the destination's conflict policy decides
whether purchases are still sent: `send` (the default, each flagged in the
delivery log) or `hold`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import httpx
from rq import Retry
from sqlalchemy import select
from sqlalchemy.orm import Session

from relay import connections
from relay.destinations import DestinationConfig
from relay.errors import ConfigError, ShopifyError
from relay.models import ConflictCheck, Shop
from relay.runtime import Runtime
from relay.shopify import tokens
from relay.shops import (
    active_destinations,
    destination_config,
    find_shop,
    setting_row,
)

log = logging.getLogger(__name__)

CHECK = "relay.jobs.check_conflicts"
POLICIES = ("send", "hold")
STOREFRONT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# A storefront page larger than this, or slower, is read no further.
MAX_PAGE_BYTES = 3 * 1024 * 1024
STOREFRONT_SECONDS = 20


class Verdict(StrEnum):
    CONFLICT = "conflict"  # the same conversions are sent twice
    DEDUP_RISK = "dedup risk"  # a second sender whose ids may not match Relay's
    UNKNOWN = "unknown"  # could not look, or the platform is silent
    OK = "ok"  # looked, and found nothing


SEVERITY = {
    Verdict.OK: 0,
    Verdict.UNKNOWN: 1,
    Verdict.DEDUP_RISK: 2,
    Verdict.CONFLICT: 3,
}


@dataclass(frozen=True)
class Finding:
    """What one signal showed, in words a merchant can act on."""

    signal: str  # which signal, e.g. "storefront app pixels"
    verdict: Verdict
    summary: str  # one sentence
    evidence: str  # what was seen, or why Relay could not look
    steps: tuple[str, ...] = ()  # what to do, with the admin path to click

    @property
    def key(self) -> str:
        """Names this finding for an acknowledgement; new evidence, new key."""
        digest = hashlib.sha256(f"{self.verdict}|{self.evidence}".encode())
        slug = re.sub(r"[^a-z0-9]+", "-", self.signal.lower()).strip("-")
        return f"{slug}:{digest.hexdigest()[:12]}"

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "verdict": self.verdict.value,
            "steps": list(self.steps),
            "key": self.key,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(
            signal=data["signal"],
            verdict=Verdict(data["verdict"]),
            summary=data["summary"],
            evidence=data["evidence"],
            steps=tuple(data.get("steps") or ()),
        )


def overall(findings: list[Finding]) -> Verdict:
    """The most severe verdict; `unknown` when nothing could be checked."""
    if not findings:
        return Verdict.UNKNOWN
    return max((f.verdict for f in findings), key=SEVERITY.__getitem__)


class StorefrontUnavailable(Exception):
    """The storefront could not be read; `reason` says why, for the merchant."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class StorefrontPage:
    url: str
    status: int
    html: str

    @property
    def password_protected(self) -> bool:
        """Shopify answers a locked store with its password page."""
        return (
            self.url.rstrip("/").endswith("/password")
            or 'name="form_type" value="storefront_password"' in self.html
        )


class PrivateAddress(httpx.ConnectError):
    """A storefront URL whose host is not on the public internet."""


class PublicInternetOnly(httpx.BaseTransport):
    """HTTPS to public addresses only.

    A storefront's address, and every redirect from it, is the merchant's to
    choose: without this, a custom domain pointed at 127.0.0.1 or a cloud
    metadata address would have Relay fetch inside its own network. (A name
    that resolves differently between this check and the connection is not
    caught; the page read is small and only its Pinterest tags are kept.)
    """

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if request.url.scheme != "https":
            raise PrivateAddress(f"{host}: only https is followed", request=request)
        try:
            found = socket.getaddrinfo(host, request.url.port or 443)
        except OSError:
            raise httpx.ConnectError(f"{host} does not resolve", request=request)
        addresses = {ipaddress.ip_address(info[4][0]) for info in found}
        if not addresses or not all(address.is_global for address in addresses):
            raise PrivateAddress(f"{host} is not a public address", request=request)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class Storefront:
    """The shop's public storefront, as any visitor fetches it."""

    def __init__(self, shop: str, transport: httpx.BaseTransport | None = None):
        self.shop = shop
        # Tests route storefront hosts to a local fake instead.
        self._transport = transport or PublicInternetOnly()

    def page(self, path: str = "/") -> StorefrontPage:
        url = f"https://{self.shop}{path}"
        deadline = time.monotonic() + STOREFRONT_SECONDS
        try:
            with (
                httpx.Client(
                    transport=self._transport,
                    timeout=STOREFRONT_TIMEOUT,
                    follow_redirects=True,
                    max_redirects=5,
                    headers={
                        "User-Agent": "Relay conflict check",
                        # The size limit is on what arrives: no compression
                        # that could inflate past it in one chunk.
                        "Accept-Encoding": "identity",
                    },
                ) as client,
                client.stream("GET", url) as response,
            ):
                encoding = response.headers.get("content-encoding", "identity")
                if encoding.strip().lower() not in ("", "identity"):
                    # Asked for none: a small compressed answer could inflate
                    # to gigabytes before any size check.
                    raise StorefrontUnavailable(
                        f"the storefront sent a {encoding}-compressed page "
                        "although asked not to"
                    )
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    # A page trickling in forever is read no further.
                    if len(body) > MAX_PAGE_BYTES or time.monotonic() > deadline:
                        break
                html = _decode(bytes(body), response.encoding)
                return StorefrontPage(str(response.url), response.status_code, html)
        except PrivateAddress:
            raise StorefrontUnavailable(
                "the storefront leads to an address outside the public internet, "
                "which Relay does not fetch"
            ) from None
        except httpx.TimeoutException:
            raise StorefrontUnavailable(f"{url} did not answer in time") from None
        except httpx.HTTPError as error:
            raise StorefrontUnavailable(
                f"{url} could not be reached ({type(error).__name__})"
            ) from None


def _decode(body: bytes, charset: str | None) -> str:
    """The page as text; a charset that is no text encoding reads as UTF-8."""
    try:
        return body.decode(charset or "utf-8", "replace")
    except (LookupError, UnicodeError, TypeError):
        return body.decode("utf-8", "replace")


class AdminUnavailable(Exception):
    """The Admin API cannot be asked; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Admin:
    """Admin GraphQL for one shop, with the scopes Relay was granted."""

    def __init__(self, runtime: Runtime, shop: str) -> None:
        self._runtime = runtime
        self.shop = shop

    def query(
        self, query: str, variables: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """`(data, errors)`; errors such as ACCESS_DENIED are returned, not
        raised. Raises AdminUnavailable when Shopify cannot be asked at all."""
        try:
            token = tokens.access_token(self._runtime, self.shop)
            return self._runtime.shopify.graphql_answer(
                self.shop, token, query, variables
            )
        except ShopifyError as error:
            raise AdminUnavailable(error.reason) from None
        except ConfigError as error:  # no API key or secret in this process
            raise AdminUnavailable(str(error)) from None


@dataclass
class CheckContext:
    """What a plugin's conflict check may look at, for one shop and destination."""

    shop: str
    destination: str
    settings: DestinationConfig | None  # None: not set up, or disabled
    storefront: Storefront
    admin: Admin
    # The platform's OAuth access token: None if the shop never connected.
    # Raises relay.errors.PlatformError when it cannot be had now.
    platform_token: Callable[[], str | None]
    now: datetime


@dataclass(frozen=True)
class CheckResult:
    shop: str
    destination: str
    checked_at: datetime
    findings: tuple[Finding, ...]
    acknowledged: frozenset[str] = frozenset()

    @property
    def verdict(self) -> Verdict:
        return overall(list(self.findings))

    def standing_conflicts(self) -> list[Finding]:
        return [
            f
            for f in self.findings
            if f.verdict is Verdict.CONFLICT and f.key not in self.acknowledged
        ]


def check(runtime: Runtime, shop: str, destination: str) -> CheckResult:
    """Run every plugin's check for `destination` at `shop` and keep the result."""
    with runtime.db.session() as session:
        shop_row = find_shop(session, shop)
        if shop_row is None:
            raise ConfigError(f"no shop {shop!r} (see `relay shops list`)")
        try:
            settings = destination_config(
                session, runtime.keyring, runtime.plugins, shop_row, destination
            )
        except ConfigError:
            settings = None

    def platform_token() -> str | None:
        if runtime.plugins.destination(destination).oauth is None:
            return None
        return connections.access_token(runtime, shop, destination)

    context = CheckContext(
        shop=shop,
        destination=destination,
        settings=settings,
        storefront=Storefront(shop, runtime.shopify_transport),
        admin=Admin(runtime, shop),
        platform_token=platform_token,
        now=runtime.clock.now(),
    )
    findings = _ask_plugins(runtime, context)
    result = _save(runtime, shop, destination, findings)
    log.info(
        "shop %s: %s conflict check: %s (%s)",
        shop,
        destination,
        result.verdict,
        ", ".join(f"{f.signal}: {f.verdict}" for f in findings) or "no plugin checks",
    )
    if result.standing_conflicts():
        log.warning(
            "shop %s: %s: %d unacknowledged conflict(s) with a native integration; "
            "see `relay check-conflicts --shop %s`",
            shop,
            destination,
            len(result.standing_conflicts()),
            shop,
        )
    return result


def _ask_plugins(runtime: Runtime, context: CheckContext) -> tuple[Finding, ...]:
    """Every plugin's findings; a plugin that fails says `unknown`, so the
    last result is replaced, not left standing (a stale conflict would keep
    holding purchases)."""
    try:
        answers = runtime.plugins.manager.hook.relay_check_conflicts(context=context)
    except Exception as error:
        log.exception(
            "shop %s: the %s conflict check failed", context.shop, context.destination
        )
        return (
            Finding(
                "conflict check",
                Verdict.UNKNOWN,
                "Relay could not check this.",
                f"the check failed ({type(error).__name__}); Relay's operators "
                "have the details in its log",
            ),
        )
    return tuple(
        f for answer in answers if answer for f in answer if isinstance(f, Finding)
    )


def _save(
    runtime: Runtime, shop: str, destination: str, findings: tuple[Finding, ...]
) -> CheckResult:
    now = runtime.clock.now()
    with runtime.db.session() as session:
        shop_row = find_shop(session, shop)
        assert shop_row is not None  # checked by the caller, same job
        row = _row(session, shop_row, destination)
        if row is None:
            row = ConflictCheck(
                shop_id=shop_row.id, destination=destination, acknowledged=[]
            )
            session.add(row)
        row.checked_at = now
        row.findings = [f.to_dict() for f in findings]
        # An acknowledgement holds only while its finding does.
        current = {f.key for f in findings}
        row.acknowledged = [k for k in row.acknowledged or [] if k in current]
        return CheckResult(
            shop, destination, now, findings, frozenset(row.acknowledged)
        )


def last_result(session: Session, shop: Shop, destination: str) -> CheckResult | None:
    row = _row(session, shop, destination)
    if row is None:
        return None
    return CheckResult(
        shop.domain,
        destination,
        row.checked_at,
        tuple(Finding.from_dict(f) for f in row.findings or []),
        frozenset(row.acknowledged or []),
    )


def acknowledge(runtime: Runtime, shop: str, destination: str, key: str) -> Finding:
    """Record that the merchant saw finding `key`; raises ConfigError if unknown."""
    with runtime.db.session() as session:
        shop_row = find_shop(session, shop)
        if shop_row is None:
            raise ConfigError(f"no shop {shop!r} (see `relay shops list`)")
        row = _row(session, shop_row, destination)
        findings = [Finding.from_dict(f) for f in (row.findings if row else [])]
        found = next((f for f in findings if f.key == key), None)
        if row is None or found is None:
            raise ConfigError(
                f"no finding {key!r} in {shop}'s last {destination} check "
                "(see `relay check-conflicts`)"
            )
        if found.verdict not in (Verdict.CONFLICT, Verdict.DEDUP_RISK):
            raise ConfigError(
                f"finding {key!r} is {found.verdict}: only a conflict or a dedup "
                "risk is acknowledged, once dealt with"
            )
        row.acknowledged = sorted({*(row.acknowledged or []), key})
    log.info("shop %s: %s finding %s acknowledged", shop, destination, key)
    return found


def queue_check(runtime: Runtime, shop: str, destination: str) -> None:
    """Check soon, in a worker: after connecting, or a settings change."""
    runtime.queue.enqueue_call(
        CHECK,
        args=(shop, destination),
        # RQ job ids take letters, digits, dashes and underscores only.
        job_id=f"check-conflicts-{destination}-{shop.replace('.', '_')}",
        description="check conflicts with native integrations",
        timeout=runtime.config.job_timeout_seconds,
        result_ttl=0,
        failure_ttl=runtime.config.job_failure_seconds,
        retry=Retry(max=2, interval=[60, 600]),
    )


def check_every_shop(runtime: Runtime) -> int:
    """Queue a check for every installed shop's active destinations (daily)."""
    queued = 0
    with runtime.db.session() as session:
        shops = session.scalars(select(Shop).where(Shop.installed.is_(True))).all()
        pairs = [(s.domain, d) for s in shops for d in active_destinations(session, s)]
    for shop, destination in pairs:
        if destination in runtime.plugins.destinations:
            queue_check(runtime, shop, destination)
            queued += 1
    log.info("conflict checks queued for %d shop destination(s)", queued)
    return queued


def held_by_conflict(session: Session, shop: Shop, destination: str) -> str | None:
    """Why a purchase is held back by the destination's conflict policy, or None.

    Also None when the policy is `send`; see `flag` for that case.
    """
    setting = setting_row(session, shop, destination)
    result = last_result(session, shop, destination)
    if setting is None or result is None or not result.standing_conflicts():
        return None
    if setting.conflict_policy == "hold":
        return "conflict: held back while a native integration also sends purchases"
    return None


def flag(session: Session, shop: Shop, destination: str) -> str | None:
    """The warning a purchase sent under a standing conflict carries, or None."""
    result = last_result(session, shop, destination)
    if result is None or not result.standing_conflicts():
        return None
    signals = ", ".join(f.signal for f in result.standing_conflicts())
    return f"sent while a native integration may send it too ({signals})"


def describe(result: CheckResult) -> list[str]:
    """The result as lines for a terminal, control characters removed
    (evidence quotes what a storefront or theme contains)."""
    return [_printable(line) for line in _lines(result)]


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def _lines(result: CheckResult) -> list[str]:
    lines = [
        f"{result.destination} for {result.shop}: {result.verdict} "
        f"(checked {result.checked_at:%Y-%m-%d %H:%M} UTC)"
    ]
    for finding in result.findings:
        acknowledged = " (acknowledged)" if finding.key in result.acknowledged else ""
        lines.append(f"- {finding.signal}: {finding.verdict}{acknowledged}")
        lines.append(f"  {finding.summary}")
        lines.append(f"  Seen: {finding.evidence}")
        lines += [f"  {n}. {step}" for n, step in enumerate(finding.steps, 1)]
        lines.append(f"  Finding id: {finding.key}")
    return lines


def _row(session: Session, shop: Shop, destination: str) -> ConflictCheck | None:
    query = select(ConflictCheck).where(
        ConflictCheck.shop_id == shop.id, ConflictCheck.destination == destination
    )
    return session.scalars(query).one_or_none()
