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
