"""Version constraints as Nomad's ``version`` and ``semver`` operators read them:
``">= 1.2, < 2"``, ``"~> 1.4"``, ``"= 1.0.0-beta"``."""

from __future__ import annotations

import re
from functools import lru_cache

_VERSION = re.compile(r"^v?(\d+(?:\.\d+)*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_CLAUSE = re.compile(r"^(>=|<=|!=|~>|=|>|<)?\s*(\S+)$")

Version = tuple[tuple[int, ...], tuple[int, str]]


def parse_version(text: str) -> Version | None:
    m = _VERSION.match(text.strip())
    if m is None:
        return None
    nums = tuple(int(p) for p in m.group(1).split("."))
    nums = nums + (0,) * (3 - len(nums)) if len(nums) < 3 else nums
    pre = m.group(2)
    # a release sorts after all its pre-releases: (1, "") > (0, "beta")
    return nums, ((0, pre) if pre else (1, ""))


def _pessimistic(have: Version, want: Version, segments: int) -> bool:
    if have < want:
        return False
    prefix = max(segments - 1, 1)
    return have[0][:prefix] == want[0][:prefix]


@lru_cache(maxsize=1024)
def _compile(spec: str) -> tuple[tuple[str, Version, int], ...] | None:
    clauses = []
    for part in spec.split(","):
        m = _CLAUSE.match(part.strip())
        if m is None:
            return None
        version = parse_version(m.group(2))
        if version is None:
            return None
        segments = len(m.group(2).lstrip("v").split("-")[0].split("."))
        clauses.append((m.group(1) or "=", version, segments))
    return tuple(clauses)


def version_matches(have_text: str, spec: str) -> bool:
    have = parse_version(have_text)
    clauses = _compile(spec)
    if have is None or clauses is None:
        return False
    for op, want, segments in clauses:
        ok = {
            "=": have == want,
            "!=": have != want,
            ">": have > want,
            "<": have < want,
            ">=": have >= want,
            "<=": have <= want,
            "~>": op == "~>" and _pessimistic(have, want, segments),
        }[op]
        if not ok:
            return False
    return True
