"""Engine and sessions. Callers own transactions: ``with db.write() as s:`` commits or rolls back."""
from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from storage.reads import ReadConnections, Reads

log = logging.getLogger(__name__)


class Database:
    """One engine and two kinds of session: read snapshots and write transactions."""

    def __init__(self, url: str, echo: bool = False):
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(url, echo=echo, connect_args={"timeout": 30})
            _use_wal_and_explicit_begin(self.engine)
            on_disk = parsed.database and parsed.database != ":memory:"
            self._writers_queue = WriterQueue(f"{parsed.database}.writers") if on_disk else nullcontext
        else:
            self.engine = create_engine(url, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=10)
            self._writers_queue = nullcontext  # PostgreSQL's row locks queue writers by themselves
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._read_connections = ReadConnections(self.engine)
        # On SQLite a writer takes the write lock up front (BEGIN IMMEDIATE): upgrading a
        # read transaction later can fail at once with "database is locked" instead of waiting.
        self._writer = sessionmaker(
            self.engine.execution_options(sqlite_begin="IMMEDIATE"), expire_on_commit=False
        )
        self._after_write: list[Callable[[Session], None]] = []

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; nothing it does is committed.

        Closing (not rolling back) ends the transaction and leaves loaded objects readable.
        """
        with self._reader() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction: committed when the block ends, rolled back if it raises. Once committed
        (and the write lock released), the ``after_write`` callbacks get the session."""
        with self._writers_queue(), self._writer() as session, session.begin():
            yield session
        for callback in self._after_write:
            callback(session)

    def after_write(self, callback: Callable[[Session], None]) -> None:
        """Call ``callback(session)`` after every committed write transaction (its ``info`` says what it did;
        its objects are detached): the process sends the pushes it planned to send at once."""
        self._after_write.append(callback)

    def reads(self) -> Reads:
        """The single-statement reads of one chat message (``PreparedRead``), on this thread's read connection."""
        return Reads(self._read_connections)

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self._read_connections.close_all()
        self.engine.dispose()


class WriterQueue:
    """SQLite writers of every process wait their turn here, woken the moment the writer before them is done.

    SQLite lets one writer in at a time; the others poll, sleeping 1, 2, 5, 10… ms between tries
    (its busy handler), so under steady contention the cores idle while members wait. An exclusive
    ``flock`` on a file beside the database (and a lock for the threads of this process) queues
    the bot's own writers in the kernel instead; anything else writing still meets SQLite's lock.
    """

    def __init__(self, path: str):
        self.path = path
        self._threads = threading.Lock()
        self._file: tuple[int, int] | None = None  # (pid, fd): a forked child opens its own

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._threads:
            fd = self._fd()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _fd(self) -> int:
        if self._file is None or self._file[0] != os.getpid():
            self._file = (os.getpid(), os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        return self._file[1]


def _use_wal_and_explicit_begin(engine: Engine) -> None:
    """Take transaction control from pysqlite (SQLAlchemy docs: 'Serializable isolation / Savepoints')."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', '')}".strip())
