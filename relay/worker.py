"""Running an RQ worker with Relay's runtime installed."""

from __future__ import annotations

import logging
import signal
from typing import Any

# Imported by the worker process itself, so every forked work horse inherits
# the job modules instead of importing them for each job. httpx imports its
# HTTP core lazily; a first import in a horse forked from a process with
# threads can trip over an import lock another thread held at the fork.
import httpcore  # noqa: F401
from rq import Worker
from rq.job import Job
from rq.registry import StartedJobRegistry

import relay.jobs  # noqa: F401
from relay import intake_queue, outbox
from relay import runtime as runtime_module
from relay.errors import RetryableDelivery, ShopifyUnavailable
from relay.runtime import Runtime

log = logging.getLogger(__name__)

# How often a worker beats for the job it runs; RQ adds 60 s of grace.
HEARTBEAT_SECONDS = 10


class RelayWorker(Worker):
    """RQ's forking worker, quieter about failures Relay expects.

    A delivery the platform or network failed raises RetryableDelivery (a
    Shopify call, ShopifyUnavailable) so that RQ schedules its retry; Relay
    has already logged why, so RQ's ERROR line with a traceback would only
    make a routine retry look like a crash at 3 a.m. Every other exception
    is logged by RQ as usual.
    """

    def setup_work_horse_signals(self) -> None:
        """Let a work horse finish the batch it is sending on SIGTERM.

        Heroku sends SIGTERM to every process of a dyno and SIGKILL 30 s
        later. RQ's default horse dies at once, so a batch half-sent would
        only be sent again after RQ finds it abandoned; a batch takes at most
        the HTTP timeout (15 s), so finishing it is the better use of the 30
        s. The worker itself stops taking jobs and waits for its horse (RQ's
        warm shutdown); a horse still busy at the SIGKILL leaves its job to
        RQ's recovery.
        """
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def clean_registries(self) -> None:
        super().clean_registries()  # RQ's own, abandoned jobs included
        current = runtime_module.current()
        intake_queue.recover(current)
        outbox.recover(current)

    def unsubscribe(self) -> None:
        """Stop listening for RQ's commands without waiting a minute.

        RQ unsubscribes, then stops the listening thread. Since redis-py 8.2
        stopping it waits for the thread, which by then sleeps for up to 60
        s waiting for a subscription, so every worker's exit (each burst
        worker of the tests, each dyno restart) took that long. Telling the
        thread to stop first lets Redis's unsubscribe reply wake it to exit.
        """
        thread = self.pubsub_thread
        if thread is None:
            return
        try:
            thread.stop(timeout=0)  # redis-py 8.2+: clear the flag, no wait
        except TypeError:
            thread.stop()  # older: only clears the flag
        self.pubsub.unsubscribe()
        thread.join(timeout=1)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        if isinstance(exc_info[1], (RetryableDelivery, ShopifyUnavailable)):
            if job.retries_left:
                log.info(
                    "job %s: platform or network failure, left to RQ's retries",
                    job.id,
                )
            return
        super().handle_exception(job, *exc_info)


def recover_abandoned(runtime: Runtime) -> int:
    """What a worker's maintenance does, on Relay's clock: run again the jobs
    of workers that stopped beating, and mend lost batches (relay.outbox).

    Workers call it every RELAY_MAINTENANCE_SECONDS; tests call it with a
    clock set past a killed worker's last heartbeat. Returns how many
    deliveries went back to an outbox.
    """
    StartedJobRegistry(queue=runtime.queue).cleanup(
        timestamp=runtime.clock.now().timestamp()
    )
    intake_queue.recover(runtime)
    return outbox.recover(runtime)


def run_worker(runtime: Runtime, *, burst: bool = False) -> bool:
    """Work Relay's queue until stopped (or, with `burst`, until it is empty).

    The worker runs RQ's scheduler too, which retries and delayed jobs need,
    and RQ's maintenance, which runs again the jobs of a killed worker.
    Returns whether any job was processed.
    """
    runtime_module.install(runtime)
    worker = RelayWorker(
        [runtime.queue],
        connection=runtime.redis,
        # RQ would otherwise log each job's call with its arguments.
        log_job_description=False,
        # How soon a job whose worker was killed is found and run again:
        # RQ sees it abandoned 70 s after the worker's last heartbeat (every
        # 10 s), and a worker looks every RELAY_MAINTENANCE_SECONDS.
        maintenance_interval=runtime.config.maintenance_seconds,
        job_monitoring_interval=HEARTBEAT_SECONDS,
        # RQ only looks between jobs, and an idle worker waits for one for
        # its TTL less 15 s (405 s by default): that wait is kept to the
        # maintenance interval, so an idle worker looks in time too.
        worker_ttl=runtime.config.maintenance_seconds + 15,
    )
    log.info("worker %s: working queue %s", worker.name, runtime.queue.name)
    return worker.work(
        burst=burst,
        with_scheduler=True,
        logging_level=runtime.config.log_level,
    )
