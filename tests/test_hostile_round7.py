"""Round 7 hostile probes: the admin API, batching and retries, logs."""

from __future__ import annotations

import json
import time

import jwt
import pytest

from tests.conftest import (
    SECRET,
    SHOP,
    configure_destination,
    post_signed,
    work,
)
from tests.fake_pinterest import Scripted
from tests.fake_shopify import API_KEY
from tests.test_admin_pages_api import OTHER_SHOP, call, settings_body
from tests.test_batching import (
    FIRST_ID,
    ORDER,
    log,
    post_orders,
    run_due,
    scheduled,
    sent_once,
)
from tests.test_shopify_app import APP_URL

TOKEN = "pina_fake_conversion_token"


def raw_call(client, method, path, token, **options):
    headers = {"Authorization": f"Bearer {token}"}
    return client.open(
        path, method=method, base_url=APP_URL, headers=headers, **options
    )


def claims(shop=SHOP, **changes):
    now = int(time.time())
    base = {
        "iss": f"https://{shop}/admin",
        "dest": f"https://{shop}",
        "aud": API_KEY,
        "sub": "42",
        "exp": now + 60,
        "nbf": now - 5,
        "iat": now - 5,
        "jti": f"jti-{now}",
        "sid": "sid",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


# ---------------------------------------------------------------- admin: queries

QUERY_PATHS = [
    "/api/stats?period=",
    "/api/stats?period=24H",
    "/api/stats?period=7d%00",
    "/api/stats?period=%E2%88%9E",
    "/api/stats?period=24h&period=7d",
    "/api/stats?period[]=24h",
    "/api/stats?period=" + "x" * 20000,
    "/api/accuracy?period=-1",
    "/api/accuracy?period=%FF%FE",
    "/api/deliveries?limit=-1",
    "/api/deliveries?limit=0",
    "/api/deliveries?limit=201",
    "/api/deliveries?limit=99999999999999999999",
    "/api/deliveries?limit=1e3",
    "/api/deliveries?limit=%D9%A3",  # Arabic-Indic three
    "/api/deliveries?limit=%EF%BC%95",  # fullwidth five
    "/api/deliveries?limit= 5",
    "/api/deliveries?limit=5%0A",
    "/api/deliveries?before=0",
    "/api/deliveries?before=-5",
    "/api/deliveries?before=2147483648",
    "/api/deliveries?before=9999999999",
    "/api/deliveries?before=abc",
    "/api/deliveries?status=SENT",
    "/api/deliveries?status=sent%00",
    "/api/deliveries?status=%27%20OR%201%3D1--",
    "/api/deliveries?status=",
    "/api/deliveries?page=-1&status=held",
    "/api/deliveries/0",
    "/api/deliveries/-1",
    "/api/deliveries/2147483648",
    "/api/deliveries/99999999999999999999999999",
    "/api/deliveries/%D9%A3",
    "/api/privacy/reports/99999999999999999999999",
    "/api/privacy/reports/-3",
    "/api/destinations/%00/settings",
    "/api/destinations/" + "p" * 5000 + "/settings",
    "/api/destinations/pinterest/accounts/%2E%2E/tags",
    "/api/destinations/pinterest/accounts/" + "9" * 4000 + "/tags",
    "/api/conflicts?x=%FF",
    "/api/health?x=%FF",
]


@pytest.mark.parametrize("path", QUERY_PATHS)
def test_odd_query_strings_are_4xx_never_5xx(client, runtime, installed, path):
    response = call(client, "GET", path)
    assert response.status_code < 500, (response.status_code, response.get_data()[:300])
    if response.status_code >= 400:
        assert response.is_json and response.json.get("error"), response.get_data()[
            :200
        ]


# ---------------------------------------------------------------- admin: sessions


@pytest.mark.parametrize(
    "name",
    [
        "alg_none",
        "expired",
        "wrong_audience",
        "wrong_secret",
        "not_yet_valid",
        "dest_with_path",
        "dest_http",
        "dest_not_string",
        "aud_list_with_ours",
        "no_exp",
        "huge_exp",
        "empty",
        "garbage",
        "hs512",
    ],
)
def test_bad_session_tokens_are_refused(client, runtime, installed, name):
    now = int(time.time())
    tokens = {
        "alg_none": jwt.encode(claims(), None, algorithm="none")
        if hasattr(jwt, "encode")
        else "",
        "expired": jwt.encode(
            claims(exp=now - 120, nbf=now - 300, iat=now - 300), SECRET, "HS256"
        ),
        "wrong_audience": jwt.encode(claims(aud="someone-else"), SECRET, "HS256"),
        "wrong_secret": jwt.encode(claims(), "not-the-secret", "HS256"),
        "not_yet_valid": jwt.encode(claims(nbf=now + 3600), SECRET, "HS256"),
        "dest_with_path": jwt.encode(claims(dest=f"https://{SHOP}/x"), SECRET, "HS256"),
        "dest_http": jwt.encode(claims(dest=f"http://{SHOP}"), SECRET, "HS256"),
        "dest_other_than_iss": jwt.encode(
            claims(dest=f"https://{OTHER_SHOP}"), SECRET, "HS256"
        ),
        "dest_not_string": jwt.encode(
            claims(dest=["https://" + SHOP]), SECRET, "HS256"
        ),
        "aud_list_with_ours": jwt.encode(claims(aud=[API_KEY, "x"]), SECRET, "HS256"),
        "no_exp": jwt.encode(claims(exp=None), SECRET, "HS256"),
        "huge_exp": jwt.encode(claims(exp=10**20), SECRET, "HS256"),
        "empty": "",
        "garbage": "a.b.c",
        "hs512": jwt.encode(claims(), SECRET, "HS512"),
    }
    token = tokens[name]
    for method, path in [
        ("GET", "/api/deliveries"),
        ("GET", "/api/destinations/pinterest/settings"),
        ("POST", "/api/destinations/pinterest/settings"),
    ]:
        response = raw_call(client, method, path, token, json=settings_body())
        assert response.status_code in (302, 401), (
            name,
            path,
            response.status_code,
            response.get_data()[:300],
        )


def test_session_for_another_shop_sees_nothing_of_ours(
    client, runtime, pinterest, connected_shop, installed
):
    post_orders(client, 2)
    work(runtime)
    mine = call(client, "GET", "/api/deliveries").json["deliveries"]
    assert len(mine) == 2
    for path in [
        "/api/deliveries",
        f"/api/deliveries/{mine[0]['id']}",
        "/api/stats?period=7d",
        "/api/health",
        "/api/destinations/pinterest/settings",
    ]:
        response = call(client, "GET", path, shop=OTHER_SHOP)
        text = response.get_data(as_text=True)
        assert str(FIRST_ID) not in text, (path, text[:300])
        assert pinterest.ad_account_id not in text, (path, text[:300])


# ---------------------------------------------------------------- admin: settings

BAD_BODIES = [
    None,
    [],
    "string",
    42,
    {"values": []},
    {"values": "x"},
    {"values": None},
    {"values": {"ad_account_id": 123, "conversion_token": "pina_x"}},
    {"values": {"ad_account_id": ["1"], "conversion_token": "pina_x"}},
    {"values": {"ad_account_id": {"$gt": ""}, "conversion_token": "pina_x"}},
    {"values": {"ad_account_id": True, "conversion_token": True}},
    {"values": {"ad_account_id": "1" * 19, "conversion_token": "pina_x"}},
    {"values": {"ad_account_id": "-1", "conversion_token": "pina_x"}},
    {"values": {"ad_account_id": "1e5", "conversion_token": "pina_x"}},
    {"values": {"ad_account_id": "1\x00", "conversion_token": "pina_x"}},
    {"values": {"ad_account_id": "1", "conversion_token": "x" * 100000}},
    {"values": {"ad_account_id": "1", "conversion_token": "pina_x", "tag_id": "-3"}},
    {
        "values": {
            "ad_account_id": "1",
            "conversion_token": "pina_x",
            "events": "checkout,",
        }
    },
    {
        "values": {
            "ad_account_id": "1",
            "conversion_token": "pina_x",
            "events": ["checkout"],
        }
    },
    {
        "values": {
            "ad_account_id": "1",
            "conversion_token": "pina_x",
            "events": "CHECKOUT",
        }
    },
    {"values": {"ad_account_id": "1", "conversion_token": "pina_x", "events": "lead"}},
    {"values": {"ad_account_id": "1", "conversion_token": "pina_x", "value": "gross"}},
    {"values": {"ad_account_id": "1", "conversion_token": "pina_x", "value": 5}},
    {"values": {"ad_account_id": "1", "conversion_token": "pina_x", "currency": "EUR"}},
    {
        "values": {
            "ad_account_id": "1",
            "conversion_token": "pina_x",
            "api_base": "ftp://x",
        }
    },
    {
        "values": {
            "ad_account_id": "1",
            "conversion_token": "pina_x",
            "api_base": "javascript:alert(1)",
        }
    },
    {"values": {"ad_account_id": "1", "conversion_token": "pina_x", "__proto__": "x"}},
    {
        "values": {"ad_account_id": "1", "conversion_token": "pina_x"},
        "test_mode": "true",
    },
    {"values": {"ad_account_id": "1", "conversion_token": "pina_x"}, "test_mode": 1},
    {"values": {"ad_account_id": "1", "conversion_token": "pina_x"}, "test_mode": 0},
    {"values": {"ad_account_id": "1", "conversion_token": "pina_x"}, "enabled": "no"},
    {"values": {"ad_account_id": "1", "conversion_token": "pina_x"}, "enabled": [True]},
    {
        "values": {"ad_account_id": "1", "conversion_token": "pina_x"},
        "consent_policy": "none",
    },
    {
        "values": {"ad_account_id": "1", "conversion_token": "pina_x"},
        "consent_policy": ["standard"],
    },
    {
        "values": {"ad_account_id": "1", "conversion_token": "pina_x"},
        "consent_policy": {"a": 1},
    },
    {
        "values": {"ad_account_id": "1", "conversion_token": "pina_x"},
        "conflict_policy": 1.5,
    },
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=lambda b: json.dumps(b)[:60])
def test_bad_settings_bodies_are_400_and_save_nothing(client, runtime, installed, body):
    response = call(client, "POST", "/api/destinations/pinterest/settings", json=body)
    assert response.status_code == 400, (
        response.status_code,
        response.get_data()[:300],
    )
    assert response.json.get("error")
    text = response.get_data(as_text=True)
    assert "pina_x" not in text
    assert "x" * 1000 not in text
    form = call(client, "GET", "/api/destinations/pinterest/settings").json
    assert form["set_up"] is False, form


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"{", "application/json"),
        (b"\xff\xfe{}", "application/json"),
        (b'{"values": {"ad_account_id": "1", "ad_account_id": "2"}}', "text/plain"),
        (b"[" * 50000 + b"]" * 50000, "application/json"),
        (b'{"a":' * 30000 + b"1" + b"}" * 30000, "application/json"),
        (b"\x00" * 1000, "application/json"),
        (b"NaN", "application/json"),
        (
            b'{"values": {"ad_account_id": "1", "conversion_token": "pina_\\ud800"}}',
            "application/json",
        ),
    ],
    ids=[
        "truncated",
        "bom",
        "plain",
        "deep_list",
        "deep_object",
        "nul",
        "nan",
        "surrogate",
    ],
)
def test_malformed_settings_json_is_4xx(client, runtime, installed, data, content_type):
    response = call(
        client,
        "POST",
        "/api/destinations/pinterest/settings",
        data=data,
        content_type=content_type,
    )
    assert 400 <= response.status_code < 500, (
        response.status_code,
        response.get_data()[:300],
    )


