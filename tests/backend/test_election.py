"""Election on both backends: one leader at a time, the next in line takes over when the
leader resigns or loses its lease, and the ex-leader learns it lost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from tests.support.waiting import async_wait_until

from steppe.backend import Backend, Election, keep_alive


@contextlib.asynccontextmanager
async def elections(backend: Backend, name: str, n: int) -> AsyncIterator[list[Election]]:
    members = [Election(backend, name, ttl=2, prefix="/test-election/") for _ in range(n)]
    try:
        yield members
    finally:
        for member in members:
            await member.resign()


async def test_two_contenders_one_wins_then_the_other_after_resign(
    backend: Backend, prefix: str
) -> None:
    async with elections(backend, prefix, 2) as (a, b):
        await a.campaign("a")
        assert a.is_leader
        b_campaign = asyncio.create_task(b.campaign("b"))
        observed: list[str | None] = []

        async def watch_leaders() -> None:
            async for value in a.observe():
                observed.append(value)

        observer = asyncio.create_task(watch_leaders())
        try:
            await async_wait_until(lambda: observed == ["a"], what="observer sees a")
            assert await b.leader() == "a"
            assert not b_campaign.done()

            await a.resign()
            async with asyncio.timeout(20):
                await b_campaign
            assert b.is_leader and not a.is_leader
            assert await a.leader() == "b"
            await async_wait_until(lambda: observed[-1:] == ["b"], what="observer sees b")
        finally:
            observer.cancel()
            b_campaign.cancel()
            await asyncio.gather(observer, b_campaign, return_exceptions=True)


async def test_leader_that_loses_its_lease_learns_it_and_is_replaced(
    backend: Backend, prefix: str
) -> None:
    async with elections(backend, prefix, 2) as (a, b):
        await a.campaign("a")
        b_campaign = asyncio.create_task(b.campaign("b"))
        try:
            assert a.lease_id is not None
            await backend.lease_revoke(a.lease_id)
            async with asyncio.timeout(20):
                await a.wait_lost()
                await b_campaign
            assert not a.is_leader
            assert b.is_leader
            assert await b.leader() == "b"
        finally:
            b_campaign.cancel()
            await asyncio.gather(b_campaign, return_exceptions=True)


async def test_no_leader_when_nobody_campaigns(backend: Backend, prefix: str) -> None:
    async with elections(backend, prefix, 1) as (a,):
        assert await a.leader() is None


async def test_keep_alive_returns_once_the_lease_is_gone(backend: Backend, prefix: str) -> None:
    lease = await backend.lease_grant(1)
    await backend.put(prefix + "k", b"x", lease=lease)
    keeper = asyncio.create_task(keep_alive(backend, lease, 1))
    await backend.lease_revoke(lease)
    async with asyncio.timeout(10):
        await keeper
    assert await backend.get(prefix + "k") is None
