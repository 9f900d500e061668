"""Running an RQ worker with Relay's runtime installed."""

from __future__ import annotations

import logging
from typing import Any

# Imported by the worker process itself, so every forked work horse inherits
# the job modules instead of importing them for each job. httpx imports its
# HTTP core lazily; a first import in a horse forked from a process with
# threads can trip over an import lock another thread held at the fork.
import httpcore  # noqa: F401
from rq import Worker
from rq.job import Job

import relay.jobs  # noqa: F401
from relay import runtime as runtime_module
from relay.errors import RetryableDelivery, ShopifyUnavailable
from relay.runtime import Runtime

log = logging.getLogger(__name__)


class RelayWorker(Worker):
    """RQ's forking worker, quieter about failures Relay expects.

    A delivery the platform or network failed raises RetryableDelivery (a
    Shopify call, ShopifyUnavailable) so that RQ schedules its retry; Relay
    has already logged why, so RQ's ERROR line with a traceback would only
    make a routine retry look like a crash at 3 a.m. Every other exception
    is logged by RQ as usual.
    """

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        if isinstance(exc_info[1], (RetryableDelivery, ShopifyUnavailable)):
            log.info(
                "job %s: platform or network failure, left to RQ's retries", job.id
            )
            return
        super().handle_exception(job, *exc_info)


def run_worker(runtime: Runtime, *, burst: bool = False) -> bool:
    """Work Relay's queue until stopped (or, with `burst`, until it is empty).

    The worker runs RQ's scheduler too, which retries and delayed jobs need.
    Returns whether any job was processed.
    """
    runtime_module.install(runtime)
    worker = RelayWorker(
        [runtime.queue],
        connection=runtime.redis,
        # RQ would otherwise log each job's call with its arguments.
        log_job_description=False,
    )
    log.info("worker %s: working queue %s", worker.name, runtime.queue.name)
    return worker.work(
        burst=burst,
        with_scheduler=True,
        logging_level=runtime.config.log_level,
    )