@pytest.mark.parametrize(
    "path",
    [
        "/api/destinations/pinterest/account",
        "/api/conflicts/pinterest/acknowledge",
        "/api/destinations/pinterest/connect",
        "/api/destinations/pinterest/test-event",
    ],
)
def test_deeply_nested_json_on_other_posts_is_4xx(client, runtime, installed, path):
    response = call(
        client,
        "POST",
        path,
        data=b"[" * 50000 + b"]" * 50000,
        content_type="application/json",
    )
    assert response.status_code < 500, (response.status_code, response.get_data()[:300])


def test_oversized_settings_body_is_413(client, runtime, installed):
    size = runtime.config.webhook_max_bytes + 10
    body = json.dumps({"values": {"x": "a" * size}}).encode()
    response = call(
        client,
        "POST",
        "/api/destinations/pinterest/settings",
        data=body,
        content_type="application/json",
    )
    assert response.status_code == 413, response.status_code


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ad_account_id", "\u0661\u0662\u0663\u0664"),  # Arabic-Indic digits
        ("ad_account_id", "\uff11\uff12\uff13"),  # fullwidth digits
        ("tag_id", "\u0967\u0968\u0969"),  # Devanagari digits
    ],
)
def test_non_ascii_digits_are_not_an_id(client, runtime, installed, field, value):
    values = {"ad_account_id": "123", "conversion_token": "pina_x", field: value}
    response = call(
        client,
        "POST",
        "/api/destinations/pinterest/settings",
        json=settings_body(**values),
    )
    assert response.status_code == 400, (response.status_code, response.json)


