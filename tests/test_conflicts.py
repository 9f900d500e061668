"""The conflict check: does Shopify's Pinterest app also send the conversions?

Each signal is shown on both sides, every verdict is reached, and the
merchant-facing words are asserted. Storefront pages and Admin GraphQL come
from the fake Shopify, Pinterest's tags from the fake Pinterest API.
"""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from relay import conflicts
from relay.cli import cli
from relay.conflicts import Finding, Verdict
from relay.errors import ConfigError
from relay.models import Delivery, DestinationSetting
from tests.conftest import (
    SECRET,
    SHOP,
    configure_destination,
    connect_pinterest,
    fixture_bytes,
    post_fixture,
    post_signed,
    work,
)
from tests.fake_pinterest_api import tag
from tests.fake_shopify import session_token
from tests.storefronts import (
    OTHER_TAG,
    PASTED,
    RELAY_PIXEL,
    pinterest_pixel,
    storefront,
)
from tests.test_connect_pinterest import ACCOUNT, TAG, call, connect


def check(runtime) -> dict[str, Finding]:
    result = conflicts.check(runtime, SHOP, "pinterest")
    return {finding.signal: finding for finding in result.findings}


# 1. The storefront


def test_pinterest_s_app_pixel_on_the_storefront_is_a_conflict(runtime, set_up):
    set_up.storefront_html = storefront([RELAY_PIXEL, pinterest_pixel(TAG)])

    finding = check(runtime)["storefront app pixels"]

    assert finding == Finding(
        "storefront app pixels",
        Verdict.CONFLICT,
        "Shopify's Pinterest app is also sending your conversions to Pinterest, "
        "so purchases may be counted twice.",
        f"the home page loads the Pinterest app's pixel for tag {TAG}",
        (
            "In Shopify admin, open Settings → Apps and sales channels → Pinterest "
            "→ Settings, and turn off its conversion tracking (the Pinterest tag "
            "and Conversions API) if it offers that.",
            "If it does not, keep one sender of purchases: uninstall the app from "
            "Settings → Apps and sales channels → Pinterest (this also stops its "
            "catalog sync), or leave `checkout` out of Relay's Pinterest events "
            "(`relay destinations set pinterest --shop … --set events=…`).",
            "Then acknowledge this finding in Relay.",
        ),
    )


def test_the_app_pixel_s_other_tag_is_named(runtime, set_up):
    set_up.storefront_html = storefront([pinterest_pixel(OTHER_TAG)])

    finding = check(runtime)["storefront app pixels"]

    assert finding.evidence == (
        f"the home page loads the Pinterest app's pixel for tag {OTHER_TAG}, "
        f"while Relay is set up for tag {TAG}"
    )


def test_a_storefront_without_pinterest_s_pixel_is_ok(runtime, set_up):
    findings = check(runtime)

    assert findings["storefront app pixels"] == Finding(
        "storefront app pixels",
        Verdict.OK,
        "Shopify's Pinterest app loads no pixel on your storefront.",
        "1 pixel(s) on the home page, none of them Pinterest's",
    )
    assert findings["storefront pasted tag"] == Finding(
        "storefront pasted tag",
        Verdict.OK,
        "No Pinterest Tag is pasted into your storefront's pages.",
        "the home page has no pintrk('load', …) call and no Pinterest tag script",
    )


def test_a_pasted_tag_of_the_same_id_risks_double_counting(runtime, set_up):
    set_up.storefront_html = storefront(body=PASTED.format(tag=TAG))

    finding = check(runtime)["storefront pasted tag"]

    assert finding == Finding(
        "storefront pasted tag",
        Verdict.DEDUP_RISK,
        "A Pinterest Tag pasted into your store sends browser events; unless its "
        "checkout event carries the order id as event_id, Pinterest counts "
        "purchases twice.",
        f"the home page loads Pinterest tag {TAG}",
        (
            "In Online Store → Themes → ⋯ → Edit code, give the tag's checkout "
            "event event_id: '{{ order.id }}' (see Relay's docs/pinterest.md), or "
            "remove the tag and let Relay send the events.",
            "Then acknowledge this finding in Relay.",
        ),
    )


