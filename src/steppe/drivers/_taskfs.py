"""The ``exec`` driver's task filesystem: the task directory made into a root.

Everything is mounted from inside the task's own mount namespace, so the host never sees
these mounts and the kernel drops them when the task's last process exits; an agent that
crashes mid-task leaves nothing mounted behind. The host only keeps the empty mount points,
which :func:`remove_mountpoints` clears on destroy.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from pathlib import Path

from steppe.errors import DriverError

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2

HOST_DIRS = ("/bin", "/sbin", "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
"""Shared read-only with every task, the binaries and libraries it may need."""
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
}
_OWN_DIRS = ("alloc", "dev", "proc", "tmp")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _b(value: str | None) -> bytes | None:
    return value.encode() if value is not None else None


def mount(
    source: str | None, target: Path | str, fstype: str | None, flags: int, data: str = ""
) -> None:
    rc = _libc.mount(_b(source), _b(str(target)), _b(fstype), ctypes.c_ulong(flags), _b(data))
    if rc != 0:
        errno = ctypes.get_errno()
        raise DriverError(f"mount {source or fstype} on {target}: {os.strerror(errno)}")


def umount(target: Path | str) -> None:
    if _libc.umount2(_b(str(target)), MNT_DETACH) != 0:
        errno = ctypes.get_errno()
        raise DriverError(f"umount {target}: {os.strerror(errno)}")


def _bind(source: Path, target: Path, readonly: bool) -> None:
    mount(str(source), target, None, MS_BIND | MS_REC)
    if readonly:
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID)


def _host_dirs(root: Path, host_dirs: list[str]) -> None:
    """Symlinked host dirs (``/bin -> usr/bin`` on merged-/usr systems) become the same
    symlink, so paths inside resolve as they do on the host."""
    for name in host_dirs:
        host = Path(name)
        inside = root / name.lstrip("/")
        if host.is_symlink():
            if not inside.is_symlink() and not inside.exists():
                inside.symlink_to(os.readlink(host))
        elif host.is_dir():
            inside.mkdir(exist_ok=True)
            _bind(host, inside, readonly=True)


def _dev(root: Path) -> None:
    dev = root / "dev"
    dev.mkdir(exist_ok=True)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k")
    for name in DEVICES:
        if Path("/dev", name).exists():
            (dev / name).touch()
            _bind(Path("/dev", name), dev / name, readonly=False)
    for name, target in _DEV_LINKS.items():
        (dev / name).symlink_to(target)
    for name in ("pts", "shm"):
        (dev / name).mkdir()
    mount("tmpfs", dev / "shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")


def build_root(root: Path, alloc_shared: Path, host_dirs: list[str]) -> None:
    """Runs in the task's fresh mount and pid namespaces, before chroot."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    _host_dirs(root, host_dirs)
    for name in ("alloc", "local", "secrets", "tmp", "proc"):
        (root / name).mkdir(exist_ok=True)
    _bind(alloc_shared, root / "alloc", readonly=False)
    mount("tmpfs", root / "tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    _dev(root)
    mount("proc", root / "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def mounts_under(root: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> list[str]:
    """Mount points at or below ``root`` as this process's mount namespace sees them."""
    prefix = str(root).rstrip("/")
    found: list[str] = []
    with contextlib.suppress(OSError):
        for line in mountinfo.read_text().splitlines():
            fields = line.split()
            if len(fields) > 4:
                point = fields[4].replace("\\040", " ")
                if point == prefix or point.startswith(prefix + "/"):
                    found.append(point)
    return found


def unmount_under(root: Path) -> None:
    """Defensive: nothing should be mounted on the host, but a root left half-built by a
    failed start must not keep host directories bound under a task dir."""
    for point in sorted(mounts_under(root), key=len, reverse=True):
        with contextlib.suppress(DriverError):
            umount(point)


def remove_mountpoints(root: Path, host_dirs: list[str]) -> None:
    """Removes the empty directories and the symlinks :func:`build_root` left on the host."""
    for name in [*_OWN_DIRS, *(d.lstrip("/") for d in host_dirs)]:
        path = root / name
        if path.is_symlink():
            with contextlib.suppress(OSError):
                if os.readlink(path) == os.readlink(Path("/", name)):
                    path.unlink()
        elif path.is_dir() and not os.path.ismount(path):
            with contextlib.suppress(OSError):
                path.rmdir()
