"""Webhook intake under load: Relay's /webhooks against a bare Flask endpoint.

    .venv/bin/python bench/intake.py [--seconds 10] [--connections 16]

Serves each app with gunicorn on loopback, with the Procfile's settings
(sync workers, WEB_CONCURRENCY=2), and loads it with wrk (Debian's package
`wrk`) posting a real signed `orders/create` body; each request carries a
new webhook id, so every one is verified, stored and queued, never answered
as a repeat. The bare endpoint reads the body and answers the same JSON.
Both run in the same invocation, one after the other; the report gives
throughput, p50 and p99 latency and Relay's share of the bare throughput.
Redis is an embedded one (as on a fresh machine) unless --redis-url names
another. Without wrk on the PATH, a small Python load generator is used
instead; it is weaker than the server, so its figures are not comparable
(the smoke test uses it).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402

from relay.redisconn import EmbeddedRedis  # noqa: E402
from relay.shopify.webhooks import sign  # noqa: E402

SECRET = "bench_secret_for_signing_only"
SHOP = "bench.myshopify.com"
FIXTURE = ROOT / "tests" / "fixtures" / "shopify" / "orders_create.json"

WRK_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  wrk.headers["X-Shopify-Webhook-Id"] = string.format("bench-%s-%d", ID, counter)
  return wrk.format("POST", "/webhooks")
end
"""


@dataclass
class Result:
    name: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--redis-url", help="default: an embedded Redis")
    parser.add_argument(
        "--load",
        choices=("wrk", "python"),
        default="wrk" if shutil.which("wrk") else "python",
    )
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="relay-bench-intake-"))
    embedded = None if args.redis_url else EmbeddedRedis(folder / "redis")
    redis_url = args.redis_url or embedded.url  # type: ignore[union-attr]
    try:
        results = [
            measure(
                "bare Flask endpoint",
                "bench.bare_app:create_app()",
                folder,
                redis_url,
                args,
            ),
            measure("Relay /webhooks", "webapp:create_app()", folder, redis_url, args),
        ]
    finally:
        if embedded is not None:
            embedded.stop()
    shutil.rmtree(folder, ignore_errors=True)  # kept when the run failed
    report(results, args)


def measure(
    name: str, app: str, folder: Path, redis_url: str, args: argparse.Namespace
) -> Result:
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SHOPIFY_API_SECRET": SECRET,
        "REDIS_URL": redis_url,
        "DATABASE_URL": f"sqlite:///{folder / 'relay.db'}",
        "RELAY_SECRET_KEY": Fernet.generate_key().decode(),
        "RELAY_INSTANCE_PATH": str(folder / "instance"),
    }
    server_log = (folder / f"gunicorn-{port}.log").open("wb")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--graceful-timeout",
            "25",
            app,
        ],
        cwd=ROOT,
        env=env,
        stdout=server_log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_until_listening(port)
        _warm_up(port, args.workers)
        body = FIXTURE.read_bytes()
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Shop-Domain": SHOP,
            "X-Shopify-Hmac-Sha256": sign(body, SECRET),
            "X-Shopify-API-Version": "2026-07",
        }
        if args.load == "wrk":
            return _wrk(name, port, body, headers, args, folder)
        return _python_load(name, port, body, headers, args)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        server_log.close()


def _wrk(  # type: ignore[no-untyped-def]
    name, port, body, headers, args, folder
) -> Result:
    script = folder / f"wrk-{port}.lua"
    lines = [f'ID = "{port}-{time.time_ns()}"', 'wrk.method = "POST"']
    lines.append(f"wrk.body = {_lua_string(body.decode())}")
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script.write_text("\n".join(lines) + WRK_SCRIPT)
    output = subprocess.run(
        [
            "wrk",
            "--threads",
            "1",
            "--connections",
            str(args.connections),
            "--duration",
            f"{args.seconds}s",
            "--latency",
            "--script",
            str(script),
            f"http://127.0.0.1:{port}/webhooks",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return Result(
        name,
        float(_wrk_figure(r"Requests/sec:\s+([\d.]+)", output)),
        _wrk_ms(_wrk_figure(r"50%\s+([\d.]+\w+)", output)),
        _wrk_ms(_wrk_figure(r"99%\s+([\d.]+\w+)", output)),
        int(non_2xx.group(1)) if non_2xx else 0,
    )


def _wrk_figure(pattern: str, output: str) -> str:
    found = re.search(pattern, output)
    if found is None:
        raise SystemExit(f"wrk printed no {pattern!r}:\n{output}")
    return found.group(1)


def _python_load(  # type: ignore[no-untyped-def]
    name, port, body, headers, args
) -> Result:
    latencies: list[float] = []
    failures = [0]
    deadline = time.monotonic() + args.seconds
    lock = threading.Lock()

    def client(number: int) -> None:
        sent = 0
        while time.monotonic() < deadline:
            sent += 1
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            started = time.perf_counter()
            connection.request(
                "POST",
                "/webhooks",
                body=body,
                headers={
                    **headers,
                    "X-Shopify-Webhook-Id": f"py-{port}-{number}-{sent}",
                },
            )
            response = connection.getresponse()
            response.read()
            connection.close()
            with lock:
                latencies.append(time.perf_counter() - started)
                failures[0] += response.status >= 300

    threads = [
        threading.Thread(target=client, args=(n,)) for n in range(args.connections)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    cuts = statistics.quantiles(latencies, n=100)
    return Result(
        name, len(latencies) / elapsed, cuts[49] * 1000, cuts[98] * 1000, failures[0]
    )


def report(results: list[Result], args: argparse.Namespace) -> None:
    bare, relay = results
    print(
        f"load: {args.load}, {args.connections} connections, {args.seconds} s each; "
        f"gunicorn sync workers: {args.workers}; {os.cpu_count()} CPUs"
    )
    print(f"{'endpoint':<22}{'requests/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
    for result in results:
        print(
            f"{result.name:<22}{result.requests_per_second:>12,.0f}"
            f"{result.p50_ms:>9.1f}{result.p99_ms:>9.1f}{result.non_2xx:>9}"
        )
    share = relay.requests_per_second / bare.requests_per_second
    print(f"Relay's throughput is {share:.0%} of the bare endpoint's")
    print(json.dumps({r.name: r.__dict__ for r in results} | {"share": share}))


def _wrk_ms(text: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _warm_up(port: int, workers: int) -> None:
    """Wait until every worker has booted: gunicorn listens before its
    workers have imported the app, and the first requests would measure
    Relay's start-up, not its intake."""
    for _ in range(workers * 10):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/")
        connection.getresponse().read()
        connection.close()


def _wait_until_listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"gunicorn did not listen on port {port}")


if __name__ == "__main__":
    main()
