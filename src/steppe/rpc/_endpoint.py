"""What a scheduler server answers over RPC: the one allow-list of methods, with the
types both ends decode with."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from steppe.rpc._client import RPCClient
from steppe.rpc._method import Method, method_table
from steppe.server import Server
from steppe.structs import Allocation, Evaluation, Node, Plan, PlanResult

MAX_BLOCK = 300.0
"""Longest a blocking query may hold a server-side waiter, whatever a client asks."""

PING = Method("ping", tuple[()], str)
STATUS_LEADER = Method("status_leader", tuple[()], str)
PEERS = Method("peers", tuple[()], list[str])
REGISTER_NODE = Method("register_node", tuple[Node], float)
HEARTBEAT = Method("heartbeat", tuple[str], float)
NODE_ALLOCATIONS = Method("node_allocations", tuple[str, int, float], tuple[list[Allocation], int])
UPDATE_ALLOCS = Method("update_allocs", tuple[list[Allocation]], type(None))
DEREGISTER_NODE = Method("deregister_node", tuple[str], type(None))
EVAL_DEQUEUE: Method[tuple[Evaluation | None, int]] = Method(
    "eval_dequeue",
    tuple[list[str], float],
    tuple[Evaluation | None, int],
)
EVAL_ACK = Method("eval_ack", tuple[Evaluation], type(None))
EVAL_NACK = Method("eval_nack", tuple[Evaluation], type(None))
PLAN_SUBMIT = Method("plan_submit", tuple[Plan], PlanResult)

SERVER_METHODS: Mapping[str, Method[Any]] = method_table(
    PING,
    STATUS_LEADER,
    PEERS,
    REGISTER_NODE,
    HEARTBEAT,
    NODE_ALLOCATIONS,
    UPDATE_ALLOCS,
    DEREGISTER_NODE,
    EVAL_DEQUEUE,
    EVAL_ACK,
    EVAL_NACK,
    PLAN_SUBMIT,
)


class ServerEndpoint:
    """Adapts a :class:`~steppe.server.Server` for :class:`~steppe.rpc.RPCServer`.

    ``peers`` reports the region's servers' RPC addresses (the agent knows them from
    its etcd membership); without it a server knows only itself.
    """

    rpc_methods: Mapping[str, Method[Any]] = SERVER_METHODS

    def __init__(self, server: Server, *, peers: Callable[[], list[str]] | None = None) -> None:
        self.server = server
        self._peers = peers

    async def ping(self) -> str:
        return self.server.info.name

    async def status_leader(self) -> str:
        """The leader's RPC address, "" while there is none (Nomad's ``/v1/status/leader``)."""
        return self.server.leader_addr or ""

    async def peers(self) -> list[str]:
        if self._peers is not None:
            return list(self._peers())
        return [self.server.info.rpc_addr]

    async def register_node(self, node: Node) -> float:
        return await self.server.register_node(node)

    async def heartbeat(self, node_id: str) -> float:
        return await self.server.heartbeat(node_id)

    async def node_allocations(
        self, node_id: str, min_index: int, timeout: float
    ) -> tuple[list[Allocation], int]:
        timeout = min(max(timeout, 0.0), MAX_BLOCK)
        return await self.server.node_allocations(node_id, min_index, timeout)

    async def update_allocs(self, allocs: list[Allocation]) -> None:
        await self.server.update_allocs(allocs)

    async def deregister_node(self, node_id: str) -> None:
        await self.server.deregister_node(node_id)

    async def eval_dequeue(self, types: list[str], timeout: float) -> tuple[Evaluation | None, int]:
        return await self.server.eval_dequeue(types, min(max(timeout, 0.0), MAX_BLOCK))

    async def eval_ack(self, ev: Evaluation) -> None:
        await self.server.eval_ack(ev)

    async def eval_nack(self, ev: Evaluation) -> None:
        await self.server.eval_nack(ev)

    async def plan_submit(self, plan: Plan) -> PlanResult:
        return await self.server.plan_submit(plan)


class LeaderClient:
    """The leader's broker and plan applier as a follower's workers reach them."""

    def __init__(self, client: RPCClient) -> None:
        self.client = client

    async def eval_dequeue(self, types: list[str], timeout: float) -> tuple[Evaluation | None, int]:
        return await self.client.call(EVAL_DEQUEUE, types, timeout, timeout=timeout + 10)

    async def eval_ack(self, ev: Evaluation) -> None:
        await self.client.call(EVAL_ACK, ev)

    async def eval_nack(self, ev: Evaluation) -> None:
        await self.client.call(EVAL_NACK, ev)

    async def plan_submit(self, plan: Plan) -> PlanResult:
        return await self.client.call(PLAN_SUBMIT, plan, timeout=60)
