"""Typed server settings: embedded defaults, an optional TOML file, then ``-o section.key=value`` overrides.

Every setting has a default so ``imapd serve`` runs with no file at all. Errors name the offending key.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["ConfigError", "Settings", "load_settings"]


class ConfigError(Exception):
    """A config file or override that cannot be used; the message names the key."""


def _check_networks(key: str, specs: list[str]) -> None:
    """Every entry of a list of trusted peers is an address or a CIDR network; the error names the key."""
    for net in specs:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ValueError(f"{key}: {net!r} is not an address or CIDR network") from None


class ServerSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    data_dir: str = "./imapd-data"
    listen: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.1:1143"])
    tls_listen: list[str] = msgspec.field(default_factory=list)
    greeting: str = "imapd ready"
    use_uvloop: bool = True
    shutdown_grace: float = 5.0
    # Worker processes; 0 = one per CPU. 1 = a single process (embedding, tests).
    workers: int = 0
    # Threads that run users' commands off the network loop (a user is on one lane at a time).
    max_lanes: int = 64
    # Lanes that users share once all of them are busy (a busy lane thread takes the next job without a
    # wake-up, which costs less CPU than a thread per job). Beyond them, lanes are used only while one of
    # these is blocked for longer than stuck_after seconds (its queued jobs then move to another lane).
    shared_lanes: int = 2
    stuck_after: float = 0.25
    # sys.setswitchinterval for the server's threads (seconds): how long a thread running Python keeps the
    # GIL while another (the network loop, another user's lane) waits for it. Lower: another user's
    # command waits less behind a long one; higher: less switching under load.
    gil_switch_interval: float = 0.001
    # A lane or the network loop that cannot run for longer than this is logged with the user and command.
    stall_warning: float = 0.1
    # RFC 9585 INPROGRESS: a long SEARCH/COPY/MOVE/EXPUNGE reports its progress this often (0: never).
    progress_interval: float = 1.0
    # Peers (CIDR) that MUST begin every connection with a PROXY v1/v2 header (HAProxy's send-proxy-v2,
    # imapd proxy): the address it names is the client's everywhere. Other peers' headers are not honoured.
    proxy_protocol_from: list[str] = msgspec.field(default_factory=list)
    # Seconds a trusted peer has to send its whole PROXY header before it is closed (the greeting waits).
    proxy_header_timeout: float = 5.0

    def __post_init__(self) -> None:
        _check_networks("server.proxy_protocol_from", self.proxy_protocol_from)
        if self.proxy_header_timeout <= 0:
            raise ValueError("server.proxy_header_timeout must be > 0")


class TLSSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    cert: str = ""
    key: str = ""
    # Plaintext LOGIN/AUTHENTICATE is refused on non-TLS connections except from loopback, unless this is set.
    allow_plaintext_auth: bool = False
    # Treat loopback clients as secure. Turn off behind a local proxy, where every client seems to be 127.0.0.1.
    trust_loopback: bool = True


class LimitSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    max_line: int = 65536
    max_literal: int = 64 * 1024 * 1024
    max_nesting: int = 64
    max_connections_per_user: int = 50
    max_connections_per_address: int = 500
    idle_timeout: float = 1800.0
    preauth_timeout: float = 60.0
    max_output_buffer: int = 4 * 1024 * 1024
    max_bad_commands: int = 20
    # Live RETURN (UPDATE) searches/sorts (RFC 5267 CONTEXT) per session; one more gets NOUPDATE (at least 1).
    max_contexts: int = 8
    # Before authentication: enough for LOGIN/AUTHENTICATE and X-STATE RESTORE (a token is at most 16 KiB).
    preauth_max_line: int = 20 * 1024
    preauth_max_literal: int = 8 * 1024
    preauth_max_buffer: int = 256 * 1024
    preauth_max_total_buffer: int = 32 * 1024 * 1024


class AuthSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    failure_delay: float = 1.0
    max_failures: int = 5
    max_user_failures: int = 10
    penalty_delay: float = 5.0
    failure_window: float = 300.0
    # Password hashes running at once (0: one per CPU), and how many more may wait before NO [UNAVAILABLE].
    max_concurrent_hashes: int = 0
    max_queued_hashes: int = 256
    # Peers (CIDR) whose ID ("x-originating-ip" ...) names the real client, like Dovecot's login_trusted_networks.
    trusted_networks: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        _check_networks("auth.trusted_networks", self.trusted_networks)


class CacheSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    ttl: float = 300.0
    max_bytes: int = 256 * 1024 * 1024


class MetricsSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    listen: str = ""


class XStateSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True
    max_age: float = 24 * 3600.0  # a refreshed token lives on; a stolen, unrefreshed one dies in a day
    clock_skew: float = 30.0
    authenticates: bool = True
    key_file: str = ""
    bind_address: bool = False  # a token restores only from the address that saved it


class StoreSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    expunge_history: int = 100_000
    fsync: bool = True
    # Watch the mail root with inotify for programs other than ours that write into the Maildir.
    watch: bool = True


class LMTPSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # "HOST:PORT" or a UNIX socket path (anything with a "/"); "" = no LMTP listener.
    listen: str = ""
    # Recipient domains that are ours: "alice@<one of these>" is looked up as "alice". Empty = any domain.
    domains: list[str] = msgspec.field(default_factory=list)
    # "user+detail@domain" files into the folder "detail" when it exists (Postfix's recipient_delimiter).
    recipient_delimiter: str = "+"
    save_to_detail_mailbox: bool = True
    # The name in the Received: header and the 220/LHLO replies; "" = the host's name.
    hostname: str = ""
    max_message_size: int = 64 * 1024 * 1024
    max_recipients: int = 1000
    timeout: float = 300.0
    # Over quota: 552 5.2.2 (the MTA bounces), or with this 452 4.2.2 (it retries); Dovecot's quota_full_tempfail.
    quota_full_tempfail: bool = False
    # Peers (CIDR) whose LMTP connections MUST begin with a PROXY header (HAProxy in front; Postfix sends none).
    proxy_protocol_from: list[str] = msgspec.field(default_factory=list)
    proxy_header_timeout: float = 5.0

    def __post_init__(self) -> None:
        if len(self.recipient_delimiter) > 1:
            raise ValueError("lmtp.recipient_delimiter: one character, or empty for none")
        _check_networks("lmtp.proxy_protocol_from", self.proxy_protocol_from)
        if self.proxy_header_timeout <= 0:
            raise ValueError("lmtp.proxy_header_timeout must be > 0")


class QuotaSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # RFC 9208 limits for users whose passwd entry sets none (quota_storage= / quota_messages=); 0 = none.
    storage: int = 0  # KiB
    messages: int = 0

    def __post_init__(self) -> None:
        if self.storage < 0 or self.messages < 0:
            raise ValueError("quota limits must be >= 0 (0 means unlimited)")


class MetadataSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # RFC 5464 annotations, per mailbox (and for the server): the largest value, and how many entries.
    max_value_size: int = 65536
    max_entries: int = 256
class SieveSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Run the user's active Sieve script when a message is delivered (``imapd deliver``, LMTP).
    enabled: bool = True
    # HOST:PORT of the SMTP server that carries redirects and vacation replies; "" = none (a redirect then
    # keeps the message, a vacation reply is not sent; both are logged).
    smtp_relay: str = ""
    smtp_timeout: float = 30.0
    max_script_size: int = 64 * 1024
    max_scripts: int = 20
    max_actions: int = 32
    max_redirects: int = 4
    # Upper bound of vacation :days (and of duplicate :seconds, in days).
    max_vacation_days: int = 30


class ManageSieveSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # HOST:PORT of the ManageSieve (RFC 5804) listener; "" = off. STARTTLS uses tls.cert/tls.key.
    listen: str = ""


class SearchSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # A full-text index per mailbox (imapd-fts/<id>.sqlite) answers SEARCH FROM/SUBJECT/HEADER/BODY/TEXT;
    # off, SEARCH scans the cached metadata and the message files (and no index is written or read).
    fts: bool = True


class ClusterSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # redis://HOST:PORT/DB of the coordinating Redis; "" = a single node: no Redis, nothing below applies.
    redis_url: str = ""
    # This backend's name in Redis; "" = the host name and the first server.listen port ("mx1:1143").
    node_id: str = ""
    # HOST:PORT at which proxies reach this backend's IMAP; "" = the first server.listen.
    advertise: str = ""
    # Prefix of every key and channel, so several clusters can share one Redis.
    key_prefix: str = "imapd:"
    # The node's liveness key lives this long after a renewal; a killed node's users are free after it.
    lease_ttl: float = 1.5
    # How often the liveness key is renewed (well under lease_ttl).
    heartbeat_interval: float = 0.4
    # A LOGIN for a user another live node owns waits this long for a hand-over before NO [UNAVAILABLE].
    login_wait: float = 3.0
    # After Redis lost its keys (a restart), no user is taken over for this long, so that owners
    # reconnecting after the outage re-assert theirs first; 0 = lease_ttl + reconnect_max.
    reassert_grace: float = 0.0
    # Reconnect backoff after Redis went away: from 0.05 s doubling up to this.
    reconnect_max: float = 1.0
    # Each Redis call on a command's path gives up after this (then the node acts as in an outage).
    timeout: float = 0.5
    # A user without a session here for this long is released (its owner record deleted).
    release_after: float = 300.0
    # Change messages waiting to be published; beyond this they are dropped (and counted).
    publish_queue: int = 10000
    # A delivery for a user another node serves is handed to that node's LMTP listener (its Sieve script
    # runs there); its answer is awaited this long, else the file alone is stored here.
    forward_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.redis_url and not 0 < self.heartbeat_interval < self.lease_ttl:
            raise ValueError("cluster.heartbeat_interval must be > 0 and below cluster.lease_ttl")

    @property
    def grace(self) -> float:
        return self.reassert_grace or (self.lease_ttl + self.reconnect_max)


class ProxySettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``imapd proxy``: client listeners in front of several backends (docs/cluster.md)."""

    # Plain listeners (STARTTLS when tls.cert is set) and implicit-TLS listeners, "HOST:PORT" each.
    listen: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.1:2143"])
    tls_listen: list[str] = msgspec.field(default_factory=list)
    # The backends, "NODE_ID=HOST:PORT" each; NODE_ID is the name Redis's registry and assignments use.
    backends: list[str] = msgspec.field(default_factory=list)
    # Balancers (CIDR) whose connections MUST start with a PROXY v1/v2 header naming the real client.
    proxy_protocol_from: list[str] = msgspec.field(default_factory=list)
    # How the backend learns the client's address: "proxy-protocol" (a v2 header) or "id" (ID x-originating-ip).
    forward_address: str = "proxy-protocol"
    # A session quiet this long (in IDLE, or between commands with nothing pending) leaves its backend; 0 = never.
    hibernate_after: float = 0.0
    # Seconds between health checks of each backend (connect and read the greeting).
    health_interval: float = 5.0
    # UNIX socket of `imapd proxy backends ...`; "" = <server.data_dir>/run/proxy-<first listen port>.sock.
    control: str = ""
    # RESTOREs refused with NO [UNAVAILABLE] (the old owner still holds the user's lease) are retried this often.
    restore_retries: int = 10
    restore_retry_delay: float = 0.3
    # Connected, greeted backend connections kept ready per backend, so a login skips the connect and the
    # greeting (0 = off). Only with forward_address = "id": a PROXY header must be a connection's first bytes.
    pool_size: int = 0
    # A pooled connection unused this long is replaced (below the backends' limits.preauth_timeout).
    pool_max_age: float = 30.0

    def __post_init__(self) -> None:
        if self.forward_address not in ("proxy-protocol", "id"):
            raise ValueError("proxy.forward_address: \"proxy-protocol\" or \"id\"")
        if self.pool_size < 0 or self.pool_max_age <= 0:
            raise ValueError("proxy.pool_size must be >= 0 and proxy.pool_max_age > 0")
        if self.pool_size and self.forward_address != "id":
            raise ValueError("proxy.pool_size needs proxy.forward_address = \"id\" (a PROXY header must be the "
                             "first bytes of a backend connection, so such connections cannot be opened ahead)")
        _check_networks("proxy.proxy_protocol_from", self.proxy_protocol_from)
        for spec in self.backends:
            node, sep, address = spec.partition("=")
            if not sep or not node or ":" not in address:
                raise ValueError(f"proxy.backends: {spec!r} is not NODE_ID=HOST:PORT")
        if self.hibernate_after < 0 or self.health_interval <= 0:
            raise ValueError("proxy.hibernate_after must be >= 0 and proxy.health_interval > 0")


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    tls: TLSSettings = msgspec.field(default_factory=TLSSettings)
    limits: LimitSettings = msgspec.field(default_factory=LimitSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    cache: CacheSettings = msgspec.field(default_factory=CacheSettings)
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)
    xstate: XStateSettings = msgspec.field(default_factory=XStateSettings)
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    quota: QuotaSettings = msgspec.field(default_factory=QuotaSettings)
    metadata: MetadataSettings = msgspec.field(default_factory=MetadataSettings)
    sieve: SieveSettings = msgspec.field(default_factory=SieveSettings)
    managesieve: ManageSieveSettings = msgspec.field(default_factory=ManageSieveSettings)
    lmtp: LMTPSettings = msgspec.field(default_factory=LMTPSettings)
    search: SearchSettings = msgspec.field(default_factory=SearchSettings)
    cluster: ClusterSettings = msgspec.field(default_factory=ClusterSettings)
    proxy: ProxySettings = msgspec.field(default_factory=ProxySettings)

    @property
    def data_path(self) -> Path:
        return Path(self.server.data_dir)

    @property
    def xstate_key_path(self) -> Path:
        return Path(self.xstate.key_file) if self.xstate.key_file else self.data_path / "xstate.keys"


