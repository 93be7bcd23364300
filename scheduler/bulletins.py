"""Monthly bulletins: one file a month in the folder the rules name (``bulletins/2026-12.md``)."""
from __future__ import annotations

from pathlib import Path

from rules import ROOT, Rules


def bulletin_path(rules: Rules, month: str) -> Path:
    folder = Path(rules.jobs.monthly_bulletin.folder)
    return (folder if folder.is_absolute() else ROOT / folder) / f"{month}.md"


def read_bulletin(rules: Rules, month: str, cache: dict[str, tuple[str, str]]) -> tuple[str, str]:
    """The month's bulletin: (title, text), the title being the file's first line."""
    if month not in cache:
        text = bulletin_path(rules, month).read_text(encoding="utf-8").strip()
        title = text.splitlines()[0].lstrip("# ").strip() if text else month
        cache[month] = (title, text)
    return cache[month]
