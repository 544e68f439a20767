"""Catalog-driven templates (consul-template's job): Jinja2, sandboxed.

    renderer = Renderer("http://127.0.0.1:8500", [TemplateSpec.parse("in.tmpl:out.cfg:reload")],
                        wait=(2.0, 10.0))
    await renderer.run()            # renders, then re-renders on changes until cancelled

Template functions: ``service("web")`` / ``service("tag.web")`` / ``service("web@dc2")``
(passing instances: ID, Name, Address, Port, Tags, Meta, Node, NodeAddress),
``services()``, ``key(path)`` (the file waits until it exists), ``key_or_default(path, d)``,
``ls(prefix)``, ``tree(prefix)``, ``datacenters()``.
"""

from steppe.template._renderer import Renderer, TemplateSpec, run_command, write_atomically

__all__ = ["Renderer", "TemplateSpec", "run_command", "write_atomically"]
