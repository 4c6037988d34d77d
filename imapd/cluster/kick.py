"""``imapd kick USER``: close the user's sessions on every node and proxy of the cluster.

It publishes a ``kick`` change on ``{prefix}changes:{user}``; each backend answers its sessions of the
user with ``* BYE`` and each proxy closes the user's client connections (hibernated ones included).
"""

from __future__ import annotations

import argparse
import socket
import sys

from imapd.cluster.keys import ChangeMessage, ClusterKeys, encode_change

__all__ = ["cmd_kick", "register_cli"]


def cmd_kick(args: argparse.Namespace) -> int:
    import redis
    from redis.exceptions import RedisError

    from imapd.config import ConfigError, load_settings

    try:
        settings = load_settings(args.config, args.overrides)
    except ConfigError as exc:
        print(f"imapd: {exc}", file=sys.stderr)
        return 78
    cluster = settings.cluster
    if not cluster.redis_url:
        print("imapd: kick needs cluster.redis_url (a single node: restart it, or change the password)",
              file=sys.stderr)
        return 78
    message = ChangeMessage(node=f"kick@{socket.gethostname()}", user=args.user, kind="kick")
    try:
        client = redis.Redis.from_url(cluster.redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
        try:
            receivers = int(client.publish(ClusterKeys(cluster.key_prefix).changes(args.user),
                                           encode_change(message)))
        finally:
            client.close()
    except (RedisError, OSError) as exc:
        print(f"imapd: cannot reach {cluster.redis_url}: {exc}", file=sys.stderr)
        return 69  # EX_UNAVAILABLE
    print(f"kicked {args.user}: told {receivers} node(s) and proxies")
    return 0


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from imapd.store.admin import settings_options

    p = subparsers.add_parser("kick", parents=[settings_options()],
                              help="close a user's sessions on every node of the cluster (cluster.redis_url)")
    p.add_argument("user")
    p.set_defaults(func=cmd_kick)