def _parse_override_value(text: str) -> Any:
    """Read ``-o`` values as TOML scalars/arrays when they parse, else as plain strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _apply_override(tree: dict[str, Any], override: str) -> None:
    key, sep, value = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {override!r}: expected KEY=VALUE, e.g. -o limits.idle_timeout=600")
    parts = key.split(".")
    if len(parts) != 2:
        raise ConfigError(f"override {key!r}: expected SECTION.KEY, e.g. limits.idle_timeout")
    section, name = parts
    fields = {f.name: f for f in msgspec.structs.fields(Settings)}
    if section not in fields:
        raise ConfigError(f"unknown setting section {section!r} in override {key!r}")
    tree.setdefault(section, {})[name] = _parse_override_value(value.strip())


def load_settings(config_file: str | Path | None = None, overrides: list[str] | None = None) -> Settings:
    """Build settings from defaults, the TOML file, then overrides (last wins)."""
    tree: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        try:
            tree = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
    for override in overrides or []:
        _apply_override(tree, override)
    try:
        return msgspec.convert(tree, Settings, str_keys=True)
    except msgspec.ValidationError as exc:
        # msgspec says e.g. "Expected `int`, got `str` - at `$.limits.idle_timeout`"; turn the path into the key name.
        msg = str(exc).replace("$.", "")
        raise ConfigError(f"invalid setting: {msg}") from exc


def settings_reference() -> list[tuple[str, Any, str]]:
    """(key, default, type) for every setting: the source of docs/configuration.md's table."""
    rows: list[tuple[str, Any, str]] = []
    defaults = Settings()
    for section in msgspec.structs.fields(Settings):
        sub = getattr(defaults, section.name)
        for f in msgspec.structs.fields(type(sub)):
            rows.append((f"{section.name}.{f.name}", getattr(sub, f.name), str(f.type)))
    return rows
