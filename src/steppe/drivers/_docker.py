"""The ``docker`` driver: one container per task, over the Docker Engine API.

Containers carry labels naming their allocation, task and job, so a restarted agent can
find them (``list_tasks``) and re-attach (``recover``) instead of starting duplicates. Every
engine failure becomes a :class:`~steppe.errors.DriverError` whose message says what was
being done; aiodocker and aiohttp exceptions stay as its ``__cause__``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from aiodocker.containers import DockerContainer

from steppe.drivers import _docker_config as cfg
from steppe.drivers._base import Driver, ExitResult, TaskHandle, TaskSpec
from steppe.drivers._docker_logs import LogFollowers
from steppe.errors import DriverError

DEFAULT_ENDPOINT = "unix:///var/run/docker.sock"
API_TIMEOUT = 60.0
CONNECT_TIMEOUT = 5.0
PULL_TIMEOUT = 120.0
FINGERPRINT_TIMEOUT = 2.0
ENGINE_GONE_TIMEOUT = 60.0
KILL_GRACE = 10.0
UNREACHABLE = 900
"""aiodocker's status for a connection that could not be made."""


class DockerDriver(Driver):
    """``endpoint`` is the agent config's ``docker { endpoint = ... }``; without it,
    ``DOCKER_HOST``, then the engine's default socket (never a docker CLI context)."""

    name = "docker"

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        pull_timeout: float = PULL_TIMEOUT,
        api_timeout: float = API_TIMEOUT,
    ) -> None:
        self.endpoint = endpoint or os.environ.get("DOCKER_HOST") or DEFAULT_ENDPOINT
        self.pull_timeout = pull_timeout
        self.api_timeout = api_timeout
        self._client: aiodocker.Docker | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._logs = LogFollowers()

    def _docker(self) -> aiodocker.Docker:
        """The engine client of the running event loop (an aiohttp session cannot cross loops)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            timeout = aiohttp.ClientTimeout(total=self.api_timeout, sock_connect=CONNECT_TIMEOUT)
            try:
                self._client = aiodocker.Docker(url=self.endpoint, timeout=timeout)
            except ValueError as exc:
                raise DriverError(f"docker endpoint {self.endpoint!r}: {exc}") from exc
            self._client_loop = loop
        return self._client

    @contextlib.asynccontextmanager
    async def _api(self, what: str) -> AsyncIterator[None]:
        try:
            yield
        except aiodocker.DockerError as exc:
            raise DriverError(f"{what}: {exc.message}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise DriverError(
                f"{what}: docker engine at {self.endpoint} unreachable: {exc}"
            ) from exc
        except TimeoutError as exc:
            raise DriverError(f"{what}: docker engine at {self.endpoint} did not answer") from exc

    async def aclose(self) -> None:
        """Stops copying logs and closes the engine connection; containers keep running."""
        await self._logs.cancel_all()
        if self._client is not None and self._client_loop is asyncio.get_running_loop():
            await self._client.close()
        self._client = None

    async def fingerprint(self) -> dict[str, str] | None:
        try:
            async with asyncio.timeout(FINGERPRINT_TIMEOUT):
                version = await self._docker().version()
        except (aiodocker.DockerError, aiohttp.ClientError, OSError, TimeoutError, DriverError):
            return None
        return {"driver.docker": "1", "driver.docker.version": str(version.get("Version", ""))}

    def validate_config(self, config: dict[str, Any]) -> list[str]:
        return cfg.validate(config)

    async def start(self, spec: TaskSpec) -> TaskHandle:
        problems = cfg.validate(spec.config)
        if problems:
            raise DriverError(f"task {spec.task_name}: " + "; ".join(problems))
        try:
            body = cfg.create_body(spec, spec.config)
        except ValueError as exc:
            raise DriverError(f"task {spec.task_name}: {exc}") from exc
        await self._ensure_image(body["Image"], bool(spec.config.get("force_pull")))
        name = cfg.container_name(spec)
        container = await self._create(name, body)
        async with self._api(f"starting container {name}"):
            try:
                await container.start()
            except BaseException:
                with contextlib.suppress(aiodocker.DockerError, aiohttp.ClientError, OSError):
                    await container.delete(force=True, v=True)
                raise
        self._logs.follow(container, spec.stdout_path, spec.stderr_path)
        return TaskHandle(
            driver=self.name,
            task_id=container.id,
            started_at=time.time(),
            state={
                "container_name": name,
                "image": body["Image"],
                "alloc_id": spec.alloc_id,
                "task": spec.task_name,
                "job_id": spec.job_id,
                "stdout_path": str(spec.stdout_path),
                "stderr_path": str(spec.stderr_path),
            },
        )

    async def _ensure_image(self, image: str, force_pull: bool) -> None:
        """Pulls only when asked to or when the image is absent, with a deadline, because an
        engine with no registry in reach may otherwise retry for minutes."""
        images = self._docker().images
        if not force_pull:
            async with self._api(f"looking up image {image}"):
                try:
                    await images.inspect(image)
                    return
                except aiodocker.DockerError as exc:
                    if exc.status != 404:
                        raise
        try:
            async with asyncio.timeout(self.pull_timeout):
                await images.pull(image)
        except aiodocker.DockerError as exc:
            raise DriverError(
                f"image {image}: not available locally and pulling it failed: {exc.message}"
            ) from exc
        except TimeoutError as exc:
            raise DriverError(
                f"image {image}: pull did not finish within {self.pull_timeout:g}s"
                " (is a registry reachable?)"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise DriverError(f"image {image}: pulling failed: {exc}") from exc

    async def _create(self, name: str, body: dict[str, Any]) -> DockerContainer:
        """Creates the container, replacing a leftover of the same name (an earlier attempt
        of this task that was never destroyed)."""
        containers = self._docker().containers
        async with self._api(f"creating container {name}"):
            try:
                return await containers.create(body, name=name)
            except aiodocker.DockerError as exc:
                if exc.status != 409:
                    raise
            await containers.container(name).delete(force=True, v=True)
            return await containers.create(body, name=name)

    def _container(self, handle: TaskHandle) -> DockerContainer:
        return self._docker().containers.container(handle.task_id)

    async def wait(self, handle: TaskHandle) -> ExitResult:
        container = self._container(handle)
        away_since: float | None = None
        while True:
            try:
                await container.wait()
                break
            except aiodocker.DockerError as exc:
                if exc.status == 404:
                    return ExitResult(exit_code=-1, error=f"container {_short(handle)} is gone")
                if exc.status != UNREACHABLE:
                    what = f"waiting for container {_short(handle)}"
                    raise DriverError(f"{what}: {exc.message}") from exc
                away_since = await self._engine_away(handle, exc, away_since)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                away_since = await self._engine_away(handle, exc, away_since)
        await self._logs.drain(handle.task_id)
        return await self._exit_result(container, handle)

    async def _engine_away(self, handle: TaskHandle, exc: Exception, since: float | None) -> float:
        """Pauses before asking again: an engine restart drops our connections, but its
        containers live on, so waiting gives up only after a long absence."""
        now = time.monotonic()
        since = now if since is None else since
        if now - since > ENGINE_GONE_TIMEOUT:
            what = f"waiting for container {_short(handle)}"
            raise DriverError(f"{what}: engine at {self.endpoint} unreachable: {exc}") from exc
        await asyncio.sleep(1.0)
        return since

    async def _exit_result(self, container: DockerContainer, handle: TaskHandle) -> ExitResult:
        try:
            info = await container.show()
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return ExitResult(exit_code=137, error=f"container {_short(handle)} was removed")
            raise DriverError(f"inspecting container {_short(handle)}: {exc.message}") from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise DriverError(f"inspecting container {_short(handle)}: {exc}") from exc
        state: Mapping[str, Any] = info.get("State", {})
        return ExitResult(
            exit_code=int(state.get("ExitCode", -1)),
            oom_killed=bool(state.get("OOMKilled")),
            error=str(state.get("Error") or ""),
        )

    async def _kill(self, container: DockerContainer, signal: str) -> bool:
        """Sends ``signal``; False when the container is already stopped or gone."""
        try:
            await container.kill(signal=signal)
        except aiodocker.DockerError as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    async def stop(self, handle: TaskHandle, signal: str, timeout: float) -> None:
        try:
            sig = cfg.parse_signal(signal)
        except ValueError as exc:
            raise DriverError(f"kill_signal: {exc}") from exc
        container = self._container(handle)
        async with self._api(f"stopping container {_short(handle)}"):
            if not await self._kill(container, sig):
                return
            try:
                async with asyncio.timeout(max(timeout, 0.0)):
                    await container.wait(timeout=None)
                return
            except TimeoutError:
                pass
            if await self._kill(container, "SIGKILL"):
                async with asyncio.timeout(KILL_GRACE):
                    await container.wait(timeout=None)

    async def signal(self, handle: TaskHandle, signal: str) -> None:
        try:
            sig = cfg.parse_signal(signal)
        except ValueError as exc:
            raise DriverError(f"signal: {exc}") from exc
        async with self._api(f"signalling container {_short(handle)}"):
            if not await self._kill(self._container(handle), sig):
                raise DriverError(f"signalling container {_short(handle)}: it is not running")

    async def destroy(self, handle: TaskHandle) -> None:
        await self._logs.cancel(handle.task_id)
        async with self._api(f"removing container {_short(handle)}"):
            try:
                await self._container(handle).delete(force=True, v=True)
            except aiodocker.DockerError as exc:
                # 404: already gone; 409: a removal is already in progress.
                if exc.status not in (404, 409):
                    raise

    async def recover(self, handle: TaskHandle) -> bool:
        """True while the container exists; a stopped one is recovered too, so ``wait``
        can report how it ended while the agent was away."""
        container = self._container(handle)
        async with self._api(f"recovering container {_short(handle)}"):
            try:
                info = await container.show()
            except aiodocker.DockerError as exc:
                if exc.status == 404:
                    return False
                raise
        paths = handle.state.get("stdout_path"), handle.state.get("stderr_path")
        if info.get("State", {}).get("Running") and all(paths):
            self._logs.follow(container, Path(str(paths[0])), Path(str(paths[1])), resume=True)
        return True

    async def list_tasks(self) -> list[TaskHandle]:
        async with self._api("listing containers"):
            found = await self._docker().containers.list(
                all=True, filters={"label": [cfg.LABEL_ALLOC]}
            )
        return [_handle_from_listing(c) for c in found]


def _handle_from_listing(container: DockerContainer) -> TaskHandle:
    labels: Mapping[str, str] = container["Labels"] or {}
    names = container["Names"] or []
    return TaskHandle(
        driver=DockerDriver.name,
        task_id=container.id,
        started_at=float(container["Created"] or 0),
        state={
            "container_name": names[0].lstrip("/") if names else "",
            "image": container["Image"],
            "alloc_id": labels.get(cfg.LABEL_ALLOC, ""),
            "task": labels.get(cfg.LABEL_TASK, ""),
            "job_id": labels.get(cfg.LABEL_JOB, ""),
            "running": container["State"] == "running",
        },
    )


def _short(handle: TaskHandle) -> str:
    return str(handle.state.get("container_name") or handle.task_id[:12])
