"""Typed reads from an HCL/JSON document that collect problems instead of raising.

Every getter returns a usable default when the value is wrong, so one pass over a file
reports all of its problems, each with file, line and the readable block path.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from steppe.errors import Problem
from steppe.jobspec._hcl import HclDocument, Path
from steppe.structs import parse_duration

_MISSING: Any = object()
SemKey = tuple[tuple[str, int | None], ...]


@dataclass(frozen=True)
class Seg:
    kind: str
    label: str | None = None
    index: int | None = None

    def __str__(self) -> str:
        if self.label:
            return f'{self.kind} "{self.label}"'
        if self.index is not None:
            return f"{self.kind}[{self.index}]"
        return self.kind


@dataclass(frozen=True)
class Where:
    """A place in a job or config, readable (``job "web" > group "g" > count``) and keyed
    by kind and position so that a later semantic check can find the line it came from."""

    segs: tuple[Seg, ...] = ()

    def child(self, kind: str, label: str | None = None, index: int | None = None) -> Where:
        return Where((*self.segs, Seg(kind, label, index)))

    def key(self) -> SemKey:
        return tuple((s.kind, s.index) for s in self.segs)

    def __str__(self) -> str:
        return " > ".join(str(s) for s in self.segs)


def locate(filename: str, line: int | None, where: Where | str) -> str:
    place = f"{filename}:{line}" if line else filename
    text = str(where)
    return f"{place}: {text}" if text and place else (text or place)


def suggest(word: str, allowed: Iterable[str]) -> str:
    choices = sorted(allowed)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f"; allowed: {', '.join(choices)}"


class Sink:
    """Where readers put problems, and the line each semantic place was read from."""

    def __init__(self, doc: HclDocument) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        self.problem_lines: list[int] = []
        self.bad_keys: set[SemKey] = set()
        self.sem_lines: dict[SemKey, int] = {}

    def line_for(self, where: Where) -> int | None:
        key = where.key()
        for end in range(len(key), 0, -1):
            line = self.sem_lines.get(key[:end])
            if line is not None:
                return line
        return None

    def report(self, where: Where, message: str, path: Path | None = None) -> None:
        line = self.doc.line_of(path) if path is not None else self.line_for(where)
        self.add(where, line, message)

    def add(self, where: Where, line: int | None, message: str) -> None:
        self.bad_keys.add(where.key())
        self.problems.append(Problem(locate(self.doc.filename, line, where), message))
        self.problem_lines.append(line or 0)

    def sorted_problems(self) -> list[Problem]:
        """Problems in file order, each once: people fix files top to bottom."""
        order = sorted(range(len(self.problems)), key=lambda i: self.problem_lines[i])
        return list(dict.fromkeys(self.problems[i] for i in order))


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f'the string "{value[:40]}"'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a block"
    return "null"


class Reader:
    """One block of a document, read key by key."""

    def __init__(self, sink: Sink, data: dict[str, Any], path: Path, where: Where) -> None:
        self.sink = sink
        self.data = data
        self.path = path
        self.where = where
        self._line_at(path, where)

    @property
    def kind(self) -> str:
        return self.where.segs[-1].kind if self.where.segs else "top level"

    def _line_at(self, path: Path, where: Where) -> None:
        line = self.sink.doc.line_of(path)
        if line is not None:
            self.sink.sem_lines.setdefault(where.key(), line)

    def problem(self, key: str | None, message: str) -> None:
        where = self.where if key is None else self.where.child(key)
        path = self.path if key is None else (*self.path, key)
        self.sink.report(where, message, path)

    def alias(self, key: str, as_key: str) -> None:
        """Lets checks on ``as_key`` point at the line of ``key`` (Nomad's shortcuts such as
        ``regexp = "..."`` for ``operator``/``value``)."""
        line = self.sink.doc.line_of((*self.path, key))
        if line is not None:
            self.sink.sem_lines[self.where.child(as_key).key()] = line

    def has(self, key: str) -> bool:
        return key in self.data

    def check(self, allowed: Iterable[str]) -> None:
        known = set(allowed)
        for key in self.data:
            if key not in known:
                self.sink.report(
                    self.where,
                    f"unknown key '{key}' in {self.kind}{suggest(key, known)}",
                    (*self.path, key),
                )

    def get(self, key: str) -> Any:
        value = self.data.get(key, _MISSING)
        if value is not _MISSING:
            self._line_at((*self.path, key), self.where.child(key))
        return value

    def _wrong(self, key: str, expected: str, value: Any) -> None:
        self.problem(key, f"expected {expected}, got {_kind_of(value)}")

    def string(self, key: str, default: str = "") -> str:
        value = self.get(key)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        self._wrong(key, "a string", value)
        return default

    def integer(self, key: str, default: int = 0) -> int:
        value = self.get(key)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        self._wrong(key, "a whole number", value)
        return default

    def number(self, key: str, default: float = 0.0) -> float:
        value = self.get(key)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        self._wrong(key, "a number", value)
        return default

    def boolean(self, key: str, default: bool = False) -> bool:
        value = self.get(key)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        self._wrong(key, "true or false", value)
        return default

    def duration(self, key: str, default: int = 0) -> int:
        value = self.get(key)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, int) and not isinstance(value, bool) and value == 0:
            return 0
        if not isinstance(value, str):
            self._wrong(key, 'a duration like "30s"', value)
            return default
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.problem(key, str(exc))
            return default

    def strings(self, key: str) -> tuple[str, ...] | None:
        value = self.get(key)
        if value is _MISSING or value is None:
            return None
        if isinstance(value, list) and all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
        ):
            return tuple(str(v) for v in value)
        self._wrong(key, "a list of strings", value)
        return None

    def any_map(self, key: str) -> dict[str, Any] | None:
        """A block or object attribute of free-form content (``config``, ``options``)."""
        value = self.get(key)
        if value is _MISSING or value is None:
            return None
        items = value if isinstance(value, list) else [value]
        merged: dict[str, Any] = {}
        for item in items:
            if not isinstance(item, dict):
                self._wrong(key, "a block", value)
                return None
            merged.update(item)
        return merged

    def str_map(self, key: str) -> dict[str, str] | None:
        raw = self.any_map(key)
        if raw is None:
            return None
        result: dict[str, str] = {}
        for name, value in raw.items():
            if isinstance(value, bool):
                result[name] = str(value).lower()
            elif isinstance(value, str | int | float):
                result[name] = str(value)
            else:
                self.problem(key, f"'{name}' must be a string, got {_kind_of(value)}")
        return result

    def _items(self, key: str) -> list[tuple[Path, Any]]:
        value = self.get(key)
        if value is _MISSING or value is None:
            return []
        if isinstance(value, list):
            return [((*self.path, key, i), item) for i, item in enumerate(value)]
        return [((*self.path, key), value)]

    def blocks(self, key: str) -> list[Reader]:
        """Repeatable blocks without labels (``service``, ``constraint``, ``check``)."""
        found: list[Reader] = []
        for path, item in self._items(key):
            where = self.where.child(key, None, len(found))
            if not isinstance(item, dict):
                self.sink.report(where, f"'{key}' must be a block, got {_kind_of(item)}", path)
                continue
            found.append(Reader(self.sink, item, path, where))
        return found

    def block(self, key: str) -> Reader | None:
        """A block allowed once (``resources``, ``restart``)."""
        items = self._items(key)
        if len(items) > 1:
            self.problem(key, f"only one '{key}' block is allowed in {self.kind}")
        if not items:
            return None
        path, item = items[0]
        if not isinstance(item, dict):
            self.problem(key, f"'{key}' must be a block, got {_kind_of(item)}")
            return None
        return Reader(self.sink, item, path, self.where.child(key))

    def labeled(self, key: str) -> list[tuple[str, Reader]]:
        """Blocks with one label (``group "web" {}``, ``port "http" {}``)."""
        found: list[tuple[str, Reader]] = []
        labels = self.sink.doc.labels
        for path, item in self._items(key):
            entries: list[tuple[Path, str, Any]] = []
            if labels is not None and len(labels.get(path, ())) != 1:
                count = len(labels.get(path, ()))
                self.sink.report(
                    self.where.child(key, None, len(found)),
                    f"a '{key}' block needs exactly one label, its name (found {count})",
                    path,
                )
                continue
            if isinstance(item, dict) and all(isinstance(v, dict) for v in item.values()):
                entries = [((*path, name), name, body) for name, body in item.items()]
            else:
                self.problem(key, f"'{key}' must be a block with a name, got {_kind_of(item)}")
            for body_path, name, body in entries:
                where = self.where.child(key, name, len(found))
                found.append((name, Reader(self.sink, body, body_path, where)))
        return found
