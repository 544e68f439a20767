"""DNS wire format: just enough to read one question and write authoritative answers.

Written by hand rather than through a general DNS library because answers are encoded
once and then replayed from a cache; what matters is control over byte layout (the question
sits at offset 12 so cached replies can splice in each client's own question bytes).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_AAAA = 28
TYPE_SRV = 33
TYPE_OPT = 41
TYPE_ANY = 255
CLASS_IN = 1
CLASS_ANY = 255

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5

FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080
FLAG_CD = 0x0010

HEADER = struct.Struct(">HHHHHH")
_RR_FIXED = struct.Struct(">HHIH")
_SRV_FIXED = struct.Struct(">HHH")
_SOA_FIXED = struct.Struct(">IIIII")
MAX_EDNS_UDP = 4096
MIN_UDP = 512


class MalformedQuery(Exception):
    """The packet cannot be understood; ``answerable`` says whether a FORMERR can be sent."""

    def __init__(self, reason: str, *, answerable: bool, rcode: int = RCODE_FORMERR) -> None:
        super().__init__(reason)
        self.answerable = answerable
        self.rcode = rcode


@dataclass(frozen=True, slots=True)
class Query:
    """One parsed query. ``question`` is the raw question section, case preserved."""

    ident: int
    flags: int
    labels: tuple[str, ...]
    qtype: int
    qclass: int
    question: bytes
    edns_size: int | None


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class Soa:
    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


@dataclass(frozen=True, slots=True)
class Target:
    """RDATA that is a single domain name (NS, CNAME)."""

    name: str


RData = bytes | Srv | Soa | Target


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record; ``name`` is lowercase, dotted, without the trailing dot."""

    name: str
    rtype: int
    ttl: int
    rdata: RData


def parse_query(data: bytes) -> Query:
    if len(data) < 12:
        raise MalformedQuery("shorter than a DNS header", answerable=False)
    ident, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if flags & FLAG_QR:
        raise MalformedQuery("a response, not a query", answerable=False)
    if (flags >> 11) & 0xF != 0:
        raise MalformedQuery("only standard queries", answerable=True, rcode=RCODE_NOTIMP)
    if qdcount != 1:
        raise MalformedQuery(f"{qdcount} questions, expected 1", answerable=True)
    labels, offset = _read_question_name(data, 12)
    if offset + 4 > len(data):
        raise MalformedQuery("question cut short", answerable=True)
    qtype, qclass = struct.unpack_from(">HH", data, offset)
    end = offset + 4
    edns_size = None
    offset = end
    for i in range(ancount + nscount + arcount):
        rtype, rclass, offset = _skip_record(data, offset)
        if rtype == TYPE_OPT and i >= ancount + nscount:
            edns_size = min(max(rclass, MIN_UDP), MAX_EDNS_UDP)
    return Query(ident, flags, labels, qtype, qclass, data[12:end], edns_size)


def _read_question_name(data: bytes, offset: int) -> tuple[tuple[str, ...], int]:
    labels: list[str] = []
    total = 0
    while True:
        if offset >= len(data):
            raise MalformedQuery("name runs past the end of the packet", answerable=True)
        length = data[offset]
        if length == 0:
            return tuple(labels), offset + 1
        if length > 63:
            raise MalformedQuery("compressed or bad label in the question", answerable=True)
        label = data[offset + 1 : offset + 1 + length]
        if len(label) != length:
            raise MalformedQuery("label runs past the end of the packet", answerable=True)
        total += length + 1
        if total > 255:
            raise MalformedQuery("name longer than 255 bytes", answerable=True)
        labels.append(label.decode("latin-1").lower())
        offset += 1 + length


def _skip_record(data: bytes, offset: int) -> tuple[int, int, int]:
    while True:
        if offset >= len(data):
            raise MalformedQuery("record runs past the end of the packet", answerable=True)
        length = data[offset]
        if length >= 0xC0:
            offset += 2
            break
        offset += 1 + length
        if length == 0:
            break
    if offset + 10 > len(data):
        raise MalformedQuery("record cut short", answerable=True)
    rtype, rclass, _ttl, rdlength = _RR_FIXED.unpack_from(data, offset)
    offset += 10 + rdlength
    if offset > len(data):
        raise MalformedQuery("record data cut short", answerable=True)
    return rtype, rclass, offset


class MessageWriter:
    """Writes one message, compressing names against everything written before."""

    def __init__(self, flags: int, question: bytes, qname: str) -> None:
        self._buf = bytearray(12)
        self._flags = flags
        self._counts = [1, 0, 0, 0]
        self._names: dict[str, int] = {}
        self._buf += question
        labels = qname.split(".") if qname else []
        offset = 12
        for i, label in enumerate(labels):
            self._names.setdefault(".".join(labels[i:]), offset)
            offset += 1 + len(label)

    def __len__(self) -> int:
        return len(self._buf)

    def add(self, section: int, record: Record) -> None:
        """Appends to section 1 (answer), 2 (authority) or 3 (additional)."""
        buf = self._buf
        self._name(record.name)
        rdata = record.rdata
        start = len(buf) + 10
        buf += _RR_FIXED.pack(record.rtype, CLASS_IN, record.ttl, 0)
        if isinstance(rdata, bytes):
            buf += rdata
        elif isinstance(rdata, Srv):
            buf += _SRV_FIXED.pack(rdata.priority, rdata.weight, rdata.port)
            self._name(rdata.target, compress=False)
        elif isinstance(rdata, Soa):
            self._name(rdata.mname)
            self._name(rdata.rname)
            buf += _SOA_FIXED.pack(
                rdata.serial, rdata.refresh, rdata.retry, rdata.expire, rdata.minimum
            )
        else:
            self._name(rdata.name)
        struct.pack_into(">H", buf, start - 2, len(buf) - start)
        self._counts[section] += 1

    def add_opt(self, udp_size: int) -> None:
        self._buf += b"\x00" + _RR_FIXED.pack(TYPE_OPT, udp_size, 0, 0)
        self._counts[3] += 1

    def finish(self, rcode: int, extra_flags: int = 0) -> bytes:
        HEADER.pack_into(self._buf, 0, 0, self._flags | extra_flags | rcode, *self._counts)
        return bytes(self._buf)

    def _name(self, name: str, compress: bool = True) -> None:
        buf = self._buf
        labels = name.split(".") if name else []
        for i, label in enumerate(labels):
            suffix = ".".join(labels[i:])
            pointer = self._names.get(suffix)
            if pointer is not None and compress:
                buf += struct.pack(">H", 0xC000 | pointer)
                return
            if len(buf) < 0x3FFF and pointer is None:
                self._names[suffix] = len(buf)
            raw = label.encode("latin-1")
            buf.append(len(raw))
            buf += raw
        buf.append(0)


def error_reply(data: bytes, rcode: int, query: Query | None) -> bytes:
    """A bare reply carrying only a status, echoing the question when it could be read."""
    ident, flags = struct.unpack_from(">HH", data)
    reply_flags = FLAG_QR | (flags & (0x7800 | FLAG_RD | FLAG_CD)) | rcode
    if query is None:
        return HEADER.pack(ident, reply_flags, 0, 0, 0, 0)
    return HEADER.pack(ident, reply_flags, 1, 0, 0, 0) + query.question
