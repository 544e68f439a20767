"""``/v1/kv/`` and ``/v1/txn``.

A plain ``GET /v1/kv/key`` is the hot path (the benchmark's): one snapshot lookup and one
encode of the stored entry, nothing else.
"""

from __future__ import annotations

from aiohttp import web

from steppe.api.consul._common import (
    JSON,
    blocking_read,
    ctx_of,
    guarded,
    headers,
    int_param,
    json_body,
    respond,
    route_dc,
    text_error,
)
from steppe.catalog import MAX_TXN_OPS, MAX_VALUE_BYTES, KVWrite, TooManyOps, parse_txn
from steppe.state import StateSnapshot
from steppe.structs import KVEntry, to_json

_KV = ("kv",)
_TRUE = b"true"
_FALSE = b"false"


def _entries(snap: StateSnapshot, prefix: str) -> list[KVEntry]:
    rows = snap.table("kv").rows
    return [rows[k] for k in sorted(k for k in rows if k.startswith(prefix))]


def _keys(snap: StateSnapshot, prefix: str, separator: str) -> list[str]:
    out: set[str] = set()
    for key in snap.table("kv").rows:
        if not key.startswith(prefix):
            continue
        if separator:
            cut = key.find(separator, len(prefix))
            if cut >= 0:
                key = key[: cut + len(separator)]
        out.add(key)
    return sorted(out)


async def kv_get(request: web.Request) -> web.StreamResponse:
    if request.query_string:
        return await _kv_get_query(request)
    snap = ctx_of(request).catalog.store.snapshot()
    entry = snap.table("kv").rows.get(request.match_info["key"])
    if entry is None:
        return web.Response(status=404, headers=headers(max(snap.table_index("kv"), 1)))
    return web.Response(
        body=to_json((entry,)), content_type=JSON, headers=headers(entry.modify_index)
    )


@guarded
async def _kv_get_query(request: web.Request) -> web.StreamResponse:
    key = request.match_info["key"]
    query = request.query
    routed = await route_dc(request)
    if routed is not None:
        return routed
    if "keys" in query:
        sep = query.get("separator", "")
        index, keys = await blocking_read(
            request, _KV, lambda s: (s.table_index("kv"), _keys(s, key, sep))
        )
        return respond(keys, index) if keys else web.Response(status=404, headers=headers(index))
    if "recurse" in query:
        index, entries = await blocking_read(
            request, _KV, lambda s: (s.table_index("kv"), _entries(s, key))
        )
        if not entries:
            return web.Response(status=404, headers=headers(index))
        return respond(entries, index)

    def single(snap: StateSnapshot) -> tuple[int, KVEntry | None]:
        found: KVEntry | None = snap.table("kv").rows.get(key)
        return (found.modify_index if found else snap.table_index("kv")), found

    index, entry = await blocking_read(request, _KV, single)
    if entry is None:
        return web.Response(status=404, headers=headers(index))
    if "raw" in query:
        return web.Response(
            body=entry.value or b"", content_type="text/plain", headers=headers(index)
        )
    return respond((entry,), index)


async def kv_put(request: web.Request) -> web.StreamResponse:
    routed = await route_dc(request)
    if routed is not None:
        return routed
    key = request.match_info["key"]
    if not key:
        return text_error(400, "Missing key name")
    if request.content_length and request.content_length > MAX_VALUE_BYTES:
        return text_error(
            413, f"Request body too large ({request.content_length} bytes); max {MAX_VALUE_BYTES}"
        )
    body = await request.read()
    if len(body) > MAX_VALUE_BYTES:
        return text_error(413, f"Request body too large ({len(body)} bytes); max {MAX_VALUE_BYTES}")
    query = request.query
    write = KVWrite(
        key=key,
        value=body or None,
        flags=int_param(request, "flags") or 0,
        cas=int_param(request, "cas"),
        acquire=query.get("acquire", ""),
        release=query.get("release", ""),
    )
    ok = await ctx_of(request).catalog.kv.put(write)
    return web.Response(body=_TRUE if ok else _FALSE, content_type=JSON)


async def kv_delete(request: web.Request) -> web.StreamResponse:
    routed = await route_dc(request)
    if routed is not None:
        return routed
    key = request.match_info["key"]
    recurse = "recurse" in request.query
    if not key and not recurse:
        return text_error(400, "Missing key name")
    ok = await ctx_of(request).catalog.kv.delete(
        key, recurse=recurse, cas=int_param(request, "cas")
    )
    return web.Response(body=_TRUE if ok else _FALSE, content_type=JSON)


async def txn(request: web.Request) -> web.StreamResponse:
    routed = await route_dc(request)
    if routed is not None:
        return routed
    catalog = ctx_of(request).catalog
    body = await json_body(request)
    try:
        ops = parse_txn(body, min(MAX_TXN_OPS, catalog.store.backend.max_txn_ops))
        results, errors = await catalog.txn.run(ops)
    except TooManyOps as exc:
        return text_error(413, str(exc))
    if errors:
        failed = [{"OpIndex": i, "What": what} for i, what in errors]
        return respond({"Results": None, "Errors": failed}, status=409)
    index = catalog.store.snapshot().table_index("kv")
    return respond({"Results": [{"KV": e} for e in results], "Errors": None}, index)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/kv/{key:.*}", kv_get)
    app.router.add_put("/v1/kv/{key:.*}", guarded(kv_put))
    app.router.add_delete("/v1/kv/{key:.*}", guarded(kv_delete))
    app.router.add_put("/v1/txn", guarded(txn))
