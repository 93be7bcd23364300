"""The reads every chat message makes (its member, staff record, points overview), run lean.

Around a statement SQLite answers in 10–20 µs, SQLAlchemy's execution (cache key of the
statement tree, execution context, result object, events, pool wrapper) costs several times
that, and these reads run on every message. A ``PreparedRead`` is a Core ``select`` compiled
once per database dialect and run straight on the pooled driver connection; bound values and
results still pass through the column types' own processors, so a row holds what Core would
give (dates as ``date``, amounts as ``Decimal``). Everything else uses Core or the ORM.
"""
from __future__ import annotations

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
        self.compiled, self.sql, self.dialect = compiled, compiled.string, dialect
        self.positions = compiled.positiontup if compiled.positional else None
        self.binds: dict[str, Processor] = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect) for bind, name in compiled.bind_names.items()
        }
        self.result_types = [column.type.dialect_impl(dialect) for column in statement.selected_columns]
        self._results: dict[tuple, list[Processor]] = {}

    def parameters(self, values: dict[str, Any]) -> Any:
        params = self.compiled.construct_params(values)
        for name, process in self.binds.items():
            if process is not None:
                params[name] = process(params[name])
        return [params[name] for name in self.positions] if self.positions is not None else params

    def results(self, description: Any) -> list[Processor]:
        # The driver's type codes (PostgreSQL's OIDs) choose some processors; SQLite has none.
        codes = tuple(column[1] for column in description)
        processors = self._results.get(codes)
        if processors is None:
            processors = self._results[codes] = [
                type_.result_processor(self.dialect, code) for type_, code in zip(self.result_types, codes)]
        return processors


class Reads:
    """One pooled driver connection for a message's reads, checked out at the first and given back by ``close``."""

    def __init__(self, engine: Engine):
        self._engine = engine
        self._connection: Any = None  # SQLAlchemy's pool wrapper around the DBAPI connection

    def first(self, read: PreparedRead, **values: Any) -> tuple | None:
        """The first row of ``read`` with ``values`` bound (as a named tuple), or None."""
        dialect = self._engine.dialect
        compiled = read.compiled_for(dialect)
        if self._connection is None:
            self._connection = self._engine.raw_connection()
        cursor = self._connection.cursor()
        try:
            cursor.execute(compiled.sql, compiled.parameters(values))
            row = cursor.fetchone()
            description = cursor.description
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, self._connection.dbapi_connection, cursor):
                self._connection.invalidate(exc)  # never handed out again by the pool
            raise
        finally:
            cursor.close()
        if row is None:
            return None
        return read.row_type._make(value if process is None else process(value)
                                   for value, process in zip(row, compiled.results(description)))

    def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()  # back to the pool, which ends any transaction the driver began
