"""The template hook point: rendered before start into the task dir, change_mode applied."""

from __future__ import annotations

import asyncio

from tests.client._support import make_alloc, make_job, sh_task, until
from tests.client.conftest import MakeRunner

from steppe.client import TemplateContext
from steppe.structs import Template


class WritingHook:
    """Writes each template's text verbatim: enough to test when the client renders."""

    instances: list[WritingHook] = []

    def __init__(self, ctx: TemplateContext) -> None:
        self.ctx = ctx
        self.closed = False
        WritingHook.instances.append(self)

    async def render(self) -> None:
        for t in self.ctx.task.templates:
            (self.ctx.task_dir / t.dest_path).write_text(t.embedded_tmpl)

    async def close(self) -> None:
        self.closed = True


async def test_templates_render_before_start_and_restart_on_change(
    make_runner: MakeRunner,
) -> None:
    WritingHook.instances.clear()
    template = Template(embedded_tmpl="backend=1\n", dest_path="local/app.conf")
    task = sh_task("web", "cat local/app.conf; exec sleep 300", templates=(template,))
    runner = make_runner(make_alloc(make_job(task)), templates=WritingHook)
    runner.start()
    web = runner.runners["web"]
    await until(lambda: web.state.state == "running", "running")
    (hook,) = WritingHook.instances
    assert hook.ctx.env["NOMAD_TASK_NAME"] == "web"
    log = runner.alloc_dir.log_path("web", "stdout")
    await until(lambda: log.read_text() == "backend=1\n", "task read its rendered file")
    await hook.ctx.on_change(template)
    await until(lambda: web.state.restarts == 1 and web.state.state == "running", "restarted")
    restart = [e for e in web.state.events if e.type == "Restart Signaled"]
    assert restart[0].display_message == "Template with change_mode restart re-rendered"
    await hook.ctx.on_change(Template(change_mode="noop"))
    assert web.state.events[-1].type == "Template Rendered"
    runner.kill()
    await asyncio.wait_for(runner.wait(), 30)
    assert hook.closed


async def test_templates_without_a_renderer_fail_setup_clearly(make_runner: MakeRunner) -> None:
    task = sh_task("web", "true", templates=(Template(embedded_tmpl="x", dest_path="local/x"),))
    runner = make_runner(make_alloc(make_job(task)))
    runner.start()
    await asyncio.wait_for(runner.wait(), 30)
    state = runner.runners["web"].state
    assert state.failed and state.events[-1].type == "Setup Failure"
    assert "no template renderer" in state.events[-1].display_message
