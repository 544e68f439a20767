"""Task drivers: raw_exec (no isolation), exec (namespaces + cgroups), docker."""

from steppe.drivers._base import Driver, ExitResult, PortMapping, TaskHandle, TaskSpec

__all__ = ["Driver", "ExitResult", "PortMapping", "TaskHandle", "TaskSpec"]
