"""Reading task logs, the node fingerprint, and the persisted node identity."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.client._support import until

from steppe.client import AllocDir, fingerprint, node_identity, read_logs
from steppe.drivers._raw_exec import RawExecDriver
from steppe.errors import NotFoundError, SteppeError, ValidationError


async def collect(**kw: object) -> bytes:
    return b"".join([chunk async for chunk in read_logs(**kw)])  # type: ignore[arg-type]


@pytest.fixture
def logs(tmp_path: Path) -> AllocDir:
    alloc_dir = AllocDir.of(tmp_path, "a1")
    alloc_dir.build(["web"])
    alloc_dir.log_path("web", "stdout", 0).write_bytes(b"0123456789")
    alloc_dir.log_path("web", "stdout", 1).write_bytes(b"abcdef")
    alloc_dir.log_path("web", "stderr", 0).write_bytes(b"oops\n")
    return alloc_dir


async def test_read_logs_offsets_and_origins(tmp_path: Path, logs: AllocDir) -> None:
    base = {"data_dir": tmp_path, "alloc_id": "a1", "task": "web"}
    assert await collect(**base) == b"0123456789abcdef"
    assert await collect(**base, offset=8) == b"89abcdef"
    assert await collect(**base, offset=3, origin="end") == b"def"
    assert await collect(**base, offset=99, origin="end") == b"0123456789abcdef"
    assert await collect(**base, offset=10) == b"abcdef"
    assert await collect(**base, stream="stderr") == b"oops\n"


async def test_read_logs_follow_sees_new_output(tmp_path: Path, logs: AllocDir) -> None:
    received = bytearray()

    async def follow() -> None:
        async for chunk in read_logs(tmp_path, "a1", "web", "stderr", follow=True):
            received.extend(chunk)

    follower = asyncio.create_task(follow())
    try:
        await until(lambda: received == b"oops\n", "existing output")
        with logs.log_path("web", "stderr").open("ab") as fh:
            fh.write(b"again\n")
        await until(lambda: received == b"oops\nagain\n", "new output")
    finally:
        follower.cancel()


async def test_read_logs_bad_requests(tmp_path: Path, logs: AllocDir) -> None:
    with pytest.raises(ValidationError) as info:
        await collect(data_dir=tmp_path, alloc_id="a1", task="../x", stream="stdin", offset=-1)
    assert {p.location for p in info.value.problems} == {"task", "type", "offset"}
    with pytest.raises(NotFoundError, match="no directory"):
        await collect(data_dir=tmp_path, alloc_id="nope", task="web")
    with pytest.raises(NotFoundError, match="no stdout log for task 'db'"):
        await collect(data_dir=tmp_path, alloc_id="a1", task="db")
    with pytest.raises(SteppeError, match="invalid allocation ID"):
        await collect(data_dir=tmp_path, alloc_id="../etc", task="web")


async def test_fingerprint_describes_this_machine(tmp_path: Path) -> None:
    node = await fingerprint(
        data_dir=tmp_path,
        drivers={"raw_exec": RawExecDriver(enabled=True), "off": _Disabled()},
        advertise_ip="127.0.0.9",
        datacenter="ams2",
        node_class="edge",
        meta={"rack": "r7"},
    )
    attrs = node.attributes
    assert attrs["kernel.name"] == "linux"
    assert attrs["unique.network.ip-address"] == "127.0.0.9"
    assert attrs["driver.raw_exec"] == "1" and "driver.off" not in attrs
    assert int(attrs["cpu.numcores"]) >= 1 and int(attrs["cpu.totalcompute"]) > 0
    assert attrs["cpu.arch"] in ("amd64", "arm64", "386", "arm")
    assert attrs["unique.hostname"] and attrs["os.name"]
    assert node.resources.cpu > 0 and node.resources.memory_mb > 0
    assert node.address == "127.0.0.9"
    assert (node.datacenter, node.node_class, node.meta) == ("ams2", "edge", {"rack": "r7"})
    assert node.drivers["raw_exec"].detected and node.drivers["raw_exec"].healthy
    assert not node.drivers["off"].detected
    again = await fingerprint(data_dir=tmp_path, drivers={})
    assert (again.id, again.secret_id) == (node.id, node.secret_id)
    assert (tmp_path / "client" / "node-id").read_text().strip() == node.id


def test_corrupt_node_id_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "client").mkdir()
    (tmp_path / "client" / "node-id").write_text("not-a-uuid")
    with pytest.raises(SteppeError, match="does not hold a UUID"):
        node_identity(tmp_path)


class _Disabled(RawExecDriver):
    name = "off"
