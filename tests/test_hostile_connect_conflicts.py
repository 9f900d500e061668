"""Hostile input against OAuth connecting and the conflict check.

Each test asserts what *should* happen; a failing test is a finding.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from relay import conflicts, connections
from relay.conflicts import Storefront, Verdict
from relay.localcallback import wait_for_callback
from relay.models import (
    ConflictCheck,
    Delivery,
    DestinationConnection,
    DestinationSetting,
)
from relay.secrets import KeyRing
from tests.conftest import SHOP, post_fixture, work
from tests.fake_pinterest_api import tag
from tests.storefronts import RELAY_PIXEL, pinterest_pixel, storefront
from tests.test_conflicts import TAG, check
from tests.test_connect_pinterest import ACCOUNT, authorize, call, connect

OTHER = "other-shop.myshopify.com"


# -- helpers -------------------------------------------------------------------


class Hostile(httpx.BaseTransport):
    """The shop's home page (and any other host) answered by `page`;
    Admin GraphQL still goes to the fake Shopify."""

    def __init__(self, inner: httpx.BaseTransport, page) -> None:
        self.inner, self.page, self.seen = inner, page, []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(str(request.url))
        if request.url.host == SHOP and request.url.path.startswith("/admin/"):
            return self.inner.handle_request(request)
        return self.page(request)


def hostile(runtime, shopify, page) -> Hostile:
    transport = Hostile(shopify.transport, page)
    runtime.shopify_transport = transport
    return transport


class Chunks(httpx.SyncByteStream):
    def __init__(self, chunks) -> None:
        self.chunks = chunks

    def __iter__(self):
        yield from self.chunks


def set_policy(runtime, policy: str) -> None:
    with runtime.db.session() as session:
        session.scalars(select(DestinationSetting)).one().conflict_policy = policy


def settings_json(text: str, set_up) -> None:
    set_up.shop(SHOP).theme_files["config/settings_data.json"] = text


EMBED = "shopify://apps/pinterest/blocks/tag/6a2f1e9c-0000-4000-8000-000000000001"


# == OAuth =====================================================================


def test_a_state_is_good_for_one_callback_only(
    client, runtime, installed, pinterest_api
):
    started = call(client, "POST", "/api/destinations/pinterest/connect")
    first = authorize(started.json["authorize_url"])
    # Same state, a second code (another Pinterest login, e.g. the attacker's).
    second = authorize(started.json["authorize_url"])
    assert first["state"] == second["state"]

    assert (
        client.get("/connect/pinterest/callback", query_string=first).status_code == 200
    )
    replay = client.get("/connect/pinterest/callback", query_string=second)

    assert replay.status_code == 400, "the grant was overwritten by a replayed state"


def test_the_callback_needs_nothing_from_the_browser_that_started(
    client, runtime, installed, pinterest_api
):
    """The state names the shop but not the browser that started: whoever
    completes shop B's authorize URL (a phished merchant already logged in to
    Pinterest) attaches *their* Pinterest account to shop B."""
    started = call(client, "POST", "/api/destinations/pinterest/connect", shop=OTHER)
    query = authorize(started.json["authorize_url"])
    victim_browser = client.application.test_client()  # no cookies, no session

    page = victim_browser.get("/connect/pinterest/callback", query_string=query)

    assert page.status_code == 200  # documents the behaviour
    assert connections.is_connected(runtime, OTHER, "pinterest")
    # B's admin may now list and choose the victim's ad accounts.
    assert (
        call(client, "GET", "/api/destinations/pinterest/accounts", shop=OTHER).json[
            "result"
        ][0]["id"]
        == ACCOUNT
    )


def _state(runtime, keyring=None, **claims):
    base = {
        "shop": SHOP,
        "destination": "pinterest",
        "redirect_uri": "https://relay.example/connect/pinterest/callback",
        "issued": int(time.time()),
    }
    return (keyring or runtime.keyring).encrypt({**base, **claims})


@pytest.mark.parametrize(
    "make, status",
    [
        (lambda rt: _state(rt, KeyRing((Fernet.generate_key().decode(),))), 400),
        (lambda rt: _state(rt, destination="meta"), 400),
        (lambda rt: _state(rt, issued=int(time.time()) - 16 * 60), 400),
        (lambda rt: _state(rt, issued=str(int(time.time()))), 400),
        (lambda rt: _state(rt, issued=True), 400),  # bool is an int
        (lambda rt: "A" * 100_000, 400),
        (lambda rt: "\u202e\u0000\u00e9==", 400),
        (lambda rt: rt.keyring.encrypt({"access_token": "x"}), 400),  # a grant
    ],
    ids=[
        "other-deployment-key",
        "other-destination",
        "expired",
        "issued-string",
        "issued-bool",
        "huge",
        "odd-unicode",
        "grant-ciphertext",
    ],
)
def test_a_state_relay_did_not_issue_for_this_is_refused(
    client, runtime, installed, pinterest_api, make, status
):
    answer = client.get(
        "/connect/pinterest/callback",
        query_string={"state": make(runtime), "code": "c"},
    )
    assert answer.status_code == status, answer.data[:300]
    assert "token:" not in " ".join(pinterest_api.calls)


@pytest.mark.parametrize(
    "path, query, status",
    [
        ("/connect/nope/callback", {"state": "s", "code": "c"}, 404),
        ("/connect/pinterest/callback", {"error": "x" * 100_000}, 400),
        ("/connect/pinterest/callback", {"state": "s"}, 400),
        (
            "/connect/pinterest/callback",
            {"code": "c\r\nX-Injected: 1", "state": "s"},
            400,
        ),
        ("/connect/%2e%2e/callback", {"state": "s", "code": "c"}, 404),
    ],
)
def test_odd_callback_parameters_are_refused_plainly(
    client, installed, pinterest_api, path, query, status
):
    answer = client.get(path, query_string=query)
    assert answer.status_code == status
    assert b"X-Injected" not in b"".join(
        f"{k}: {v}".encode() for k, v in answer.headers
    )


def test_a_pinterest_token_answer_with_a_huge_expiry_is_not_a_crash(
    client, runtime, installed, pinterest_api, process_log
):
    pinterest_api.access_seconds = 10**20  # Pinterest answers expires_in 1e20
    started = call(client, "POST", "/api/destinations/pinterest/connect")
    query = authorize(started.json["authorize_url"])

    page = client.get("/connect/pinterest/callback", query_string=query)

    # Connected, with the token's life capped at a year, not a crash.
    assert page.status_code == 200, page.data
    assert "OverflowError" not in process_log()
    with runtime.db.session() as session:
        row = session.scalars(select(DestinationConnection)).one()
        lives = row.expires_at - datetime.now(timezone.utc)
        assert lives <= timedelta(days=366, seconds=5)


# == cross-shop ================================================================


def test_another_shop_cannot_acknowledge_or_read_a_finding(client, runtime, set_up):
    set_up.storefront_html = storefront([pinterest_pixel(TAG)])
    (standing,) = conflicts.check(runtime, SHOP, "pinterest").standing_conflicts()

    other = call(
        client,
        "POST",
        "/api/conflicts/pinterest/acknowledge",
        shop=OTHER,
        json={"key": standing.key},
    )
    listed = call(client, "GET", "/api/conflicts", shop=OTHER)
    tags = call(
        client,
        "GET",
        f"/api/destinations/pinterest/accounts/{ACCOUNT}/tags",
        shop=OTHER,
    )

    assert other.status_code == 404
    assert listed.json == {"checks": []}
    assert tags.status_code == 400
    assert conflicts.check(runtime, SHOP, "pinterest").standing_conflicts() != []


@pytest.mark.parametrize(
    "body",
    [None, [], {"key": ["a"]}, {"key": ""}, {"key": "x" * 201}, {"key": {"$ne": 1}}],
)
def test_malformed_acknowledgements_are_refused(client, set_up, body):
    answer = call(client, "POST", "/api/conflicts/pinterest/acknowledge", json=body)
    assert answer.status_code == 400


# == secrets ===================================================================


def test_no_oauth_or_conversion_secret_reaches_logs_tables_or_answers(
    client, runtime, set_up, pinterest_api, process_log
):
    started = call(client, "POST", "/api/destinations/pinterest/connect")
    query = authorize(started.json["authorize_url"])  # the merchant's browser
    offset = len(process_log())  # Relay's own lines from here on
    client.get("/connect/pinterest/callback", query_string=query)
    answers = [
        call(client, "GET", "/api/destinations/pinterest/accounts").get_data(
            as_text=True
        ),
        call(
            client,
            "POST",
            "/api/destinations/pinterest/account",
            json={"account_id": ACCOUNT},
        ).get_data(as_text=True),
    ]
    conflicts.check(runtime, SHOP, "pinterest")
    answers.append(call(client, "GET", "/api/conflicts").get_data(as_text=True))
    with runtime.db.session() as session:
        stored = json.dumps(
            [r.findings for r in session.scalars(select(ConflictCheck))]
        )

    secrets = [
        "pina_access_",
        "pinr_refresh_",
        "pina_conversion_",
        query["code"],
        query["state"],
    ]
    # Lines of the fakes' own HTTP servers (which see the state in URLs) aside.
    relay_log = "\n".join(
        line for line in process_log()[offset:].splitlines() if "HTTP/1.1" not in line
    )
    for where, text in [
        ("log", relay_log),
        ("table", stored),
        *(("api", a) for a in answers),
    ]:
        for secret in secrets:
            assert secret not in text, (where, secret)


# == the CLI's local listener ===================================================


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_local_listener_ignores_a_request_without_relay_s_state():
    """Any web page the operator has open can fire
    <img src="http://localhost:8085/callback?x=1">: it is turned away, and
    the listener waits on for the real redirect."""
    port = _free_port()
    out: dict = {}
    thread = threading.Thread(
        target=lambda: out.update(params=wait_for_callback(port, 5, "issued")),
        daemon=True,
    )
    thread.start()
    time.sleep(0.3)

    drive_by = httpx.get(f"http://127.0.0.1:{port}/callback?utm=drive-by")
    real = httpx.get(f"http://127.0.0.1:{port}/callback?code=c1&state=issued")
    thread.join(5)

    assert (drive_by.status_code, real.status_code) == (404, 200)
    assert out["params"] == {"code": "c1", "state": "issued"}


def test_an_idle_connection_does_not_hold_the_local_listener_past_its_wait():
    port = _free_port()
    done = threading.Event()
    errors: list = []

    def run():
        try:
            wait_for_callback(port, 1, "issued")
        except Exception as error:  # noqa: BLE001
            errors.append(error)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    time.sleep(0.3)
    idle = socket.create_connection(("127.0.0.1", port))  # sends nothing
    try:
        finished = done.wait(4)
    finally:
        idle.close()
    done.wait(2)
    assert finished, "the listener waited on a silent local client past --wait"


# == the storefront ============================================================


# Redirects into Relay's own network: test_conflicts.py covers PublicInternetOnly.


@pytest.mark.parametrize("charset", ["rot13", "base64", "hex", "zlib", "idna"])
def test_an_odd_charset_is_unknown_not_a_crash(runtime, set_up, charset):
    hostile(
        runtime,
        set_up,
        lambda r: httpx.Response(
            200,
            headers={"Content-Type": f"text/html; charset={charset}"},
            content=storefront([pinterest_pixel(TAG)]).encode(),
        ),
    )
    findings = check(runtime)  # raises LookupError / UnicodeError
    assert findings["storefront app pixels"].verdict in (
        Verdict.UNKNOWN,
        Verdict.CONFLICT,
    )


def test_deeply_nested_pixels_are_unknown_not_a_crash(runtime, set_up):
    set_up.storefront_html = (
        "<script>webPixelsConfigList:" + "[" * 200_000 + "</script>"
    )
    assert check(runtime)["storefront app pixels"].verdict is Verdict.UNKNOWN


def test_a_deeply_nested_pixel_configuration_is_not_a_crash(runtime, set_up):
    pixel = dict(RELAY_PIXEL, configuration="[" * 200_000)
    set_up.storefront_html = storefront([pixel])
    assert check(runtime)["storefront app pixels"].verdict is Verdict.OK


def test_many_tiny_chunks_do_not_take_quadratic_time(runtime):
    """Over the network: a chunked body of 1-byte chunks (6 wire bytes each).

    Compared by growth, not by a time limit a loaded machine could miss:
    four times the chunks must take far less than sixteen times as long.
    """

    def read(chunks: int) -> float:
        transport = httpx.MockTransport(
            lambda r: httpx.Response(
                200,
                headers={"Content-Type": "text/html"},
                stream=Chunks([b"a"] * chunks),
            )
        )
        started = time.process_time()
        Storefront(SHOP, transport).page()
        return time.process_time() - started

    small = min(read(100_000) for _ in range(2))
    large = min(read(400_000) for _ in range(2))
    assert large < 8 * small, f"{small:.2f}s for 100 kB, {large:.2f}s for 400 kB"


def test_a_dripping_storefront_is_cut_off_by_a_total_deadline(monkeypatch):
    """httpx's read timeout is per read: one byte every 0.3 s never trips a
    1 s timeout, so a page may take as long as the server likes."""
    monkeypatch.setattr(conflicts, "STOREFRONT_SECONDS", 1)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def drip():
        connection, _ = server.accept()
        connection.recv(65536)
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        try:
            for _ in range(12):
                connection.sendall(b"1\r\na\r\n")
                time.sleep(0.3)
            connection.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # Relay hung up, as it should
        finally:
            connection.close()

    threading.Thread(target=drip, daemon=True).start()

    class Local(httpx.HTTPTransport):
        def handle_request(self, request):
            request.url = request.url.copy_with(
                scheme="http", host="127.0.0.1", port=port
            )
            return super().handle_request(request)

    started = time.monotonic()
    Storefront(SHOP, Local()).page()
    elapsed = time.monotonic() - started
    server.close()
    assert elapsed < 2.0, f"{elapsed:.1f}s with a 1 s deadline"


def test_a_compressed_page_is_not_inflated_past_the_size_limit(runtime):
    bomb = gzip.compress(b" " * (40 * 1024 * 1024))  # ~40 kB on the wire
    transport = httpx.MockTransport(
        lambda r: httpx.Response(
            200,
            headers={"Content-Type": "text/html", "Content-Encoding": "gzip"},
            content=bomb,
        )
    )
    with pytest.raises(conflicts.StorefrontUnavailable) as refused:
        Storefront(SHOP, transport).page()
    assert refused.value.reason == (
        "the storefront sent a gzip-compressed page although asked not to"
    )


@pytest.mark.parametrize(
    "html",
    [
        '<script>webPixelsConfigList:{"a":1}</script>',
        '<script>webPixelsConfigList:[1,"x",null,[]]</script>',
        storefront([dict(RELAY_PIXEL, configuration=None)]),
        storefront([dict(RELAY_PIXEL, configuration=["tag", 1])]),
        storefront([dict(RELAY_PIXEL, configuration="9" * 5000)]),
        storefront([dict(RELAY_PIXEL, type=["APP"])]),
        "\x00\xff\ufffd webPixelsConfigList:[" + "{}," * 100_000 + "{}]",
    ],
)
def test_odd_pixel_lists_do_not_crash(runtime, set_up, html):
    set_up.storefront_html = html
    check(runtime)


def test_non_utf8_bytes_and_redirect_loops_are_survived(runtime, set_up):
    hostile(
        runtime,
        set_up,
        lambda r: httpx.Response(
            200,
            headers={"Content-Type": "text/html"},
            content=b"\xff\xfe\x80" + storefront().encode(),
        ),
    )
    assert check(runtime)["storefront app pixels"].verdict is Verdict.OK
    hostile(runtime, set_up, lambda r: httpx.Response(302, headers={"Location": "/"}))
    assert check(runtime)["storefront app pixels"].verdict is Verdict.UNKNOWN


def test_an_app_pixel_merely_mentioning_pinterest_is_not_a_conflict(
    client, runtime, set_up, pinterest
):
    """A reviews/social app whose settings list the shop's social links."""
    social = dict(
        RELAY_PIXEL,
        id="99001",
        configuration=json.dumps({"socialLinks": "https://pinterest.com/example"}),
    )
    set_up.storefront_html = storefront([RELAY_PIXEL, social])
    set_policy(runtime, "hold")
    conflicts.check(runtime, SHOP, "pinterest")

    post_fixture(client, "orders_create.json")
    work(runtime)

    with runtime.db.session() as session:
        delivery = session.scalars(select(Delivery)).one()
    assert delivery.status == "sent", delivery.reason


