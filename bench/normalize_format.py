"""How fast one order webhook body becomes a Pinterest event, in one process.

    .venv/bin/python bench/normalize_format.py [--events 20000]

Measures JSON parsing, normalizing to a neutral event, the event's JSON
round trip through Redis's format, and Pinterest formatting (hashing
included): the CPU work a worker does per order, without I/O.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from relay_pinterest.format import format_event

from relay.events import Event
from relay.shopify.normalize import order_to_purchase

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures" / "shopify"
FIXTURE = FIXTURES / "orders_create.json"


def one(body: bytes) -> None:
    event = order_to_purchase("bench.myshopify.com", json.loads(body), "orders/create")
    format_event(Event.from_json(event.to_json()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    body = FIXTURE.read_bytes()

    for _ in range(500):  # warm up imports and caches
        one(body)
    rates = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        for _ in range(args.events):
            one(body)
        rates.append(args.events / (time.perf_counter() - started))

    print(
        f"normalize+format: {statistics.median(rates):,.0f} orders/s per core "
        f"(median of {args.rounds} rounds of {args.events}; "
        f"{1e6 / statistics.median(rates):.0f} µs per order)"
    )


if __name__ == "__main__":
    main()
