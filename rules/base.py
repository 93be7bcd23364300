"""Building blocks of every rules section: frozen models, message texts, times of day."""
from __future__ import annotations

import string
from datetime import time as dtime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def check_placeholders(text: str) -> str:
    """Refuse a text whose {placeholders} cannot be rendered."""
    try:
        list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"bad placeholder: {exc}") from exc
    return text


def render_text(template: str, values: dict[str, Any]) -> str:
    """Render ``template``; unknown placeholders stay visible instead of raising."""
    return template.format_map(_KeepMissing(values))


class _KeepMissing(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class MessageTexts(Frozen):
    """Member-facing texts of one capability, rendered with ``{placeholder}`` fields.

    Each capability's section declares its own subclass; ``rules.programme.Messages``
    gathers them under the one ``messages:`` mapping of config.yaml.
    """

    @field_validator("*")
    @classmethod
    def _placeholders_parse(cls, text: str) -> str:
        return check_placeholders(text)

    def render(self, message_name: str, /, **values: Any) -> str:
        """Render a message; unknown placeholders stay visible instead of raising."""
        return render_text(getattr(self, message_name), values)


def unique_ids(items: list, what: str) -> list:
    """``items`` (each with an ``id``) unchanged, or ValueError naming ids given twice (case does not count:
    members type them)."""
    ids = [item.id.casefold() for item in items]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ValueError(f"{what} ids must be unique (case does not count): {', '.join(twice)}")
    return items


ECHO_LIMIT = 32  # characters of what a member typed that a reply quotes back (the longest id is 32)


def echoed(typed: str, limit: int = ECHO_LIMIT) -> str:
    """What a member typed, as a reply quotes it: stripped, and cut to ``limit`` characters with "…"
    (an unknown id of 10,000 characters must not come back as a wall of text)."""
    text = typed.strip()
    return text if len(text) <= limit else text[:limit] + "…"


def by_id(items: list, wanted: str):
    """The item whose id is ``wanted`` as a member typed it (case and spaces do not count), or None."""
    folded = wanted.strip().casefold()
    return next((item for item in items if item.id.casefold() == folded), None)


def parse_clock(text: str) -> dtime:
    """'09:30' -> time(9, 30); '09:30:15' keeps the seconds."""
    try:
        parts = [int(p) for p in text.split(":")]
        if len(parts) not in (2, 3):
            raise ValueError
        return dtime(*parts)
    except (ValueError, TypeError):
        raise ValueError(f"{text!r} is not a time of day as HH:MM") from None


def _clock(text: str) -> str:
    """Accept 'HH:MM' or 'HH:MM:SS' (seconds let tests schedule a job moments ahead)."""
    parse_clock(text)
    return text


ClockTime = Annotated[str, AfterValidator(_clock)]
