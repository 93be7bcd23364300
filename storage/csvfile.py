"""Reading the stores' CSV files: UTF-8 (with or without the BOM Excel writes)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


@contextmanager
def open_csv(path: Path) -> Iterator[TextIO]:
    """The file's lines as text, for ``csv`` readers."""
    with path.open(encoding="utf-8-sig", newline="") as lines:
        yield lines
