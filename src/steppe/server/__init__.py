"""Scheduler servers: request endpoints, and the leader's broker, workers, plan
applier and heartbeat timers."""

from steppe.errors import NotLeaderError
from steppe.server._broker import EvalBroker
from steppe.server._dispatch import DispatchResult, check_dispatch, dispatch_job
from steppe.server._endpoints import Endpoints, RegisterResult, spec_changed
from steppe.server._follower import FollowerWorkers, LeaderAPI
from steppe.server._heartbeats import HeartbeatPolicy, HeartbeatTimers
from steppe.server._leader import Leader
from steppe.server._periodic import PeriodicDispatcher, force_launch, periodic_child_id
from steppe.server._server import Server, ServerInfo

__all__ = [
    "DispatchResult",
    "Endpoints",
    "EvalBroker",
    "FollowerWorkers",
    "HeartbeatPolicy",
    "HeartbeatTimers",
    "Leader",
    "LeaderAPI",
    "NotLeaderError",
    "PeriodicDispatcher",
    "RegisterResult",
    "Server",
    "ServerInfo",
    "check_dispatch",
    "dispatch_job",
    "force_launch",
    "periodic_child_id",
    "spec_changed",
]