def test_the_token_is_never_echoed(client, runtime, installed):
    secret = "pina_SECRET_never_echo_me"
    body = settings_body(ad_account_id="123", conversion_token=secret)
    saved = call(client, "POST", "/api/destinations/pinterest/settings", json=body)
    assert saved.status_code == 200
    bad = call(
        client,
        "POST",
        "/api/destinations/pinterest/settings",
        json=settings_body(ad_account_id="x", conversion_token=secret + "2"),
    )
    for response in [
        saved,
        bad,
        call(client, "GET", "/api/destinations/pinterest/settings"),
        call(client, "GET", "/api/destinations"),
    ]:
        assert secret not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "token",
    [
        "pina_caf\u00e9",
        "pina_\u2603",
        "pina_a\r\nX-Injected: 1",
        "pina a b",
        "pina_\x7f",
    ],
    ids=["latin1", "snowman", "crlf", "spaces", "del"],
)
def test_odd_conversion_tokens_never_crash_the_test_event(
    client, runtime, installed, pinterest, token
):
    body = settings_body(
        ad_account_id=pinterest.ad_account_id,
        conversion_token=token,
        api_base=pinterest.api_base,
    )
    saved = call(client, "POST", "/api/destinations/pinterest/settings", json=body)
    if saved.status_code == 400:
        return  # refused at the form: fine
    assert saved.status_code == 200, saved.get_data()[:300]
    response = call(client, "POST", "/api/destinations/pinterest/test-event")
    assert response.status_code < 500, (response.status_code, response.get_data()[:300])
    assert token not in response.get_data(as_text=True)


