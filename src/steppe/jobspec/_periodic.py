"""The ``periodic``, ``parameterized`` and ``dispatch_payload`` stanzas: reading them from
a job file, filling in Nomad's defaults, and checking them.

Both job kinds are templates the servers launch children from, which only makes sense
for jobs that run to completion: Nomad allows them on batch and sysbatch jobs only.
"""

from __future__ import annotations

import posixpath

from msgspec.structs import replace

from steppe.cron import CronError, parse_cron, zone
from steppe.jobspec._reader import Reader, Where
from steppe.structs import DispatchPayloadConfig, Job, ParameterizedJobConfig, PeriodicConfig

PAYLOAD_MODES = ("optional", "required", "forbidden")
PARENT_JOB_TYPES = ("batch", "sysbatch")
Finding = tuple[Where, str]


def periodic(r: Reader) -> PeriodicConfig:
    r.check(("cron", "crons", "prohibit_overlap", "time_zone", "enabled"))
    base = PeriodicConfig()
    return PeriodicConfig(
        enabled=r.boolean("enabled", base.enabled),
        spec=r.string("cron"),
        specs=r.strings("crons") or (),
        prohibit_overlap=r.boolean("prohibit_overlap", base.prohibit_overlap),
        time_zone=r.string("time_zone", base.time_zone),
    )


def parameterized(r: Reader) -> ParameterizedJobConfig:
    r.check(("payload", "meta_required", "meta_optional"))
    return ParameterizedJobConfig(
        payload=r.string("payload", ParameterizedJobConfig().payload),
        meta_required=r.strings("meta_required") or (),
        meta_optional=r.strings("meta_optional") or (),
    )


def dispatch_payload(r: Reader) -> DispatchPayloadConfig:
    r.check(("file",))
    return DispatchPayloadConfig(file=r.string("file"))


def canonical(job: Job) -> Job:
    """Empty time zone and spec type (as JSON clients may send them) become Nomad's."""
    if job.periodic is None:
        return job
    p = job.periodic
    return replace(
        job, periodic=replace(p, time_zone=p.time_zone or "UTC", spec_type=p.spec_type or "cron")
    )


def check(job: Job) -> list[Finding]:
    here = Where().child("job", job.id or "?", 0)
    out: list[Finding] = []
    for kind, present in (("periodic", job.periodic), ("parameterized", job.parameterized_job)):
        if present is not None and job.type not in PARENT_JOB_TYPES:
            message = f"{kind} jobs must be of type batch or sysbatch, not {job.type!r}"
            out.append((here.child("type"), message))
    if job.periodic is not None:
        out += _periodic(here.child("periodic"), job.periodic)
    if job.parameterized_job is not None:
        out += _parameterized(here.child("parameterized"), job.parameterized_job)
    forbidden = job.parameterized_job is not None and job.parameterized_job.payload == "forbidden"
    for i, group in enumerate(job.task_groups):
        for j, task in enumerate(group.tasks):
            if task.dispatch_payload is None:
                continue
            where = here.child("group", group.name, i).child("task", task.name, j)
            where = where.child("dispatch_payload").child("file")
            out += _payload_file(where, task.dispatch_payload.file, forbidden)
    return out


def _periodic(here: Where, p: PeriodicConfig) -> list[Finding]:
    out: list[Finding] = []
    if p.spec_type != "cron":
        out.append((here.child("spec_type"), f"unknown SpecType {p.spec_type!r}; allowed: cron"))
    if p.spec and p.specs:
        out.append((here.child("crons"), "use either cron or crons, not both"))
    if not p.all_specs() and p.enabled:
        out.append((here, 'a periodic block needs cron = "..." or crons = ["...", ...]'))
    for key, specs in (("cron", (p.spec,) if p.spec else ()), ("crons", p.specs)):
        for spec in specs:
            try:
                parse_cron(spec)
            except CronError as exc:
                out.append((here.child(key), f"invalid cron expression {spec!r}: {exc}"))
    try:
        zone(p.time_zone)
    except CronError as exc:
        out.append((here.child("time_zone"), f"{exc} (use an IANA name like Europe/Berlin)"))
    return out


def _parameterized(here: Where, config: ParameterizedJobConfig) -> list[Finding]:
    out: list[Finding] = []
    if config.payload not in PAYLOAD_MODES:
        out.append(
            (
                here.child("payload"),
                f"unknown payload {config.payload!r}; allowed: {', '.join(PAYLOAD_MODES)}",
            )
        )
    both = sorted(set(config.meta_required) & set(config.meta_optional))
    if both:
        out.append((here.child("meta_optional"), f"meta keys both required and optional: {both}"))
    return out


def _payload_file(here: Where, file: str, forbidden: bool) -> list[Finding]:
    if not file:
        return [(here, "dispatch_payload needs a file name (written under local/)")]
    normal = posixpath.normpath(posixpath.join("local", file))
    if file.startswith("/") or not normal.startswith("local/"):
        return [(here, f"file {file!r} must stay inside the task's local/ directory")]
    if forbidden:
        return [(here, 'the job\'s parameterized payload is "forbidden": there is no payload')]
    return []
