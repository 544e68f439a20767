"""The agent: one process whose config switches on the scheduler server and client,
and the catalog server and agent (with DNS)."""

from steppe.agent._agent import Agent
from steppe.agent._run import config_from_flags, run_agent_from_flags

__all__ = ["Agent", "config_from_flags", "run_agent_from_flags"]
