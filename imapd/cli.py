"""The ``imapd`` command line: ``serve``, ``demo``, ``user ...``, ``deliver``, ``kick``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from imapd import __version__

__all__ = ["main"]


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the IMAP server")
    p.add_argument("--config", metavar="FILE", help="TOML config file (all settings have defaults)")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (default ./imapd-data)")
    p.add_argument("--listen", metavar="HOST:PORT", action="append", default=None,
                   help="plain (STARTTLS-capable) listener; repeatable (default 127.0.0.1:1143)")
    p.add_argument("--tls-listen", metavar="HOST:PORT", action="append", default=None,
                   help="implicit-TLS listener; repeatable")
    p.add_argument("--workers", metavar="N", type=int, default=None,
                   help="worker processes (setting server.workers; default one per CPU, 1 = single process)")
    p.add_argument("-o", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help="override a setting, e.g. -o cache.ttl=60 (see docs/configuration.md)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    from imapd.config import ConfigError, load_settings
    from imapd.server.main import run_server

    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"server.data_dir={_toml_str(args.data_dir)}")
    if args.listen:
        overrides.append("server.listen=[" + ",".join(_toml_str(x) for x in args.listen) + "]")
    if args.tls_listen:
        overrides.append("server.tls_listen=[" + ",".join(_toml_str(x) for x in args.tls_listen) + "]")
    if args.workers is not None:
        overrides.append(f"server.workers={args.workers}")
    try:
        settings = load_settings(args.config, overrides)
    except ConfigError as exc:
        print(f"imapd: {exc}", file=sys.stderr)
        return 78  # EX_CONFIG
    _setup_logging(args.verbose)
    # `imapd reload` re-reads the same file with the same overrides.
    return run_server(settings, reload_settings=lambda: load_settings(args.config, overrides))


def _add_reload(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("reload", help="replace a running server's workers without dropping a connection")
    p.add_argument("--data-dir", metavar="DIR", default="./imapd-data")
    p.set_defaults(func=_run_reload)


def _run_reload(args: argparse.Namespace) -> int:
    """SIGUSR2 to the supervisor named in DIR/run/imapd.pid (what a systemd ExecReload= can run)."""
    import os
    import signal
    from pathlib import Path

    from imapd.server.supervisor import pid_file

    path = pid_file(Path(args.data_dir))
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, signal.SIGUSR2)
    except (OSError, ValueError) as exc:
        print(f"imapd: no running multi-worker server for {args.data_dir} ({path}: {exc})", file=sys.stderr)
        return 69
    print(f"reload requested (supervisor pid {pid}); its log says when the new workers serve")
    return 0


def _add_worker(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("_worker")  # started by the supervisor only; not listed in the help
    p.set_defaults(func=lambda _args: _run_worker())


def _run_worker() -> int:
    from imapd.server.worker import run_worker

    return run_worker()


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo", help="seed demo users and mail, then serve them (what `make demo` runs)",
        description="Seed demo users and mail, then serve IMAP, IMAPS and the webmail on 127.0.0.1. "
                    "Every port is checked before anything starts; `make demo` passes IMAP_PORT, IMAPS_PORT, "
                    "WEB_PORT and METRICS_PORT as the --*-port flags.")
    p.add_argument("--data-dir", metavar="DIR", default="demo-data")
    for role, default, what in (("imap", 1143, "IMAP (STARTTLS)"), ("imaps", 1993, "IMAPS (implicit TLS)"),
                                ("web", 8080, "the webmail"), ("managesieve", 4190, "ManageSieve (Sieve filters)"),
                                ("metrics", None, "Prometheus metrics")):
        group = p.add_mutually_exclusive_group()
        group.add_argument(f"--{role}-port", type=int, metavar="N",
                           help=f"{what} on 127.0.0.1:N" + (f" (default {default})" if default else " (default off)"))
        listen = {"imap": "--listen", "imaps": "--tls-listen"}.get(role, f"--{role}-listen")
        group.add_argument(listen, metavar="HOST:PORT", dest=f"{role}_listen",
                           help=f"{what} on another address")
    p.add_argument("--seed-only", action="store_true", help="seed and exit without serving")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from imapd.demo import endpoint, run_demo

    _setup_logging(False)
    try:
        imap = endpoint("IMAP", args.imap_listen, args.imap_port, 1143, "--imap-port", "IMAP_PORT", "--listen")
        imaps = endpoint("IMAPS", args.imaps_listen, args.imaps_port, 1993, "--imaps-port", "IMAPS_PORT",
                         "--tls-listen")
        web = endpoint("webmail", args.web_listen, args.web_port, 8080, "--web-port", "WEB_PORT", "--web-listen")
        sieve = endpoint("ManageSieve", args.managesieve_listen, args.managesieve_port, 4190, "--managesieve-port",
                         "MANAGESIEVE_PORT", "--managesieve-listen")
        metrics = None
        if args.metrics_port is not None or args.metrics_listen is not None:
            metrics = endpoint("metrics", args.metrics_listen, args.metrics_port, 9143, "--metrics-port",
                               "METRICS_PORT", "--metrics-listen")
    except ValueError as exc:
        print(f"imapd demo: {exc}", file=sys.stderr)
        return 64
    return run_demo(args.data_dir, imap, imaps, web, metrics, serve=not args.seed_only, managesieve=sieve)


def _add_xstate_keys(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("xstate-keys", help="rotate or retire the X-STATE signing keys")
    p.add_argument("action", choices=["list", "rotate", "retire"])
    p.add_argument("--data-dir", metavar="DIR", default="./imapd-data")
    p.add_argument("--key-file", metavar="FILE", help="default: DIR/xstate.keys (setting xstate.key_file)")
    p.add_argument("--count", type=int, default=1, help="retire: how many of the oldest keys to drop")
    p.set_defaults(func=_run_xstate_keys)


def _run_xstate_keys(args: argparse.Namespace) -> int:
    """Keys live in one file, newest first; running servers pick up changes on SIGHUP."""
    import hashlib
    from pathlib import Path

    from statecodec import KeyRing

    path = Path(args.key_file) if args.key_file else Path(args.data_dir) / "xstate.keys"
    ring = KeyRing.load_or_create(path)
    if args.action == "rotate":
        ring = ring.rotate()
        ring.save(path)
    elif args.action == "retire":
        if args.count >= len(ring):
            print(f"imapd: {path} has {len(ring)} key(s); the signing key cannot be retired", file=sys.stderr)
            return 65
        ring = ring.retire(args.count)
        ring.save(path)
    for i, key in enumerate(ring.keys):
        role = "signs and verifies" if i == 0 else "verifies"
        print(f"{hashlib.sha256(key).hexdigest()[:16]}  {role}")
    if args.action != "list":
        print(f"updated {path}; send SIGHUP to running servers (or restart them)")
    return 0


def _add_stats(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("stats", help="print a running server's metrics (needs metrics.listen)")
    p.add_argument("--metrics", metavar="HOST:PORT", default="127.0.0.1:9143",
                   help="the server's metrics.listen address (default 127.0.0.1:9143)")
    p.add_argument("--raw", action="store_true", help="Prometheus text as served")
    p.add_argument("--users", metavar="DATA_DIR", help="instead: which worker serves which user's sessions")
    p.set_defaults(func=_run_stats)


def _run_stats(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    if args.users:
        return _print_users(args.users)
    url = f"http://{args.metrics}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        print(f"imapd: cannot read {url}: {exc} (is the server running with -o metrics.listen={args.metrics}?)",
              file=sys.stderr)
        return 69
    if args.raw:
        print(text, end="")
        return 0
    for line in text.splitlines():
        if line.startswith("#") or "_bucket{" in line:
            continue
        name, _, value = line.rpartition(" ")
        print(f"{name:60} {value}")
    return 0


def _print_users(data_dir: str) -> int:
    """Each worker writes ``DIR/run/users-g<generation>-w<slot>.users`` every second."""
    import json
    from pathlib import Path

    from imapd.rendezvous import read_generation

    run_dir = Path(data_dir) / "run"
    gen = read_generation(run_dir)
    if gen is None:
        print(f"imapd: no multi-worker server runs on {data_dir}", file=sys.stderr)
        return 69
    print(f"generation {gen.generation}, {gen.workers} workers")
    for slot in range(gen.workers):
        try:
            users = json.loads((run_dir / f"users-g{gen.generation}-w{slot}.users").read_text())
        except (OSError, ValueError):
            users = {}
        listed = ", ".join(f"{u} ({n})" for u, n in sorted(users.items())) or "-"
        print(f"worker {slot}: {len(users)} user(s), {sum(users.values())} session(s): {listed}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imapd", description="IMAP server for webmail, over Maildir")
    parser.add_argument("--version", action="version", version=f"imapd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_serve(sub)
    _add_demo(sub)
    _add_xstate_keys(sub)
    _add_stats(sub)
    _add_reload(sub)
    _add_worker(sub)
    from imapd.cluster.kick import register_cli as register_kick
    from imapd.delivery.command import register_cli as register_deliver
    from imapd.proxy.cli import register_cli as register_proxy
    from imapd.store.admin import register_cli

    register_cli(sub)
    register_deliver(sub)
    register_kick(sub)
    register_proxy(sub)
    return parser


def _announce_default_serve() -> None:
    import os

    from imapd.config import Settings

    server = Settings().server
    print(f"imapd: no command given, so serving {server.data_dir} ({os.path.abspath(server.data_dir)}) on "
          f"{', '.join(server.listen)} as `imapd serve` does; stop it with Ctrl-C (`imapd --help` lists the commands)",
          file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        if args.command is None:
            # `imapd` with no arguments serves ./imapd-data on 127.0.0.1:1143, as documented; say so first,
            # so someone who typed `imapd` to see what it is knows what it is doing and how to stop it.
            args = parser.parse_args(["serve", *(argv or [])])
            _announce_default_serve()
        else:
            parser.print_help()
            return 64
    result: int = args.func(args)
    return result
