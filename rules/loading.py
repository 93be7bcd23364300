"""Reading config.yaml: YAML nodes keep their lines, so a bad value is reported as
``config.yaml, line 14: tiers[2].min_spend: ...`` (Home Assistant's habit); hot reload keeps
the last good rules.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

import yaml
from pydantic import ValidationError

from rules.errors import ConfigError
from rules.programme import Rules

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RULES_PATH = ROOT / "config.yaml"


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader whose composed nodes are kept so errors can name their line."""


def _line_map(node: yaml.Node, path: tuple = (), lines: dict | None = None) -> dict[tuple, int]:
    """Map every path in the document (keys and list indexes) to its 1-based line."""
    lines = {} if lines is None else lines
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            _line_map(value_node, path + (key,), lines)
            # A key's own line beats its value's (a block value starts on the next line).
            lines[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, path + (index,), lines)
    return lines


def format_path(loc: tuple) -> str:
    """('tiers', 2, 'min_spend') -> 'tiers[2].min_spend'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def parse_rules(text: str, source: str = "config.yaml") -> Rules:
    """Parse YAML text into Rules, or raise ConfigError naming file, line and path."""
    try:
        node = yaml.compose(text, Loader=_LineLoader)
        data = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    lines = _line_map(node) if node is not None else {}
    try:
        return Rules.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            line = _nearest_line(lines, loc)
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{source}, line {line}: {format_path(loc)}: {message}")
        raise ConfigError("\n".join(problems)) from None


def _nearest_line(lines: dict[tuple, int], loc: tuple) -> int:
    """The line of the deepest part of ``loc`` present in the file (a missing key names its parent)."""
    while loc and loc not in lines:
        loc = loc[:-1]
    return lines.get(loc, 1)


def load_rules(path: Path | str) -> Rules:
    """Read and parse a rules file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_rules(text, source=str(path))


class RulesHolder:
    """The rules in force; reloads the file when it changes, keeping the last good rules on error."""

    def __init__(
        self,
        path: Path,
        rules: Rules | None = None,
        check_every: float = 1.0,
        validate: "Callable[[Rules], None] | None" = None,
    ):
        self.path = Path(path)
        self._validate = validate
        self._rules = rules if rules is not None else load_rules(self.path)
        self._mtime = self._stat()
        self._checked_at = 0.0
        self._check_every = check_every
        self._lock = threading.Lock()
        self._listeners: list = []

    @property
    def current(self) -> Rules:
        """The rules in force, re-read at most once a second if the file changed."""
        now = time.monotonic()
        if now - self._checked_at >= self._check_every:
            self._checked_at = now
            if self._stat() != self._mtime:
                self.reload()
        return self._rules

    def on_reload(self, callback) -> None:
        """Call ``callback(rules)`` after every successful reload (the scheduler re-plans its jobs)."""
        self._listeners.append(callback)

    def reload(self) -> bool:
        """Re-read the file now; a bad file is refused with a log line and the old rules stay."""
        with self._lock:
            mtime = self._stat()
            try:
                rules = load_rules(self.path)
                if self._validate:
                    self._validate(rules)
            except ConfigError as exc:
                self._mtime = mtime  # do not re-log the same bad file every second
                log.error("rules reload refused, the last good rules stay in force: %s", exc)
                return False
            self._rules, self._mtime = rules, mtime
        log.info("rules reloaded from %s", self.path)
        for callback in self._listeners:
            callback(rules)
        return True

    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return None
