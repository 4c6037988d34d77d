"""The PROXY protocol (HAProxy's, v1 text and v2 binary) at the start of a connection, sans-IO.

A trusted load balancer (HAProxy, nginx stream, ``imapd proxy``) puts the real client's address in front of
the IMAP bytes. This module frames it: :func:`parse` takes the bytes received so far and says "need more",
"here is the header and how long it was", or raises :class:`ProxyHeaderError`. The wire formats are decoded
by the ``proxy-protocol`` package; what we add is the framing (how many bytes belong to the header, so the
IMAP bytes after it are never consumed), hard size limits, and the one result type the server and the proxy
share. Whether a peer may send a header at all is the caller's decision (only configured trusted addresses).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from proxyprotocol import ProxyProtocolIncompleteError, ProxyProtocolSyntaxError
from proxyprotocol.result import ProxyResult, ProxyResultIPv4, ProxyResultIPv6, ProxyResultUnknown
from proxyprotocol.v1 import ProxyProtocolV1
from proxyprotocol.v2 import ProxyProtocolV2

__all__ = ["V1_MAX", "V2_MAX", "ProxyHeader", "ProxyHeaderError", "encode_v2", "parse", "may_be_header"]

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
# v1: "PROXY TCP6 <39> <39> <5> <5>\r\n" is at most 107 bytes (the spec's own bound).
V1_MAX = 107
# v2: a 16-byte header and the addresses plus TLVs; HAProxy sends a few hundred bytes at most (SSL TLVs,
# unique id). Anything longer is refused rather than buffered: the spec allows 64 KiB, nobody needs it.
V2_MAX = 16 + 1024


class ProxyHeaderError(ValueError):
    """Bytes that are not a PROXY header we accept; the connection is closed, the reason logged."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What a header said: the client's address (None for LOCAL/UNKNOWN: use the socket's peer), its length.

    ``tls`` is the v2 ``PP2_TYPE_SSL`` TLV's client flag: the balancer terminated TLS for this client, so
    the plaintext hop behind it counts as secure (plaintext LOGIN allowed) only because it says so.
    """

    source: tuple[str, int] | None
    dest: tuple[str, int] | None
    length: int
    version: int
    tls: bool = False


_V1 = ProxyProtocolV1()
_V2 = ProxyProtocolV2()


def may_be_header(data: bytes) -> bool:
    """True while ``data`` (the first bytes of a connection) could still be the start of a PROXY header."""
    n = min(len(data), len(V2_SIGNATURE))
    if data[:n] == V2_SIGNATURE[:n]:
        return True
    n = min(len(data), len(V1_PREFIX))
    return data[:n] == V1_PREFIX[:n]


def parse(data: bytes) -> ProxyHeader | None:
    """Frame and decode the header at the start of ``data``; None means more bytes are needed.

    Raises :class:`ProxyHeaderError` for anything else: no header where one is required, a malformed or
    truncated-then-garbage header, an oversized one, a bad checksum, a non-TCP family.
    """
    if not may_be_header(data):
        raise ProxyHeaderError("connection did not start with a PROXY protocol header")
    if data[:1] == b"\r":
        return _parse_v2(data)
    return _parse_v1(data)


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyHeaderError(f"PROXY v1 header longer than {V1_MAX} bytes")
        if b"\n" in data:
            raise ProxyHeaderError("PROXY v1 header not ended by CRLF")
        return None
    line = data[: end + 2]
    try:
        result = _V1.unpack(line)
    except (ProxyProtocolSyntaxError, ProxyProtocolIncompleteError, ValueError, UnicodeDecodeError) as exc:
        raise ProxyHeaderError(f"malformed PROXY v1 header: {exc}") from None
    return _header(result, len(line), 1)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if len(data) < 16:
        return None
    if data[:12] != V2_SIGNATURE:
        raise ProxyHeaderError("malformed PROXY v2 signature")
    if data[12] >> 4 != 2:
        raise ProxyHeaderError(f"PROXY v2 header with version {data[12] >> 4}")
    total = 16 + int.from_bytes(data[14:16], "big")
    if total > V2_MAX:
        raise ProxyHeaderError(f"PROXY v2 header of {total} bytes (at most {V2_MAX})")
    if len(data) < total:
        return None
    try:
        result = _V2.unpack(data[:total])
    except (ProxyProtocolSyntaxError, ProxyProtocolIncompleteError, ValueError) as exc:
        raise ProxyHeaderError(f"malformed PROXY v2 header: {exc}") from None
    except Exception as exc:  # the checksum error and struct errors of truncated address blocks
        raise ProxyHeaderError(f"malformed PROXY v2 header: {type(exc).__name__}: {exc}") from None
    return _header(result, total, 2)


def _header(result: ProxyResult, length: int, version: int) -> ProxyHeader:
    if isinstance(result, ProxyResultUnknown):
        exc = result.exception
        if exc is not None:
            raise ProxyHeaderError(f"malformed PROXY v{version} header: {exc}")
        return ProxyHeader(None, None, length, version)  # "PROXY UNKNOWN": keep the socket's address
    if isinstance(result, (ProxyResultIPv4, ProxyResultIPv6)):
        if result.protocol not in (None, socket.SOCK_STREAM):
            raise ProxyHeaderError("PROXY header for a non-TCP connection")
        src, dst = result.source, result.dest
        tls = version == 2 and result.tlv.ssl.has_ssl
        return ProxyHeader((_host(src[0]), int(src[1])), (_host(dst[0]), int(dst[1])), length, version, tls)
    if not result.proxied:
        return ProxyHeader(None, None, length, version)  # v2 LOCAL: a health check of the balancer itself
    raise ProxyHeaderError(f"PROXY v{version} header for an address family we do not serve")


def _host(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An address as the server names peers: a v4-mapped IPv6 address as plain IPv4."""
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped if mapped is not None else ip)


def encode_v2(source: tuple[str, int], dest: tuple[str, int], *, tls: bool = False) -> bytes:
    """A v2 PROXY header (TCP over IPv4 or IPv6) naming ``source`` as the client; the proxy sends it.

    ``tls``: the client reached us over TLS (a ``PP2_TYPE_SSL`` TLV with ``PP2_CLIENT_SSL``, verify 0).
    """
    src_ip = ipaddress.ip_address(source[0])
    dst_ip = ipaddress.ip_address(dest[0])
    if src_ip.version != dst_ip.version:  # mixed families: express both as IPv6 (v4-mapped)
        src_ip = src_ip if src_ip.version == 6 else ipaddress.IPv6Address(f"::ffff:{src_ip}")
        dst_ip = dst_ip if dst_ip.version == 6 else ipaddress.IPv6Address(f"::ffff:{dst_ip}")
    if src_ip.version == 4:
        fam, body = 0x11, src_ip.packed + dst_ip.packed
    else:
        fam, body = 0x21, src_ip.packed + dst_ip.packed
    body += int(source[1]).to_bytes(2, "big") + int(dest[1]).to_bytes(2, "big")
    if tls:
        ssl_value = bytes([0x01]) + (0).to_bytes(4, "big")  # PP2_CLIENT_SSL; verify = 0; no sub-TLVs
        body += bytes([0x20]) + len(ssl_value).to_bytes(2, "big") + ssl_value
    return V2_SIGNATURE + bytes([0x21, fam]) + len(body).to_bytes(2, "big") + body