def test_a_pasted_tag_of_another_id_breaks_deduplication(runtime, set_up):
    set_up.storefront_html = storefront(body=PASTED.format(tag=OTHER_TAG))

    finding = check(runtime)["storefront pasted tag"]

    assert (finding.verdict, finding.summary, finding.evidence) == (
        Verdict.DEDUP_RISK,
        "A Pinterest Tag on your store sends to another tag than Relay, so "
        "Pinterest cannot match its events with Relay's.",
        f"the home page loads Pinterest tag {OTHER_TAG}; Relay is set up for tag {TAG}",
    )
    assert finding.steps[0] == (
        "Use one tag: set Relay's tag to the one on your store "
        "(`relay destinations set pinterest --shop … --set tag_id=…`), or remove "
        "the pasted tag (Online Store → Themes → ⋯ → Edit code)."
    )


def test_a_password_protected_store_is_unknown_not_ok(runtime, set_up):
    set_up.storefront_locked = True

    findings = check(runtime)

    for signal in ("storefront app pixels", "storefront pasted tag"):
        assert findings[signal] == Finding(
            signal,
            Verdict.UNKNOWN,
            "Relay could not check this.",
            "the store is password-protected, so its pages show only the password page",
            (
                "Run the check again once the store is open (Online Store → "
                "Preferences → Password protection).",
            ),
        )


def test_a_storefront_that_cannot_be_read_is_unknown(runtime, set_up):
    set_up.storefront_html = None  # 404

    finding = check(runtime)["storefront app pixels"]

    assert (finding.verdict, finding.evidence) == (
        Verdict.UNKNOWN,
        "the storefront answered HTTP 404",
    )


def test_a_page_without_the_pixels_set_up_is_unknown(runtime, set_up):
    set_up.storefront_html = "<html><body>Welcome</body></html>"

    finding = check(runtime)["storefront app pixels"]

    assert (finding.verdict, finding.evidence) == (
        Verdict.UNKNOWN,
        "the home page carries no web pixels manager set-up that Relay can read "
        "(Shopify may have changed it)",
    )


# 2. The theme's files


def test_pinterest_s_app_embed_turned_on_is_a_conflict(runtime, set_up):
    embed = "shopify://apps/pinterest/blocks/tag/6a2f1e9c-0000-4000-8000-000000000001"
    set_up.shop(SHOP).theme_files["config/settings_data.json"] = json.dumps(
        {"current": {"blocks": {"1234": {"type": embed, "disabled": False}}}}
    )

    finding = check(runtime)["theme files"]

    assert finding == Finding(
        "theme files",
        Verdict.CONFLICT,
        "Your theme turns on the Pinterest app's tag, which sends your "
        "conversions from the browser with its own event ids.",
        f"config/settings_data.json of theme 'Dawn' has the app embed {embed} "
        "turned on",
        (
            "In Online Store → Themes → Customize → App embeds, turn off the "
            "Pinterest tag embed, or leave `checkout` out of Relay's Pinterest "
            "events (`relay destinations set pinterest --shop … --set events=…`).",
            "Then acknowledge this finding in Relay.",
        ),
    )


def test_a_disabled_app_embed_and_a_clean_layout_are_ok(runtime, set_up):
    embed = "shopify://apps/pinterest/blocks/tag/6a2f1e9c"
    set_up.shop(SHOP).theme_files["config/settings_data.json"] = json.dumps(
        {"current": {"blocks": {"1234": {"type": embed, "disabled": True}}}}
    )

    finding = check(runtime)["theme files"]

    assert finding == Finding(
        "theme files",
        Verdict.OK,
        "Your theme has no Pinterest Tag and no Pinterest app embed turned on.",
        "layout/theme.liquid and config/settings_data.json of theme 'Dawn' read",
    )


def test_a_tag_pasted_into_the_theme_layout_is_found(runtime, set_up):
    set_up.shop(SHOP).theme_files["layout/theme.liquid"] = (
        "<html><head>" + PASTED.format(tag=TAG) + "</head></html>"
    )

    finding = check(runtime)["theme files"]

    assert (finding.verdict, finding.evidence) == (
        Verdict.DEDUP_RISK,
        f"layout/theme.liquid loads Pinterest tag {TAG}",
    )


