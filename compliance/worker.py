"""The RQ worker and the RQ cron scheduler, as the service runs them."""

from __future__ import annotations

from rq import Worker
from rq.cron import CronScheduler
from rq.job import Job
from rq.queue import Queue

from compliance import config, db, queues
from compliance.observability import configure_logging

CRON_CONFIG = "retention.schedule"


class OffboardWorker(Worker):
    """Drops pooled database connections before each fork, so a job never shares a socket."""

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        db.dispose()
        super().fork_work_horse(job, queue)


def run_worker(*, burst: bool = False, with_scheduler: bool = True) -> bool:
    """Serve every queue until stopped (or until empty with ``burst``)."""
    settings = config.use(config.load())
    configure_logging(settings.log_level)
    db.configure(settings.database_url)
    connection = queues.configure(settings)
    worker = OffboardWorker([queues.queue(name) for name in queues.QUEUE_NAMES],
                            connection=connection)
    return worker.work(burst=burst, with_scheduler=with_scheduler)


def run_cron() -> None:
    """Enqueue the periodic jobs of ``retention.schedule`` on time, until stopped."""
    settings = config.load()
    configure_logging(settings.log_level)
    scheduler = CronScheduler(connection=queues.configure(settings))
    scheduler.load_config_from_file(CRON_CONFIG)
    scheduler.start()
