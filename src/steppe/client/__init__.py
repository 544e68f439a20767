"""The scheduler client: fingerprints the node, runs allocations through task drivers,
enforces restart policies, registers services, and reports status to the servers.

Public surface::

    node = await fingerprint(data_dir=..., drivers=..., advertise_ip=..., datacenter=...)
    client = Client(server_api, drivers, data_dir, node, services=ConsulAgentRegistrar(url))
    await client.start(); ...; await client.stop(leave_running=True)
    async for chunk in read_logs(data_dir, alloc_id, task, "stdout", follow=True): ...
"""

from steppe.client._alloc_runner import AllocRunner, client_status
from steppe.client._allocdir import AllocDir
from steppe.client._client import Client
from steppe.client._env import alloc_ports, interpolate, nomad_env
from steppe.client._fingerprint import fingerprint
from steppe.client._logs import read_logs
from steppe.client._restart import Decision, Outcome, RestartTracker, TrackerState, policy_for
from steppe.client._server_api import ServerAPI
from steppe.client._services import (
    CheckRegistration,
    ConsulAgentRegistrar,
    ServiceRegistrar,
    ServiceRegistration,
)
from steppe.client._state import node_identity
from steppe.client._task_runner import TaskRunner
from steppe.client._templates import TemplateContext, TemplateHook, TemplateHookFactory
from steppe.structs import go_duration, rfc3339

__all__ = [
    "AllocDir",
    "AllocRunner",
    "CheckRegistration",
    "Client",
    "ConsulAgentRegistrar",
    "Decision",
    "Outcome",
    "RestartTracker",
    "ServerAPI",
    "ServiceRegistrar",
    "ServiceRegistration",
    "TaskRunner",
    "TemplateContext",
    "TemplateHook",
    "TemplateHookFactory",
    "TrackerState",
    "alloc_ports",
    "client_status",
    "fingerprint",
    "go_duration",
    "interpolate",
    "node_identity",
    "nomad_env",
    "policy_for",
    "read_logs",
    "rfc3339",
]