def test_theme_files_shopify_will_not_show_are_unknown(
    client, runtime, shopify, pinterest
):
    shopify.scopes -= {"read_themes"}  # the merchant approved the older scopes
    from tests.test_shopify_app import open_app

    open_app(client, session_token(SHOP, SECRET))
    connect_pinterest(runtime, pinterest, SHOP)

    finding = check(runtime)["theme files"]

    assert finding == Finding(
        "theme files",
        Verdict.UNKNOWN,
        "Relay could not check this.",
        "Shopify denied Relay access to theme files (the read_themes permission "
        "is not granted)",
        ("Approve Relay's updated permissions when the Shopify admin asks.",),
    )


# 3. The sales channel


def test_an_installed_pinterest_app_is_a_dedup_risk(runtime, set_up):
    finding = check(runtime)["Pinterest sales channel"]

    assert finding == Finding(
        "Pinterest sales channel",
        Verdict.DEDUP_RISK,
        "Shopify's Pinterest app is installed; if its conversion tracking is on, "
        "Pinterest receives your purchases from it too.",
        "the app 'Pinterest' is installed in the shop",
        (
            "In Shopify admin, open Settings → Apps and sales channels → Pinterest "
            "→ Settings and check whether conversion tracking is on; turn it off, "
            "or leave `checkout` out of Relay's Pinterest events "
            "(`relay destinations set pinterest --shop … --set events=…`).",
            "Then acknowledge this finding in Relay.",
        ),
    )


NO_PUBLICATIONS = (
    "Shopify does not let Relay read sales-channel publications "
    "(read_publications is not granted)"
)


@pytest.mark.parametrize(
    "answer, evidence",
    [
        (
            {"title": "Pinterest", "installation": None},
            "Shopify shows no installation of the Pinterest app, but it may hide "
            "other apps' installations from Relay",
        ),
        (None, "Shopify knows no app with the handle 'pinterest'"),
        (
            "denied",
            "Shopify does not let Relay see whether the Pinterest app is installed",
        ),
    ],
    ids=["no installation shown", "no such app", "access denied"],
)
def test_shopify_s_silence_about_the_app_is_unknown_never_ok(
    runtime, set_up, answer, evidence
):
    set_up.shop(SHOP).pinterest_app = answer

    finding = check(runtime)["Pinterest sales channel"]

    assert (finding.verdict, finding.evidence) == (
        Verdict.UNKNOWN,
        f"{evidence}; {NO_PUBLICATIONS}",
    )


def test_a_pinterest_sales_channel_publishing_products_is_a_dedup_risk(runtime, set_up):
    shop = set_up.shop(SHOP)
    shop.pinterest_app = {"title": "Pinterest", "installation": None}
    shop.publications = ["Online Store", "Pinterest"]

    finding = check(runtime)["Pinterest sales channel"]

    assert (finding.verdict, finding.evidence) == (
        Verdict.DEDUP_RISK,
        "the sales channel 'Pinterest' publishes the shop's products",
    )


def test_publications_without_pinterest_still_leave_the_installation_unknown(
    runtime, set_up
):
    shop = set_up.shop(SHOP)
    shop.pinterest_app = {"title": "Pinterest", "installation": None}
    shop.publications = ["Online Store", "Shop"]

    finding = check(runtime)["Pinterest sales channel"]

    assert (finding.verdict, finding.evidence) == (
        Verdict.UNKNOWN,
        "Shopify shows no installation of the Pinterest app, but it may hide "
        "other apps' installations from Relay; none of the 2 sales channel(s) is "
        "Pinterest's",
    )


# 4. Pinterest's API


def test_without_a_connection_pinterest_s_side_is_unknown(runtime, set_up):
    finding = check(runtime)["Pinterest ad account"]

    assert finding == Finding(
        "Pinterest ad account",
        Verdict.UNKNOWN,
        "Relay could not check this.",
        "Relay is not connected with Pinterest, so it cannot read the ad "
        "account's tags (a pasted conversion token only sends events)",
        (
            "Connect with Pinterest in Relay (`relay destinations connect pinterest "
            "--shop …`).",
        ),
    )


def connected(client, pinterest_api, **tag_options) -> None:
    pinterest_api.accounts[ACCOUNT]["tags"] = [tag(TAG, ACCOUNT, **tag_options)]
    connect(client)


def test_a_quiet_configured_tag_is_ok(client, runtime, set_up, pinterest_api):
    connected(client, pinterest_api)

    finding = check(runtime)["Pinterest ad account"]

    assert finding == Finding(
        "Pinterest ad account",
        Verdict.OK,
        "Pinterest shows no other sender for your ad account.",
        f"tag {TAG} exists in ad account {ACCOUNT} and never fired; no no-code "
        "Conversions API",
    )
    assert pinterest_api.schema_errors == []


