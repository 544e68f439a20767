"""Mock factories in the spirit of Nomad's ``mock.Job()`` / ``mock.Node()``: valid,
ready-to-schedule objects with every field a test might poke, changed with keyword
overrides (``mock.node(datacenter="lon1")``)."""

from __future__ import annotations

import itertools
import uuid
from typing import Any, TypeVar

import msgspec

from steppe.structs import (
    NODE_STATUS_READY,
    NS,
    TRIGGER_JOB_REGISTER,
    AllocatedCpu,
    AllocatedMemory,
    AllocatedResources,
    AllocatedTaskResources,
    Allocation,
    Constraint,
    DriverInfo,
    Evaluation,
    Job,
    NetworkResource,
    Node,
    NodeResources,
    Port,
    ReschedulePolicy,
    Resources,
    Service,
    ServiceCheck,
    Task,
    TaskGroup,
)

_counter = itertools.count(1)


def uid() -> str:
    return str(uuid.uuid4())


S = TypeVar("S", bound=msgspec.Struct)


def _with(obj: S, overrides: dict[str, Any]) -> S:
    return msgspec.structs.replace(obj, **overrides) if overrides else obj


def drivers(*names: str) -> dict[str, DriverInfo]:
    return {n: DriverInfo(detected=True, healthy=True) for n in names}


def node(**overrides: Any) -> Node:
    """A ready Linux node: 4000 MHz / 8192 MB (100 MHz / 256 MB reserved), port 22
    reserved, drivers exec, raw_exec, docker and mock_driver."""
    n = next(_counter)
    ip = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
    base = Node(
        id=uid(),
        secret_id=uid(),
        name=f"node-{n}",
        datacenter="dc1",
        http_addr=f"{ip}:4646",
        attributes={
            "kernel.name": "linux",
            "arch": "x86_64",
            "nomad.version": "1.7.2",
            "os.name": "debian",
            "cpu.numcores": "4",
            "unique.network.ip-address": ip,
            "unique.hostname": f"node-{n}",
            "driver.exec": "1",
        },
        drivers=drivers("exec", "raw_exec", "docker", "mock_driver"),
        resources=NodeResources(
            cpu=4000,
            memory_mb=8192,
            disk_mb=100 * 1024,
            networks=(NetworkResource(device="eth0", cidr=f"{ip}/32", ip=ip, mbits=1000),),
        ),
        reserved=NodeResources(
            cpu=100,
            memory_mb=256,
            disk_mb=4 * 1024,
            networks=(NetworkResource(reserved_ports=(Port(label="ssh", value=22),)),),
        ),
        status=NODE_STATUS_READY,
    )
    return _with(base, overrides)


def task(**overrides: Any) -> Task:
    base = Task(
        name="web",
        driver="exec",
        config={"command": "/bin/date"},
        env={"FOO": "bar"},
        resources=Resources(cpu=500, memory_mb=256),
    )
    return _with(base, overrides)


def group(**overrides: Any) -> TaskGroup:
    base = TaskGroup(
        name="web",
        count=10,
        tasks=(task(),),
        networks=(
            NetworkResource(mbits=50, dynamic_ports=(Port(label="http"), Port(label="admin"))),
        ),
        reschedule_policy=ReschedulePolicy(
            attempts=2,
            interval=10 * 60 * NS,
            delay=5 * NS,
            delay_function="constant",
            unlimited=False,
        ),
    )
    return _with(base, overrides)


def job(**overrides: Any) -> Job:
    """A service job ``mock-service-...`` of one group ``web`` (count 10) in dc1,
    constrained to Linux."""
    job_id = overrides.pop("id", f"mock-service-{uid()}")
    base = Job(
        id=job_id,
        name=job_id,
        type="service",
        priority=50,
        datacenters=("dc1",),
        constraints=(Constraint(l_target="${attr.kernel.name}", r_target="linux", operand="="),),
        task_groups=(group(),),
        meta={"owner": "armon"},
    )
    return _with(base, overrides)


def batch_job(**overrides: Any) -> Job:
    overrides.setdefault("id", f"mock-batch-{uid()}")
    overrides.setdefault("type", "batch")
    return job(**overrides)


def system_job(**overrides: Any) -> Job:
    overrides.setdefault("id", f"mock-system-{uid()}")
    overrides.setdefault("type", "system")
    overrides.setdefault("task_groups", (group(count=1, networks=(), reschedule_policy=None),))
    return job(**overrides)


def nginx_job() -> Job:
    """``../shared/fixtures/nginx.nomad`` as structs: datacenters ams2 + lon1, count 4,
    500 MHz / 64 MB, dynamic port ``web`` mapped to 80."""
    return Job(
        id="nginx",
        name="nginx",
        region="eu",
        datacenters=("ams2", "lon1"),
        task_groups=(
            TaskGroup(
                name="webserver",
                count=4,
                networks=(NetworkResource(mbits=10, dynamic_ports=(Port(label="web", to=80),)),),
                tasks=(
                    Task(
                        name="nginx",
                        driver="docker",
                        config={"image": "nginx:latest"},
                        services=(
                            Service(
                                name="nginx",
                                port_label="web",
                                checks=(
                                    ServiceCheck(
                                        name="alive", type="tcp", interval=10 * NS, timeout=2 * NS
                                    ),
                                ),
                            ),
                        ),
                        resources=Resources(cpu=500, memory_mb=64),
                    ),
                ),
            ),
        ),
    )


def resources(cpu: int = 500, memory_mb: int = 256, task: str = "web") -> AllocatedResources:
    return AllocatedResources(
        tasks={
            task: AllocatedTaskResources(
                cpu=AllocatedCpu(cpu_shares=cpu), memory=AllocatedMemory(memory_mb=memory_mb)
            )
        }
    )


def alloc(**overrides: Any) -> Allocation:
    """A pending allocation of :func:`job`'s group; give ``node_id``/``job_id`` to tie
    it to real objects."""
    base = Allocation(
        id=uid(),
        eval_id=uid(),
        name="mock-service.web[0]",
        node_id=uid(),
        job_id="mock-service",
        task_group="web",
        allocated_resources=resources(),
    )
    return _with(base, overrides)


def eval(**overrides: Any) -> Evaluation:
    base = Evaluation(
        id=uid(),
        priority=50,
        type="service",
        triggered_by=TRIGGER_JOB_REGISTER,
        job_id=uid(),
    )
    return _with(base, overrides)


def eval_for(job: Job, **overrides: Any) -> Evaluation:
    overrides.setdefault("job_id", job.id)
    overrides.setdefault("namespace", job.namespace)
    overrides.setdefault("type", job.type)
    overrides.setdefault("priority", job.priority)
    return eval(**overrides)
