"""The ManageSieve listener (``managesieve.listen``, RFC 5804): one asyncio stream per client.

Any process that serves IMAP serves ManageSieve too: with workers, the supervisor binds the socket and
every worker accepts on it, like IMAP. No hand-off to the user's owner is needed: a session touches only
the user's script files, which every write replaces atomically, and the delivery path reads the active
one at each delivery. Reading and writing never block the loop (``session/managesieve.py``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from typing import TYPE_CHECKING

from imapd.protocol.managesieve import CommandReader, ManageSieveSyntaxError, response
from imapd.session.managesieve import ManageSieveSession

if TYPE_CHECKING:
    from imapd.session.context import ServerContext

__all__ = ["ManageSieveServer"]

log = logging.getLogger("imapd.managesieve")


class ManageSieveServer:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._per_address: Counter[str] = Counter()

    @property
    def address(self) -> tuple[str, int] | None:
        if self.server is None or not self.server.sockets:
            return None
        name = self.server.sockets[0].getsockname()
        return str(name[0]), int(name[1])

    async def start(self, sock: socket.socket | None = None) -> None:
        """Serve ``sock`` (bound by a supervisor), else bind ``managesieve.listen``."""
        from imapd.server.listener import parse_hostport

        if sock is not None:
            self.server = await asyncio.start_server(self._serve, sock=sock, limit=1 << 16)
            return
        host, port = parse_hostport(self.ctx.settings.managesieve.listen)
        self.server = await asyncio.start_server(self._serve, host, port, reuse_address=True, limit=1 << 16)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in list(self._clients):
            writer.write(response("BYE", "Server shutting down"))
            writer.close()
        if self.server is not None:
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        host = str(peer[0]) if peer else "unknown"
        if self._per_address[host] >= self.ctx.settings.limits.max_connections_per_address:
            writer.write(response("BYE", "Too many connections from your address"))
            writer.close()
            return
        self._per_address[host] += 1
        self._clients.add(writer)
        try:
            await self._session(reader, writer, host)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except TimeoutError:  # (an OSError: before the clause below)
            writer.write(response("BYE", "Idle for too long"))
        except OSError as exc:  # a failed TLS handshake (ssl.SSLError), a socket error
            log.info("managesieve connection from %s ended: %s", host, exc)
        finally:
            self._clients.discard(writer)
            self._per_address[host] -= 1
            if self._per_address[host] <= 0:
                del self._per_address[host]
            writer.close()

    def _reader(self, authenticated: bool) -> CommandReader:
        limits = self.ctx.settings.limits
        if authenticated:
            return CommandReader(limits.max_line, self.ctx.settings.sieve.max_script_size * 2 + 1024)
        return CommandReader(limits.preauth_max_line, limits.preauth_max_literal)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        limits = self.ctx.settings.limits
        session = ManageSieveSession(self.ctx, host, is_tls=False)
        parser = self._reader(False)
        writer.write(session.greeting())
        await writer.drain()
        while not session.logout:
            try:
                cmd = parser.next_command()
            except ManageSieveSyntaxError as exc:
                writer.write(response("BYE" if exc.fatal else "NO", str(exc)))
                if exc.fatal:
                    return
                continue
            if cmd is None:
                timeout = limits.idle_timeout if session.user else limits.preauth_timeout
                data = await asyncio.wait_for(reader.read(1 << 16), timeout)
                if not data:
                    return
                parser.feed(data)
                continue
            was_authenticated = session.user is not None
            writer.write(await session.execute(cmd))
            await writer.drain()
            parser.sasl_response = session.sasl_pending
            if session.start_tls:
                session.start_tls = False
                if parser.buffered:  # pipelined past STARTTLS: refuse, as IMAP does
                    return
                assert self.ctx.tls_context is not None
                await writer.start_tls(self.ctx.tls_context)
                session.is_tls = True
                writer.write(session.capabilities() + response("OK", "TLS active"))
                await writer.drain()
            if (session.user is not None) != was_authenticated:
                fresh = self._reader(session.user is not None)
                fresh.feed(parser.take_buffer())
                parser = fresh
