"""The stale-image schedule: an APScheduler job persisted in the byoi database.

The job store keeps the next due time, so a restart neither loses a due check (a missed one
runs once on start, within ``misfire_grace_time``) nor repeats one (``coalesce``). A file lock
beside the database lets only one scheduler run against it.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from pipeline.config.model import Config

log = logging.getLogger(__name__)
JOB_ID = "stale-image-scan"
_handler: Callable[[str], None] | None = None


def scheduled_scan() -> None:
    """The persisted job. APScheduler stores jobs by reference, so it calls the handler that
    this process registered in ``Schedule.start``."""
    if _handler is None:
        log.warning("a scheduled scan came due before its handler was registered")
        return
    _handler("schedule")


class Schedule:
    def __init__(self, config: Config, handler: Callable[[str], None]) -> None:
        self.config = config
        self.handler = handler
        self._scheduler: BackgroundScheduler | None = None
        self._lock: IO[str] | None = None

    def trigger(self) -> Any:
        stale = self.config.stale
        if stale.interval_seconds:
            return IntervalTrigger(seconds=stale.interval_seconds, timezone=self.config.timezone)
        return CronTrigger.from_crontab(stale.schedule, timezone=self.config.timezone)

    def _grace(self) -> int:
        # A check missed while byoi was down still runs on start if it is this late at most.
        interval = self.config.stale.interval_seconds
        return max(1, int(interval)) if interval else 6 * 3600

    def start(self) -> bool:
        """Start scheduling; False if another process already schedules for this database."""
        global _handler
        lock_path = Path(f"{self.config.database}.scheduler.lock")
        self._lock = lock_path.open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning(
                "another byoi process runs the schedule for %s; this one will not",
                self.config.database,
            )
            self._lock.close()
            self._lock = None
            return False
        _handler = self.handler
        scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{self.config.database}")},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": self._grace(),
            },
            timezone=self.config.timezone,
        )
        scheduler.start(paused=True)
        trigger = self.trigger()
        job = scheduler.get_job(JOB_ID)
        # Re-adding would reset the persisted due time and lose a check missed while down.
        if job is None or str(job.trigger) != str(trigger):
            scheduler.add_job(
                scheduled_scan, trigger, id=JOB_ID, replace_existing=True, name="stale-image scan"
            )
        scheduler.resume()
        self._scheduler = scheduler
        next_run = scheduler.get_job(JOB_ID).next_run_time
        log.info("stale-image scan scheduled (%s), next at %s", trigger, next_run)
        return True

    def next_run(self) -> Any:
        if self._scheduler is None:
            return None
        job = self._scheduler.get_job(JOB_ID)
        return job.next_run_time if job else None

    def stop(self) -> None:
        global _handler
        if self._scheduler is not None:
            # A scan in flight may wait on a slow cloud API: never hold a shutdown for it
            # (the due time is persisted, so a missed scan runs on the next start).
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        _handler = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None
