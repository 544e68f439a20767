"""A dispatched job's payload, written where its tasks asked for it
(``dispatch_payload { file = "..." }``, relative to the task's ``local/``)."""

from __future__ import annotations

from steppe.client._allocdir import AllocDir
from steppe.errors import SteppeError
from steppe.structs import Job


def write_dispatch_payloads(alloc_dir: AllocDir, job: Job, group_name: str) -> None:
    """Idempotent, so a restarted client may write the same files again."""
    group = job.group(group_name)
    if group is None or not job.payload:
        return
    for task in group.tasks:
        if task.dispatch_payload is None or not task.dispatch_payload.file:
            continue
        local = (alloc_dir.task_dir(task.name) / "local").resolve()
        target = (local / task.dispatch_payload.file).resolve()
        if not target.is_relative_to(local):
            raise SteppeError(f"dispatch_payload file {task.dispatch_payload.file!r} leaves local/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(job.payload)
        target.chmod(0o644)
