"""APScheduler 3 running the jobs of config.yaml in the rules' time zone, active only with the lease.

Every scheduler process plans the same jobs; only the lease holder runs them. A job runs at
most once a day (a Redis mark set when its planning has committed), and a scheduler that
takes the lease runs the jobs that were due today and did not run (a dead holder missed them).
"""
from __future__ import annotations

import logging
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from rules import Rules
from scheduler.delivery import drain
from scheduler.jobs import WATCHERS, job_schedule, run_job
from scheduler.lease import Lease
from storage import outbox
from storage.redis import delete_if_same

log = logging.getLogger(__name__)

_runner: "SchedulerRunner | None" = None  # the process's runner, for the module-level job functions


class SchedulerRunner:
    def __init__(self, state, blocking: bool = False):
        self.state = state
        rules = state.rules
        self.lease = Lease(state.redis, state.keys("scheduler", "lease"), rules.pushes.lease_seconds)
        scheduler_class = BlockingScheduler if blocking else BackgroundScheduler
        self.scheduler = scheduler_class(timezone=rules.zone, job_defaults={"coalesce": True, "max_instances": 1,
                                                                            "misfire_grace_time": 3600})

    def start(self) -> None:
        global _runner
        _runner = self
        self.plan(self.state.rules)
        self.state.rules_holder.on_reload(self.plan)
        renew_lease()
        log.info("scheduler started (%s)", "active" if self.lease.held else "standby")
        self.scheduler.start()

    def plan(self, rules: Rules) -> None:
        """(Re)plan every job from the rules; called again after a rules reload."""
        for name, fields in job_schedule(rules).items():
            self.scheduler.add_job(run_scheduled_job, CronTrigger(timezone=rules.zone, **fields), args=[name],
                                   id=name, name=name, replace_existing=True)
        self.scheduler.add_job(drain_outbox, IntervalTrigger(seconds=rules.pushes.drain_every_seconds),
                               id="drain", name="drain", replace_existing=True)
        for name, (_, minutes) in WATCHERS.items():
            self.scheduler.add_job(run_watcher, IntervalTrigger(minutes=minutes(rules)), args=[name],
                                   id=name, name=name, replace_existing=True)
        self.scheduler.add_job(renew_lease, IntervalTrigger(seconds=max(1, rules.pushes.lease_seconds / 3)),
                               id="lease", name="lease", replace_existing=True)
        log.info("jobs planned: %s", ", ".join(f"{n} {f}" for n, f in job_schedule(rules).items()))

    def shutdown(self) -> None:
        self.scheduler.shutdown(wait=False)
        self.lease.release()

    def today(self):
        return self.state.today()

    def run_once_today(self, name: str) -> None:
        """Run ``name`` for today unless it already ran today (in any process)."""
        state, today = self.state, self.today()
        done = state.keys("fired", name, today.isoformat())
        if state.redis.exists(done):
            return
        with state.db.read() as session:  # the database remembers across restarts (the embedded Redis does not)
            if outbox.ran_on(session, name, today):
                state.redis.set(done, "1", ex=3 * 24 * 3600)
                return
        running = state.keys("running", name, today.isoformat())
        holder = self.lease.holder
        if not state.redis.set(running, holder, nx=True, ex=3600):
            if state.redis.get(running) == holder:
                return  # this scheduler is running it already (a catch-up and the cron fire overlapping)
            # Marked by a scheduler that has since lost the lease (it died mid-run): waiting for the
            # mark to expire would miss the day, and the job is idempotent, so run it again now.
            log.warning("job %s: the previous active scheduler did not finish it; running it again", name)
            state.redis.set(running, holder, ex=3600)
        try:
            run_job(state, name, today)
            state.redis.set(done, "1", ex=3 * 24 * 3600)
        finally:
            # Clear the running mark only if this scheduler set it (another may have taken the job over).
            delete_if_same(state.redis, running, holder)

    def catch_up(self) -> None:
        """Run the jobs due earlier today that did not run (their scheduler died)."""
        now = self.state.now().astimezone(self.state.rules.zone)
        for name, fields in job_schedule(self.state.rules).items():
            if "day" in fields and fields["day"] != now.day:
                continue
            due = now.replace(hour=fields["hour"], minute=fields["minute"], second=fields["second"], microsecond=0)
            if due <= now:
                self.run_once_today(name)


def run_scheduled_job(name: str) -> None:
    """APScheduler entry point for a job: runs only in the scheduler holding the lease."""
    runner = _runner
    if runner is None or not runner.lease.refresh():
        log.info("job %s: not the active scheduler, skipped", name)
        return
    try:
        runner.run_once_today(name)
    except Exception:
        log.exception("job %s failed", name)


def catch_up() -> None:
    """Run the jobs due earlier today that did not run (their scheduler died)."""
    runner = _runner
    if runner is None or not runner.lease.held:
        return
    try:
        runner.catch_up()
    except Exception:
        log.exception("catching up missed jobs failed")


def drain_outbox() -> None:
    """Resume pending pushes (held in quiet hours, left by a crash, retried later)."""
    runner = _runner
    if runner is None or not runner.lease.held:
        return
    try:
        stats = drain(runner.state)
        if stats.sent or stats.failed or stats.recovered or stats.in_doubt:
            log.info("drain: sent %d, failed %d, unreachable %d, in doubt %d; a stopped sender's never tried: "
                     "%d back to pending", stats.sent, stats.failed, stats.unreachable, stats.in_doubt,
                     stats.recovered)
        for held in stats.held_elsewhere:
            if not held.heartbeat:
                log.info("drain: %d pushes held by a sender that stopped; recovered from %s", held.count,
                         f"{held.recover_after:%Y-%m-%d %H:%M:%S} UTC")
    except Exception:
        log.exception("drain failed")


def run_watcher(name: str) -> None:
    """APScheduler entry point for a watcher (every few minutes): only in the scheduler holding the lease."""
    runner = _runner
    if runner is None or not runner.lease.held:
        return
    try:
        WATCHERS[name][0](runner.state)
    except Exception:
        log.exception("watcher %s failed", name)


def renew_lease() -> None:
    runner = _runner
    if runner is None:
        return
    was_held = runner.lease.held
    if runner.lease.refresh() and not was_held:
        log.info("this scheduler is now the active one")
        # In the scheduler's own thread, so that starting up never waits for a job.
        runner.scheduler.add_job(catch_up, id="catch-up", name="catch-up", replace_existing=True)
    elif was_held and not runner.lease.held:
        log.warning("lost the scheduler lease: now a standby")


def start_embedded(app) -> None:
    """Run the scheduler inside the bot process (embedded mode: one process)."""
    SchedulerRunner(app.extensions["bot"]).start()