# == the theme =================================================================


SHOPIFY_HEADER = """/*
 * ------------------------------------------------------------
 * IMPORTANT: The contents of this file are auto-generated.
 *
 * This file may be updated by the Shopify admin theme editor
 * or related systems. Please exercise caution as any changes
 * made to this file may be overwritten.
 * ------------------------------------------------------------
 */
"""


def test_settings_data_with_shopify_s_comment_header_is_still_read(runtime, set_up):
    settings_json(
        SHOPIFY_HEADER
        + json.dumps(
            {"current": {"blocks": {"1": {"type": EMBED, "disabled": False}}}}
        ),
        set_up,
    )
    finding = check(runtime)["theme files"]
    assert finding.verdict is not Verdict.OK, finding.evidence
    assert finding.verdict is Verdict.CONFLICT


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"current": "Default", "presets": {"Default": {}}}),
        json.dumps({"current": {"blocks": {"1": "oops"}}}),
        json.dumps({"current": {"blocks": {"1": ["x"]}}}),
        json.dumps(
            {"current": {"blocks": {"1": {"type": EMBED, "disabled": "false"}}}}
        ),
        "[" * 200_000,
        json.dumps({"current": ["x"]}),
        "null",
        '{"current": {"blocks": []}}',
    ],
    ids=[
        "current-string",
        "block-string",
        "block-list",
        "disabled-string",
        "deep",
        "current-list",
        "null",
        "blocks-list",
    ],
)
def test_odd_settings_data_is_never_a_crash(runtime, set_up, text):
    settings_json(text, set_up)
    check(runtime)