def test_odd_conversion_token_does_not_leave_deliveries_queued(
    client, runtime, pinterest, connected_shop
):
    # Saved before tokens were checked: held, saying why, and not retried.
    configure_destination(runtime, "pinterest", {"conversion_token": "pina_\u2603"})
    ids = post_orders(client, 2)
    work(runtime)
    why = "it holds characters an HTTP header cannot carry; paste the token again"
    reason = f"destination paused: Pinterest conversion token cannot be sent: {why}"
    assert log(runtime) == [(i, "held", reason, None, why) for i in ids]
    assert pinterest.requests == []
    assert scheduled(runtime) == []


def test_api_base_cannot_reach_internal_addresses(
    client, runtime, installed, httpserver
):
    """The merchant's form takes any http(s) URL as the API base: Relay's
    workers then POST, with the token, wherever it points, and the test
    event shows the merchant what answered."""
    httpserver.expect_request("/internal-admin", method="POST").respond_with_data(
        "INTERNAL-ONLY: db_password=hunter2", status=404
    )
    base = httpserver.url_for("/internal-admin") + "?"
    body = settings_body(ad_account_id="1", conversion_token="pina_x", api_base=base)
    saved = call(client, "POST", "/api/destinations/pinterest/settings", json=body)
    answered = call(client, "POST", "/api/destinations/pinterest/test-event")
    assert saved.status_code == 400 or "hunter2" not in answered.get_data(
        as_text=True
    ), (
        base,
        answered.json,
    )


