"""Steppe: schedule containers and processes across machines and datacenters.

The public surface is small on purpose: the CLI (``steppe``), the agent, and the
typed data model in :mod:`steppe.structs`. Everything else lives in private modules
behind each subpackage's ``__init__``.
"""

__version__ = "0.1.0"
