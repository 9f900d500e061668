"""Jobs that run on a schedule, queued by RQ's own cron scheduler."""

from __future__ import annotations

import logging

from rq.cron import CronScheduler
from rq.exceptions import StopRequested

from relay import jobs, retention
from relay import runtime as runtime_module
from relay.runtime import Runtime

log = logging.getLogger(__name__)

# Native integrations are switched on and off by hand, rarely.
CONFLICT_CHECK_SECONDS = 24 * 3600


def cron_scheduler(runtime: Runtime) -> CronScheduler:
    """The scheduler with every periodic Relay job registered."""
    scheduler = CronScheduler(
        connection=runtime.redis, logging_level=runtime.config.log_level
    )
    scheduler.register(
        jobs.enforce_retention,
        queue_name=runtime.queue.name,
        interval=retention.EVERY_SECONDS,
        job_timeout=runtime.config.job_timeout_seconds * 10,
        result_ttl=runtime.config.job_result_seconds,
    )
    scheduler.register(
        jobs.check_every_shop,
        queue_name=runtime.queue.name,
        interval=CONFLICT_CHECK_SECONDS,
        job_timeout=runtime.config.job_timeout_seconds,
        result_ttl=runtime.config.job_result_seconds,
    )
    return scheduler


def run_cron(runtime: Runtime) -> None:
    """Queue periodic jobs on time until SIGTERM; workers run them."""
    runtime_module.install(runtime)
    log.info(
        "cron: queueing retention every %d s, conflict checks every %d s",
        retention.EVERY_SECONDS,
        CONFLICT_CHECK_SECONDS,
    )
    try:
        cron_scheduler(runtime).start()
    except StopRequested:
        # SIGTERM can land before RQ's own loop catches it (while it
        # registers itself): a normal stop, not a crash.
        log.info("cron: stopped")
