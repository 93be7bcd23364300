"""Starting has no side effects beyond starting: a start that cannot listen runs nothing; a restart re-runs nothing."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import datetime, time

import pytest
from sqlalchemy import func, select

from scheduler.jobs import JOBS
from scheduler.runner import SchedulerRunner
from storage.models import JobRun
from tests.conftest import ROOT


@pytest.fixture
def database_url(db_url) -> str:
    return db_url


def _runs(db) -> dict[str, int]:
    with db.read() as session:
        return dict(session.execute(select(JobRun.job, func.count()).group_by(JobRun.job)).all())


def test_a_restart_does_not_run_the_days_jobs_again(state, db, clock, redis_client):
    clock.now = datetime.combine(datetime.now().date(), time(12), state.rules.zone).timestamp()
    first = SchedulerRunner(state)
    assert first.lease.refresh()
    first.catch_up()  # the first start of the day: every job due by noon runs once
    due = _runs(db)
    assert set(due) == set(JOBS) - {"monthly_bulletin"} or set(due) == set(JOBS)
    assert set(due.values()) == {1}
    first.lease.release()
    redis_client.flushdb()  # the embedded Redis forgets everything on restart
    second = SchedulerRunner(state)
    assert second.lease.refresh()
    second.catch_up()
    assert _runs(db) == due  # the database remembers: nothing ran twice


def test_a_start_that_cannot_listen_stops_before_anything_runs(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    database = tmp_path / "bot.sqlite3"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "WECHAT_API_BASE")}
    env["DATABASE_URL"] = f"sqlite:///{database}"
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "serve", "--port", str(port)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    taken.close()
    assert result.returncode == 1
    assert f"Port {port} is in use" in result.stderr and "Traceback" not in result.stderr  # werkzeug says so
    assert not database.exists() or database.stat().st_size == 0  # not even migrated: nothing ran