def test_a_tag_that_fired_today_is_a_dedup_risk(
    client,
    runtime,
    set_up,
    pinterest_api,
):
    fired = int(runtime.clock.now().timestamp() * 1000) - 3600 * 1000
    connected(client, pinterest_api, last_fired_ms=fired)

    finding = check(runtime)["Pinterest ad account"]

    assert (finding.verdict, finding.summary, finding.evidence) == (
        Verdict.DEDUP_RISK,
        "Your Pinterest tag fires in visitors' browsers; its events count once "
        "with Relay's only if they carry the same event ids.",
        f"tag {TAG} last fired 2026-07-14 13:30 UTC; Relay itself loads no tag",
    )


def test_pinterest_s_no_code_conversions_api_is_a_conflict(
    client,
    runtime,
    set_up,
    pinterest_api,
):
    connected(client, pinterest_api, no_code_domains=["www.example-shop.com"])

    finding = check(runtime)["Pinterest ad account"]

    assert finding == Finding(
        "Pinterest ad account",
        Verdict.CONFLICT,
        "Pinterest's own no-code Conversions API is set up for your store, so "
        "Pinterest receives your conversions from it as well as from Relay.",
        f"ad account {ACCOUNT}: no-code Conversions API for www.example-shop.com",
        (
            "In Pinterest Ads Manager, open Conversions → Conversion tracking and "
            "turn off the Conversions API set up for your domain.",
            "Then acknowledge this finding in Relay.",
        ),
    )


def test_a_configured_tag_missing_from_the_account_is_named(
    client,
    runtime,
    set_up,
    pinterest_api,
):
    connected(client, pinterest_api)
    configure_destination(runtime, "pinterest", {"tag_id": OTHER_TAG})

    finding = check(runtime)["Pinterest ad account"]

    assert (finding.verdict, finding.evidence) == (
        Verdict.DEDUP_RISK,
        f"tag {OTHER_TAG} not among the 1 tag(s) of ad account {ACCOUNT}",
    )


@pytest.mark.parametrize(
    "status, code, message",
    [(401, 2, "Authentication failed."), (403, 29, "You are not permitted.")],
)
def test_pinterest_refusing_the_connection_is_unknown_with_the_reason(
    client,
    runtime,
    set_up,
    pinterest_api,
    status,
    code,
    message,
):
    connected(client, pinterest_api)
    pinterest_api.forced.append((status, code, message))

    finding = check(runtime)["Pinterest ad account"]

    assert finding == Finding(
        "Pinterest ad account",
        Verdict.UNKNOWN,
        "Relay could not check this.",
        f"Pinterest refused Relay's connection: Pinterest refused (HTTP {status}): "
        f"{code}: {message}",
        (
            "Connect with Pinterest again in Relay (`relay destinations connect "
            "pinterest --shop …`).",
        ),
    )


# The result, the policy, acknowledging


def test_the_last_result_is_kept_with_its_time_and_overall_verdict(
    client, runtime, set_up
):
    set_up.storefront_html = storefront([pinterest_pixel(TAG)])
    conflicts.check(runtime, SHOP, "pinterest")

    answer = call(client, "GET", "/api/conflicts")

    (result,) = answer.json["checks"]
    assert (result["destination"], result["verdict"], result["checked_at"]) == (
        "pinterest",
        "conflict",
        "2026-07-14T14:30:00+00:00",
    )
    assert [
        (f["signal"], f["verdict"], f["acknowledged"]) for f in result["findings"]
    ] == [
        ("storefront app pixels", "conflict", False),
        ("storefront pasted tag", "ok", False),
        ("theme files", "ok", False),
        ("Pinterest sales channel", "dedup risk", False),
        ("Pinterest ad account", "unknown", False),
    ]
    other = call(client, "GET", "/api/conflicts", shop="other-shop.myshopify.com")
    assert other.json == {"checks": []}


def test_by_default_purchases_still_go_flagged_while_a_conflict_stands(
    client, runtime, set_up, pinterest
):
    set_up.storefront_html = storefront([pinterest_pixel(TAG)])
    conflicts.check(runtime, SHOP, "pinterest")

    post_fixture(client, "orders_create.json")
    work(runtime)

    assert [e["event_id"] for e in pinterest.events] == ["6123456789012"]
    with runtime.db.session() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.status, delivery.warning) == (
            "sent",
            "sent while a native integration may send it too (storefront app pixels)",
        )


