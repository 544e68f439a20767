"""How Steppe turns a task's ``cpu`` (MHz, as in Nomad) into a kernel limit.

Nomad's ``cpu`` is a share of the node's total MHz (cores x MHz per core). A share alone
limits nothing on an idle machine, so drivers also set a CFS quota: a task asking for
500 MHz on 2 GHz cores may use a quarter of one core's time per period.
"""

from __future__ import annotations

import os
from pathlib import Path

CFS_PERIOD_US = 100_000
DEFAULT_MHZ_PER_CORE = 1000.0


def mhz_per_core(cpuinfo: Path = Path("/proc/cpuinfo")) -> float:
    """The first core's clock as the kernel reports it (VMs may not report one)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "cpu MHz":
                return float(value)
    except (OSError, ValueError):
        pass
    return DEFAULT_MHZ_PER_CORE


def cores() -> int:
    return len(os.sched_getaffinity(0))


def total_mhz() -> int:
    return int(mhz_per_core() * cores())


def cfs_quota_us(cpu_mhz: int, per_core: float | None = None) -> int:
    """The CFS quota, per :data:`CFS_PERIOD_US`, that gives ``cpu_mhz`` worth of time."""
    per_core = per_core or mhz_per_core()
    return max(1000, int(CFS_PERIOD_US * cpu_mhz / per_core))


def cpu_shares(cpu_mhz: int) -> int:
    """cgroup v1 ``cpu.shares`` (and docker's CpuShares): proportional to MHz, as Nomad does."""
    return max(2, cpu_mhz)
