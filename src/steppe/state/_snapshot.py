"""Immutable views of the state at one revision.

A snapshot holds references to persistent maps (``immutables.Map``), so taking one
costs nothing and it never changes under its reader, however long the scheduler or
an HTTP handler keeps it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import immutables
import msgspec

from steppe.state._tables import job_key, job_version_key
from steppe.structs import NO_LOAD, Allocation, Evaluation, Job, Node, NodeLoad, ServerMember

Rows = immutables.Map[str, Any]
Index = immutables.Map[Hashable, immutables.Map[str, Any]]
"""A secondary index: index key -> {row ID: row}, so a lookup needs no second pass
through the table."""


class TableData:
    """One table at one revision: its rows, its secondary indexes and summaries, its
    last-change index."""

    __slots__ = ("_memo", "index", "indexes", "revisions", "rows", "summaries")

    def __init__(
        self,
        rows: Rows,
        indexes: dict[str, Index],
        revisions: immutables.Map[str, int],
        index: int,
        summaries: dict[str, immutables.Map[Hashable, Any]],
    ) -> None:
        self.rows = rows
        self.indexes = indexes
        self.revisions = revisions
        self.index = index
        self.summaries = summaries
        self._memo: dict[tuple[str, Hashable], list[Any]] = {}

    def by_index(self, name: str, key: Hashable) -> list[Any]:
        """The rows with index ``name`` equal to ``key``. The list is built once per table
        revision and shared by every reader of it: never mutate it."""
        memo_key = (name, key)
        found = self._memo.get(memo_key)
        if found is None:
            members = self.indexes[name].get(key)
            found = list(members.values()) if members else []
            self._memo[memo_key] = found
        return found


class StateSnapshot:
    def __init__(self, tables: dict[str, TableData], index: int) -> None:
        self._tables = tables
        self.index = index
        """The backend revision this snapshot reflects."""

    # generic access ------------------------------------------------------------------
    def table(self, name: str) -> TableData:
        return self._tables[name]

    def get(self, table: str, row_id: str) -> Any:
        return self._tables[table].rows.get(row_id)

    def rows(self, table: str) -> Iterable[Any]:
        return self._tables[table].rows.values()

    def by_index(self, table: str, index: str, key: Hashable) -> list[Any]:
        return self._tables[table].by_index(index, key)

    def table_index(self, *names: str) -> int:
        """The newest change among ``names`` (what blocking queries and X-*-Index report)."""
        return max((self._tables[n].index for n in names), default=0)

    def revision_of(self, table: str, row_id: str) -> int:
        """The row's mod revision, 0 when absent: the value compare-and-set compares on."""
        return self._tables[table].revisions.get(row_id, 0)

    # scheduler tables ----------------------------------------------------------------
    def job(self, namespace: str, job_id: str) -> Job | None:
        job: Job | None = self.get("jobs", job_key(namespace, job_id))
        return job

    def jobs(self, namespace: str | None = None) -> list[Job]:
        jobs: Iterable[Job] = self.rows("jobs")
        return [j for j in jobs if namespace in (None, "*", j.namespace)]

    def job_version(self, namespace: str, job_id: str, version: int) -> Job | None:
        job: Job | None = self.get("job_versions", job_version_key(namespace, job_id, version))
        return job

    def job_versions(self, namespace: str, job_id: str) -> list[Job]:
        versions: list[Job] = self.by_index("job_versions", "job", (namespace, job_id))
        return sorted(versions, key=lambda j: j.version, reverse=True)

    def node(self, node_id: str) -> Node | None:
        node: Node | None = self.get("nodes", node_id)
        return node

    def nodes(self) -> Iterable[Node]:
        return self.rows("nodes")

    def alloc(self, alloc_id: str) -> Allocation | None:
        alloc: Allocation | None = self.get("allocs", alloc_id)
        return alloc

    def allocs(self) -> Iterable[Allocation]:
        return self.rows("allocs")

    def allocs_by_job(self, namespace: str, job_id: str) -> list[Allocation]:
        return self.by_index("allocs", "job", (namespace, job_id))

    def allocs_by_node(self, node_id: str) -> list[Allocation]:
        return self.by_index("allocs", "node", node_id)

    def node_load(self, node_id: str) -> NodeLoad:
        load: NodeLoad = self._tables["allocs"].summaries["load"].get(node_id, NO_LOAD)
        return load

    def eval(self, eval_id: str) -> Evaluation | None:
        ev: Evaluation | None = self.get("evals", eval_id)
        return ev

    def evals(self) -> Iterable[Evaluation]:
        return self.rows("evals")

    def evals_by_job(self, namespace: str, job_id: str) -> list[Evaluation]:
        return self.by_index("evals", "job", (namespace, job_id))

    def servers(self) -> list[ServerMember]:
        return sorted(self.rows("servers"), key=lambda s: s.name)

    def alloc_with_job(self, alloc: Allocation) -> Allocation:
        """The allocation as the API shows it: with its job (at the version it runs) inside."""
        job = self.job_version(alloc.namespace, alloc.job_id, alloc.job_version) or self.job(
            alloc.namespace, alloc.job_id
        )
        return msgspec.structs.replace(alloc, job=job)
