"""HCL and JSON documents as plain data plus the line of every key.

python-hcl2 turns a file into dicts but forgets where each key was; errors that only say
"memory: expected a number" are useless in a 200-line job file. We parse once into the raw
lark tree (which keeps positions), index the line of every block and attribute by its
path in the resulting data, then let python-hcl2 serialise the same tree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import hcl2
from lark import Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

from steppe.errors import Problem, ValidationError

Path = tuple[str | int, ...]

_OPTIONS = hcl2.SerializationOptions(
    strip_string_quotes=True,
    explicit_blocks=False,
    with_comments=False,
    preserve_heredocs=False,
)

_TOKEN_WORDS = {
    "RBRACE": "'}'",
    "LBRACE": "'{'",
    "RSQB": "']'",
    "LSQB": "'['",
    "RPAR": "')'",
    "EQ": "'='",
    "COMMA": "','",
    "COLON": "':'",
    "NAME": "a name",
    "DBLQUOTE": "a string",
    "INT_LITERAL": "a number",
    "NL_OR_COMMENT": "a new line",
}
_VALUE_TOKENS = {"INT_LITERAL", "DBLQUOTE", "TRUE", "FALSE", "LSQB", "LBRACE"}


@dataclass(frozen=True)
class HclDocument:
    """A parsed file: its data, and the line of every key path found in it.

    ``labels`` holds, for each HCL block path, the labels written after the block type;
    JSON documents have none and readers fall back on the data's shape.
    """

    filename: str
    data: dict[str, Any]
    lines: Mapping[Path, int] = field(default_factory=dict)
    labels: Mapping[Path, tuple[str, ...]] | None = None

    def line_of(self, path: Path) -> int | None:
        """The line of ``path``, or of its nearest ancestor we know."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


def load_hcl(text: str, filename: str = "<input>") -> HclDocument:
    """Parses HCL text; a syntax error becomes a ValidationError naming file:line:column."""
    try:
        tree = hcl2.parses_to_tree(text)
    except LarkError as exc:
        raise ValidationError(_syntax_problem(exc, filename)) from exc
    lines: dict[Path, int] = {}
    labels: dict[Path, tuple[str, ...]] = {}
    problems: list[Problem] = []
    _index_body(tree.children[0], (), lines, labels, problems, filename)
    if problems:
        raise ValidationError(problems)
    try:
        data = hcl2.serialize(
            hcl2.transform(tree, discard_comments=True), serialization_options=_OPTIONS
        )
    except (LarkError, ValueError, TypeError, KeyError) as exc:
        raise ValidationError(Problem(filename, f"cannot read HCL: {exc}")) from exc
    if not isinstance(data, dict):
        raise ValidationError(Problem(filename, "expected HCL blocks and attributes at top level"))
    return HclDocument(filename, data, lines, labels)


def load_json_document(text: str, filename: str = "<input>") -> HclDocument:
    """Parses JSON text; lines of keys are found by scanning for their quoted names."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        location = f"{filename}:{exc.lineno}:{exc.colno}"
        raise ValidationError(Problem(location, f"not valid JSON: {exc.msg}")) from exc
    if not isinstance(data, dict):
        raise ValidationError(Problem(filename, "expected a JSON object at top level"))
    lines: dict[Path, int] = {}
    _index_json(data, (), text, 0, lines)
    return HclDocument(filename, data, lines, None)


def _index_json(value: Any, path: Path, text: str, start: int, lines: dict[Path, int]) -> None:
    if isinstance(value, dict):
        pos = start
        for key, item in value.items():
            found = text.find(json.dumps(key), pos)
            if found >= 0:
                pos = found
            lines[(*path, key)] = text.count("\n", 0, pos) + 1
            _index_json(item, (*path, key), text, pos, lines)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            lines.setdefault((*path, i), text.count("\n", 0, start) + 1)
            _index_json(item, (*path, i), text, start, lines)


def _index_body(
    body: Any,
    prefix: Path,
    lines: dict[Path, int],
    labels: dict[Path, tuple[str, ...]],
    problems: list[Problem],
    filename: str,
) -> None:
    counts: dict[str, int] = {}
    if not isinstance(body, Tree):
        return
    for child in body.children:
        if not isinstance(child, Tree):
            continue
        line = getattr(child.meta, "line", None) or 0
        if child.data == "attribute":
            path = (*prefix, _text(child.children[0]))
            if path in lines:
                problems.append(
                    Problem(f"{filename}:{line}", f"'{path[-1]}' is set twice in the same block")
                )
            lines[path] = line
        elif child.data == "block":
            kind = _text(child.children[0])
            ordinal = counts.get(kind, 0)
            counts[kind] = ordinal + 1
            path = (kind, ordinal)
            block_labels = tuple(
                _text(c) for c in child.children[1:] if isinstance(c, Tree) and c.data != "body"
            )
            full = (*prefix, *path)
            lines.setdefault((*prefix, kind), line)
            labels[full] = block_labels
            lines[full] = line
            for label in block_labels:
                full = (*full, label)
                lines[full] = line
            inner = next(
                (c for c in child.children if isinstance(c, Tree) and c.data == "body"), None
            )
            _index_body(inner, full, lines, labels, problems, filename)


def _text(node: Any) -> str:
    if isinstance(node, Token):
        return "" if node.type == "DBLQUOTE" else str(node.value)
    if isinstance(node, Tree):
        return "".join(_text(c) for c in node.children)
    return ""


def _syntax_problem(exc: LarkError, filename: str) -> Problem:
    line = getattr(exc, "line", 0) or 0
    column = getattr(exc, "column", 0) or 0
    location = f"{filename}:{line}:{column}" if line else filename
    if isinstance(exc, UnexpectedEOF):
        return Problem(location, "unexpected end of file (a block is not closed?)")
    if isinstance(exc, UnexpectedCharacters):
        return Problem(location, f"unexpected character {exc.char!r}")
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        if token.type == "$END":
            what = "end of file"
        else:
            first = str(token.value).strip().splitlines()
            what = repr(first[0][:40]) if first else "end of line"
        return Problem(location, f"unexpected {what}{_expected(exc.expected)}")
    return Problem(location, f"syntax error: {exc}")


def _expected(names: set[str]) -> str:
    if "NL_OR_COMMENT" in names and "RBRACE" in names:
        return "; expected a new line or '}'"
    if len(names & _VALUE_TOKENS) >= 3:
        return "; expected a value"
    words = sorted({_TOKEN_WORDS[n] for n in names if n in _TOKEN_WORDS})
    if not words or len(names) > 8:
        return ""
    return "; expected " + " or ".join(words)
