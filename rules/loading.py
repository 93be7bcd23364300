"""Reading config.yaml: YAML nodes keep their lines, so a bad value is reported as
``config.yaml, line 14: tiers[2].min_spend: ...`` (Home Assistant's habit); hot reload keeps
the last good rules.
"""
from __future__ import annotations

import logging
import stat
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


# Ceilings far above any real rules file (config.yaml with its gift catalogue and events: under
# 64 KB, a few thousand nodes) and far below what
# hurts. PyYAML here is pure Python (libyaml crashes on deep nesting) and costs about 20 µs a node,
# and anchors & aliases (``*name``) let a few kilobytes stand for billions of values ("billion
# laughs") that validation would walk one by one: a reload runs inside a request.
MAX_FILE_BYTES = 1024 * 1024
MAX_NODES = 50_000  # values, keys and list items: as written, and with every alias counted as a copy
MAX_TEXT_CHARS = 2_000_000  # characters of all scalars, aliases expanded likewise
MAX_DEPTH = 100  # mappings and lists within each other (config.yaml: 5)


TOO_MANY = (f"too many aliases/nodes (alias expansion: more than {MAX_NODES:,} values or {MAX_TEXT_CHARS:,} "
            "characters once every *alias is expanded), refused")
TOO_DEEP = f"nested too deeply (more than {MAX_DEPTH} levels), refused"


class _Refused(Exception):
    """Composing stopped early (TOO_MANY, TOO_DEEP) at a line."""

    def __init__(self, problem: str, mark: yaml.Mark):
        super().__init__(problem)
        self.problem, self.line = problem, mark.line + 1


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader whose composed nodes are kept so errors can name their line, and counted."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self.nodes_written = 0
        self.depth = 0

    def compose_node(self, parent, index):
        # Stop as soon as the file holds more nodes than any rules file could (an alias counts one
        # here), or nests deeper: before the work, and before Python's recursion limit.
        self.nodes_written += 1
        if self.nodes_written > MAX_NODES:
            raise _Refused(TOO_MANY, self.peek_event().start_mark)
        if self.depth >= MAX_DEPTH:
            raise _Refused(TOO_DEEP, self.peek_event().start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False):
        # PyYAML's constructors let some bad scalars through as plain Python errors
        # (``!!int abc``: ValueError, ``!!timestamp x``: AttributeError): name them and their line.
        try:
            return super().construct_object(node, deep)
        except (yaml.YAMLError, RecursionError):
            raise
        except Exception as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value ({exc})", node.start_mark
            ) from None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return node.value
    return []


def _check_expanded_size(root: yaml.Node, source: str) -> None:
    """Refuse a document whose aliases expand it beyond MAX_NODES or MAX_TEXT_CHARS, or into itself.

    An alias is the very node object of its anchor, so the composed document is a graph in which
    shared subtrees appear once: the expanded size is summed over that graph, visiting every node
    once (linear in the file, however many copies the aliases stand for).
    """
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, characters) with aliases expanded
    open_nodes: set[int] = set()  # collections whose children are still being counted: the current path
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            nodes, chars = 1, 0
            for child in _children(node):
                child_nodes, child_chars = sizes[id(child)]
                nodes, chars = nodes + child_nodes, chars + child_chars
            if nodes > MAX_NODES or chars > MAX_TEXT_CHARS:
                raise ConfigError(f"{source}, line {node.start_mark.line + 1}: {TOO_MANY}")
            sizes[key] = (nodes, chars)
        elif key in sizes:
            continue
        elif isinstance(node, yaml.ScalarNode):
            sizes[key] = (1, len(node.value))
        elif key in open_nodes:
            raise ConfigError(f"{source}, line {node.start_mark.line + 1}: an alias refers to its own anchor "
                              "(a recursive structure), refused")
        else:
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _line_map(root: yaml.Node) -> dict[tuple, int]:
    """Map every path in the document (keys and list indexes) to its 1-based line.

    Each node is walked once: a subtree reached again through an alias is not walked again, and
    paths inside it take the line of the alias's key (or of the anchor, for a list item).
    """
    lines: dict[tuple, int] = {}
    walked: set[int] = set()
    stack: list[tuple[yaml.Node, tuple, int | None]] = [(root, (), None)]
    while stack:
        node, path, key_line = stack.pop()
        # A key's own line beats its value's (a block value starts on the next line).
        lines[path] = key_line or node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode) or id(node) in walked:
            continue
        walked.add(id(node))
        if isinstance(node, yaml.MappingNode):
            children = [(value, path + (key.value,), key.start_mark.line + 1)
                        for key, value in node.value if isinstance(key, yaml.ScalarNode)]
        else:
            children = [(item, path + (index,), None) for index, item in enumerate(node.value)]
        stack.extend(reversed(children))  # in document order: an anchor is walked before its aliases
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
    loader = None
    try:
        loader = _LineLoader(text)  # checks every character first
        node = loader.get_single_node()
        if node is not None:
            _check_expanded_size(node, source)  # before anything walks the values one by one
        data = loader.construct_document(node) if node is not None else None
    except yaml.reader.ReaderError as exc:  # a character YAML forbids (NUL, other controls)
        line = text.count("\n", 0, exc.position) + 1
        character = exc.character if isinstance(exc.character, int) else ord(exc.character)
        message = f"not valid YAML: character #x{character:04x} is not allowed"
        raise ConfigError(f"{source}, line {line}: {message}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}{where}: not valid YAML: {problem}") from None
    except _Refused as exc:
        raise ConfigError(f"{source}, line {exc.line}: {exc.problem}") from None
    except RecursionError:
        raise ConfigError(f"{source}: {TOO_DEEP}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    try:
        return Rules.model_validate(data)
    except ValidationError as exc:
        lines = _line_map(node)
        problems = []
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            line = _nearest_line(lines, loc)
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{source}, line {line}: {format_path(loc)}: {message}")
        raise ConfigError("\n".join(problems)) from None
    except Exception as exc:  # a check that broke on a value instead of refusing it: a bug in rules/, named
        broken = f"{type(exc).__name__}: {str(exc)[:200]}"
        raise ConfigError(f"{source}: refused, a check failed on a value ({broken})") from exc


def _nearest_line(lines: dict[tuple, int], loc: tuple) -> int:
    """The line of the deepest part of ``loc`` present in the file (a missing key names its parent)."""
    while loc and loc not in lines:
        loc = loc[:-1]
    return lines.get(loc, 1)


def read_rules_file(path: Path | str) -> str:
    """The text of a rules file, or ConfigError saying in one line why it cannot be read."""
    path = Path(path)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{path}: cannot read: it is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):  # a FIFO or a device could block or never end
            raise ConfigError(f"{path}: cannot read: not a regular file")
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:  # e.g. a NUL character in the path
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: too large (more than {MAX_FILE_BYTES:,} bytes), refused")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # GBK, UTF-16, Latin-1…: saved by an editor in another encoding
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None


