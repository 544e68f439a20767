"""Job files: HCL (Nomad's job specification, old and new shapes) and JSON, to Jobs.

Errors are :class:`~steppe.errors.ValidationError` carrying every problem of the input,
each located by ``file:line`` and the path of the field in job-file words.
The HCL document helpers are public because agent config files use them too.
"""

from steppe.jobspec._canon import canonicalize_job
from steppe.jobspec._hcl import HclDocument, load_hcl, load_json_document
from steppe.jobspec._parse import (
    parse_job,
    parse_job_file,
    parse_job_json,
    prepare_job,
    validate_job,
)
from steppe.jobspec._reader import Reader, Sink, Where, locate, suggest
from steppe.jobspec._validate import CHECK_TYPES, CONSTRAINT_OPERATORS, DRIVERS
from steppe.structs import parse_duration

__all__ = [
    "CHECK_TYPES",
    "CONSTRAINT_OPERATORS",
    "DRIVERS",
    "HclDocument",
    "Reader",
    "Sink",
    "Where",
    "canonicalize_job",
    "load_hcl",
    "load_json_document",
    "locate",
    "parse_duration",
    "parse_job",
    "parse_job_file",
    "parse_job_json",
    "prepare_job",
    "suggest",
    "validate_job",
]
