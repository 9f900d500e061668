"""The merchant's screens in a real browser: Debian's Chromium, driven by
Playwright, against Relay in development mode on loopback.

Relay runs for real (embedded Redis, the test database, a real worker);
Pinterest is the fake at the HTTP boundary. Screenshots of each step are
saved under test-artifacts/browser/ (git-ignored). Playwright never
downloads a browser: `.ci/browser` installs Debian's chromium, and the
README's test command runs it.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Page, expect, sync_playwright
from pytest_httpserver import HTTPServer
from werkzeug.serving import make_server

from relay import conflicts
from relay.shops import find_shop
from tests.conftest import (
    FIXTURES,
    PINTEREST_ACCOUNT,
    PINTEREST_TAG,
    ROOT,
    SHOP,
    post_fixture,
    post_signed,
    work,
)
from tests.fake_pinterest_api import FakePinterestAPI, tag
from tests.storefronts import RELAY_PIXEL, pinterest_pixel, storefront
from webapp import create_app

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "browser"
# No network of its own, no first-run or background traffic.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ACCOUNT_ERROR = (
    "Ad account ID: '12-34' is not valid (digits only, as shown in Pinterest "
    "Ads Manager)"
)


@pytest.fixture
def dev_server(runtime, pinterest) -> Iterator[str]:
    """Relay in development mode on loopback, sending to the fake Pinterest.

    The fake's address is set as plugins.toml's `api_base` default would
    set it, so the merchant's form needs no address.
    """
    runtime.plugins.defaults.setdefault("pinterest", {})["api_base"] = (
        pinterest.api_base
    )
    # The port is known once bound; Relay is told its own URL (for OAuth's
    # callback) before it serves.
    server = make_server("127.0.0.1", 0, Flask("binding"), threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    config = runtime.config.with_changes(dev_admin=True, shopify_app_url=base)
    server.app = create_app(runtime=dataclasses.replace(runtime, config=config))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()
    thread.join()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    if not CHROMIUM.exists():
        pytest.fail("no /usr/bin/chromium: run .ci/browser (the README's set-up)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 900},
        )
        yield context.pages[0] if context.pages else context.new_page()
        context.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def open_relay(page: Page, base: str) -> None:
    page.goto(f"{base}/dev/admin?shop={SHOP}")
    expect(page.locator("body")).to_have_attribute("data-loaded", "true")


def metric(page: Page, name: str) -> Any:
    return page.locator(f'[data-destination="pinterest"] [data-metric="{name}"]')


def test_the_merchant_connects_tests_watches_and_reads_a_payload(
    page, dev_server, client, runtime, pinterest
):
    requests_seen: list[str] = []
    page.on("request", lambda request: requests_seen.append(request.url))
    open_relay(page, dev_server)
    expect(page.get_by_role("heading", name="Pinterest (not set up)")).to_be_visible()
    shot(page, "01-opened")

    # A wrong ad account id: the field says what is wrong and takes focus.
    page.get_by_label("Ad account ID (required)").fill("12-34")
    page.get_by_label("Conversion access token (required)").fill(pinterest.token)
    page.get_by_role("button", name="Save").click()
    error = page.locator("#f-pinterest-ad_account_id-error")
    expect(error).to_have_text(ACCOUNT_ERROR)
    expect(page.get_by_label("Ad account ID (required)")).to_be_focused()
    expect(page.get_by_label("Ad account ID (required)")).to_have_attribute(
        "aria-invalid", "true"
    )
    shot(page, "02-wrong-account")

    # Well formed but not the token's account: saved, and the test event
    # shows Pinterest's refusal in plain words.
    other_account = str(int(pinterest.ad_account_id) + 1)
    page.get_by_label("Ad account ID (required)").fill(other_account)
    page.get_by_label("Conversion access token (required)").fill(pinterest.token)
    page.get_by_label("Test mode", exact=False).uncheck()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#status-pinterest")).to_have_text("Saved.")
    token_field = page.get_by_label("Conversion access token")
    expect(token_field).to_have_value("")
    expect(token_field).to_have_attribute(
        "placeholder", "Saved. Leave empty to keep it."
    )
    assert pinterest.token not in page.content()
    page.get_by_role("button", name="Send test event").click()
    expect(page.locator("#test-answer-pinterest .banner")).to_have_text(
        "Pinterest refused the credentials (HTTP 403): 29: You are not permitted "
        "to access that resource. Check the ad account id and the token."
    )
    shot(page, "03-account-refused")

    # The right one, the token kept: the test event reaches the fake
    # Pinterest, in test mode.
    page.get_by_label("Ad account ID (required)").fill(pinterest.ad_account_id)
    # "Saved." is still shown from before: wait for this save's answer.
    with page.expect_response(
        lambda answer: (
            answer.request.method == "POST"
            and answer.url.endswith("/api/destinations/pinterest/settings")
        )
    ):
        page.get_by_role("button", name="Save").click()
    expect(page.locator("#status-pinterest")).to_have_text("Saved.")
    page.get_by_role("button", name="Send test event").click()
    expect(page.locator("#test-answer-pinterest .banner")).to_have_text(
        "Pinterest accepted the test event (HTTP 200). It was sent in test "
        "mode: checked, not recorded."
    )
    assert [(r.test, r.status) for r in pinterest.requests] == [
        (True, 403),
        (True, 200),
    ]
    shot(page, "04-test-event")

    # Nothing yet in the counts or the chart.
    expect(metric(page, "received")).to_have_text("0")
    expect(page.locator('[data-destination="pinterest"] rect')).to_have_count(0)

    # Replayed webhooks: the counts and the chart change.
    post_fixture(client, "orders_create.json")
    order = json.loads((FIXTURES / "orders_create.json").read_text())
    post_test_order(client, order)
    work(runtime)
    page.get_by_role("button", name="Refresh").click()
    expect(metric(page, "received")).to_have_text("2")
    expect(metric(page, "sent")).to_have_text("1")
    expect(metric(page, "skipped")).to_have_text("1")
    expect(metric(page, "delivery_rate")).to_have_text("100%")
    expect(metric(page, "match_quality")).to_have_text("10 / 10, great")
    expect(page.locator('[data-destination="pinterest"] .skipped li')).to_have_text(
        ["test order: 1"]
    )
    bars = page.locator('[data-destination="pinterest"] rect')
    expect(bars).to_have_count(2)
    assert [
        (bar.get_attribute("class"), bar.get_attribute("data-count"))
        for bar in bars.all()
    ] == [("sent", "1"), ("other", "1")]
    expect(page.locator('[data-metric="accuracy"]')).to_have_text(
        "1 of 2 orders delivered as purchases."
    )
    shot(page, "05-counts-and-chart")

    # The event's payload as sent: digests, and masked clear identifiers.
    page.get_by_role("button", name=f"Payload of purchase {order['id']}").click()
    dialog = page.locator("#payload-dialog")
    expect(dialog).to_be_visible()
    payload = json.loads(page.locator("#payload-body").text_content() or "")
    assert payload["event_name"] == "checkout"
    assert payload["user_data"]["client_ip_address"] == "[masked]"
    assert order["email"] not in page.content()
    assert order["browser_ip"] not in page.content()
    shot(page, "06-payload")
    page.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()

    # Only the skipped ones.
    page.get_by_label("Show").select_option("skipped")
    expect(page.locator("#event-table tbody tr")).to_have_count(1)
    expect(page.locator("#event-table tbody tr td").nth(1)).to_have_text(
        "purchase 7001"
    )

    # Development mode loads nothing from outside Relay.
    assert all(url.startswith(dev_server) for url in requests_seen)


def post_test_order(client, order: dict) -> None:
    """A Shopify test order, which a live destination skips."""
    post_signed(client, {**order, "id": 7001, "test": True}, "webhook-test-order")


@pytest.fixture
def pinterest_api(monkeypatch) -> Iterator[FakePinterestAPI]:
    """Pinterest's OAuth and ads API, as conftest's, on a server that answers
    connections side by side: Chromium keeps spare connections open, which
    would stall a server that answers one at a time."""
    server = HTTPServer(threaded=True)
    server.start()
    fake = FakePinterestAPI(server)
    fake.accounts[PINTEREST_ACCOUNT] = {
        "name": "Example Shop Ads",
        "currency": "USD",
        "tags": [tag(PINTEREST_TAG, PINTEREST_ACCOUNT)],
    }
    for name, value in fake.environment.items():
        monkeypatch.setenv(name, value)
    yield fake
    server.clear()
    server.stop()


def test_the_merchant_connects_with_pinterest_and_chooses_the_account(
    page, dev_server, runtime, pinterest_api
):
    open_relay(page, dev_server)

    with page.context.expect_page() as opened:
        page.get_by_role("button", name="Connect with Pinterest").click()
    pinterest_window = opened.value
    pinterest_window.wait_for_load_state()
    expect(pinterest_window.get_by_role("heading")).to_have_text(
        "Pinterest is connected"
    )
    shot(pinterest_window, "08-pinterest-allowed")
    pinterest_window.close()

    open_relay(page, dev_server)
    expect(page.get_by_label("Ad account", exact=True)).to_have_value(PINTEREST_ACCOUNT)
    tag = page.get_by_label("Pinterest Tag", exact=True)
    expect(tag.locator("option")).to_have_count(2)
    tag.select_option(PINTEREST_TAG)
    page.get_by_role("button", name="Use this account").click()
    expect(page.locator("#status-pinterest")).to_have_text(
        f"Connected to ad account {PINTEREST_ACCOUNT}."
    )
    expect(page.get_by_label("Ad account ID (required)")).to_have_value(
        PINTEREST_ACCOUNT
    )
    expect(page.get_by_label("Pinterest Tag ID")).to_have_value(PINTEREST_TAG)
    expect(page.get_by_label("Conversion access token")).to_have_attribute(
        "placeholder", "Saved. Leave empty to keep it."
    )
    shot(page, "09-account-chosen")


def test_the_merchant_reads_a_conflict_s_steps_and_acknowledges_it(
    set_up, page, dev_server, runtime
):
    set_up.storefront_html = storefront([RELAY_PIXEL, pinterest_pixel(PINTEREST_TAG)])
    conflicts.check(runtime, SHOP, "pinterest")
    open_relay(page, dev_server)

    finding = page.locator("#conflicts .banner").filter(
        has_text="storefront app pixels: Shopify's Pinterest app is also sending"
    )
    expect(finding).to_have_class("banner critical")
    steps = finding.locator("ol.steps li")
    expect(steps).to_have_count(3)
    expect(steps.last).to_have_text("Then acknowledge this finding in Relay.")
    shot(page, "10-conflict")
    finding.get_by_role("button", name="I have dealt with this").click()

    expect(
        page.locator("#conflicts .banner")
        .filter(has_text="storefront app pixels")
        .get_by_text("Acknowledged.")
    ).to_be_visible()
    with runtime.db.session() as session:
        shop = find_shop(session, SHOP)
        result = conflicts.last_result(session, shop, "pinterest")
        assert result.standing_conflicts() == []


def test_the_pages_fit_a_phone(page, dev_server):
    page.set_viewport_size({"width": 390, "height": 844})
    open_relay(page, dev_server)

    width = page.evaluate("document.documentElement.scrollWidth")
    shot(page, "07-phone")

    assert width <= 390
    # Every form control has a label a screen reader can read.
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select')]
            .filter((c) => c.type !== 'hidden' && !c.labels.length)
            .map((c) => c.name || c.id)"""
    )
    assert unlabelled == []
