"""Running an RQ worker with Relay's runtime installed."""

from __future__ import annotations

import logging

from rq import Worker

# Imported by the worker process itself, so every forked work horse inherits
# the job modules instead of importing them for each job.
import relay.jobs  # noqa: F401
from relay import runtime as runtime_module
from relay.runtime import Runtime

log = logging.getLogger(__name__)


def run_worker(runtime: Runtime, *, burst: bool = False) -> bool:
    """Work Relay's queue until stopped (or, with `burst`, until it is empty).

    The worker runs RQ's scheduler too, which retries and delayed jobs need.
    Returns whether any job was processed.
    """
    runtime_module.install(runtime)
    worker = Worker(
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
