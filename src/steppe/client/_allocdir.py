"""The on-disk layout of an allocation, the same as Nomad's so tools and habits carry over::

<data_dir>/alloc/<alloc_id>/
    alloc/                shared by the group's tasks (NOMAD_ALLOC_DIR)
        logs/<task>.stdout.0, <task>.stderr.0
        data/  tmp/
    <task>/local/         the task's own files (NOMAD_TASK_DIR), templates land here
    <task>/secrets/       (NOMAD_SECRETS_DIR)
    <task>/tmp/
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from steppe.errors import SteppeError

STREAMS = ("stdout", "stderr")


def alloc_root(data_dir: Path, alloc_id: str) -> Path:
    if not alloc_id or "/" in alloc_id or alloc_id in (".", ".."):
        raise SteppeError(f"invalid allocation ID {alloc_id!r}")
    return data_dir / "alloc" / alloc_id


@dataclass(frozen=True, slots=True)
class AllocDir:
    root: Path

    @classmethod
    def of(cls, data_dir: Path, alloc_id: str) -> AllocDir:
        return cls(alloc_root(data_dir, alloc_id))

    @property
    def shared(self) -> Path:
        return self.root / "alloc"

    @property
    def logs(self) -> Path:
        return self.shared / "logs"

    def task_dir(self, task: str) -> Path:
        return self.root / task

    def log_path(self, task: str, stream: str, index: int = 0) -> Path:
        return self.logs / f"{task}.{stream}.{index}"

    def build(self, tasks: list[str]) -> None:
        """Creates every directory; idempotent, so a restarted client may call it again."""
        for sub in ("logs", "data", "tmp"):
            (self.shared / sub).mkdir(parents=True, exist_ok=True)
        for task in tasks:
            for sub in ("local", "secrets", "tmp"):
                (self.task_dir(task) / sub).mkdir(parents=True, exist_ok=True)
            (self.task_dir(task) / "secrets").chmod(0o700)
            for stream in STREAMS:
                self.log_path(task, stream).touch(exist_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
