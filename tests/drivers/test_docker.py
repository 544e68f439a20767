"""The docker driver against a real, private Docker engine (see tests/support/dockerd.py)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import hcl2
import pytest
from tests.drivers.conftest import MakeSpec
from tests.support.waiting import async_wait_until

from steppe.drivers import PortMapping, TaskHandle, TaskSpec
from steppe.drivers._cpu import CFS_PERIOD_US, cfs_quota_us
from steppe.drivers._docker import DockerDriver
from steppe.drivers._docker_config import LABEL_ALLOC, LABEL_JOB, LABEL_TASK
from steppe.errors import DriverError

pytestmark = pytest.mark.docker

SEED_JOB = Path("/work/shared/fixtures/nginx.nomad")
BUSYBOX = "local/busybox:latest"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def busybox(script: str, **extra: Any) -> dict[str, Any]:
    return {"image": BUSYBOX, "command": "sh", "args": ["-c", script], **extra}


async def containers_of(host: str, alloc_id: str) -> list[dict[str, Any]]:
    async with aiodocker.Docker(url=host) as client:
        found = await client.containers.list(
            all=True, filters={"label": [f"{LABEL_ALLOC}={alloc_id}"]}
        )
        return [c._container for c in found]


async def http_get(port: int) -> str:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
        session.get(f"http://127.0.0.1:{port}/") as resp,
    ):
        return await resp.text() if resp.status == 200 else ""


async def test_fingerprint_reports_engine(docker_driver: DockerDriver) -> None:
    attrs = await docker_driver.fingerprint()
    assert attrs is not None
    assert attrs["driver.docker"] == "1"
    assert attrs["driver.docker.version"].startswith(("20.", "2", "1"))


async def test_fingerprint_none_without_engine(tmp_path: Path) -> None:
    silent = tmp_path / "dead.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(silent))  # bound, never listening: connections are refused
        for endpoint in (f"unix://{tmp_path}/absent.sock", f"unix://{silent}"):
            d = DockerDriver(endpoint=endpoint)
            assert await d.fingerprint() is None
            await d.aclose()


async def test_runs_to_completion_with_env_mounts_and_logs(
    docker_driver: DockerDriver, docker_spec: MakeSpec
) -> None:
    spec = docker_spec(
        busybox(
            'echo "$GREETING"; cat /local/input; echo to-stderr >&2; ls /alloc /secrets; exit 3'
        )
    )
    (spec.task_dir / "local" / "input").write_text("from local dir\n")
    handle = await docker_driver.start(spec)
    result = await docker_driver.wait(handle)
    assert result.exit_code == 3 and not result.oom_killed
    out = spec.stdout_path.read_text()
    assert "hello from env\nfrom local dir\n" in out
    assert "logs" in out  # /alloc is the allocation's shared dir
    assert spec.stderr_path.read_text() == "to-stderr\n"
    await docker_driver.destroy(handle)
    await docker_driver.destroy(handle)  # idempotent
    assert await containers_of(docker_driver.endpoint, spec.alloc_id) == []


async def test_published_port_answers_http(
    docker_driver: DockerDriver, docker_spec: MakeSpec
) -> None:
    port = free_port()
    spec = docker_spec(
        {
            "image": BUSYBOX,
            "command": "httpd",
            "args": ["-f", "-p", "8080", "-h", "/www"],
            "ports": ["http"],
        },
        ports=(PortMapping("http", "127.0.0.1", port, 8080),),
    )
    handle = await docker_driver.start(spec)
    body = await async_wait_until(lambda: http_get(port), timeout=15, what="busybox httpd")
    assert "busybox" in body
    await docker_driver.stop(handle, "SIGTERM", 5)
    await docker_driver.destroy(handle)


def seed_task_config() -> dict[str, Any]:
    """The seed job's docker config as python-hcl2 gives it, only string quotes removed."""
    job = hcl2.load(SEED_JOB.open())["job"][0]
    group = next(iter(job.values()))["group"][0]
    task = next(iter(next(iter(group.values()))["task"][0].values()))
    config = dict(task["config"][0])
    return {k: v.strip('"') if isinstance(v, str) else v for k, v in config.items()}


