"""Allocations: one instance of a task group placed on a node."""

from __future__ import annotations

import msgspec

from steppe.structs._job import Base, Job, NetworkResource, Port
from steppe.structs._naming import nomad_names

DESIRED_RUN = "run"
DESIRED_STOP = "stop"
DESIRED_EVICT = "evict"

CLIENT_PENDING = "pending"
CLIENT_RUNNING = "running"
CLIENT_COMPLETE = "complete"
CLIENT_FAILED = "failed"
CLIENT_LOST = "lost"

TERMINAL_CLIENT_STATUSES = frozenset({CLIENT_COMPLETE, CLIENT_FAILED, CLIENT_LOST})


class TaskEvent(Base, frozen=True):
    type: str = ""
    time: int = 0
    message: str = ""
    display_message: str = ""
    details: dict[str, str] = msgspec.field(default_factory=dict)
    exit_code: int = 0
    signal: int = 0
    restart_reason: str = ""
    driver_error: str = ""
    kill_reason: str = ""
    fails_task: bool = False
    start_delay: int = 0


class TaskState(Base, frozen=True):
    state: str = "pending"
    failed: bool = False
    restarts: int = 0
    last_restart: str = ""
    started_at: str = ""
    finished_at: str = ""
    events: tuple[TaskEvent, ...] = ()


class AllocatedCpu(Base, frozen=True, rename=nomad_names(cpu_shares="CpuShares")):
    cpu_shares: int = 0


class AllocatedMemory(Base, frozen=True):
    memory_mb: int = 0
    memory_max_mb: int = 0


class AllocatedTaskResources(Base, frozen=True, rename=nomad_names(cpu="Cpu")):
    cpu: AllocatedCpu = msgspec.field(default_factory=AllocatedCpu)
    memory: AllocatedMemory = msgspec.field(default_factory=AllocatedMemory)
    networks: tuple[NetworkResource, ...] = ()


class AllocatedPortMapping(Base, frozen=True, rename=nomad_names(host_ip="HostIP")):
    label: str = ""
    value: int = 0
    to: int = 0
    host_ip: str = ""


class AllocatedSharedResources(Base, frozen=True):
    disk_mb: int = 0
    networks: tuple[NetworkResource, ...] = ()
    ports: tuple[AllocatedPortMapping, ...] = ()


class AllocatedResources(Base, frozen=True):
    tasks: dict[str, AllocatedTaskResources] = msgspec.field(default_factory=dict)
    shared: AllocatedSharedResources = msgspec.field(default_factory=AllocatedSharedResources)

    def cpu(self) -> int:
        return sum(t.cpu.cpu_shares for t in self.tasks.values())

    def memory_mb(self) -> int:
        return sum(t.memory.memory_mb for t in self.tasks.values())

    def ports(self) -> list[Port]:
        ports = [Port(label=p.label, value=p.value, to=p.to) for p in self.shared.ports]
        for task in self.tasks.values():
            for net in task.networks:
                ports.extend(net.all_ports())
        return ports


class RescheduleEvent(Base, frozen=True):
    reschedule_time: int = 0
    prev_alloc_id: str = ""
    prev_node_id: str = ""
    delay: int = 0


class RescheduleTracker(Base, frozen=True):
    events: tuple[RescheduleEvent, ...] = ()


class AllocMetric(Base, frozen=True):
    """Why a placement went where it went, or why it could not go anywhere."""

    nodes_evaluated: int = 0
    nodes_filtered: int = 0
    nodes_in_pool: int = 0
    nodes_available: dict[str, int] = msgspec.field(default_factory=dict)
    class_filtered: dict[str, int] = msgspec.field(default_factory=dict)
    constraint_filtered: dict[str, int] = msgspec.field(default_factory=dict)
    nodes_exhausted: int = 0
    class_exhausted: dict[str, int] = msgspec.field(default_factory=dict)
    dimension_exhausted: dict[str, int] = msgspec.field(default_factory=dict)
    quota_exhausted: tuple[str, ...] = ()
    scores: dict[str, float] = msgspec.field(default_factory=dict)
    allocation_time: int = 0
    coalesced_failures: int = 0


class Allocation(Base, frozen=True):
    id: str = ""
    namespace: str = "default"
    eval_id: str = ""
    name: str = ""
    node_id: str = ""
    node_name: str = ""
    job_id: str = ""
    job_version: int = 0
    job: Job | None = None
    """Filled in on API reads; in state an allocation refers to its job's version."""
    task_group: str = ""
    allocated_resources: AllocatedResources = msgspec.field(default_factory=AllocatedResources)
    metrics: AllocMetric | None = None
    desired_status: str = DESIRED_RUN
    desired_description: str = ""
    client_status: str = CLIENT_PENDING
    client_description: str = ""
    task_states: dict[str, TaskState] = msgspec.field(default_factory=dict)
    previous_allocation: str = ""
    next_allocation: str = ""
    reschedule_tracker: RescheduleTracker | None = None
    followup_eval_id: str = ""
    create_index: int = 0
    modify_index: int = 0
    alloc_modify_index: int = 0
    create_time: int = 0
    modify_time: int = 0

    @property
    def index(self) -> int:
        """The ``[n]`` of ``job.group[n]``: which instance of its group this is."""
        _, _, rest = self.name.rpartition("[")
        return int(rest.rstrip("]")) if rest.rstrip("]").isdigit() else 0

    def terminal(self) -> bool:
        """No longer uses its node's resources, or never will again."""
        return self.desired_status != DESIRED_RUN or self.client_status in TERMINAL_CLIENT_STATUSES

    def client_terminal(self) -> bool:
        return self.client_status in TERMINAL_CLIENT_STATUSES