def test_hold_keeps_purchases_back_until_the_merchant_acknowledges(
    client, runtime, set_up, pinterest
):
    with runtime.db.session() as session:
        session.scalars(select(DestinationSetting)).one().conflict_policy = "hold"
    set_up.storefront_html = storefront([pinterest_pixel(TAG)])
    result = conflicts.check(runtime, SHOP, "pinterest")

    post_fixture(client, "orders_create.json")
    work(runtime)
    assert pinterest.requests == []
    with runtime.db.session() as session:
        reason = session.scalars(select(Delivery.reason)).one()
    assert (
        reason == "conflict: held back while a native integration also sends purchases"
    )

    (standing,) = result.standing_conflicts()
    acknowledged = call(
        client,
        "POST",
        "/api/conflicts/pinterest/acknowledge",
        json={"key": standing.key},
    )
    assert acknowledged.json["acknowledged"]["signal"] == "storefront app pixels"
    # Acknowledged findings stay acknowledged at the next check, same evidence.
    assert conflicts.check(runtime, SHOP, "pinterest").standing_conflicts() == []

    order = json.loads(fixture_bytes("orders_create.json"))
    post_signed(client, dict(order, id=6123456789099), "second-order")
    work(runtime)
    assert [e["event_id"] for e in pinterest.events] == ["6123456789099"]


def test_new_evidence_needs_a_new_acknowledgement(runtime, set_up):
    set_up.storefront_html = storefront([pinterest_pixel(TAG)])
    (first,) = conflicts.check(runtime, SHOP, "pinterest").standing_conflicts()
    conflicts.acknowledge(runtime, SHOP, "pinterest", first.key)

    set_up.storefront_html = storefront([pinterest_pixel(OTHER_TAG)])
    (again,) = conflicts.check(runtime, SHOP, "pinterest").standing_conflicts()

    assert again.signal == first.signal and again.key != first.key


def test_acknowledging_an_unknown_finding_is_refused(client, runtime, set_up):
    conflicts.check(runtime, SHOP, "pinterest")

    answer = call(
        client, "POST", "/api/conflicts/pinterest/acknowledge", json={"key": "nope"}
    )

    assert (answer.status_code, answer.json) == (
        404,
        {"error": "no such finding in the last check"},
    )


def test_the_cli_prints_the_last_check_and_acknowledges_a_finding(
    runtime, set_up, cli_env, redis_url
):
    set_up.storefront_html = storefront([pinterest_pixel(TAG)])
    conflicts.check(runtime, SHOP, "pinterest")
    env = {**cli_env, "REDIS_URL": redis_url}

    printed = CliRunner().invoke(
        cli,
        ["check-conflicts", "--shop", SHOP, "--last"],
        env=env,
        catch_exceptions=False,
    )

    lines = printed.output.splitlines()
    assert printed.exit_code == 1  # a conflict stands unacknowledged
    assert lines[:6] == [
        f"pinterest for {SHOP}: conflict (checked 2026-07-14 14:30 UTC)",
        "- storefront app pixels: conflict",
        "  Shopify's Pinterest app is also sending your conversions to Pinterest, "
        "so purchases may be counted twice.",
        f"  Seen: the home page loads the Pinterest app's pixel for tag {TAG}",
        "  1. In Shopify admin, open Settings → Apps and sales channels → "
        "Pinterest → Settings, and turn off its conversion tracking (the "
        "Pinterest tag and Conversions API) if it offers that.",
        "  2. If it does not, keep one sender of purchases: uninstall the app from "
        "Settings → Apps and sales channels → Pinterest (this also stops its "
        "catalog sync), or leave `checkout` out of Relay's Pinterest events "
        "(`relay destinations set pinterest --shop … --set events=…`).",
    ]
    finding_id = next(
        line.split(": ", 1)[1] for line in lines if line.startswith("  Finding id: ")
    )
    acknowledged = CliRunner().invoke(
        cli,
        ["acknowledge-conflict", finding_id, "--shop", SHOP],
        env=env,
        catch_exceptions=False,
    )
    assert acknowledged.output == (
        "acknowledged: storefront app pixels: Shopify's Pinterest app is also "
        "sending your conversions to Pinterest, so purchases may be counted twice.\n"
    )
    again = CliRunner().invoke(
        cli, ["check-conflicts", "--shop", SHOP, "--last"], env=env
    )
    assert "- storefront app pixels: conflict (acknowledged)" in again.output
    assert again.exit_code == 0