async def test_seed_nginx_with_port_map_answers(
    docker_driver: DockerDriver, docker_spec: MakeSpec, private_dockerd: str
) -> None:
    config = seed_task_config()
    assert isinstance(config["port_map"], list)  # the old-style block, verbatim
    port = free_port()
    spec = docker_spec(
        config,
        task_name="nginx",
        cpu_mhz=500,
        memory_mb=64,
        ports=(PortMapping("web", "127.0.0.1", port, port),),
    )
    handle = await docker_driver.start(spec)
    body = await async_wait_until(lambda: http_get(port), timeout=15, what="nginx")
    assert "Welcome to nginx" in body
    [info] = await containers_of(private_dockerd, spec.alloc_id)
    assert info["Labels"][LABEL_ALLOC] == spec.alloc_id
    assert info["Labels"][LABEL_TASK] == "nginx"
    assert info["Labels"][LABEL_JOB] == "job1"
    assert info["Names"] == [f"/nginx-{spec.alloc_id}"]
    await docker_driver.stop(handle, "SIGTERM", 5)
    await docker_driver.destroy(handle)


async def test_labels_visible_to_docker_cli(
    docker_driver: DockerDriver, docker_spec: MakeSpec, private_dockerd: str
) -> None:
    spec = docker_spec(busybox("sleep 600", labels=[{"team": "web"}]))
    handle = await docker_driver.start(spec)
    ps = await asyncio.create_subprocess_exec(
        *("docker", "ps", "--filter", f"label={LABEL_ALLOC}={spec.alloc_id}"),
        *("--format", "{{json .Labels}}"),
        env={**os.environ, "DOCKER_HOST": private_dockerd},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await ps.communicate()
    assert ps.returncode == 0
    labels = json.loads(out.decode().strip())
    for expected in (
        f"{LABEL_ALLOC}={spec.alloc_id}",
        f"{LABEL_TASK}=task",
        f"{LABEL_JOB}=job1",
        "team=web",
    ):
        assert expected in labels
    await docker_driver.stop(handle, "SIGKILL", 0)
    await docker_driver.destroy(handle)


async def test_memory_hog_is_oom_killed(docker_driver: DockerDriver, docker_spec: MakeSpec) -> None:
    spec = docker_spec(busybox("head -c 200m /dev/zero | tail"), memory_mb=32, cpu_mhz=2000)
    handle = await docker_driver.start(spec)
    result = await docker_driver.wait(handle)
    assert result.oom_killed
    assert not result.successful
    await docker_driver.destroy(handle)


async def test_cpu_bound_task_gets_about_its_share(
    docker_driver: DockerDriver, docker_spec: MakeSpec, private_dockerd: str
) -> None:
    spec = docker_spec(busybox("while :; do :; done"), cpu_mhz=100)
    handle = await docker_driver.start(spec)
    share = cfs_quota_us(100) / CFS_PERIOD_US  # of one core
    async with aiodocker.Docker(url=private_dockerd) as client:
        container = client.containers.container(handle.task_id)

        async def throttled() -> dict[str, Any] | None:
            [stats] = await container.stats(stream=False)
            return stats if stats["cpu_stats"]["throttling_data"]["throttled_periods"] else None

        stats = await async_wait_until(throttled, timeout=20, what="CFS throttling")
    now, before = stats["cpu_stats"], stats["precpu_stats"]
    used = now["cpu_usage"]["total_usage"] - before["cpu_usage"]["total_usage"]
    elapsed = now["system_cpu_usage"] - before["system_cpu_usage"]
    cores = used / elapsed * now["online_cpus"]
    assert 0 < cores < 3 * share, f"used {cores:.3f} cores for a share of {share:.3f}"
    await docker_driver.stop(handle, "SIGKILL", 0)
    await docker_driver.destroy(handle)


TRAP_AND_EXIT = "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.1; done"
TRAP_AND_STAY = "trap 'echo got INT' INT; echo ready; while :; do sleep 0.1; done"


async def started(driver: DockerDriver, spec: TaskSpec) -> TaskHandle:
    """Starts ``spec`` and waits until its shell has set its trap."""
    handle = await driver.start(spec)
    await async_wait_until(
        lambda: contains(spec.stdout_path, "ready"), timeout=15, what="task to set its trap"
    )
    return handle


def text_of(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def contains(path: Path, text: str) -> bool:
    return text in text_of(path)


async def test_stop_sends_kill_signal_first(
    docker_driver: DockerDriver, docker_spec: MakeSpec
) -> None:
    spec = docker_spec(busybox(TRAP_AND_EXIT), cpu_mhz=1000)
    handle = await started(docker_driver, spec)
    await docker_driver.stop(handle, "SIGTERM", 30)
    result = await docker_driver.wait(handle)
    assert result.exit_code == 3  # the trap ran: the task saw the signal and exited itself
    assert "got TERM" in spec.stdout_path.read_text()
    await docker_driver.destroy(handle)


async def test_stop_kills_after_kill_timeout(
    docker_driver: DockerDriver, docker_spec: MakeSpec
) -> None:
    spec = docker_spec(busybox(TRAP_AND_STAY), cpu_mhz=1000)
    handle = await started(docker_driver, spec)
    await docker_driver.stop(handle, "SIGINT", 2)
    result = await docker_driver.wait(handle)
    assert result.exit_code == 137  # SIGKILL after ignoring SIGINT
    assert "got INT" in spec.stdout_path.read_text()
    await docker_driver.destroy(handle)


async def test_bad_kill_signal_is_a_driver_error(
    docker_driver: DockerDriver, docker_spec: MakeSpec
) -> None:
    handle = await docker_driver.start(docker_spec(busybox("sleep 600")))
    with pytest.raises(DriverError, match="kill_signal: unknown signal 'SIGBOGUS'"):
        await docker_driver.stop(handle, "SIGBOGUS", 1)
    await docker_driver.destroy(handle)


async def test_entrypoint_work_dir_volumes_and_network_mode(
    docker_driver: DockerDriver, docker_spec: MakeSpec
) -> None:
    spec = docker_spec(
        {
            "image": BUSYBOX,
            "entrypoint": ["/bin/sh", "-c"],
            "args": ["pwd; cat /data/f; ls /sys/class/net"],
            "work_dir": "/tmp",
            "volumes": ["data:/data:ro"],
            "network_mode": "none",
        }
    )
    (spec.task_dir / "data").mkdir()
    (spec.task_dir / "data" / "f").write_text("from a relative volume\n")
    handle = await docker_driver.start(spec)
    result = await docker_driver.wait(handle)
    assert result.exit_code == 0, text_of(spec.stderr_path)
    assert text_of(spec.stdout_path).split() == ["/tmp", "from", "a", "relative", "volume", "lo"]
    await docker_driver.destroy(handle)


async def test_signal_is_delivered_without_stopping(
    docker_driver: DockerDriver, docker_spec: MakeSpec
) -> None:
    spec = docker_spec(
        busybox("trap 'echo got HUP' HUP; echo ready; while :; do sleep 0.1; done"), cpu_mhz=1000
    )
    handle = await started(docker_driver, spec)
    await docker_driver.signal(handle, "SIGHUP")
    await async_wait_until(lambda: contains(spec.stdout_path, "got HUP"), what="trap output")
    await docker_driver.stop(handle, "SIGKILL", 0)
    assert (await docker_driver.wait(handle)).exit_code == 137
    with pytest.raises(DriverError, match="it is not running"):
        await docker_driver.signal(handle, "SIGHUP")
    await docker_driver.destroy(handle)
