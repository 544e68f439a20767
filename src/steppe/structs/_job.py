"""Jobs as users submit them: the shape of Nomad's ``api.Job`` and friends.

Durations are integer nanoseconds, as in Nomad's JSON. Defaults are Nomad's. Every
struct is frozen: a job read from state is never mutated; derive a copy with
:func:`msgspec.structs.replace`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from steppe.structs._naming import NOMAD, NS, nomad_names


class Base(msgspec.Struct, frozen=True, rename=NOMAD, omit_defaults=False, kw_only=True, gc=False):
    """Common struct options; ``forbid_unknown_fields`` stays off so newer clients' extra
    fields do not break old agents, as with Nomad's own API. ``gc=False``: frozen rows
    never form reference cycles, and a server holds hundreds of thousands of them,
    which the cycle collector would otherwise walk again and again."""


class Port(Base, frozen=True):
    label: str = ""
    value: int = 0
    to: int = 0
    host_network: str = "default"


class NetworkResource(Base, frozen=True):
    mode: str = "host"
    device: str = ""
    cidr: str = ""
    ip: str = ""
    mbits: int = 0
    reserved_ports: tuple[Port, ...] = ()
    dynamic_ports: tuple[Port, ...] = ()

    def all_ports(self) -> tuple[Port, ...]:
        return self.reserved_ports + self.dynamic_ports


class Resources(Base, frozen=True):
    cpu: int = 100
    cores: int = 0
    memory_mb: int = 300
    memory_max_mb: int = 0
    disk_mb: int = 0
    networks: tuple[NetworkResource, ...] = ()


class Constraint(Base, frozen=True, rename=nomad_names(l_target="LTarget", r_target="RTarget")):
    l_target: str = ""
    r_target: str = ""
    operand: str = "="

    def __str__(self) -> str:
        if self.operand in ("distinct_hosts", "distinct_property"):
            return f"{self.operand} {self.l_target}".strip()
        if self.operand in ("is_set", "is_not_set"):
            return f"{self.l_target} {self.operand}"
        return f"{self.l_target} {self.operand} {self.r_target}"


class Affinity(Base, frozen=True, rename=nomad_names(l_target="LTarget", r_target="RTarget")):
    l_target: str = ""
    r_target: str = ""
    operand: str = "="
    weight: int = 50


class SpreadTarget(Base, frozen=True):
    value: str = ""
    percent: int = 0


class Spread(Base, frozen=True):
    attribute: str = ""
    weight: int = 50
    spread_target: tuple[SpreadTarget, ...] = ()


class RestartPolicy(Base, frozen=True):
    attempts: int = 2
    interval: int = 30 * 60 * NS
    delay: int = 15 * NS
    mode: str = "fail"
    render_templates: bool = False


class ReschedulePolicy(Base, frozen=True):
    attempts: int = 0
    interval: int = 0
    delay: int = 30 * NS
    delay_function: str = "exponential"
    max_delay: int = 3600 * NS
    unlimited: bool = True


def default_restart_policy(job_type: str) -> RestartPolicy:
    if job_type == "batch":
        return RestartPolicy(attempts=3, interval=24 * 3600 * NS, delay=15 * NS, mode="fail")
    return RestartPolicy()


def default_reschedule_policy(job_type: str) -> ReschedulePolicy | None:
    if job_type == "batch":
        return ReschedulePolicy(
            attempts=1,
            interval=24 * 3600 * NS,
            delay=5 * NS,
            delay_function="constant",
            max_delay=0,
            unlimited=False,
        )
    if job_type == "system":
        return None
    return ReschedulePolicy()


class ServiceCheck(Base, frozen=True):
    name: str = ""
    type: str = ""
    command: str = ""
    args: tuple[str, ...] = ()
    path: str = ""
    protocol: str = ""
    port_label: str = ""
    method: str = ""
    header: dict[str, list[str]] = msgspec.field(default_factory=dict)
    interval: int = 0
    timeout: int = 0
    initial_status: str = ""
    tls_skip_verify: bool = False


class Service(Base, frozen=True):
    name: str = ""
    port_label: str = ""
    tags: tuple[str, ...] = ()
    address_mode: str = "auto"
    address: str = ""
    checks: tuple[ServiceCheck, ...] = ()
    meta: dict[str, str] = msgspec.field(default_factory=dict)
    provider: str = "consul"
    task_name: str = ""


class Template(Base, frozen=True):
    source_path: str = ""
    dest_path: str = ""
    embedded_tmpl: str = ""
    change_mode: str = "restart"
    change_signal: str = ""
    splay: int = 5 * NS
    perms: str = "0644"
    left_delim: str = "{{"
    right_delim: str = "}}"
    env: bool = False


class LogConfig(Base, frozen=True):
    max_files: int = 10
    max_file_size_mb: int = 10


class DispatchPayloadConfig(Base, frozen=True):
    file: str = ""


class Task(Base, frozen=True):
    name: str = ""
    driver: str = ""
    user: str = ""
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    env: dict[str, str] = msgspec.field(default_factory=dict)
    services: tuple[Service, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    affinities: tuple[Affinity, ...] = ()
    resources: Resources = msgspec.field(default_factory=Resources)
    restart_policy: RestartPolicy | None = None
    templates: tuple[Template, ...] = ()
    meta: dict[str, str] = msgspec.field(default_factory=dict)
    kill_timeout: int = 5 * NS
    kill_signal: str = ""
    log_config: LogConfig = msgspec.field(default_factory=LogConfig)
    leader: bool = False
    dispatch_payload: DispatchPayloadConfig | None = None


class EphemeralDisk(Base, frozen=True):
    sticky: bool = False
    size_mb: int = 300
    migrate: bool = False


class TaskGroup(Base, frozen=True):
    name: str = ""
    count: int = 1
    constraints: tuple[Constraint, ...] = ()
    affinities: tuple[Affinity, ...] = ()
    spreads: tuple[Spread, ...] = ()
    tasks: tuple[Task, ...] = ()
    restart_policy: RestartPolicy | None = None
    reschedule_policy: ReschedulePolicy | None = None
    ephemeral_disk: EphemeralDisk = msgspec.field(default_factory=EphemeralDisk)
    networks: tuple[NetworkResource, ...] = ()
    services: tuple[Service, ...] = ()
    meta: dict[str, str] = msgspec.field(default_factory=dict)

    def task(self, name: str) -> Task | None:
        return next((t for t in self.tasks if t.name == name), None)


class PeriodicConfig(Base, frozen=True):
    enabled: bool = True
    spec: str = ""
    specs: tuple[str, ...] = ()
    spec_type: str = "cron"
    prohibit_overlap: bool = False
    time_zone: str = "UTC"

    def all_specs(self) -> tuple[str, ...]:
        return (self.spec, *self.specs) if self.spec else self.specs


class ParameterizedJobConfig(Base, frozen=True):
    payload: str = "optional"
    meta_required: tuple[str, ...] = ()
    meta_optional: tuple[str, ...] = ()


class Job(Base, frozen=True):
    id: str = ""
    name: str = ""
    namespace: str = "default"
    region: str = "global"
    type: str = "service"
    priority: int = 50
    all_at_once: bool = False
    datacenters: tuple[str, ...] = ("*",)
    node_pool: str = "default"
    constraints: tuple[Constraint, ...] = ()
    affinities: tuple[Affinity, ...] = ()
    spreads: tuple[Spread, ...] = ()
    task_groups: tuple[TaskGroup, ...] = ()
    meta: dict[str, str] = msgspec.field(default_factory=dict)
    status: str = "pending"
    status_description: str = ""
    stop: bool = False
    stable: bool = False
    version: int = 0
    submit_time: int = 0
    create_index: int = 0
    modify_index: int = 0
    job_modify_index: int = 0
    periodic: PeriodicConfig | None = None
    parameterized_job: ParameterizedJobConfig | None = None
    parent_id: str = ""
    dispatched: bool = False
    payload: bytes | None = None

    def group(self, name: str) -> TaskGroup | None:
        return next((g for g in self.task_groups if g.name == name), None)

    def is_parameterized(self) -> bool:
        return self.parameterized_job is not None and not self.dispatched

    def is_periodic_active(self) -> bool:
        """Whether the leader should launch children of this job on its schedule (a
        parameterized periodic job's schedule applies to its dispatched children)."""
        return (
            self.periodic is not None
            and self.periodic.enabled
            and not self.stop
            and not self.is_parameterized()
        )

    def is_parent(self) -> bool:
        """Periodic and parameterized jobs are templates: never scheduled themselves,
        only the children launched from them are."""
        return self.periodic is not None or self.is_parameterized()


JOB_TYPES = ("service", "batch", "system", "sysbatch")
JOB_STATUSES = ("pending", "running", "dead")