def test_only_a_conflict_or_a_dedup_risk_can_be_acknowledged(runtime, set_up):
    set_up.storefront_locked = True
    result = conflicts.check(runtime, SHOP, "pinterest")
    unknown = next(f for f in result.findings if f.verdict is Verdict.UNKNOWN)

    with pytest.raises(ConfigError) as refused:
        conflicts.acknowledge(runtime, SHOP, "pinterest", unknown.key)

    assert str(refused.value) == (
        f"finding {unknown.key!r} is unknown: only a conflict or a dedup risk is "
        "acknowledged, once dealt with"
    )
    assert unknown.key.startswith("storefront-app-pixels:")


def test_the_cli_check_says_unknown_where_it_cannot_look(
    runtime, set_up, cli_env, redis_url
):
    """The CLI's own process has no route to the fakes: like a store behind
    a closed network, everything it cannot reach is unknown, never ok."""
    printed = CliRunner().invoke(
        cli,
        ["check-conflicts", "--shop", SHOP],
        env={**cli_env, "REDIS_URL": redis_url},
        catch_exceptions=False,
    )

    verdicts = [line for line in printed.output.splitlines() if line.startswith("- ")]
    assert verdicts == [
        "- storefront app pixels: unknown",
        "- storefront pasted tag: unknown",
        "- theme files: unknown",
        "- Pinterest sales channel: unknown",
        "- Pinterest ad account: unknown",
    ]
    assert (
        "  Seen: Shopify's Admin API could not be asked: SHOPIFY_API_KEY and "
        "SHOPIFY_API_SECRET must be set to talk to Shopify (the Shopify CLI sets "
        "both in development)"
    ) in printed.output


# When checks run


def test_a_check_is_queued_when_settings_change_and_daily_for_each_shop(
    runtime, set_up, cli_env, redis_url
):
    runtime.queue.empty()
    result = CliRunner().invoke(
        cli,
        ["destinations", "set", "pinterest", "--shop", SHOP, "--set", "tag_id=26"],
        env={**cli_env, "REDIS_URL": redis_url},
        catch_exceptions=False,
    )
    assert result.output.splitlines()[-1] == "conflict check queued"
    assert runtime.queue.get_job_ids() == [
        "check-conflicts-pinterest-example-shop_myshopify_com"
    ]

    runtime.queue.empty()
    assert conflicts.check_every_shop(runtime) == 1
    (job,) = runtime.queue.get_jobs()
    assert (job.func_name, job.args) == (
        "relay.jobs.check_conflicts",
        (SHOP, "pinterest"),
    )
    work(runtime)
    with runtime.db.session() as session:
        from relay.shops import find_shop

        stored = conflicts.last_result(session, find_shop(session, SHOP), "pinterest")
    # The check ran in a forked worker, against the fakes.
    assert stored is not None and len(stored.findings) == 5


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://localhost/",
        "https://10.0.0.8/",
        "http://1.1.1.1/",
    ],
)
def test_the_storefront_is_never_fetched_inside_a_private_network(url):
    """A custom domain pointed at Relay's own network is refused, not fetched."""
    transport = conflicts.PublicInternetOnly()

    with pytest.raises(conflicts.PrivateAddress):
        transport.handle_request(httpx.Request("GET", url))


def test_a_storefront_redirecting_inside_the_network_is_unknown(runtime):
    storefront_ = conflicts.Storefront(
        "example-shop.myshopify.com", _RedirectTo("https://169.254.169.254/")
    )

    with pytest.raises(conflicts.StorefrontUnavailable) as refused:
        storefront_.page()

    assert refused.value.reason == (
        "the storefront leads to an address outside the public internet, which "
        "Relay does not fetch"
    )


class _RedirectTo(httpx.BaseTransport):
    """The shop's domain answers with a redirect; everything after it goes
    through the production transport."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.public = conflicts.PublicInternetOnly()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host.endswith(".myshopify.com"):
            return httpx.Response(302, headers={"Location": self.location})
        return self.public.handle_request(request)
