"""Semantic checks on a Job, whatever it came from (HCL file, JSON file, HTTP body).

Each finding names the place with the job file's words (``group "web" > count``) and
says what is allowed, and all findings are returned together.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from steppe.jobspec._periodic import check as check_parent
from steppe.jobspec._reader import Where, suggest
from steppe.structs import (
    JOB_TYPES,
    Affinity,
    Constraint,
    Job,
    NetworkResource,
    ReschedulePolicy,
    RestartPolicy,
    Service,
    ServiceCheck,
    Spread,
    Task,
    TaskGroup,
)

DRIVERS = frozenset({"raw_exec", "exec", "docker"})
CONSTRAINT_OPERATORS = frozenset(
    {
        "=",
        "==",
        "is",
        "!=",
        "not",
        "<",
        "<=",
        ">",
        ">=",
        "regexp",
        "version",
        "semver",
        "set_contains",
        "set_contains_all",
        "set_contains_any",
        "distinct_hosts",
        "distinct_property",
        "is_set",
        "is_not_set",
    }
)
CHECK_TYPES = frozenset({"tcp", "http", "script", "grpc"})
_NEEDS_VALUE = CONSTRAINT_OPERATORS - {
    "distinct_hosts",
    "distinct_property",
    "is_set",
    "is_not_set",
}

Finding = tuple[Where, str]


def check_job(job: Job) -> list[Finding]:
    here = Where().child("job", job.id or "?", 0)
    out: list[Finding] = []
    if not job.id:
        out.append((here, 'the job needs an ID (its name in job "NAME")'))
    elif " " in job.id:
        out.append((here, f"job ID {job.id!r} must not contain spaces"))
    if job.type not in JOB_TYPES:
        out.append(
            (here.child("type"), f"unknown job type {job.type!r}; allowed: {_list(JOB_TYPES)}")
        )
    if not 1 <= job.priority <= 100:
        out.append(
            (here.child("priority"), f"priority must be between 1 and 100, got {job.priority}")
        )
    if not job.datacenters:
        out.append((here.child("datacenters"), "datacenters must name at least one datacenter"))
    elif any(not dc for dc in job.datacenters):
        out.append((here.child("datacenters"), "datacenter names must not be empty"))
    out += _constraints(here, job.constraints)
    out += _affinities(here, job.affinities)
    out += _spreads(here, job.spreads)
    if not job.task_groups:
        out.append((here, 'a job needs at least one group "NAME" { task "NAME" { ... } }'))
    out += _duplicates(here, "group", [g.name for g in job.task_groups])
    for i, group in enumerate(job.task_groups):
        out += _group(here.child("group", group.name, i), group)
    out += check_parent(job)
    return out


def _group(here: Where, group: TaskGroup) -> list[Finding]:
    out: list[Finding] = []
    if not group.name:
        out.append((here, "the group needs a name"))
    if group.count < 0:
        out.append((here.child("count"), f"count must be 0 or more, got {group.count}"))
    out += _constraints(here, group.constraints)
    out += _affinities(here, group.affinities)
    out += _spreads(here, group.spreads)
    if group.restart_policy is not None:
        out += _restart(here.child("restart"), group.restart_policy)
    if group.reschedule_policy is not None:
        out += _reschedule(here.child("reschedule"), group.reschedule_policy)
    if group.ephemeral_disk.size_mb < 0:
        out.append((here.child("ephemeral_disk").child("size"), "size must be 0 or more (MB)"))
    if not group.tasks:
        out.append((here, 'a group needs at least one task "NAME" { driver = ... }'))
    out += _duplicates(here, "task", [t.name for t in group.tasks])
    labels = [p.label for net in group.networks for p in net.all_ports()]
    out += _networks(here, group.networks)
    declared = set(labels)
    for i, task in enumerate(group.tasks):
        out += _task(here.child("task", task.name, i), task, declared)
    task_names = {t.name for t in group.tasks}
    for i, service in enumerate(group.services):
        where = here.child("service", service.name, i)
        out += _service(where, service, declared)
        if service.task_name and service.task_name not in task_names:
            hint = suggest(service.task_name, task_names)
            msg = f"task {service.task_name!r} is not in this group{hint}"
            out.append((where.child("task"), msg))
    return out


def _networks(here: Where, networks: tuple[NetworkResource, ...]) -> list[Finding]:
    out: list[Finding] = []
    if len(networks) > 1:
        out.append((here.child("network", None, 1), "only one network block is allowed per group"))
    for i, net in enumerate(networks):
        where = here.child("network", None, i)
        if net.mode not in ("host", "bridge", "none"):
            out.append(
                (
                    where.child("mode"),
                    f"unknown network mode {net.mode!r}; allowed: bridge, host, none",
                )
            )
        if net.mbits < 0:
            out.append((where.child("mbits"), "mbits must be 0 or more"))
        out += _duplicates(where, "port", [p.label for p in net.all_ports()])
        for j, port in enumerate(net.all_ports()):
            pw = where.child("port", port.label, j)
            if port.label == "":
                out.append((pw, "a port needs a label"))
            if port.value and not 1 <= port.value <= 65535:
                out.append((pw.child("static"), f"static port must be 1-65535, got {port.value}"))
            if not -1 <= port.to <= 65535:
                out.append((pw.child("to"), f"to must be -1-65535, got {port.to}"))
    return out


def _task(here: Where, task: Task, declared: set[str]) -> list[Finding]:
    out: list[Finding] = []
    if not task.name:
        out.append((here, "the task needs a name"))
    if not task.driver:
        out.append((here.child("driver"), f"the task needs a driver; allowed: {_list(DRIVERS)}"))
    elif task.driver not in DRIVERS:
        msg = f"unknown driver {task.driver!r}{suggest(task.driver, DRIVERS)}"
        if "allowed" not in msg:
            msg += f" (allowed: {_list(DRIVERS)})"
        out.append((here.child("driver"), msg))
    res = here.child("resources")
    if task.resources.cpu < 1 and task.resources.cores == 0:
        out.append((res.child("cpu"), f"cpu must be at least 1 (MHz), got {task.resources.cpu}"))
    if task.resources.cores < 0:
        out.append((res.child("cores"), "cores must be 0 or more"))
    if task.resources.memory_mb < 10:
        out.append(
            (
                res.child("memory"),
                f"memory must be at least 10 (MB), got {task.resources.memory_mb}",
            )
        )
    if 0 < task.resources.memory_max_mb < task.resources.memory_mb:
        out.append((res.child("memory_max"), "memory_max must not be below memory"))
    if task.kill_timeout < 0:
        out.append((here.child("kill_timeout"), "kill_timeout must not be negative"))
    if task.restart_policy is not None:
        out += _restart(here.child("restart"), task.restart_policy)
    out += _constraints(here, task.constraints)
    out += _affinities(here, task.affinities)
    declared = declared | {p.label for n in task.resources.networks for p in n.all_ports()}
    for i, service in enumerate(task.services):
        out += _service(here.child("service", service.name, i), service, declared)
    for i, tmpl in enumerate(task.templates):
        where = here.child("template", None, i)
        if not tmpl.dest_path:
            out.append((where.child("destination"), "a template needs a destination"))
        if not tmpl.embedded_tmpl and not tmpl.source_path:
            out.append((where, "a template needs data or source"))
        modes = ("noop", "restart", "signal", "script")
        if tmpl.change_mode not in modes:
            out.append(
                (
                    where.child("change_mode"),
                    f"unknown change_mode {tmpl.change_mode!r}; allowed: {_list(modes)}",
                )
            )
        if tmpl.change_mode == "signal" and not tmpl.change_signal:
            out.append((where.child("change_signal"), 'change_mode "signal" needs a change_signal'))
    return out


def _service(here: Where, service: Service, declared: set[str]) -> list[Finding]:
    out: list[Finding] = []
    if not service.name:
        out.append((here.child("name"), "a service needs a name"))
    out += _port_label(here.child("port"), service.port_label, declared)
    for i, check in enumerate(service.checks):
        out += _check(here.child("check", None, i), check, declared)
    return out


def _port_label(here: Where, label: str, declared: set[str]) -> list[Finding]:
    if not label or label.isdigit() or label in declared:
        return []
    if declared:
        hint = suggest(label, declared).replace("allowed", "declared ports")
    else:
        hint = '; no network declares any port (add network { port "LABEL" {} })'
    return [(here, f"port label {label!r} is not declared by any network{hint}")]


def _check(here: Where, check: ServiceCheck, declared: set[str]) -> list[Finding]:
    out: list[Finding] = []
    if check.type not in CHECK_TYPES:
        out.append(
            (
                here.child("type"),
                f"unknown check type {check.type!r}; allowed: {_list(CHECK_TYPES)}",
            )
        )
        return out
    if check.interval <= 0:
        out.append((here.child("interval"), f"a {check.type} check needs an interval above 0"))
    if check.timeout <= 0:
        out.append((here.child("timeout"), f"a {check.type} check needs a timeout above 0"))
    if check.type == "http" and not check.path:
        out.append((here.child("path"), "an http check needs a path"))
    if check.type == "script" and not check.command:
        out.append((here.child("command"), "a script check needs a command"))
    out += _port_label(here.child("port"), check.port_label, declared)
    return out


def _restart(here: Where, policy: RestartPolicy) -> list[Finding]:
    out: list[Finding] = []
    if policy.mode not in ("delay", "fail"):
        out.append(
            (here.child("mode"), f"unknown restart mode {policy.mode!r}; allowed: delay, fail")
        )
    if policy.attempts < 0:
        out.append((here.child("attempts"), "attempts must be 0 or more"))
    if policy.delay < 0 or policy.interval < 0:
        out.append((here, "delay and interval must not be negative"))
    elif policy.attempts and policy.interval < policy.attempts * policy.delay:
        out.append(
            (
                here.child("interval"),
                "interval is too short to fit attempts restarts with delay between them",
            )
        )
    return out


def _reschedule(here: Where, policy: ReschedulePolicy) -> list[Finding]:
    out: list[Finding] = []
    functions = ("constant", "exponential", "fibonacci")
    if policy.delay_function not in functions:
        out.append(
            (
                here.child("delay_function"),
                f"unknown delay_function {policy.delay_function!r}; allowed: {_list(functions)}",
            )
        )
    if policy.attempts < 0:
        out.append((here.child("attempts"), "attempts must be 0 or more"))
    if policy.delay < 0 or policy.interval < 0 or policy.max_delay < 0:
        out.append((here, "delay, interval and max_delay must not be negative"))
    return out


def _constraints(here: Where, items: Iterable[Constraint]) -> list[Finding]:
    out: list[Finding] = []
    for i, c in enumerate(items):
        where = here.child("constraint", None, i)
        if c.operand not in CONSTRAINT_OPERATORS:
            hint = suggest(c.operand, CONSTRAINT_OPERATORS)
            msg = f"unknown constraint operator {c.operand!r}{hint}"
            out.append((where.child("operator"), msg))
            continue
        if c.operand != "distinct_hosts" and not c.l_target:
            out.append((where.child("attribute"), "the constraint needs an attribute"))
        if c.operand in _NEEDS_VALUE and not c.r_target:
            out.append((where.child("value"), f"operator {c.operand!r} needs a value"))
        if c.operand == "regexp":
            out += _regexp(where.child("value"), c.r_target)
    return out


def _affinities(here: Where, items: Iterable[Affinity]) -> list[Finding]:
    out: list[Finding] = []
    for i, a in enumerate(items):
        where = here.child("affinity", None, i)
        if a.operand not in CONSTRAINT_OPERATORS - {"distinct_hosts", "distinct_property"}:
            out.append((where.child("operator"), f"unknown affinity operator {a.operand!r}"))
        if not a.l_target:
            out.append((where.child("attribute"), "the affinity needs an attribute"))
        if a.weight == 0 or not -100 <= a.weight <= 100:
            out.append(
                (where.child("weight"), f"weight must be -100..100 and not 0, got {a.weight}")
            )
        if a.operand == "regexp":
            out += _regexp(where.child("value"), a.r_target)
    return out


def _spreads(here: Where, items: Iterable[Spread]) -> list[Finding]:
    out: list[Finding] = []
    for i, s in enumerate(items):
        where = here.child("spread", None, i)
        if not s.attribute:
            out.append((where.child("attribute"), "the spread needs an attribute"))
        if not 0 <= s.weight <= 100:
            out.append((where.child("weight"), f"weight must be 0..100, got {s.weight}"))
        if sum(t.percent for t in s.spread_target) > 100:
            out.append((where, "target percentages add up to more than 100"))
    return out


def _regexp(here: Where, pattern: str) -> list[Finding]:
    try:
        re.compile(pattern)
    except re.error as exc:
        return [(here, f"regular expression {pattern!r} does not compile: {exc}")]
    return []


def _duplicates(here: Where, kind: str, names: list[str]) -> list[Finding]:
    counts = Counter(n for n in names if n)
    return [
        (
            here.child(kind, name, names.index(name, names.index(name) + 1)),
            f"{kind} name {name!r} is used {n} times; names must be unique",
        )
        for name, n in counts.items()
        if n > 1
    ]


def _list(items: Iterable[str]) -> str:
    return ", ".join(sorted(items))