def test_deeply_nested_json_without_a_valid_session_is_401_not_503(
    client, runtime, installed
):
    response = raw_call(
        client,
        "POST",
        "/api/destinations/pinterest/settings",
        "a.b.c",
        data=b"[" * 50000 + b"]" * 50000,
        content_type="application/json",
    )
    assert response.status_code in (302, 401), (
        response.status_code,
        response.get_data()[:200],
    )


def test_a_token_that_cannot_be_sent_is_logged_as_a_failure_not_queued_forever(
    client, runtime, pinterest, connected_shop, process_log
):
    configure_destination(runtime, "pinterest", {"conversion_token": "pina_caf\u00e9"})
    post_orders(client, 1)
    work(runtime)
    assert log(runtime)[0][1] == "held"
    assert "UnicodeEncodeError" not in process_log()
    assert "Traceback" not in process_log()


# ---------------------------------------------------------------- delivery


from tests import fake_pinterest as fake_module  # noqa: E402
from tests.conftest import post_fixture  # noqa: E402


def other_customer_order(order_id: int) -> dict:
    text = json.dumps(ORDER)
    text = text.replace("jane@example.com", f"max{order_id}@example.org")
    text = text.replace("+15555550100", "+15555550199").replace(
        "7712345678901", "7712345670000"
    )
    order = json.loads(text)
    order["id"] = order_id
    return order


def post_order(client, order):
    response = post_signed(client, order, f"order-{order['id']}")
    assert response.status_code == 200
    return str(order["id"])


def drive_retries(runtime, rounds=6):
    for _ in range(rounds):
        due = scheduled(runtime)
        if not due:
            return
        run_due(runtime, after=max(d for _, d in due) + 1)
        work(runtime)


def test_mixed_poison_refused_and_good_in_one_batch(
    client, runtime, pinterest, connected_shop
):
    ids = post_orders(client, 6)
    pinterest.poison_ids = {ids[1]: "Invalid 'user_data' parameter."}
    pinterest.refused_ids = {ids[4]: "Invalid 'currency' parameter."}
    work(runtime)
    good = [i for i in ids if i not in (ids[1], ids[4])]
    assert dict(pinterest.delivered) == sent_once(good)
    by_id = {row[0]: row for row in log(runtime)}
    assert by_id[ids[1]][1] == "failed" and by_id[ids[1]][3] == 400
    assert by_id[ids[4]][1] == "failed" and by_id[ids[4]][3] == 422
    assert all(by_id[i][1] == "sent" for i in good), log(runtime)


def test_split_halves_where_one_half_meets_a_server_error(
    client, runtime, pinterest, connected_shop, monkeypatch
):
    ids = post_orders(client, 4)
    pinterest.poison_ids = {ids[0]: "Invalid 'user_data' parameter."}
    original = fake_module.FakePinterest._answer
    seen = []

    def answer(self, request, account):
        seen.append(1)
        if len(seen) == 5:  # the second half [2, 3]
            return 503, {"code": 1, "message": "down"}, json.loads(request.get_data())
        return original(self, request, account)

    monkeypatch.setattr(fake_module.FakePinterest, "_answer", answer)
    work(runtime)
    drive_retries(runtime)
    assert dict(pinterest.delivered) == sent_once(ids[1:]), (
        [(len(r.body["data"]), r.status) for r in pinterest.requests],
        log(runtime),
    )
    assert {row[0]: row[1] for row in log(runtime)} == {
        ids[0]: "failed",
        ids[1]: "sent",
        ids[2]: "sent",
        ids[3]: "sent",
    }


