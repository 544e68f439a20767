"""The entry points: HCL text, JSON text, or a file of either, to a checked Job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from steppe.errors import Problem, ValidationError
from steppe.jobspec._canon import canonicalize_job
from steppe.jobspec._convert import convert_document
from steppe.jobspec._hcl import load_hcl
from steppe.jobspec._reader import Sink
from steppe.jobspec._validate import check_job
from steppe.structs import Job, convert


def parse_job(text: str, filename: str = "<input>") -> Job:
    """An HCL job file to a canonical Job; ValidationError lists every problem in it."""
    sink = Sink(load_hcl(text, filename))
    job = convert_document(sink)
    if job is not None:
        job = canonicalize_job(job)
        already = set(sink.bad_keys)
        for where, message in check_job(job):
            if where.key() not in already:
                sink.add(where, sink.line_for(where), message)
    if sink.problems or job is None:
        raise ValidationError(sink.sorted_problems() or [Problem(filename, "no job found")])
    return job


def parse_job_json(data: bytes | str, filename: str | None = None) -> Job:
    """``{"Job": {...}}`` (or the bare job object), as ``nomad job run -json`` and the HTTP
    API send it, to a canonical, checked Job."""
    what = filename or "Job"
    try:
        raw: Any = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise ValidationError(Problem(what, f"not valid JSON: {exc}")) from exc
    if isinstance(raw, dict) and isinstance(raw.get("Job"), dict):
        raw = raw["Job"]
    if not isinstance(raw, dict):
        raise ValidationError(Problem(what, 'expected a JSON object {"Job": {...}}'))
    return prepare_job(convert(raw, Job, what=what), filename)


def parse_job_file(path: str | Path) -> Job:
    """A job file of either syntax; JSON is recognised by its leading ``{``."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(Problem(name, f"cannot read the job file: {exc}")) from exc
    if text.lstrip().startswith("{"):
        return parse_job_json(text, name)
    return parse_job(text, name)


def prepare_job(job: Job, filename: str | None = None) -> Job:
    """Canonicalises a job that arrived as a struct and raises if it is not valid."""
    job = canonicalize_job(job)
    problems = validate_job(job)
    if problems:
        if filename:
            problems = [Problem(f"{filename}: {p.location}", p.message) for p in problems]
        raise ValidationError(problems)
    return job


def validate_job(job: Job) -> list[Problem]:
    """Every semantic problem of ``job``, located by its path in job-file words."""
    return [Problem(str(where), message) for where, message in check_job(job)]
