"""The reads every chat message makes (its member, staff record, points overview), run lean.

Around a statement SQLite answers in 10–20 µs, SQLAlchemy's execution (cache key of the
statement tree, execution context, result object, events, pool wrapper) costs several times
that, and these reads run on every message. A ``PreparedRead`` is a Core ``select`` compiled
once per database dialect and run straight on a driver connection its thread keeps
(``ReadConnections``); bound values and results still pass through the column types' own
processors, so a row holds what Core would give (dates as ``date``, amounts as ``Decimal``).
Everything else uses Core or the ORM.
"""
from __future__ import annotations

import os
import threading
from collections import namedtuple
from collections.abc import Callable
from typing import Any

from sqlalchemy import Select
from sqlalchemy.engine import Dialect, Engine

Processor = Callable[[Any], Any] | None


class PreparedRead:
    """A single-row SELECT, compiled once per dialect; run it with ``Reads.first``."""

    def __init__(self, statement: Select):
        self.statement = statement
        self.row_type = namedtuple("Row", statement.selected_columns.keys(), rename=True)  # type: ignore[misc]
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def compiled_for(self, dialect: Dialect) -> "_Compiled":
        key = (dialect.name, dialect.paramstyle)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _Compiled(self.statement, dialect)
        return compiled


class _Compiled:
    """The SQL text, how to bind the parameters, and the result processors for one dialect."""

    def __init__(self, statement: Select, dialect: Dialect):
        compiled = statement.compile(dialect=dialect)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("a PreparedRead cannot hold expanding (IN) or literal-execute parameters")
        self.sql, self.dialect = compiled.string, dialect
        # Each parameter: its name in the SQL, the caller's key, a fixed value (a literal in the statement), and
        # the type's processor. The caller gives every required one, as with Core.
        self.binds = [(name, bind.key, None if bind.required else bind.effective_value,
                       bind.type.dialect_impl(dialect).bind_processor(dialect))
                      for bind, name in compiled.bind_names.items()]
        self.positions = compiled.positiontup if compiled.positional else None
        self.result_types = [column.type.dialect_impl(dialect) for column in statement.selected_columns]
        self._results: dict[tuple, list[Processor]] = {}

    def parameters(self, values: dict[str, Any]) -> Any:
        params = {}
        for name, key, fixed, process in self.binds:
            value = values[key] if fixed is None else fixed
            params[name] = value if process is None else process(value)
        return [params[name] for name in self.positions] if self.positions is not None else params

    def results(self, description: Any) -> list[Processor]:
        # The driver's type codes (PostgreSQL's OIDs) choose some processors; SQLite has none.
        codes = tuple(column[1] for column in description)
        processors = self._results.get(codes)
        if processors is None:
            processors = self._results[codes] = [
                type_.result_processor(self.dialect, code) for type_, code in zip(self.result_types, codes)]
        return processors


class ReadConnections:
    """One driver connection per thread for the lean reads, kept open from message to message.

    Checking a connection out of SQLAlchemy's pool and back in (where PostgreSQL's is rolled back,
    a round trip) cost as much as the read itself. These connections hold no transaction between
    statements (SQLite's are in autocommit mode already; PostgreSQL's are switched to it), so each
    read sees everything committed before it, as a read of its own on a fresh connection would.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._local = threading.local()
        self._opened: list[Any] = []  # every connection handed out, closed by close_all
        self._lock = threading.Lock()

    def get(self) -> Any:
        """This thread's connection (SQLAlchemy's wrapper, detached from the pool), opened at first use."""
        connection = getattr(self._local, "connection", None)
        if connection is None or self._local.pid != os.getpid():  # none yet, or inherited through a fork
            connection = self.engine.raw_connection()
            connection.detach()  # ours until close_all: closed, not returned to the pool
            if self.engine.dialect.name == "postgresql":
                connection.dbapi_connection.rollback()  # the pool's ping may have begun a transaction
                connection.dbapi_connection.autocommit = True
            self._local.connection, self._local.pid = connection, os.getpid()
            with self._lock:
                self._opened.append(connection)
        return connection

    def discard(self, connection: Any) -> None:
        """Close a connection the database dropped; this thread opens a new one at its next read."""
        if getattr(self._local, "connection", None) is connection:
            self._local.connection = None
        with self._lock:
            if connection in self._opened:
                self._opened.remove(connection)
        try:
            connection.close()
        except Exception:  # already broken: nothing more to release
            pass

    def close_all(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            try:
                connection.close()
            except Exception:
                pass


class Reads:
    """A message's reads, on its thread's connection (``ReadConnections``)."""

    def __init__(self, connections: ReadConnections):
        self._connections = connections

    def first(self, read: PreparedRead, **values: Any) -> tuple | None:
        """The first row of ``read`` with ``values`` bound (as a named tuple), or None.

        A connection the database dropped (a restart) is replaced and the read tried once more.
        """
        try:
            return self._first(read, values)
        except _Dropped:
            return self._first(read, values)

    def _first(self, read: PreparedRead, values: dict[str, Any]) -> tuple | None:
        connections = self._connections
        dialect = connections.engine.dialect
        compiled = read.compiled_for(dialect)
        connection = connections.get()
        cursor = None
        try:
            cursor = connection.cursor()
            cursor.execute(compiled.sql, compiled.parameters(values))
            row = cursor.fetchone()
            description = cursor.description
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, connection.dbapi_connection, cursor):
                connections.discard(connection)
                raise _Dropped() from exc
            raise
        finally:
            if cursor is not None:
                cursor.close()
        if row is None:
            return None
        return read.row_type._make(value if process is None else process(value)
                                   for value, process in zip(row, compiled.results(description)))


class _Dropped(Exception):
    """The read's connection was lost."""
