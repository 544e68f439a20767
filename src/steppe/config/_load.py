"""Config files and directories to one AgentConfig, merged the way Nomad and Consul do:
files in order (a directory's ``*.hcl`` and ``*.json`` sorted by name), later scalars
win, blocks merge key by key."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from steppe.config._model import AgentConfig, ClientConfig, ServerConfig
from steppe.config._schema import read_file
from steppe.errors import Problem, ValidationError
from steppe.jobspec import HclDocument, Reader, Sink, Where, load_hcl, load_json_document

_SUFFIXES = (".hcl", ".json")


def load_config(paths: Iterable[str | Path], *, base: AgentConfig | None = None) -> AgentConfig:
    """Reads every file (or directory of files) in order, merged over ``base`` (the
    defaults, or :func:`dev_config` for ``agent -dev``). Every problem of every file is
    reported together, each with its file and line."""
    problems: list[Problem] = []
    merged: dict[str, Any] = {}
    for file in _expand(paths, problems):
        try:
            doc = _load_document(file)
        except ValidationError as exc:
            problems.extend(exc.problems)
            continue
        sink = Sink(doc)
        data = read_file(Reader(sink, doc.data, (), Where()))
        problems.extend(sink.sorted_problems())
        merged = merge(merged, data)
    if problems:
        raise ValidationError(list(dict.fromkeys(problems)))
    start = msgspec.to_builtins(base or AgentConfig())
    return _build(merge(start, merged), "config")


def load_config_text(text: str, filename: str = "<config>") -> AgentConfig:
    """One config given as text; JSON if it starts with ``{``, HCL otherwise."""
    doc = (
        load_json_document(text, filename)
        if text.lstrip().startswith("{")
        else load_hcl(text, filename)
    )
    sink = Sink(doc)
    data = read_file(Reader(sink, doc.data, (), Where()))
    if sink.problems:
        raise ValidationError(sink.sorted_problems())
    return _build(merge(msgspec.to_builtins(AgentConfig()), data), filename)


def dev_config() -> AgentConfig:
    """``agent -dev``: every role on, loopback only, in-memory state, raw_exec enabled."""
    return AgentConfig(
        datacenter="dc1",
        region="global",
        data_dir="",
        bind_addr="127.0.0.1",
        client_addr="127.0.0.1",
        server=ServerConfig(enabled=True, bootstrap_expect=1),
        client=ClientConfig(enabled=True),
        catalog_server=True,
        bootstrap_expect=1,
        plugins={"raw_exec": {"enabled": True}},
        ui=True,
        dev_mode=True,
    )


_OVERRIDES: dict[str, tuple[str, ...]] = {
    "server": ("server", "enabled"),
    "client": ("client", "enabled"),
    "bootstrap_expect": ("server", "bootstrap_expect"),
    "bind": ("bind_addr",),
    "dc": ("datacenter",),
    "node": ("name",),
    "servers": ("client", "servers"),
    "retry_join": ("server", "retry_join"),
    "http_port": ("ports", "http"),
    "rpc_port": ("ports", "rpc"),
    "serf_port": ("ports", "serf"),
    "dns_port": ("ports", "dns"),
    "catalog_http_port": ("ports", "catalog_http"),
    "node_class": ("client", "node_class"),
    "network_interface": ("client", "network_interface"),
    "consul_address": ("consul", "address"),
    "etcd_endpoints": ("etcd", "endpoints"),
}


def with_overrides(config: AgentConfig, **fields: Any) -> AgentConfig:
    """Command-line flags over a loaded config. Flag names (``bind``, ``dc``, ``node``,
    ``servers``, ``http_port``...) or top-level field names; ``None`` means not given.
    ``dev=True`` switches on dev mode's roles and raw_exec without undoing the files."""
    data: dict[str, Any] = {}
    if fields.pop("dev", None):
        dev = dev_config()
        data = {
            "server": {"enabled": True, "bootstrap_expect": 1},
            "client": {"enabled": True},
            "catalog_server": True,
            "bootstrap_expect": 1,
            "plugins": {"raw_exec": {"enabled": True}},
            "dev_mode": True,
            "ui": dev.ui,
        }
    known = set(AgentConfig.__struct_fields__)
    problems = []
    for name, value in fields.items():
        if value is None:
            continue
        path = _OVERRIDES.get(name) or ((name,) if name in known else None)
        if path is None:
            problems.append(Problem(f"-{name.replace('_', '-')}", "unknown option"))
            continue
        if isinstance(value, list):
            value = tuple(value)
        _set(data, path, value)
    if problems:
        raise ValidationError(problems)
    return _build(merge(msgspec.to_builtins(config), data), "command line")


def merge(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Blocks merge key by key; anything else in ``new`` replaces ``old``."""
    out = dict(old)
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
    data[path[-1]] = value


def _build(data: dict[str, Any], what: str) -> AgentConfig:
    try:
        return msgspec.convert(data, AgentConfig)
    except msgspec.ValidationError as exc:
        raise ValidationError(Problem(what, str(exc).replace("`", "'"))) from exc


def _expand(paths: Iterable[str | Path], problems: list[Problem]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in _SUFFIXES and p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(str(path), "no such config file or directory"))
    return files


def _load_document(path: Path) -> HclDocument:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(Problem(str(path), f"cannot read: {exc}")) from exc
    if path.suffix == ".json":
        return load_json_document(text, str(path))
    return load_hcl(text, str(path))