def test_a_string_disabled_flag_does_not_hide_an_embed(runtime, set_up):
    # "disabled": "false" (a string) is truthy: reads as disabled.
    settings_json(
        json.dumps(
            {"current": {"blocks": {"1": {"type": EMBED, "disabled": "false"}}}}
        ),
        set_up,
    )
    assert check(runtime)["theme files"].verdict is not Verdict.OK


@pytest.mark.parametrize(
    "answer",
    [
        {"data": {"themes": {"nodes": [None]}}},
        {
            "data": {
                "themes": {
                    "nodes": [
                        {
                            "name": "Dawn",
                            "files": {
                                "nodes": [
                                    {"filename": "layout/theme.liquid", "body": "text"}
                                ]
                            },
                        }
                    ]
                }
            }
        },
        {
            "data": {
                "themes": {
                    "nodes": [
                        {
                            "name": "Dawn",
                            "files": {
                                "nodes": [
                                    {
                                        "filename": "config/settings_data.json",
                                        "body": {"content": 42},
                                    }
                                ]
                            },
                        }
                    ]
                }
            }
        },
        {"data": {"themes": []}},
        {"data": None, "errors": [{"message": "x", "extensions": "ACCESS_DENIED"}]},
        {"data": {"themes": {"nodes": [{"name": "Dawn", "files": None}]}}},
    ],
    ids=[
        "node-null",
        "body-string",
        "content-int",
        "themes-list",
        "extensions-string",
        "files-null",
    ],
)
def test_odd_theme_answers_are_never_a_crash(runtime, set_up, answer):
    set_up._theme_files = lambda state, variables: answer
    check(runtime)


