"""Moves the clock of every Python process of a test run when TEST_CLOCK is set (scripts/test).

TEST_CLOCK is "+40d" (days on from now) or an instant ("2026-12-31T16:30:00+00:00"); the clock then
ticks on from there. Only the wall clock moves (time.time, datetime.now …); sleeps, timeouts and the
monotonic clock stay real, and so do the servers (Redis, PostgreSQL, Chromium). Python imports this
module at start-up from PYTHONPATH, so pytest, the gunicorn workers, schedulers and the WeChat API
stand-in a test starts all read the same moved clock.
"""
import os
import re

_spec = os.environ.get("TEST_CLOCK")
if _spec:
    from datetime import datetime, timedelta, timezone

    import time_machine

    _shift = re.fullmatch(r"\+(\d+)d", _spec)
    _destination = (datetime.now(timezone.utc) + timedelta(days=int(_shift.group(1))) if _shift
                    else datetime.fromisoformat(_spec))
    time_machine.travel(_destination, tick=True).start()
