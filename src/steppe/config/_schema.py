"""Which keys a config file may hold and of what type, and the reader that turns one file
into the plain, canonical dict that merging and the typed model work on."""

from __future__ import annotations

from typing import Any

from steppe.jobspec import Reader

Spec = str | dict[str, Any]

_JOIN: dict[str, Spec] = {
    "retry_join": "strs",
    "start_join": "strs",
    "retry_max": "int",
    "retry_interval": "dur",
}
SERVER: dict[str, Spec] = {
    "enabled": "bool",
    "bootstrap_expect": "int",
    "data_dir": "str",
    "num_schedulers": "int",
    "heartbeat_grace": "dur",
    "server_join": _JOIN,
    **_JOIN,
}
CLIENT: dict[str, Spec] = {
    "enabled": "bool",
    "servers": "strs",
    "node_class": "str",
    "node_pool": "str",
    "meta": "strmap",
    "options": "strmap",
    "network_interface": "str",
    "cpu_total_compute": "int",
    "memory_total_mb": "int",
    "state_dir": "str",
    "alloc_dir": "str",
    "min_dynamic_port": "int",
    "max_dynamic_port": "int",
    "reserved": {"cpu": "int", "memory": "int", "disk": "int", "reserved_ports": "str"},
    "server_join": _JOIN,
}
CONSUL: dict[str, Spec] = {
    "address": "str",
    "server_service_name": "str",
    "server_auto_join": "bool",
    "client_service_name": "str",
    "client_auto_join": "bool",
    "auto_advertise": "bool",
    "token": "str",
}
DNS: dict[str, Spec] = {
    "node_ttl": "dur",
    "service_ttl": "durmap",
    "allow_stale": "bool",
    "max_stale": "dur",
    "udp_answer_limit": "int",
    "enable_truncate": "bool",
    "only_passing": "bool",
}
_PORT_NAMES = (
    "http",
    "rpc",
    "serf",
    "catalog_http",
    "dns",
    "server",
    "serf_lan",
    "serf_wan",
    "etcd_client",
    "etcd_peer",
    "catalog_etcd_client",
    "catalog_etcd_peer",
)
TOP: dict[str, Spec] = {
    "datacenter": "str",
    "region": "str",
    "data_dir": "str",
    "log_level": "str",
    "name": "str",
    "node_name": "str",
    "bind_addr": "str",
    "client_addr": "str",
    "advertise_addr": "str",
    "advertise_addr_wan": "str",
    "leave_on_interrupt": "bool",
    "skip_leave_on_interrupt": "bool",
    "leave_on_terminate": "bool",
    "enable_script_checks": "bool",
    "disable_update_check": "bool",
    "bootstrap_expect": "int",
    "retry_join": "strs",
    "retry_join_wan": "strs",
    "start_join": "strs",
    "start_join_wan": "strs",
    "recursors": "strs",
    "domain": "str",
    "advertise": {"http": "str", "rpc": "str", "serf": "str"},
    "ports": dict.fromkeys(_PORT_NAMES, "int"),
    "addresses": {"http": "str", "rpc": "str", "serf": "str", "dns": "str"},
    "client": CLIENT,
    "consul": CONSUL,
    "docker": {"endpoint": "str"},
    "etcd": {"endpoints": "strs"},
    "dns_config": DNS,
    "server": "special",
    "plugin": "special",
    "ui": "special",
    "telemetry": "ignored",
}
_LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")


def read_file(top: Reader) -> dict[str, Any]:
    """The canonical dict of one file: only keys it sets, Consul spellings mapped."""
    out = read_block(top, TOP)
    if "node_name" in out:
        out["name"] = out.pop("node_name")
    if "skip_leave_on_interrupt" in out:
        out["leave_on_interrupt"] = not out.pop("skip_leave_on_interrupt")
    server = top.get("server")
    if isinstance(server, bool):
        out["catalog_server"] = server
    elif server is not None and (block := top.block("server")) is not None:
        out["server"] = read_block(block, SERVER)
    ui = top.get("ui")
    if isinstance(ui, bool):
        out["ui"] = ui
    elif ui is not None and (block := top.block("ui")) is not None:
        block.check(("enabled",))
        out["ui"] = block.boolean("enabled")
    plugins = {name: _plugin(r) for name, r in top.labeled("plugin")}
    if plugins:
        out["plugins"] = plugins
    _check_values(top, out)
    return out


def _plugin(r: Reader) -> dict[str, Any]:
    r.check(("config", "args"))
    return r.any_map("config") or {}


def read_block(r: Reader, spec: dict[str, Spec]) -> dict[str, Any]:
    r.check(spec)
    out: dict[str, Any] = {}
    for key, kind in spec.items():
        if not r.has(key) or kind in ("special", "ignored"):
            continue
        if isinstance(kind, dict):
            block = r.block(key)
            if block is not None:
                out[key] = read_block(block, kind)
            continue
        value = _scalar(r, key, kind)
        if value is not None:
            out[key] = value
    return out


def _scalar(r: Reader, key: str, kind: str) -> Any:
    if kind == "str":
        return r.string(key)
    if kind == "int":
        return r.integer(key)
    if kind == "bool":
        return r.boolean(key)
    if kind == "dur":
        return r.duration(key)
    if kind == "strs":
        return r.strings(key)
    if kind == "strmap":
        return r.str_map(key)
    if kind == "durmap":
        block = r.block(key)
        if block is None:
            return None
        return {name: block.duration(name) for name in block.data}
    raise AssertionError(kind)


def _check_values(top: Reader, out: dict[str, Any]) -> None:
    level = out.get("log_level")
    if level is not None and level.upper() not in _LOG_LEVELS:
        top.problem("log_level", f"unknown log level {level!r}; allowed: {', '.join(_LOG_LEVELS)}")
    elif level is not None:
        out["log_level"] = level.upper()
    ports = top.block("ports") if "ports" in out else None
    for name, port in out.get("ports", {}).items():
        if ports is not None and not (port == -1 or 1 <= port <= 65535):
            ports.problem(name, f"port must be 1-65535 (or -1 to turn it off), got {port}")
    for where, block in (("server", out.get("server")), ("", out)):
        expect = (block or {}).get("bootstrap_expect", 0)
        if expect < 0:
            target = top.block("server") if where else top
            if target is not None:
                target.problem("bootstrap_expect", "bootstrap_expect must be 0 or more")
