"""Logging set-up: one line per event, to stderr."""
import logging
import os


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # it logs every planned job at INFO
