"""A local stand-in for Pinterest's Conversions API, at the HTTP boundary.

It answers as Pinterest does (per-event statuses; error bodies of the
published spec), validates every request body against the strict JSON
Schema derived from Pinterest's OpenAPI description, and refuses events
older than seven days against its own clock, which tests set to Relay's.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from relay.clock import Clock

SPECS = Path(__file__).parent / "specs"
MAX_AGE = timedelta(days=7)


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SPECS / name).read_text())
    return jsonschema.Draft202012Validator(schema)


REQUEST_SCHEMA = _validator("pinterest-capi-events.strict.schema.json")
RESPONSE_SCHEMA = _validator("pinterest-capi-events-response.schema.json")
ERROR_SCHEMA = _validator("pinterest-capi-events-error.schema.json")


@dataclass
class Received:
    """One request as the fake saw it; status 0 when it never answered."""

    ad_account_id: str
    test: bool
    body: dict[str, Any]
    status: int
    # The event ids it answered `processed`: what Pinterest now holds.
    processed: list[str] = field(default_factory=list)


# What `FakePinterest.script` may hold besides (status, body, headers):
RESET = "reset"  # close the connection without an answer, as a crash would
STALL = "stall"  # hold the request until `release()`, then reset it
HOLD = "hold"  # hold the request until `release()`, then answer it


@dataclass
class Scripted:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakePinterest:
    server: HTTPServer
    clock: Clock
    ad_account_id: str = "549755885175"
    token: str = "pina_fake_conversion_token"
    requests: list[Received] = field(default_factory=list)
    schema_errors: list[str] = field(default_factory=list)
    # Set to force an answer, e.g. (503, {...}), for the next requests.
    forced: tuple[int, dict[str, Any]] | None = None
    # Answers for the next requests, one each, in order: a Scripted answer,
    # RESET, STALL or HOLD. Applied after authentication and schema validation.
    script: list[Scripted | str] = field(default_factory=list)
    # Event ids Pinterest refuses one by one (a 422 naming them) ...
    refused_ids: dict[str, str] = field(default_factory=dict)
    # ... or that make it refuse a whole request with a 400.
    poison_ids: dict[str, str] = field(default_factory=dict)
    stalled: threading.Event = field(default_factory=threading.Event)
    _release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        path = re.compile(r"^/v5/ad_accounts/[^/]+/events$")
        self.server.expect_request(path, method="POST").respond_with_handler(
            self._handle
        )

    @property
    def api_base(self) -> str:
        return self.server.url_for("").rstrip("/")

    @property
    def delivered(self) -> Counter[str]:
        """How many times each event id was answered `processed`."""
        return Counter(i for received in self.requests for i in received.processed)

    def release(self) -> None:
        """Let a STALLed request end (with a reset)."""
        self._release.set()

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event in a request Pinterest answered 200 or 422."""
        return [
            event
            for received in self.requests
            if received.status in (200, 422)
            for event in received.body["data"]
        ]

    def _handle(self, request: Request) -> Response:
        account = request.path.split("/")[3]
        test = request.args.get("test") == "true"
        status, answer, body = self._answer(request, account)
        if status == 0:
            self.requests.append(Received(account, test, body, 0))
            return _reset(request)
        processed = []
        details = answer.get("details")
        statuses = answer.get("events") or (
            details.get("events") if isinstance(details, dict) else None
        )
        # A scripted answer may list events oddly; only a list of one result
        # per event says which were processed.
        if (
            status in (200, 422)
            and isinstance(statuses, list)
            and len(statuses) == len(body["data"])
        ):
            processed = [
                event["event_id"]
                for event, result in zip(body["data"], statuses, strict=True)
                if result["status"] == "processed"
            ]
        self.requests.append(Received(account, test, body, status, processed))
        scripted = answer.pop("_headers", {})
        return Response(
            json.dumps(answer),
            status=status,
            content_type="application/json",
            headers=scripted,
        )

    def _answer(
        self, request: Request, account: str
    ) -> tuple[int, dict[str, Any], Any]:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, 2, "Authentication failed.") + (None,)
        if account != self.ad_account_id:
            return _error(403, 29, "You are not permitted to access that resource.") + (
                None,
            )
        try:
            body = json.loads(request.get_data())
        except ValueError:
            return _error(400, 4196, "The request was invalid.") + (None,)

        problems = [error.message for error in REQUEST_SCHEMA.iter_errors(body)]
        if problems:
            self.schema_errors.extend(problems)
            return _error(400, 4196, f"The request was invalid. {problems[0]}") + (
                body,
            )
        if self.forced:
            return self.forced + (body,)
        if self.script:
            step = self.script.pop(0)
            if step in (STALL, HOLD):
                self.stalled.set()
                self._release.wait(timeout=60)
            if step == HOLD:
                return self._answer_events(body)
            if step in (STALL, RESET):
                return 0, {}, body
            assert isinstance(step, Scripted)
            return step.status, dict(step.body, _headers=step.headers), body
        poisoned = [
            self.poison_ids[event["event_id"]]
            for event in body["data"]
            if event["event_id"] in self.poison_ids
        ]
        if poisoned:
            return _error(400, 4196, f"The request was invalid. {poisoned[0]}") + (
                body,
            )

        return self._answer_events(body)

    def _answer_events(self, body: Any) -> tuple[int, dict[str, Any], Any]:
        statuses = [self._event_status(event) for event in body["data"]]
        details = {
            "num_events_received": len(statuses),
            "num_events_processed": sum(s["status"] == "processed" for s in statuses),
            "events": statuses,
        }
        if details["num_events_processed"] == len(statuses):
            assert RESPONSE_SCHEMA.is_valid(details)
            return 200, details, body
        answer = {
            "code": 953,
            "message": "The action could not be processed properly due to some "
            "or all data provided being invalid.",
            "details": details,
        }
        assert ERROR_SCHEMA.is_valid(answer)
        return 422, answer, body

    def _event_status(self, event: dict[str, Any]) -> dict[str, Any]:
        now = int(self.clock.now().timestamp())
        if event["event_id"] in self.refused_ids:
            return {
                "status": "failed",
                "error_message": self.refused_ids[event["event_id"]],
                "warning_message": "",
            }
        if event["event_time"] < now - MAX_AGE.total_seconds():
            return {
                "status": "failed",
                "error_message": "Invalid event_timestamp parameter. Given timestamp "
                f"is in the past. Current timestamp: {now}, Given event_timestamp: "
                f"{event['event_time']}",
                "warning_message": "",
            }
        if event["event_time"] > now + 60:
            return {
                "status": "failed",
                "error_message": "Invalid event_timestamp parameter. Given timestamp "
                "is in the future.",
                "warning_message": "",
            }
        return {"status": "processed", "error_message": None, "warning_message": None}


def _reset(request: Request) -> Response:
    """Drop the connection at once, answering nothing."""
    request.environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)
    return Response(status=500)  # never reaches the closed connection


def _error(status: int, code: int, message: str) -> tuple[int, dict[str, Any]]:
    answer = {"code": code, "message": message}
    assert ERROR_SCHEMA.is_valid(answer)
    return status, answer