def load_rules(path: Path | str) -> Rules:
    """Read and parse a rules file; every way it can be bad is a ConfigError."""
    return parse_rules(read_rules_file(path), source=str(path))


class RulesHolder:
    """The rules in force; reloads the file when it changes, keeping the last good rules on error.

    A reload happens inside whatever request first sees the change, so nothing a file holds may
    escape it: a bad file (or any unexpected error) is logged once, and the version of the file
    that failed is not tried again until it changes.
    """

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
        self._version = self._stat()
        self._checked_at = 0.0
        self._check_every = check_every
        self._lock = threading.Lock()
        self._again = False  # a reload was asked for while one was under way
        self._listeners: list = []

    @property
    def current(self) -> Rules:
        """The rules in force, re-read at most once a second if the file changed."""
        now = time.monotonic()
        if now - self._checked_at >= self._check_every:
            self._checked_at = now
            if self._stat() != self._version:
                self.reload(if_changed=True)
        return self._rules

    def on_reload(self, callback) -> None:
        """Call ``callback(rules)`` after every successful reload (the scheduler re-plans its jobs)."""
        self._listeners.append(callback)

    def reload(self, *, if_changed: bool = False) -> bool:
        """Re-read the file now; a bad file is refused with a log line and the old rules stay.

        Never waits: while another thread (or this one, interrupted by SIGHUP) is reloading, the
        request is noted and that reload reads the file once more when it is done.
        """
        reloaded = None
        while True:
            if self._lock.acquire(blocking=False):
                try:
                    self._again = False  # a read that starts after this answers every request made so far
                    rules = self._read(if_changed)
                    reloaded = rules if rules is not None else reloaded
                finally:
                    self._lock.release()
                if not self._again:
                    break
                if_changed = False  # asked for meanwhile: read once more
            else:
                if not if_changed:
                    self._again = True
                if self._lock.locked():
                    break  # its holder reads again when it is done
        if reloaded is None:
            return False
        log.info("rules reloaded from %s", self.path)
        for callback in self._listeners:
            try:
                callback(reloaded)
            except Exception:
                log.exception("after the rules were reloaded, %r failed", callback)
        return True

    def _read(self, if_changed: bool) -> Rules | None:
        """Under the lock: read, check and install the file; None when refused or unchanged."""
        version = self._stat()
        if if_changed and version == self._version:
            return None  # another thread has just dealt with this version
        self._version = version  # good or bad, this version is dealt with: a bad file is logged once
        try:
            rules = load_rules(self.path)
            if self._validate:
                self._validate(rules)
        except ConfigError as exc:
            log.error("rules reload refused, the last good rules stay in force: %s", exc)
            return None
        except Exception:
            log.exception("rules reload failed unexpectedly, the last good rules stay in force (%s)", self.path)
            return None
        self._rules = rules
        return rules

    def _stat(self) -> tuple[int, int, int] | None:
        """What identifies a version of the file: mtime, size and inode (editors that save by rename)."""
        try:
            info = self.path.stat()
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size, info.st_ino
