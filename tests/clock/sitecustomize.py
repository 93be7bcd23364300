"""Moves the clock of every Python process of a test run when TEST_CLOCK is set (scripts/test).

TEST_CLOCK is "+40d" (days on from now) or an instant ("2026-12-31T16:30:00+00:00"); the clock then
ticks on from there. Only the wall clock moves (time.time, datetime.now …); sleeps, timeouts and the
monotonic clock stay real, and so do the servers (Redis, PostgreSQL, Chromium). Python imports this
module at start-up from PYTHONPATH, so pytest, the gunicorn workers, schedulers and the WeChat API
stand-in a test starts all read the same moved clock: the first process turns TEST_CLOCK into an
offset from the real clock (TEST_CLOCK_OFFSET) that the processes it starts inherit.
"""
import os
import re
import time

_spec = os.environ.get("TEST_CLOCK")
if _spec:
    import time_machine

    if "TEST_CLOCK_OFFSET" not in os.environ:
        from datetime import datetime

        days = re.fullmatch(r"\+(\d+)d", _spec)
        target = time.time() + int(days.group(1)) * 86400 if days else datetime.fromisoformat(_spec).timestamp()
        os.environ["TEST_CLOCK_OFFSET"] = repr(target - time.time())
    time_machine.travel(time.time() + float(os.environ["TEST_CLOCK_OFFSET"]), tick=True).start()