def test_a_200_listing_fewer_events_than_sent(
    client, runtime, pinterest, connected_shop, monkeypatch
):
    """Pinterest answers 200 but lists only the first event: what it did with
    the second is unknown."""
    ids = post_orders(client, 3)
    original = fake_module.FakePinterest._answer_events
    calls = []

    def fewer(self, body):
        calls.append(1)
        status, answer, body = original(self, body)
        if len(calls) == 1:
            answer = dict(answer, events=answer["events"][:1])
        return status, answer, body

    monkeypatch.setattr(fake_module.FakePinterest, "_answer_events", fewer)
    work(runtime)
    assert {row[1] for row in log(runtime)} == {"retrying"}
    drive_retries(runtime)
    assert {s for _, s, *_ in log(runtime)} == {"sent"}
    # What the answer did not list is unknown, so the whole batch goes
    # again under the same event ids, which Pinterest deduplicates (at
    # least once, by design). The fake counts an answer that lists fewer
    # results than events as processing none of them.
    assert dict(pinterest.delivered) == sent_once(ids)
    assert len(pinterest.requests) == 2


REFUSED_422 = ("failed", "Pinterest refused the request", 422, "953: invalid")
SENT = ("sent", None, 200, None)


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        # Details that list no usable events: the batch is retried, and sent.
        ({"code": 953, "message": "invalid", "details": {"events": "nope"}}, SENT),
        (
            {
                "code": 953,
                "message": "invalid",
                "details": {"events": [{"status": "failed"}] * 9},
            },
            SENT,
        ),
        # No per-event details at all: the whole request was refused.
        ({"code": 953, "message": "invalid", "details": []}, REFUSED_422),
        ({"code": 953, "message": "invalid"}, REFUSED_422),
    ],
    ids=["events_not_list", "too_many", "details_list", "no_details"],
)
def test_odd_422_answers(client, runtime, pinterest, connected_shop, answer, outcome):
    ids = post_orders(client, 3)
    pinterest.script = [Scripted(422, answer)]
    work(runtime)
    drive_retries(runtime)

    assert log(runtime) == [(i, *outcome) for i in ids]
    sent = outcome[0] == "sent"
    assert dict(pinterest.delivered) == (sent_once(ids) if sent else {})


@pytest.mark.parametrize("value", ["inf", "nan", "1e30", "-60", "99999999999", "0x10"])
def test_odd_retry_after_is_survived(client, runtime, pinterest, connected_shop, value):
    pinterest.script = [
        Scripted(429, {"code": 8, "message": "Rate limit"}, {"Retry-After": value})
    ]
    ids = post_orders(client, 2)
    work(runtime)
    assert {s for _, s, *_ in log(runtime)} == {"retrying"}, log(runtime)
    assert scheduled(runtime), "the batch must be scheduled for a retry"
    drive_retries(runtime)
    assert dict(pinterest.delivered) == sent_once(ids)
    assert {s for _, s, *_ in log(runtime)} == {"sent"}


def test_customers_redact_while_events_wait_in_the_outbox(
    client, runtime, pinterest, connected_shop
):
    runtime.config = runtime.config.with_changes(batch_wait_seconds=30)
    post_orders(client, 2)  # 012, 013: Jane's, named by the redact
    others = [post_order(client, other_customer_order(FIRST_ID + n)) for n in (7, 8)]
    work(runtime)  # normalized; their batch waits
    assert pinterest.requests == []
    post_fixture(client, "customers_redact.json")
    work(runtime)
    run_due(runtime, after=31)
    work(runtime)
    assert dict(pinterest.delivered) == sent_once(others), dict(pinterest.delivered)
    assert [row[0] for row in log(runtime)] == others


