"""The programme's rules (config.yaml) as typed, frozen objects: the ground floor of the project.

Imports nothing else of the project. One module per capability section, each declaring its
own member-facing texts; ``programme.Rules`` gathers them; ``loading`` reads the file.
"""
from rules.base import ClockTime, Frozen, MessageTexts, check_placeholders, echoed, parse_clock, render_text
from rules.errors import BotError, ConfigError
from rules.loading import DEFAULT_RULES_PATH, ROOT, RulesHolder, format_path, load_rules, parse_rules
from rules.programme import Messages, Rules

__all__ = [
    "BotError", "ClockTime", "ConfigError", "DEFAULT_RULES_PATH", "Frozen", "MessageTexts", "Messages", "ROOT",
    "Rules", "RulesHolder", "check_placeholders", "echoed", "format_path", "load_rules", "parse_clock",
    "parse_rules", "render_text",
]
