"""``webmail-demo --imap HOST:PORT [--listen HOST:PORT] [--reattach xstate|login]``."""

from __future__ import annotations

import argparse
import logging
import socket
import sys

from aiohttp import web

from .app import Config, make_app


def _hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="webmail-demo",
                                description="A small webmail that reattaches to imapd with X-STATE on every request.")
    p.add_argument("--imap", type=_hostport, default=("127.0.0.1", 1143), metavar="HOST:PORT",
                   help="the IMAP server (default 127.0.0.1:1143)")
    p.add_argument("--managesieve", type=_hostport, default=("127.0.0.1", 4190), metavar="HOST:PORT",
                   help="the ManageSieve server for Settings > Filters (default 127.0.0.1:4190, imapd demo's)")
    p.add_argument("--listen", type=_hostport, default=("127.0.0.1", 8080), metavar="HOST:PORT",
                   help="where to serve HTTP (default 127.0.0.1:8080)")
    p.add_argument("--reattach", choices=("xstate", "login"), default="xstate",
                   help="xstate: X-STATE RESTORE per request, no password kept (default); "
                        "login: LOGIN+SELECT per request, password kept in the server-side session")
    p.add_argument("--max-idle", type=int, default=20, metavar="N",
                   help="at most N IMAP IDLE connections for live updates (default 20)")
    p.add_argument("--listen-fd", type=int, metavar="FD",
                   help="serve on this inherited, already-listening socket instead of binding --listen "
                        "(imapd demo binds the port when it checks it, so the port cannot be lost meanwhile)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("aioimaplib").setLevel(logging.WARNING)
    cfg = Config(imap_host=args.imap[0], imap_port=args.imap[1], reattach=args.reattach, max_idle=args.max_idle,
                 sieve_host=args.managesieve[0], sieve_port=args.managesieve[1])
    host, port = args.listen
    print(f"webmail-demo: http://{host}:{port}/ -> IMAP {cfg.imap_host}:{cfg.imap_port} "
          f"(reattach: {cfg.reattach})", file=sys.stderr, flush=True)
    if args.listen_fd is not None:
        sock = socket.socket(fileno=args.listen_fd)
        web.run_app(make_app(cfg), sock=sock, print=None, access_log=None)
    else:
        web.run_app(make_app(cfg), host=host, port=port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