def during_first_request(monkeypatch, action, answer=None):
    """Run `action` inside the fake while it holds the first request (the
    work horse waits for its answer), then answer `answer` or as usual."""
    original = fake_module.FakePinterest._answer_events
    calls = []

    def hooked(self, body):
        calls.append(1)
        if len(calls) == 1:
            action()
            if answer is not None:
                return answer + (body,)
        return original(self, body)

    monkeypatch.setattr(fake_module.FakePinterest, "_answer_events", hooked)


def test_customers_redact_while_a_batch_is_in_flight(
    client, runtime, pinterest, connected_shop, monkeypatch
):
    from relay import intake_queue

    janes = post_orders(client, 2)  # named by the redact
    others = [post_order(client, other_customer_order(FIRST_ID + 7))]

    def redact():
        post_fixture(client, "customers_redact.json")
        intake_queue.drain(runtime)

    during_first_request(monkeypatch, redact)
    work(runtime)
    work(runtime)
    assert [row[0] for row in log(runtime)] == others, log(runtime)
    # Jane's were on the wire when the request came: sent, once, and
    # their log rows deleted with the rest of her data.
    assert dict(pinterest.delivered) == sent_once(janes + others)


def test_settings_changed_while_a_batch_waits_apply_to_it(
    client, runtime, pinterest, connected_shop, installed
):
    runtime.config = runtime.config.with_changes(batch_wait_seconds=30)
    ids = post_orders(client, 2)
    work(runtime)
    body = {"values": {"events": "add_to_cart"}}
    saved = call(client, "POST", "/api/destinations/pinterest/settings", json=body)
    assert saved.status_code == 200, saved.json
    run_due(runtime, after=31)
    work(runtime)
    assert pinterest.requests == []
    assert log(runtime) == [
        (i, "skipped", "event type turned off", None, None) for i in ids
    ]


def test_account_changed_mid_flight_then_old_refused(
    client, runtime, pinterest, connected_shop, installed, monkeypatch
):
    """The request in flight is refused (403) after the merchant saved new
    settings: sent again with the new ones, once."""
    ids = post_orders(client, 2)

    def save():
        saved = call(
            client,
            "POST",
            "/api/destinations/pinterest/settings",
            json={"values": {"tag_id": "123"}},
        )
        assert saved.status_code == 200

    during_first_request(
        monkeypatch, save, (403, {"code": 29, "message": "not permitted"})
    )
    work(runtime)
    work(runtime)
    assert dict(pinterest.delivered) == sent_once(ids), log(runtime)
    assert {s for _, s, *_ in log(runtime)} == {"sent"}


def test_merchant_disables_while_a_batch_is_in_flight_and_it_is_refused(
    client, runtime, pinterest, connected_shop, installed, monkeypatch
):
    ids = post_orders(client, 2)

    def disable():
        saved = call(
            client,
            "POST",
            "/api/destinations/pinterest/settings",
            json={"enabled": False},
        )
        assert saved.status_code == 200

    during_first_request(
        monkeypatch, disable, (401, {"code": 2, "message": "Authentication failed."})
    )
    work(runtime)
    work(runtime)
    assert pinterest.delivered == {}
    assert log(runtime) == [
        (i, "skipped", "destination disabled", None, None) for i in ids
    ]


def test_relay_retry_twice_while_a_batch_is_in_flight(
    client, runtime, pinterest, connected_shop, cli_env, monkeypatch
):
    from tests.conftest import invoke

    ids = post_orders(client, 3)
    pinterest.refused_ids = {ids[0]: "Invalid 'currency' parameter."}
    work(runtime)
    assert log(runtime)[0][1] == "failed"
    pinterest.refused_ids = {}
    outputs = []
    invoke(cli_env, "retry")
    during_first_request(
        monkeypatch, lambda: outputs.append(invoke(cli_env, "retry").output)
    )
    work(runtime)
    work(runtime)
    assert dict(pinterest.delivered) == sent_once(ids), dict(pinterest.delivered)
    assert {s for _, s, *_ in log(runtime)} == {"sent"}


