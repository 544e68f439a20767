"""Answers queries from a cache of fully encoded replies.

Each distinct question (lowercased name, type, flags, EDNS size, transport) is resolved and
encoded once per catalog index, in several shuffled orders that are handed out in turn.
A reply is then the client's ID and question bytes spliced around a cached template: the
question sits at offset 12 and compression pointers only ever point into it by offset, so
the client's own spelling (0x20 case randomisation included) comes back unchanged.
On top, a UDP-only table keyed by the whole packet after the ID skips parsing entirely.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from itertools import cycle
from math import factorial

from steppe.dns._answer import Answer, Group, resolve
from steppe.dns._config import DNSConfig
from steppe.dns._names import Kind, parse_name
from steppe.dns._view import CatalogView
from steppe.dns._wire import (
    CLASS_ANY,
    CLASS_IN,
    FLAG_AA,
    FLAG_CD,
    FLAG_QR,
    FLAG_RA,
    FLAG_RD,
    FLAG_TC,
    MAX_EDNS_UDP,
    MIN_UDP,
    RCODE_REFUSED,
    RCODE_SERVFAIL,
    MalformedQuery,
    MessageWriter,
    Query,
    error_reply,
    parse_query,
)

log = logging.getLogger(__name__)

VARIANTS = 8
CACHE_LIMIT = 10_000
_Key = tuple[tuple[str, ...], int, int, int | None, bool]


class Forward:
    """Returned instead of a reply when the name belongs to the recursors."""

    def __init__(self, query: Query) -> None:
        self.query = query


class Responder:
    def __init__(
        self, view: CatalogView, config: DNSConfig, rng: random.Random | None = None
    ) -> None:
        self.view = view
        self.config = config
        self.index: int | None = None
        self.hot: dict[bytes, Iterator[bytes]] = {}
        self._templates: dict[_Key, tuple[list[bytes], Iterator[int]]] = {}
        self._domain = tuple(config.domain.rstrip(".").split("."))
        self._rng = rng or random.Random()
        self._ra = FLAG_RA if config.recursors else 0

    def answer(self, data: bytes, tcp: bool) -> bytes | Forward | None:
        """The reply to send, a Forward to hand to the recursors, or None to drop the packet."""
        try:
            query = parse_query(data)
        except MalformedQuery as exc:
            log.debug("bad DNS packet: %s", exc)
            return error_reply(data, exc.rcode, None) if exc.answerable else None
        try:
            return self._answer(data, query, tcp)
        except Exception:
            log.exception("answering %s failed", ".".join(query.labels) or ".")
            return error_reply(data, RCODE_SERVFAIL | self._ra, query)

    def servfail(self, data: bytes, query: Query) -> bytes:
        return error_reply(data, RCODE_SERVFAIL | self._ra, query)

    def _answer(self, data: bytes, query: Query, tcp: bool) -> bytes | Forward:
        index = self.view.index()
        if index != self.index:
            self.hot.clear()
            self._templates.clear()
            self.index = index
        lookup = parse_name(query.labels, self._domain)
        if lookup.kind is Kind.OUTSIDE:
            if self.config.recursors:
                return Forward(query)
            return error_reply(data, RCODE_REFUSED, query)
        if query.qclass not in (CLASS_IN, CLASS_ANY):
            return error_reply(data, RCODE_REFUSED | self._ra, query)
        key = (query.labels, query.qtype, query.flags & (FLAG_RD | FLAG_CD), query.edns_size, tcp)
        entry = self._templates.get(key)
        if entry is None:
            answer = resolve(
                lookup, ".".join(query.labels), query.qtype, self.view, self.config, index
            )
            templates = self._encode_variants(query, answer, tcp)
            entry = (templates, cycle(range(len(templates))))
            if len(self._templates) >= CACHE_LIMIT:
                self._templates.clear()
            self._templates[key] = entry
        templates, turn = entry
        qlen = len(query.question)
        if tcp:
            template = templates[next(turn)]
            return data[:2] + template[2:12] + query.question + template[12 + qlen :]
        start = next(turn)
        ordered = templates[start:] + templates[:start]
        rotation = cycle([t[2:12] + query.question + t[12 + qlen :] for t in ordered])
        if len(self.hot) >= CACHE_LIMIT:
            self.hot.clear()
        self.hot[data[2:]] = rotation
        return data[:2] + next(rotation)

    def _encode_variants(self, query: Query, answer: Answer, tcp: bool) -> list[bytes]:
        groups = answer.groups
        wanted = min(VARIANTS, factorial(min(len(groups), 4)))
        orders: list[list[Group]] = []
        seen: set[tuple[int, ...]] = set()
        for _ in range(wanted * 4):
            order = list(range(len(groups)))
            self._rng.shuffle(order)
            if tuple(order) not in seen:
                seen.add(tuple(order))
                orders.append([groups[i] for i in order])
            if len(orders) == wanted:
                break
        return [self._encode(query, answer, order, tcp) for order in orders]

    def _encode(self, query: Query, answer: Answer, groups: list[Group], tcp: bool) -> bytes:
        """Encodes as many answers as fit: all of them over TCP, UDP trimmed like Consul."""
        limit = 65535 if tcp else (query.edns_size or MIN_UDP)
        total = len(groups)
        count = total
        if not tcp and limit <= MIN_UDP:
            count = min(count, self.config.udp_answer_limit)
        message = self._message(query, answer, groups, count, 0)
        if len(message) > limit:
            low, high = 0, count - 1
            while low < high:
                mid = (low + high + 1) // 2
                if len(self._message(query, answer, groups, mid, 0)) <= limit:
                    low = mid
                else:
                    high = mid - 1
            count = low
        trimmed = count < total
        tc = FLAG_TC if trimmed and (self.config.enable_truncate or tcp) else 0
        return self._message(query, answer, groups, count, tc)

    def _message(
        self, query: Query, answer: Answer, groups: list[Group], count: int, tc: int
    ) -> bytes:
        flags = FLAG_QR | FLAG_AA | self._ra | (query.flags & (FLAG_RD | FLAG_CD))
        writer = MessageWriter(flags, query.question, ".".join(query.labels))
        for record, _ in groups[:count]:
            writer.add(1, record)
        for record in answer.authority:
            writer.add(2, record)
        glue_seen = set()
        for _, glue in groups[:count]:
            for record in glue:
                if record not in glue_seen:
                    glue_seen.add(record)
                    writer.add(3, record)
        if query.edns_size is not None:
            writer.add_opt(MAX_EDNS_UDP)
        return writer.finish(answer.rcode, tc)
