"""Does Shopify's Pinterest app (or a pasted Tag) also send the shop's conversions?

Four signals, each optional, each reported with what it saw or why it could
not look (../docs/pinterest.md, "Conflicts", lists them for merchants):

1. The public storefront: the web pixels manager's set-up on the home page
   lists the app pixels Shopify loads (an undocumented structure, read
   leniently); Pinterest's app pixel and its tag id are looked for there,
   and Pinterest tags pasted into the page (`pintrk('load', …)`,
   `s.pinimg.com/ct/core.js`).
2. The main theme's files through Admin GraphQL (`read_themes`): a tag in
   `layout/theme.liquid`, Pinterest's app embed in `config/settings_data.json`.
3. Whether the Pinterest sales channel app is installed (`appByHandle`),
   where Shopify lets Relay see it.
4. Pinterest's API through the merchant's connection: the configured tag
   exists, when it last fired, and whether Pinterest's no-code Conversions
   API is set up for the account.

Silence is never `ok`: a signal that cannot look says `unknown`, and why.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from relay.conflicts import (
    AdminUnavailable,
    CheckContext,
    Finding,
    StorefrontUnavailable,
    Verdict,
)
from relay.errors import PlatformError, PlatformRefused
from relay.shopify.api import error_code
from relay_pinterest.api import PinterestOAuth

log = logging.getLogger(__name__)

PIXELS_MARKER = "webPixelsConfigList"
PASTED_TAG = re.compile(r"""pintrk\(\s*['"]load['"]\s*,\s*['"](\d{6,18})['"]""")
CORE_JS = "s.pinimg.com/ct/core.js"
APP_EMBED = re.compile(
    r"shopify://apps/pinterest[a-z0-9-]*/blocks/[A-Za-z0-9_/-]{0,120}"
)
TAG_KEY = re.compile(r"tag", re.IGNORECASE)
RECENTLY = timedelta(hours=24)

# Shopify admin paths, named once so every step reads the same.
PINTEREST_APP = "Settings → Apps and sales channels → Pinterest"
APP_EMBEDS = "Online Store → Themes → Customize → App embeds"
EDIT_CODE = "Online Store → Themes → ⋯ → Edit code"
RELAY_EVENTS = (
    "leave `checkout` out of Relay's Pinterest events "
    "(`relay destinations set pinterest --shop … --set events=…`)"
)
ACKNOWLEDGE = "Then acknowledge this finding in Relay."
ADMIN_STEP = (
    "If the merchant has not opened Relay in the Shopify admin since installing "
    "it, they should, so that Relay has an access token; then run the check "
    "again."
)

THEME_FILES = """
query RelayThemeFiles {
  themes(first: 1, roles: [MAIN]) {
    nodes {
      name
      files(filenames: ["layout/theme.liquid", "config/settings_data.json"]) {
        nodes { filename body { ... on OnlineStoreThemeFileBodyText { content } } }
      }
    }
  }
}
"""
PUBLICATIONS_QUERY = """
query RelayPublications {
  publications(first: 50, catalogType: APP) { nodes { catalog { title } } }
}
"""
PINTEREST_APP_QUERY = """
query RelayPinterestApp {
  appByHandle(handle: "pinterest") { title installation { id } }
}
"""


def check(context: CheckContext) -> list[Finding]:
    configured = _configured_tag(context)
    return [
        *_guarded(
            ("storefront app pixels", "storefront pasted tag"),
            lambda: _storefront(context, configured),
        ),
        *_guarded(("theme files",), lambda: [_theme(context, configured)]),
        *_guarded(("Pinterest sales channel",), lambda: [_sales_channel(context)]),
        *_guarded(("Pinterest ad account",), lambda: [_pinterest(context, configured)]),
    ]


def _guarded(
    signals: tuple[str, ...], look: Callable[[], list[Finding]]
) -> list[Finding]:
    """A signal that trips over what it was given says `unknown`, not crash:
    storefronts, themes and API answers are anyone's to shape."""
    try:
        return look()
    except (ValueError, TypeError, AttributeError, KeyError, RecursionError) as error:
        log.exception("pinterest conflict check: %s failed", ", ".join(signals))
        reason = f"Relay could not read what it was given ({type(error).__name__})"
        return [_cannot_look(signal, reason) for signal in signals]


# -- 1. the storefront ---------------------------------------------------------


def _storefront(context: CheckContext, configured: str | None) -> list[Finding]:
    signals = ("storefront app pixels", "storefront pasted tag")
    try:
        page = context.storefront.page("/")
    except StorefrontUnavailable as error:
        step = (
            "Check that the store answers from the internet, then run the check again."
        )
        return [_cannot_look(signal, error.reason, step) for signal in signals]
    if page.password_protected:
        reason = (
            "the store is password-protected, so its pages show only the password page"
        )
        return [
            _cannot_look(
                signal,
                reason,
                "Run the check again once the store is open "
                "(Online Store → Preferences → Password protection).",
            )
            for signal in signals
        ]
    if page.status >= 400:
        reason = f"the storefront answered HTTP {page.status}"
        return [_cannot_look(signal, reason) for signal in signals]
    return [_app_pixel(page.html, configured), _pasted_tag(page.html, configured)]


def _app_pixel(html: str, configured: str | None) -> Finding:
    signal = "storefront app pixels"
    pixels = web_pixels(html)
    if pixels is None:
        return _cannot_look(
            signal,
            "the home page carries no web pixels manager set-up that Relay can "
            "read (Shopify may have changed it)",
        )
    pinterest = [p for p in pixels if _is_pinterest_pixel(p)]
    if not pinterest:
        return Finding(
            signal,
            Verdict.OK,
            "Shopify's Pinterest app loads no pixel on your storefront.",
            f"{len(pixels)} pixel(s) on the home page, none of them Pinterest's",
        )
    tag = next((t for p in pinterest for t in _tag_ids(p)), None)
    evidence = "the home page loads the Pinterest app's pixel" + (
        f" for tag {tag}" if tag else ""
    )
    if tag and configured and tag != configured:
        evidence += f", while Relay is set up for tag {configured}"
    return Finding(
        signal,
        Verdict.CONFLICT,
        "Shopify's Pinterest app is also sending your conversions to Pinterest, "
        "so purchases may be counted twice.",
        evidence,
        (
            f"In Shopify admin, open {PINTEREST_APP} → Settings, and turn off "
            "its conversion tracking (the Pinterest tag and Conversions API) if "
            "it offers that.",
            "If it does not, keep one sender of purchases: uninstall the app "
            f"from {PINTEREST_APP} (this also stops its catalog sync), or "
            f"{RELAY_EVENTS}.",
            ACKNOWLEDGE,
        ),
    )


def _pasted_tag(html: str, configured: str | None) -> Finding:
    signal = "storefront pasted tag"
    tags = sorted(set(PASTED_TAG.findall(html)))
    if not tags and CORE_JS not in html:
        return Finding(
            signal,
            Verdict.OK,
            "No Pinterest Tag is pasted into your storefront's pages.",
            "the home page has no pintrk('load', …) call and no Pinterest tag script",
        )
    return _tag_finding(signal, "the home page", tags, configured)


def _tag_finding(
    signal: str, where: str, tags: list[str], configured: str | None
) -> Finding:
    shown = ", ".join(tags) or "an unreadable id"
    if configured and tags and configured not in tags:
        return Finding(
            signal,
            Verdict.DEDUP_RISK,
            "A Pinterest Tag on your store sends to another tag than Relay, so "
            "Pinterest cannot match its events with Relay's.",
            f"{where} loads Pinterest tag {shown}; Relay is set up for tag "
            f"{configured}",
            (
                "Use one tag: set Relay's tag to the one on your store "
                "(`relay destinations set pinterest --shop … --set tag_id=…`), "
                f"or remove the pasted tag ({EDIT_CODE}).",
                ACKNOWLEDGE,
            ),
        )
    return Finding(
        signal,
        Verdict.DEDUP_RISK,
        "A Pinterest Tag pasted into your store sends browser events; unless its "
        "checkout event carries the order id as event_id, Pinterest counts "
        "purchases twice.",
        f"{where} loads Pinterest tag {shown}",
        (
            f"In {EDIT_CODE}, give the tag's checkout event "
            "event_id: '{{ order.id }}' (see Relay's docs/pinterest.md), or "
            "remove the tag and let Relay send the events.",
            ACKNOWLEDGE,
        ),
    )


def web_pixels(html: str) -> list[dict[str, Any]] | None:
    """The app and custom pixels the web pixels manager loads, or None if
    the page has no set-up Relay can read."""
    start = html.find(PIXELS_MARKER)
    if start < 0:
        return None
    bracket = html.find("[", start)
    if bracket < 0 or bracket - start > 40:
        return None
    try:
        pixels, _ = json.JSONDecoder().raw_decode(html, bracket)
    except (ValueError, RecursionError):
        return None
    if not isinstance(pixels, list):
        return None
    return [p for p in pixels if isinstance(p, dict)]


def _is_pinterest_pixel(pixel: dict[str, Any]) -> bool:
    """Pinterest's app pixel, by heuristic: Shopify does not document the
    set-up, nor which app a pixel belongs to beyond an app id Relay cannot
    resolve. An app pixel whose configuration has a key naming Pinterest, or
    a tag id of 13 digits (the length of every Pinterest tag id seen), is
    taken for it; a mere mention of pinterest.com in a value is not."""
    if str(pixel.get("type", "")).upper() != "APP":
        return False
    configuration = _configuration(pixel)
    if any("pinterest" in str(key).lower() for key in configuration):
        return True
    return any(len(tag) == 13 for tag in _tag_ids(pixel))


def _configuration(pixel: dict[str, Any]) -> dict[str, Any]:
    configuration = pixel.get("configuration")
    if isinstance(configuration, str) and len(configuration) <= 100_000:
        try:
            configuration = json.loads(configuration)
        except (ValueError, RecursionError):
            return {}
    return configuration if isinstance(configuration, dict) else {}


def _tag_ids(pixel: dict[str, Any]) -> Iterator[str]:
    for key, value in _configuration(pixel).items():
        text = str(value)
        if TAG_KEY.search(str(key)) and text.isdigit() and 6 <= len(text) <= 18:
            yield text


# -- 2. the theme's files ------------------------------------------------------


def _theme(context: CheckContext, configured: str | None) -> Finding:
    signal = "theme files"
    try:
        data, errors = context.admin.query(THEME_FILES)
    except AdminUnavailable as error:
        return _cannot_look(
            signal,
            f"Shopify's Admin API could not be asked: {error.reason}",
            ADMIN_STEP,
        )
    if _denied(errors):
        return _cannot_look(
            signal,
            "Shopify denied Relay access to theme files (the read_themes "
            "permission is not granted)",
            "Approve Relay's updated permissions when the Shopify admin asks.",
        )
    theme = _main_theme(data)
    if errors or theme is None:
        return _cannot_look(signal, "Shopify returned no main theme")
    name, files = theme
    settings = _settings_data(files.get("config/settings_data.json", ""))
    if settings is None:
        return _cannot_look(
            signal,
            f"config/settings_data.json of theme '{name}' could not be read",
        )
    embed = _enabled_pinterest_embed(settings)
    if embed:
        return Finding(
            signal,
            Verdict.CONFLICT,
            "Your theme turns on the Pinterest app's tag, which sends your "
            "conversions from the browser with its own event ids.",
            f"config/settings_data.json of theme '{name}' has the app embed "
            f"{embed} turned on",
            (
                f"In {APP_EMBEDS}, turn off the Pinterest tag embed, or "
                f"{RELAY_EVENTS}.",
                ACKNOWLEDGE,
            ),
        )
    liquid = files.get("layout/theme.liquid", "")
    tags = sorted(set(PASTED_TAG.findall(liquid)))
    if tags or CORE_JS in liquid:
        return _tag_finding(signal, "layout/theme.liquid", tags, configured)
    return Finding(
        signal,
        Verdict.OK,
        "Your theme has no Pinterest Tag and no Pinterest app embed turned on.",
        f"layout/theme.liquid and config/settings_data.json of theme '{name}' read",
    )


def _main_theme(data: dict[str, Any]) -> tuple[str, dict[str, str]] | None:
    """The main theme's name and its files' text, or None if there is none."""
    nodes = _dig(data, "themes", "nodes")
    theme = nodes[0] if isinstance(nodes, list) and nodes else None
    if not isinstance(theme, dict):
        return None
    files: dict[str, str] = {}
    for node in _dig(theme, "files", "nodes") or []:
        filename, content = _dig(node, "filename"), _dig(node, "body", "content")
        if isinstance(filename, str) and isinstance(content, str):
            files[filename] = content
    return _plain(str(theme.get("name") or "unnamed"))[:100], files


def _settings_data(text: str) -> dict[str, Any] | None:
    """settings_data.json as Shopify writes it: JSON after a /* … */ notice.
    None when it cannot be read; an absent file reads as empty."""
    text = text.strip()
    if text.startswith("/*"):
        end = text.find("*/")
        text = text[end + 2 :] if end >= 0 else ""
    if not text:
        return {}
    try:
        settings = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return settings if isinstance(settings, dict) else None


def _enabled_pinterest_embed(settings: dict[str, Any]) -> str | None:
    """The type of a Pinterest app embed not switched off, if any. Older
    themes keep `current` as the name of a preset: no embeds there."""
    blocks = _dig(settings, "current", "blocks")
    for block in blocks.values() if isinstance(blocks, dict) else []:
        kind = block.get("type") if isinstance(block, dict) else None
        found = APP_EMBED.search(kind) if isinstance(kind, str) else None
        if found and block.get("disabled") is not True:
            return found.group(0)
    return None


def _dig(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _plain(text: str) -> str:
    """Text from a theme or storefront, fit for a message: printable only."""
    return "".join(c if c.isprintable() else "?" for c in text)


# -- 3. the sales channel ------------------------------------------------------


def _sales_channel(context: CheckContext) -> Finding:
    """The app's installation and its sales-channel publication, together."""
    signal = "Pinterest sales channel"
    try:
        looks = [_installation(context), _publication(context)]
    except AdminUnavailable as error:
        return _cannot_look(
            signal,
            f"Shopify's Admin API could not be asked: {error.reason}",
            ADMIN_STEP,
        )
    seen = [evidence for found, evidence in looks if found]
    if seen:
        return Finding(
            signal,
            Verdict.DEDUP_RISK,
            "Shopify's Pinterest app is installed; if its conversion tracking is "
            "on, Pinterest receives your purchases from it too.",
            "; ".join(seen),
            (
                f"In Shopify admin, open {PINTEREST_APP} → Settings and check "
                "whether conversion tracking is on; turn it off, or "
                f"{RELAY_EVENTS}.",
                ACKNOWLEDGE,
            ),
        )
    # Shopify may hide another app's installation: never `ok` from here.
    return _cannot_look(signal, "; ".join(evidence for _, evidence in looks))


def _installation(context: CheckContext) -> tuple[bool | None, str]:
    """(True, evidence) if installed; (None, why unknown) otherwise: Shopify
    may hide another app's installation, so its absence proves nothing."""
    data, errors = context.admin.query(PINTEREST_APP_QUERY)
    if _denied(errors):
        return None, (
            "Shopify does not let Relay see whether the Pinterest app is installed"
        )
    app = data.get("appByHandle")
    if not isinstance(app, dict):
        return None, "Shopify knows no app with the handle 'pinterest'"
    if app.get("installation"):
        return True, f"the app '{app.get('title')}' is installed in the shop"
    return None, (
        "Shopify shows no installation of the Pinterest app, but it may hide "
        "other apps' installations from Relay"
    )


def _publication(context: CheckContext) -> tuple[bool | None, str]:
    """Whether a Pinterest sales channel publishes the shop's products."""
    data, errors = context.admin.query(PUBLICATIONS_QUERY)
    if _denied(errors):
        return None, (
            "Shopify does not let Relay read sales-channel publications "
            "(read_publications is not granted)"
        )
    nodes = (data.get("publications") or {}).get("nodes") or []
    titles = [
        str((node.get("catalog") or {}).get("title") or "")
        for node in nodes
        if isinstance(node, dict)
    ]
    pinterest = [t for t in titles if "pinterest" in t.lower()]
    if pinterest:
        return True, f"the sales channel '{pinterest[0]}' publishes the shop's products"
    return False, f"none of the {len(titles)} sales channel(s) is Pinterest's"


# -- 4. Pinterest's API --------------------------------------------------------


def _pinterest(context: CheckContext, configured: str | None) -> Finding:
    signal = "Pinterest ad account"
    account = context.settings.get("ad_account_id") if context.settings else None
    try:
        token = context.platform_token()
    except PlatformRefused as error:
        return _reconnect(signal, error.reason)
    except PlatformError as error:
        return _cannot_look(signal, f"Pinterest could not be asked: {error.reason}")
    if token is None:
        return _cannot_look(
            signal,
            "Relay is not connected with Pinterest, so it cannot read the ad "
            "account's tags (a pasted conversion token only sends events)",
            "Connect with Pinterest in Relay "
            "(`relay destinations connect pinterest --shop …`).",
        )
    if not account:
        return _cannot_look(signal, "no ad account is chosen in Relay yet")
    try:
        tags = PinterestOAuth().conversion_tags(token, str(account))
    except PlatformRefused as error:
        return _reconnect(signal, error.reason)
    except PlatformError as error:
        return _cannot_look(signal, f"Pinterest could not be asked: {error.reason}")

    no_code = sorted(
        {
            _plain(domain)[:255]
            for tag in tags
            for domain in _listed(_dig(tag, "configs", "no_code_capi_domains"))
        }
    )
    if no_code:
        return Finding(
            signal,
            Verdict.CONFLICT,
            "Pinterest's own no-code Conversions API is set up for your store, "
            "so Pinterest receives your conversions from it as well as from Relay.",
            f"ad account {account}: no-code Conversions API for {', '.join(no_code)}",
            (
                "In Pinterest Ads Manager, open Conversions → Conversion tracking "
                "and turn off the Conversions API set up for your domain.",
                ACKNOWLEDGE,
            ),
        )
    if configured is None:
        return _cannot_look(
            signal,
            f"ad account {account} has {len(tags)} tag(s), but no tag is chosen "
            "in Relay to compare",
            "Choose the tag in Relay (`--set tag_id=…`).",
        )
    tag = next((t for t in tags if str(t.get("id")) == configured), None)
    if tag is None:
        return Finding(
            signal,
            Verdict.DEDUP_RISK,
            "The tag set in Relay is not in the ad account, so Pinterest cannot "
            "match browser and server events.",
            f"tag {configured} not among the {len(tags)} tag(s) of ad account "
            f"{account}",
            ("Choose one of the account's tags in Relay (`--set tag_id=…`).",),
        )
    fired = _fired_at(tag)
    if fired is not None and context.now - fired <= RECENTLY:
        return Finding(
            signal,
            Verdict.DEDUP_RISK,
            "Your Pinterest tag fires in visitors' browsers; its events count "
            "once with Relay's only if they carry the same event ids.",
            f"tag {configured} last fired {fired:%Y-%m-%d %H:%M} UTC; Relay "
            "itself loads no tag",
            (
                "Find what loads the tag (the Pinterest app, a theme snippet, a "
                "custom pixel under Settings → Customer events) and give its "
                "checkout event the order id as event_id, or turn it off.",
                ACKNOWLEDGE,
            ),
        )
    last = f"last fired {fired:%Y-%m-%d %H:%M} UTC" if fired else "never fired"
    return Finding(
        signal,
        Verdict.OK,
        "Pinterest shows no other sender for your ad account.",
        f"tag {configured} exists in ad account {account} and {last}; no no-code "
        "Conversions API",
    )


def _fired_at(tag: dict[str, Any]) -> datetime | None:
    value = tag.get("last_fired_time_ms")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value / 1000, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _reconnect(signal: str, reason: str) -> Finding:
    return _cannot_look(
        signal,
        f"Pinterest refused Relay's connection: {reason}",
        "Connect with Pinterest again in Relay "
        "(`relay destinations connect pinterest --shop …`).",
    )


# -- helpers -------------------------------------------------------------------


def _cannot_look(signal: str, reason: str, *steps: str) -> Finding:
    return Finding(
        signal,
        Verdict.UNKNOWN,
        "Relay could not check this.",
        reason,
        tuple(steps),
    )


def _listed(value: Any) -> list[str]:
    return (
        [v for v in value if isinstance(v, str) and v]
        if isinstance(value, list)
        else []
    )


def _denied(errors: list[dict[str, Any]]) -> bool:
    return "ACCESS_DENIED" in map(error_code, errors)


def _configured_tag(context: CheckContext) -> str | None:
    tag = context.settings.get("tag_id") if context.settings else None
    return str(tag) if tag else None