def test_relay_retry_while_a_refused_delivery_is_in_flight_again(
    client, runtime, pinterest, connected_shop, cli_env, monkeypatch
):
    """`relay retry` is run while the same failed delivery, already sent
    again by an earlier `relay retry`, is in flight and is refused again."""
    from tests.conftest import invoke

    ids = post_orders(client, 1)
    pinterest.refused_ids = {ids[0]: "Invalid 'currency' parameter."}
    work(runtime)
    invoke(cli_env, "retry")
    outputs = []
    during_first_request(
        monkeypatch, lambda: outputs.append(invoke(cli_env, "retry").output)
    )
    work(runtime)
    work(runtime)
    assert len(pinterest.requests) <= 3


# ---------------------------------------------------------------- logs

PERSONAL = [
    "jane@example.com",
    "5555550100",
    "203.0.113.42",
    "Jane",
    "Doe",
    "123 Example St",
    "Unit 4",
    "X0X 0X0",
    "Toronto",
]


def test_no_personal_data_in_logs_through_refusals_retries_and_redaction(
    client, runtime, pinterest, connected_shop, process_log, installed
):
    ids = post_orders(client, 4)
    # Pinterest's refusals quote what they refused.
    pinterest.poison_ids = {ids[0]: "Invalid client_ip_address 203.0.113.42"}
    pinterest.refused_ids = {ids[1]: "Invalid parameter user_data: jane@example.com"}
    pinterest.script = [Scripted(500, {"code": 1, "message": "oops for Jane Doe"})]
    work(runtime)
    drive_retries(runtime)
    call(client, "POST", "/api/destinations/pinterest/test-event")
    post_fixture(client, "customers_redact.json")
    work(runtime)
    text = process_log()
    leaks = [p for p in PERSONAL if p in text]
    lines = [line for line in text.splitlines() if any(p in line for p in PERSONAL)]
    assert not leaks, (leaks, lines[:5])


def test_non_json_refusal_body_echoing_personal_data_is_not_logged(
    client, runtime, pinterest, connected_shop, process_log
):
    ids = post_orders(client, 1)
    pinterest.script = [
        Scripted(400, {"raw": "bad email jane@example.com from 203.0.113.42"})
    ]
    work(runtime)
    assert log(runtime) == [
        (
            ids[0],
            "failed",
            "Pinterest refused the request",
            400,
            '{"raw": "bad email [redacted] from [redacted]"}',
        )
    ]
    text = process_log()
    lines = [line for line in text.splitlines() if any(p in line for p in PERSONAL)]
    assert not lines, lines[:5]


def test_the_logged_payload_shown_to_the_merchant_masks_ip_and_email(
    client, runtime, pinterest, connected_shop, installed
):
    post_orders(client, 1)
    work(runtime)
    (row,) = call(client, "GET", "/api/deliveries").json["deliveries"]
    text = call(client, "GET", f"/api/deliveries/{row['id']}").get_data(as_text=True)
    leaks = [p for p in PERSONAL if p in text]
    assert not leaks, (leaks, text[:600])


def test_a_huge_retry_after_does_not_park_a_batch_past_the_retry_window(
    client, runtime, pinterest, connected_shop
):
    pinterest.script = [
        Scripted(
            429, {"code": 8, "message": "Rate limit"}, {"Retry-After": "99999999999"}
        )
    ]
    post_orders(client, 2)
    work(runtime)
    ((_, due_in),) = scheduled(runtime)
    assert due_in <= runtime.config.retry_window_seconds, (
        f"batch due in {due_in:.0f} s (~{due_in / 3.15e7:.0f} years); "
        f"log {log(runtime)}"
    )