# == Pinterest's tags ===========================================================


@pytest.mark.parametrize(
    "tags",
    [
        [dict(tag(TAG, ACCOUNT), configs=["no_code_capi_domains"])],
        [dict(tag(TAG, ACCOUNT), configs={"no_code_capi_domains": [{"d": 1}]})],
        [dict(tag(TAG, ACCOUNT), configs={"no_code_capi_domains": 7})],
        [dict(tag(TAG, ACCOUNT), configs={"no_code_capi_domains": "shop.com"})],
        [dict(tag(TAG, ACCOUNT), last_fired_time_ms=10**30)],
        [dict(tag(TAG, ACCOUNT), last_fired_time_ms=-1)],
        [dict(tag(TAG, ACCOUNT), last_fired_time_ms="1752500000000")],
        [dict(tag(TAG, ACCOUNT), last_fired_time_ms=True)],
        [dict(tag(TAG, ACCOUNT), configs=None, id=None)],
    ],
    ids=[
        "configs-list",
        "domains-dicts",
        "domains-int",
        "domains-string",
        "fired-huge",
        "fired-negative",
        "fired-string",
        "fired-bool",
        "nulls",
    ],
)
def test_odd_pinterest_tags_are_never_a_crash(
    client, runtime, set_up, pinterest_api, tags
):
    pinterest_api.accounts[ACCOUNT]["tags"] = tags
    connect(client)
    finding = check(runtime)["Pinterest ad account"]
    if finding.verdict is Verdict.CONFLICT:  # no-code CAPI domains, read as text
        assert "shop.com" in finding.evidence, finding.evidence


