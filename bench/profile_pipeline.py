"""Where a worker's time goes: cProfile of one drain and one flush, in process.

    .venv/bin/python bench/profile_pipeline.py [--orders 400]

Posts N orders as bench/pipeline.py does, then profiles the two jobs that
carry them to a fake Pinterest: normalizing (`drain_intake`, run until the
intake list is empty) and sending (`flush_outbox`). Prints the functions
with the most cumulative time, Relay's own first. The profiler roughly
doubles every figure; compare the shares, not the seconds.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import pipeline as bench  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from pytest_httpserver import HTTPServer  # noqa: E402

from relay import intake_queue, jobs  # noqa: E402
from relay import runtime as runtime_module  # noqa: E402
from relay.clock import SystemClock  # noqa: E402
from relay.config import Config  # noqa: E402
from relay.database import Database  # noqa: E402
from relay.plugins import Plugins  # noqa: E402
from relay.redisconn import EmbeddedRedis, connect  # noqa: E402
from relay.runtime import Runtime  # noqa: E402
from tests.fake_pinterest import FakePinterest  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=400)
    parser.add_argument("--lines", type=int, default=30)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="relay-profile-"))
    redis_server = EmbeddedRedis(folder / "redis")
    fake_server = HTTPServer()
    fake_server.start()
    try:
        runtime = _runtime(folder, redis_server.url)
        pinterest = FakePinterest(fake_server, SystemClock())
        bench._connect(runtime, pinterest)
        bench._post_orders(runtime, args.orders)
        _profile("normalizing", "drain", runtime, args)
        _profile("sending", "flush", runtime, args)
        assert len(pinterest.events) == args.orders, len(pinterest.events)
    finally:
        fake_server.stop()
        redis_server.stop()
    shutil.rmtree(folder, ignore_errors=True)  # kept when the run failed


def _runtime(folder: Path, redis_url: str) -> Runtime:
    config = Config(
        instance_path=folder,
        shopify_api_secret=bench.SECRET,
        database_url=f"sqlite:///{folder / 'relay.db'}",
        secret_keys=(Fernet.generate_key().decode(),),
        plugins_file=ROOT / "plugins.toml",
        # A benchmark's output is its figures, not a line per webhook.
        log_level="WARNING",
        browser_wait_seconds=0,
        batch_wait_seconds=0,
    )
    db = Database(config.sqlalchemy_url)
    db.upgrade()
    runtime = Runtime(config, connect(redis_url), db, Plugins.load(config.plugins_file))
    runtime_module.install(runtime)
    return runtime


def _profile(title: str, step: str, runtime: Runtime, args: argparse.Namespace) -> None:
    def drain() -> None:
        while intake_queue.drain(runtime):
            pass

    def flush() -> None:
        jobs.flush_outbox(bench.SHOP, "pinterest")

    work = {"drain": drain, "flush": flush}[step]
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.runcall(work)
    seconds = time.perf_counter() - started
    print(
        f"== {title}: {args.orders} orders in {seconds:.2f} s under the profiler "
        f"({1000 * seconds / args.orders:.2f} ms each)"
    )
    stats = pstats.Stats(profile).sort_stats("cumulative")
    stats.print_stats(str(ROOT / "relay"), args.lines)


if __name__ == "__main__":
    main()
