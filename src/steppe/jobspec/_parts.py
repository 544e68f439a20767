"""The smaller job stanzas: policies, placement rules, services, templates, networks."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from steppe.jobspec._reader import Reader
from steppe.structs import (
    Affinity,
    Constraint,
    EphemeralDisk,
    NetworkResource,
    Port,
    ReschedulePolicy,
    RestartPolicy,
    Service,
    ServiceCheck,
    Spread,
    SpreadTarget,
    Template,
)

_CONSTRAINT_SHORTCUTS = ("version", "semver", "regexp", "set_contains", "distinct_property")


def restart_policy(r: Reader, base: RestartPolicy) -> RestartPolicy:
    r.check(("attempts", "interval", "delay", "mode", "render_templates"))
    return RestartPolicy(
        attempts=r.integer("attempts", base.attempts),
        interval=r.duration("interval", base.interval),
        delay=r.duration("delay", base.delay),
        mode=r.string("mode", base.mode),
        render_templates=r.boolean("render_templates", base.render_templates),
    )


def reschedule_policy(r: Reader, base: ReschedulePolicy | None) -> ReschedulePolicy:
    r.check(("attempts", "interval", "delay", "delay_function", "max_delay", "unlimited"))
    b = base or ReschedulePolicy()
    return ReschedulePolicy(
        attempts=r.integer("attempts", b.attempts),
        interval=r.duration("interval", b.interval),
        delay=r.duration("delay", b.delay),
        delay_function=r.string("delay_function", b.delay_function),
        max_delay=r.duration("max_delay", b.max_delay),
        unlimited=r.boolean("unlimited", b.unlimited),
    )


def constraints(parent: Reader) -> tuple[Constraint, ...]:
    found = []
    for r in parent.blocks("constraint"):
        r.check(("attribute", "operator", "value", "distinct_hosts", *_CONSTRAINT_SHORTCUTS))
        attribute = r.string("attribute")
        operator = r.string("operator", "=")
        value = r.string("value")
        if r.boolean("distinct_hosts"):
            operator = "distinct_hosts"
        for shortcut in _CONSTRAINT_SHORTCUTS:
            if r.has(shortcut):
                operator = shortcut
                r.alias(shortcut, "operator")
                r.alias(shortcut, "attribute" if shortcut == "distinct_property" else "value")
                if shortcut == "distinct_property":
                    attribute = r.string(shortcut)
                else:
                    value = r.string(shortcut)
        found.append(Constraint(l_target=attribute, r_target=value, operand=operator))
    return tuple(found)


def affinities(parent: Reader) -> tuple[Affinity, ...]:
    found = []
    for r in parent.blocks("affinity"):
        r.check(("attribute", "operator", "value", "weight"))
        found.append(
            Affinity(
                l_target=r.string("attribute"),
                r_target=r.string("value"),
                operand=r.string("operator", "="),
                weight=r.integer("weight", 50),
            )
        )
    return tuple(found)


def spreads(parent: Reader) -> tuple[Spread, ...]:
    found = []
    for r in parent.blocks("spread"):
        r.check(("attribute", "weight", "target"))
        targets = []
        for label, t in r.labeled("target"):
            t.check(("value", "percent"))
            targets.append(
                SpreadTarget(value=t.string("value", label), percent=t.integer("percent"))
            )
        found.append(
            Spread(
                attribute=r.string("attribute"),
                weight=r.integer("weight", 50),
                spread_target=tuple(targets),
            )
        )
    return tuple(found)


_CHECK_KEYS = (
    "name",
    "type",
    "interval",
    "timeout",
    "path",
    "command",
    "args",
    "port",
    "method",
    "protocol",
    "header",
    "initial_status",
    "tls_skip_verify",
)


def _check(r: Reader) -> ServiceCheck:
    r.check(_CHECK_KEYS)
    header: dict[str, list[str]] = {}
    for name, value in (r.any_map("header") or {}).items():
        values = value if isinstance(value, list) else [value]
        header[name] = [str(v) for v in values]
    return ServiceCheck(
        name=r.string("name"),
        type=r.string("type"),
        interval=r.duration("interval"),
        timeout=r.duration("timeout"),
        path=r.string("path"),
        command=r.string("command"),
        args=r.strings("args") or (),
        port_label=r.string("port"),
        method=r.string("method"),
        protocol=r.string("protocol"),
        header=header,
        initial_status=r.string("initial_status"),
        tls_skip_verify=r.boolean("tls_skip_verify"),
    )


def services(parent: Reader) -> tuple[Service, ...]:
    found = []
    for r in parent.blocks("service"):
        r.check(
            ("name", "port", "tags", "address_mode", "address", "meta", "check", "provider", "task")
        )
        found.append(
            Service(
                name=r.string("name"),
                port_label=r.string("port"),
                tags=r.strings("tags") or (),
                address_mode=r.string("address_mode", "auto"),
                address=r.string("address"),
                checks=tuple(_check(c) for c in r.blocks("check")),
                meta=r.str_map("meta") or {},
                provider=r.string("provider", "consul"),
                task_name=r.string("task"),
            )
        )
    return tuple(found)


def templates(parent: Reader) -> tuple[Template, ...]:
    found = []
    base = Template()
    for r in parent.blocks("template"):
        r.check(
            (
                "data",
                "source",
                "destination",
                "change_mode",
                "change_signal",
                "splay",
                "perms",
                "left_delimiter",
                "right_delimiter",
                "env",
            )
        )
        found.append(
            Template(
                embedded_tmpl=r.string("data"),
                source_path=r.string("source"),
                dest_path=r.string("destination"),
                change_mode=r.string("change_mode", base.change_mode),
                change_signal=r.string("change_signal"),
                splay=r.duration("splay", base.splay),
                perms=r.string("perms", base.perms),
                left_delim=r.string("left_delimiter", base.left_delim),
                right_delim=r.string("right_delimiter", base.right_delim),
                env=r.boolean("env"),
            )
        )
    return tuple(found)


def ephemeral_disk(r: Reader) -> EphemeralDisk:
    r.check(("sticky", "size", "migrate"))
    base = EphemeralDisk()
    return EphemeralDisk(
        sticky=r.boolean("sticky"),
        size_mb=r.integer("size", base.size_mb),
        migrate=r.boolean("migrate"),
    )


@dataclass(frozen=True)
class PortSpec:
    label: str
    static: int
    to: int
    host_network: str


def ports(parent: Reader) -> list[PortSpec]:
    found = []
    for label, r in parent.labeled("port"):
        r.check(("static", "to", "host_network"))
        found.append(
            PortSpec(
                label, r.integer("static"), r.integer("to"), r.string("host_network", "default")
            )
        )
    return found


def network(r: Reader, port_map: dict[str, int] | None = None) -> NetworkResource:
    """A ``network`` block; ``port_map`` (old task-level shape) supplies each port's ``to``."""
    r.check(("mode", "mbits", "port") if port_map is None else ("mbits", "port"))
    reserved: list[Port] = []
    dynamic: list[Port] = []
    for spec in ports(r):
        to = spec.to or (port_map or {}).get(spec.label, 0)
        port = Port(label=spec.label, value=spec.static, to=to, host_network=spec.host_network)
        (reserved if spec.static else dynamic).append(port)
    return NetworkResource(
        mode=r.string("mode", "host"),
        mbits=r.integer("mbits"),
        reserved_ports=tuple(reserved),
        dynamic_ports=tuple(dynamic),
    )


def merge_networks(
    own: tuple[NetworkResource, ...], legacy: list[NetworkResource]
) -> tuple[NetworkResource, ...]:
    """Moves old task-level networks into the group's one network, as Nomad 1.x does."""
    if not legacy:
        return own
    first = own[0] if own else NetworkResource()
    for net in legacy:
        first = msgspec.structs.replace(
            first,
            mbits=first.mbits + net.mbits,
            reserved_ports=first.reserved_ports + net.reserved_ports,
            dynamic_ports=first.dynamic_ports + net.dynamic_ports,
        )
    return (first, *own[1:])
