"""What this machine offers the scheduler: Nomad's node fingerprint.

Attribute keys are Nomad's (``kernel.name``, ``cpu.arch``, ``unique.hostname``,
``driver.raw_exec``...), so constraints written for Nomad (``${attr.kernel.name}``) match.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path

import steppe
from steppe.client._state import node_identity
from steppe.drivers import Driver
from steppe.drivers import _cpu as cpu
from steppe.structs import DriverInfo, NetworkResource, Node, NodeResources

log = logging.getLogger(__name__)

DRIVER_FINGERPRINT_TIMEOUT = 5.0
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "armv7l": "arm"}


def memory_mb(meminfo: Path = Path("/proc/meminfo")) -> int:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip().strip('"')
    except OSError:
        pass
    return values


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return ""


def host_attributes(advertise_ip: str, data_dir: Path) -> dict[str, str]:
    cores, per_core = cpu.cores(), cpu.mhz_per_core()
    release = os_release()
    mem = memory_mb()
    attrs = {
        "kernel.name": platform.system().lower(),
        "kernel.version": platform.release(),
        "kernel.arch": platform.machine(),
        "cpu.arch": _GO_ARCH.get(platform.machine(), platform.machine()),
        "cpu.numcores": str(cores),
        "cpu.frequency": str(int(per_core)),
        "cpu.totalcompute": str(int(per_core * cores)),
        "cpu.modelname": cpu_model(),
        "memory.totalbytes": str(mem * 1024 * 1024),
        "os.name": release.get("ID", platform.system().lower()),
        "os.version": release.get("VERSION_ID", ""),
        "unique.hostname": socket.gethostname(),
        "unique.network.ip-address": advertise_ip,
        "unique.storage.volume": str(data_dir),
        "nomad.version": steppe.__version__,
        "steppe.version": steppe.__version__,
    }
    with contextlib.suppress(OSError):
        attrs["unique.storage.bytesfree"] = str(shutil.disk_usage(data_dir).free)
    return {k: v for k, v in attrs.items() if v != ""}


async def driver_info(driver: Driver, now_ns: int) -> DriverInfo:
    """A driver's fingerprint; one that fails or hangs counts as undetected, not fatal."""
    try:
        attrs = await asyncio.wait_for(driver.fingerprint(), DRIVER_FINGERPRINT_TIMEOUT)
    except Exception as exc:
        log.warning("driver %s fingerprint failed: %s", driver.name, exc)
        return DriverInfo(health_description=f"fingerprint failed: {exc}", update_time=now_ns)
    if attrs is None:
        return DriverInfo(health_description="Driver not detected", update_time=now_ns)
    attrs = {f"driver.{driver.name}": "1", **attrs}
    return DriverInfo(
        attributes=attrs,
        detected=True,
        healthy=True,
        health_description="Healthy",
        update_time=now_ns,
    )


def _host(data_dir: Path, advertise_ip: str) -> tuple[str, str, dict[str, str], int]:
    data_dir.mkdir(parents=True, exist_ok=True)
    node_id, secret_id = node_identity(data_dir)
    try:
        disk = shutil.disk_usage(data_dir).free // (1024 * 1024)
    except OSError:
        disk = 0
    return node_id, secret_id, host_attributes(advertise_ip, data_dir), disk


async def fingerprint(
    *,
    data_dir: Path,
    drivers: Mapping[str, Driver],
    advertise_ip: str = "127.0.0.1",
    datacenter: str = "dc1",
    name: str = "",
    node_class: str = "",
    node_pool: str = "default",
    meta: Mapping[str, str] | None = None,
    http_addr: str = "",
    reserved: NodeResources | None = None,
    min_dynamic_port: int = 20000,
    max_dynamic_port: int = 32000,
    network_speed: int = 1000,
    now_ns: int = 0,
) -> Node:
    """The node as this machine describes it, with the ID kept in ``<data_dir>/client``."""
    node_id, secret_id, attributes, disk = await asyncio.to_thread(_host, data_dir, advertise_ip)
    infos = {}
    for driver_name, driver in drivers.items():
        info = await driver_info(driver, now_ns)
        infos[driver_name] = info
        attributes.update(info.attributes)
    network = NetworkResource(
        device="", cidr=f"{advertise_ip}/32", ip=advertise_ip, mbits=network_speed
    )
    return Node(
        id=node_id,
        secret_id=secret_id,
        name=name or attributes.get("unique.hostname", node_id[:8]),
        datacenter=datacenter,
        node_class=node_class,
        node_pool=node_pool,
        http_addr=http_addr,
        attributes=attributes,
        meta=dict(meta or {}),
        drivers=infos,
        resources=NodeResources(
            cpu=cpu.total_mhz(), memory_mb=memory_mb(), disk_mb=disk, networks=(network,)
        ),
        reserved=reserved or NodeResources(),
        min_dynamic_port=min_dynamic_port,
        max_dynamic_port=max_dynamic_port,
        status_updated_at=now_ns // 1_000_000_000,
    )
