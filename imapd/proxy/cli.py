"""``imapd proxy [--config FILE] [-o proxy.KEY=VALUE ...]`` and ``imapd proxy backends ...``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

__all__ = ["register_cli"]


def register_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("proxy", help="run an IMAP proxy in front of several backends (docs/cluster.md)")
    p.add_argument("--config", metavar="FILE", help="TOML config file ([proxy], [tls], [auth], [cluster], ...)")
    p.add_argument("-o", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help="override a setting, e.g. -o proxy.hibernate_after=60")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=_run_proxy)
    actions = p.add_subparsers(dest="proxy_command", metavar="ACTION")
    b = actions.add_parser("backends", help="list, drain or undrain the backends of a running proxy")
    b.add_argument("action", nargs="?", default="list", choices=["list", "drain", "undrain"])
    b.add_argument("node", nargs="?", help="the NODE_ID of proxy.backends (drain, undrain)")
    b.add_argument("--json", action="store_true", help="print the proxy's JSON answer")


def _settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from imapd.config import load_settings

    return load_settings(args.config, list(args.overrides))


def _run_proxy(args: argparse.Namespace) -> int:
    from imapd.config import ConfigError

    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"imapd: {exc}", file=sys.stderr)
        return 78
    if getattr(args, "proxy_command", None) == "backends":
        return _backends(args, settings)
    if not settings.proxy.backends:
        print("imapd: proxy.backends is empty; name at least one NODE_ID=HOST:PORT", file=sys.stderr)
        return 78
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from imapd.proxy.server import run_proxy

    return run_proxy(settings)


def _backends(args: argparse.Namespace, settings: object) -> int:
    from imapd.proxy.control import request
    from imapd.proxy.server import control_path

    path = control_path(settings)  # type: ignore[arg-type]
    if args.action != "list" and not args.node:
        print(f"imapd: proxy backends {args.action} needs a NODE_ID", file=sys.stderr)
        return 64
    try:
        answer = request(path, {"action": args.action, "node": args.node})
    except OSError as exc:
        print(f"imapd: no proxy answers on {path}: {exc}", file=sys.stderr)
        return 69
    if args.json:
        print(json.dumps(answer, indent=2))
    elif not answer.get("ok"):
        print(f"imapd: {answer.get('error')}", file=sys.stderr)
    else:
        for row in answer["backends"]:
            state = "up" if row["healthy"] else f"DOWN ({row['error']})"
            drained = " drained" if row["drained"] else ""
            print(f"{row['node']:<12} {row['address']:<22} {state}{drained}  sessions={row['sessions']}"
                  + (f"  pooled={row['pooled']} pool_opened={row['pool_opened']} pool_taken={row['pool_taken']}"
                     if row.get("pool_opened") else ""))
        print(f"hibernated sessions: {answer['hibernated']}")
    return 0 if answer.get("ok") else 1