# == the policy ================================================================


def test_a_check_that_crashes_does_not_leave_a_stale_conflict_holding_purchases(
    client, runtime, set_up, pinterest
):
    set_policy(runtime, "hold")
    set_up.storefront_html = storefront([pinterest_pixel(TAG)])
    conflicts.check(runtime, SHOP, "pinterest")  # conflict: purchases held

    # The merchant removes the Pinterest app; their old theme keeps
    # settings_data.json in the legacy shape ("current": "Default").
    set_up.storefront_html = storefront()
    settings_json(
        json.dumps({"current": "Default", "presets": {"Default": {}}}), set_up
    )
    try:
        conflicts.check(runtime, SHOP, "pinterest")
    except Exception:  # noqa: BLE001 - the crash under test
        pass

    post_fixture(client, "orders_create.json")
    work(runtime)
    with runtime.db.session() as session:
        delivery = session.scalars(select(Delivery)).one()
    assert delivery.status == "sent", delivery.reason


def test_theme_text_cannot_put_terminal_escapes_in_the_cli_output(runtime, set_up):
    """`relay check-conflicts` prints evidence; the embed type comes from the
    merchant's settings_data.json and `[^/"]*` lets control characters in."""
    hostile_type = "shopify://apps/pinterest\x1b]0;owned\x07\x1b[2J/blocks/x"
    settings_json(
        json.dumps({"current": {"blocks": {"1": {"type": hostile_type}}}}), set_up
    )
    lines = conflicts.describe(conflicts.check(runtime, SHOP, "pinterest"))
    assert not any("\x1b" in line for line in lines)
