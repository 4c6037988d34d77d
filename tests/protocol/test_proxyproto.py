"""PROXY protocol framing: real headers as HAProxy sends them, and hostile ones."""

from __future__ import annotations

import pytest

from imapd.protocol.proxyproto import V1_MAX, V2_MAX, ProxyHeaderError, encode_v2, parse


def test_v1_tcp4_header_is_framed_and_leaves_the_imap_bytes() -> None:
    data = b"PROXY TCP4 192.0.2.7 127.0.0.1 50123 143\r\na1 CAPABILITY\r\n"
    header = parse(data)
    assert header is not None
    assert header.source == ("192.0.2.7", 50123)
    assert header.dest == ("127.0.0.1", 143)
    assert data[header.length :] == b"a1 CAPABILITY\r\n"


def test_v1_tcp6_and_unknown() -> None:
    h = parse(b"PROXY TCP6 2001:db8::1 ::1 4000 993\r\n")
    assert h is not None and h.source == ("2001:db8::1", 4000)
    h = parse(b"PROXY UNKNOWN\r\n")
    assert h is not None and h.source is None


@pytest.mark.parametrize("cut", range(1, 40))
def test_truncated_headers_ask_for_more(cut: int) -> None:
    v1 = b"PROXY TCP4 192.0.2.7 127.0.0.1 50123 143\r\n"
    v2 = encode_v2(("192.0.2.7", 50123), ("127.0.0.1", 143))
    assert parse(v1[: min(cut, len(v1) - 1)]) is None
    assert parse(v2[: min(cut, len(v2) - 1)]) is None


def test_v2_round_trip_ipv4_ipv6_and_mixed() -> None:
    for src, dst in [(("192.0.2.7", 1), ("127.0.0.1", 143)), (("2001:db8::9", 65535), ("::1", 993))]:
        raw = encode_v2(src, dst)
        h = parse(raw + b"a1 NOOP\r\n")
        assert h is not None and h.source == src and h.dest == dst and h.length == len(raw)
    h = parse(encode_v2(("192.0.2.7", 5), ("::1", 143)))
    assert h is not None and h.source == ("192.0.2.7", 5)


def test_v2_local_command_keeps_the_socket_address() -> None:
    raw = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00]) + b"\x00\x00"
    h = parse(raw)
    assert h is not None and h.source is None and h.length == 16


@pytest.mark.parametrize(
    "data",
    [
        b"a1 LOGIN alice secret\r\n",  # no header from a peer that must send one
        b"PROXY TCP4 192.0.2.7 127.0.0.1 50123\r\n",  # a field missing
        b"PROXY TCP4 999.0.2.7 127.0.0.1 50123 143\r\n",  # not an address
        b"PROXY TCP4 192.0.2.7 127.0.0.1 99999 143\r\n",  # not a port
        b"PROXY TCP4 192.0.2.7 127.0.0.1 50123 143\n",  # LF without CR
        b"PROXY " + b"A" * (V1_MAX + 10) + b"\r\n",  # oversized v1
        b"PROXY TCP4 " + b"1" * (V1_MAX - 11),  # no end within the bound
        b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x11, 0x11]) + b"\x00\x0c" + b"\x00" * 12,  # version 1 in a v2 header
        b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + (V2_MAX).to_bytes(2, "big"),  # oversized v2
        b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + b"\x00\x04" + b"\x00" * 4,  # address block too short
        b"\r\n\r\n\x00\r\nQUIX\n" + bytes([0x21, 0x11]) + b"\x00\x00",  # broken signature
        b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x12]) + b"\x00\x0c" + b"\x00" * 12,  # UDP
    ],
)
def test_hostile_headers_are_refused(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse(data)


def test_v2_tls_flag_round_trips() -> None:
    plain = parse(encode_v2(("192.0.2.7", 5), ("127.0.0.1", 143)))
    tls = parse(encode_v2(("192.0.2.7", 5), ("127.0.0.1", 143), tls=True))
    assert plain is not None and not plain.tls
    assert tls is not None and tls.tls and tls.source == ("192.0.2.7", 5)
