"""Routing is data: the routes in config.yaml, compiled once per rules version into lookups."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from rules import ConfigError, Rules


@dataclass(frozen=True)
class Match:
    handler: str
    args: str = ""


def normalise(text: str) -> str:
    """Trim, fold case and full-width spaces so '  BIND ' and 'bind' match alike."""
    return text.replace("\u3000", " ").strip().casefold()


class Router:
    """Chooses a handler for a text or a menu click. First match wins: exact, prefix, regex."""

    def __init__(self, rules: Rules):
        self.rules = rules
        self._exact: dict[str, str] = {}
        self._click: dict[str, str] = {}
        self._prefixes: list[tuple[str, str]] = []
        self._regexes: list[tuple[re.Pattern, str]] = []
        for route in rules.routes:
            for word in route.exact:
                self._exact.setdefault(normalise(word), route.handler)
            for key in route.click:
                self._click.setdefault(key, route.handler)
            for word in route.prefix:
                self._prefixes.append((normalise(word), route.handler))
            for pattern in route.regex:
                self._regexes.append((re.compile(pattern, re.IGNORECASE), route.handler))
        # Longest prefix first, so "积分明细" is not taken by "积分".
        self._prefixes.sort(key=lambda item: -len(item[0]))
        self._cancel = {normalise(word) for word in rules.dialog.cancel_words}
        self._yes = {normalise(word) for word in rules.dialog.yes_words}

    def is_cancel(self, text: str) -> bool:
        return normalise(text) in self._cancel

    def is_yes(self, text: str) -> bool:
        return normalise(text) in self._yes

    def match_text(self, text: str) -> Match | None:
        folded = normalise(text)
        if folded in self._exact:
            return Match(self._exact[folded])
        for prefix, handler in self._prefixes:
            if folded.startswith(prefix):
                rest = folded[len(prefix):]
                # "bind x" needs the space; after a Chinese keyword ("绑定D001") it may be left out.
                if rest[:1].isspace() or (rest and not prefix[-1].isascii()):
                    return Match(handler, text.strip()[len(prefix):].strip())
        for pattern, handler in self._regexes:
            found = pattern.search(text.strip())
            if found:
                args = found.group(1) if found.groups() else found.group(0)
                return Match(handler, (args or "").strip())
        return None

    def match_click(self, event_key: str) -> Match | None:
        handler = self._click.get(event_key)
        return Match(handler) if handler else None


def check_handlers(rules: Rules, handlers: Mapping[str, object]) -> None:
    """Fail if the rules name a handler the code does not have."""
    unknown = sorted(rules.handler_names() - set(handlers))
    if unknown:
        raise ConfigError(
            f"config.yaml names unknown handler(s): {', '.join(unknown)}; known: {', '.join(sorted(handlers))}"
        )


_cached: tuple[Rules, Router] | None = None


def router_for(rules: Rules) -> Router:
    """The router for these rules, rebuilt only when the rules object changes (a reload)."""
    global _cached
    cached = _cached
    if cached is None or cached[0] is not rules:
        cached = _cached = (rules, Router(rules))
    return cached[1]
