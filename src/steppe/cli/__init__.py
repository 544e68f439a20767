"""The ``steppe`` command: Nomad's and Consul's verbs in one CLI.

Every command but ``agent`` is an HTTP client of an agent. Errors end the command
with exit code 1 and one readable line (validation errors: one line per problem).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from steppe import __version__
from steppe.cli._http import CLIError
from steppe.cli._jobs import job_group
from steppe.cli._nodes import alloc_group, eval_group, node_group, operator_group, server_group
from steppe.cli._options import Ctx
from steppe.errors import RemoteError, SteppeError, ValidationError


@click.group(context_settings={"help_option_names": ["-h", "-help", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Steppe: schedule containers and processes across machines and datacenters,
    and let them find each other."""
    ctx.ensure_object(Ctx)


for group in (job_group, alloc_group, node_group, eval_group, server_group, operator_group):
    cli.add_command(group)


@cli.command("version")
def version() -> None:
    """Print the version."""
    click.echo(f"Steppe v{__version__}")


@cli.command("agent", context_settings={"ignore_unknown_options": False})
@click.option("-dev", "dev", is_flag=True, help="All roles in one process, in-memory state.")
@click.option(
    "-config", "config_paths", multiple=True, type=click.Path(exists=True, path_type=Path)
)
@click.option(
    "-config-dir", "config_dirs", multiple=True, type=click.Path(exists=True, path_type=Path)
)
@click.option("-server", "server", is_flag=True, default=None)
@click.option("-client", "client", is_flag=True, default=None)
@click.option("-bootstrap-expect", "bootstrap_expect", type=int)
@click.option("-data-dir", "data_dir", type=click.Path(path_type=Path))
@click.option("-bind", "bind_addr")
@click.option("-dc", "-datacenter", "datacenter")
@click.option("-region", "region")
@click.option("-node", "node_name")
@click.option("-servers", "servers", multiple=True)
@click.option("-retry-join", "retry_join", multiple=True)
@click.option("-join", "join", multiple=True)
@click.option("-http-port", "http_port", type=int)
@click.option("-consul-http-port", "consul_http_port", type=int)
@click.option("-dns-port", "dns_port", type=int)
@click.option("-log-level", "log_level")
def agent(**flags: object) -> None:
    """Run an agent: scheduler server and/or client, catalog server and/or agent."""
    from steppe.agent import run_agent_from_flags

    raise SystemExit(run_agent_from_flags(flags))


def _register_optional(module: str) -> None:
    """Command groups that other packages contribute (the catalog's ``kv``, ``catalog``...)."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return
    mod.register(cli)


_register_optional("steppe.cli._consul_cmds")

# ``steppe run`` and ``steppe status`` are ``job run`` and ``job status``; and the verbs of the
# seeds' era (Nomad 0.4): ``nomad server-members``, ``node-status``...
for old, group, name in (
    ("run", job_group, "run"),
    ("status", job_group, "status"),
    ("server-members", server_group, "members"),
    ("server-join", server_group, "join"),
    ("node-status", node_group, "status"),
    ("alloc-status", alloc_group, "status"),
    ("eval-status", eval_group, "status"),
    ("logs", alloc_group, "logs"),
    ("plan", job_group, "plan"),
    ("stop", job_group, "stop"),
    ("validate", job_group, "validate"),
    ("inspect", job_group, "inspect"),
):
    cli.add_command(group.commands[name], old)


def _report(exc: SteppeError) -> None:
    if isinstance(exc, ValidationError) and len(exc.problems) > 1:
        click.echo(f"Error: {len(exc.problems)} problems:", err=True)
        for problem in exc.problems:
            click.echo(f"  * {problem}", err=True)
        return
    message = str(exc).strip().replace("\n", "; ")
    if isinstance(exc, RemoteError):
        message = f"Unexpected response code: {exc.status} ({message})"
    click.echo(f"Error: {message}", err=True)


def main() -> None:
    ctx_obj = Ctx()
    try:
        cli.main(obj=ctx_obj, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(1)
    except (SteppeError, CLIError) as exc:
        _report(exc)
        sys.exit(1)
    except BrokenPipeError:
        sys.exit(0)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(ctx_obj.exit_code)


__all__ = ["cli", "main"]
