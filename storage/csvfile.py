"""Text from the stores: CSV files read record by record, and the checks every text field passes.

A CSV file must be UTF-8 (with or without the BOM Excel writes); anything else is refused as a
whole, in one line that says how to save it (``CsvFileError``). Inside a readable file, a record
``csv`` cannot read (a field over its size limit) or with more fields than the header is one
bad record with its line number: the records around it are still read (``CsvTable``).
"""
from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from rules import BotError

SAVE_AS_UTF8 = 'save it as UTF-8 (in Excel: Save As, "CSV UTF-8 (Comma delimited)") and import it again'


class CsvFileError(BotError):
    """A CSV file that cannot be read at all (not UTF-8, unreadable); the message is one line naming the file."""


@contextmanager
def open_csv(path: Path) -> Iterator[TextIO]:
    """The file's text, for ``csv`` readers; CsvFileError, before anything is read, unless it is all UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CsvFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CsvFileError(f"{path}: {_not_utf8(data, exc)}: {SAVE_AS_UTF8}") from None
    yield io.StringIO(text.removeprefix("\ufeff"), newline="")


def _not_utf8(data: bytes, exc: UnicodeDecodeError) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "is UTF-16 text, not UTF-8"
    line = data.count(b"\n", 0, exc.start) + 1
    return f"is not UTF-8 text (byte 0x{data[exc.start]:02X} at offset {exc.start}, line {line})"


@dataclass(frozen=True, slots=True)
class Record:
    line: int  # the line the record ends on, as an editor numbers it
    values: dict[str, str]  # column -> field; a missing trailing field is absent
    error: str | None = None  # why the record cannot be used: nothing on it is imported


class CsvTable:
    """A CSV text's header (``columns``, or ``error`` for a header that cannot be used) and its records.

    Blank records are skipped. One record csv cannot read does not end the reading: ``csv``
    starts again at the next line, so the records after it are read as usual.
    """

    def __init__(self, lines: Iterable[str]):
        self._reader = csv.reader(lines)
        self.columns: list[str] = []
        self.error: str | None = None
        try:
            header = next(self._reader, [])
        except csv.Error as exc:
            self.error = f"header: {_unreadable(exc)}"
            return
        self.columns = [name.strip() for name in header]
        named = [name for name in self.columns if name]
        repeated = sorted({name for name in named if named.count(name) > 1})
        if repeated:
            self.error = f"header: column(s) {', '.join(repeated)} appear more than once"

    def missing(self, required: Iterable[str]) -> list[str]:
        return [name for name in required if name not in self.columns]

    def header_error(self, required: Iterable[str]) -> str | None:
        """Why the file cannot be imported at all (an unreadable header, a required column missing), or None."""
        missing = self.missing(required)
        return self.error or (f"header lacks column(s): {', '.join(missing)}" if missing else None)

    def readable(self, required: Iterable[str], errors: list[tuple[int, str]]) -> Iterator[Record]:
        """The records csv could read, once the header has ``required``; what it cannot read goes to
        ``errors`` as (line, reason), and the records after it are still read."""
        problem = self.header_error(required)
        if problem:
            errors.append((1, problem))
            return
        for record in self:
            if record.error:
                errors.append((record.line, record.error))
            else:
                yield record

    def __iter__(self) -> Iterator[Record]:
        if self.error:
            return
        while True:
            try:
                fields = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Record(self._reader.line_num, {}, _unreadable(exc))
                continue
            if not any(field.strip() for field in fields):  # a blank line, or Excel's ",,,,"
                continue
            if len(fields) > len(self.columns):
                yield Record(self._reader.line_num, {}, "more fields than the header has columns")
                continue
            yield Record(self._reader.line_num, dict(zip(self.columns, fields)))


def _unreadable(exc: csv.Error) -> str:
    if "field larger than field limit" in str(exc):
        return f"a field is longer than {csv.field_size_limit()} characters"
    return f"not readable as CSV ({exc})"


# --------------------------------------------------------------------------- text fields


def bad_character(text: str) -> str | None:
    """The first character no field from the stores may hold, as U+XXXX: control characters (NUL,
    tab, line breaks…), lone surrogates, line and paragraph separators. None if there is none."""
    found = _BAD_CHARACTER.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


_BAD_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")  # Cc, Cs, Zl, Zp


def shown(value: Any, limit: int = 40) -> str:
    """``value`` quoted for a message, cut to ``limit`` characters: the caller's text comes back bounded."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        return "(a number too long to show)"
    return text if len(text) <= limit else text[:limit] + "…"
