"""The one exception tree of Steppe.

::

    SteppeError
    ├── ValidationError          bad input: a job file, a config file, a request body
    │     carries ``problems``: every (location, message) found, not only the first
    ├── NotFoundError            an ID or key that does not exist
    ├── ConflictError            a compare-and-set lost, a plan no longer fits
    ├── BackendError             the state backend failed (etcd down, timeout)
    │     └── RevisionCompactedError   a watch asked for history that is gone
    ├── DriverError              a task driver could not do what was asked
    └── RemoteError              another agent answered with an error

Third-party errors (aiohttp, grpc, docker) are mapped at the module that calls them,
with ``raise X from exc`` so the cause stays visible in logs but never reaches users
as a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class SteppeError(Exception):
    """Base of every error Steppe raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where (file:line:col or field path) and what."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ValidationError(SteppeError):
    """An input was rejected; ``problems`` lists everything wrong with it."""

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class NotFoundError(SteppeError):
    """The thing asked for does not exist."""


class ConflictError(SteppeError):
    """A conditional write lost to a concurrent one."""


class NotLeaderError(SteppeError):
    """This server is not (or no longer) the leader; the request must go to ``leader``."""

    def __init__(self, leader: str | None) -> None:
        self.leader = leader
        super().__init__(f"not the leader (leader: {leader or 'unknown'})")


class BackendError(SteppeError):
    """The state backend could not complete an operation."""


class RevisionCompactedError(BackendError):
    """A watch asked to start at a revision the backend no longer keeps."""

    def __init__(self, requested: int, compacted: int) -> None:
        self.requested = requested
        self.compacted = compacted
        super().__init__(f"revision {requested} is compacted (oldest kept: {compacted + 1})")


class DriverError(SteppeError):
    """A task driver failed to start, signal, or inspect a task."""


class RemoteError(SteppeError):
    """Another agent answered a request with an error."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)
