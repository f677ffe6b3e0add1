"""Properties: the one table of names, types, defaults and descriptions.

PURE: the YAML boundary (reading a props file) is ``propsfile``; this module only
validates the mappings it is given.

Like OMNIbus probes, every setting is a CamelCase property. Precedence: built-in
default < props file (``--props FILE``) < command line (``--beatinterval 3``). A props
file is a YAML mapping ``Name: value``; OMNIbus-style ``Name : 'value'`` lines with
``#`` comments are YAML too, and ``--dumpprops`` prints a file that loads back to the
same values.

Secrets (``SECRET_NAMES``) never leave this module in clear unless asked for: the
dataclass ``repr`` leaves them out, ``dumpprops`` prints them as ``'<redacted>'`` (a value
that loads back as "not set here", so the secret stays the one of the original source),
the rules read ``'<redacted>'``, and error messages never quote them.
"""

from __future__ import annotations

import difflib
import json
import math
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final, Literal

from probepair.config.feedspec import FEED_KEYS, SNMP_PORT, FeedSpec, check_feeds, convert_feeds
from probepair.config.redact import has_credentials, redact_credentials
from probepair.errors import ConfigError

PropType = Literal["STRING", "INTEGER", "FLOAT", "BOOLEAN", "LIST"]


Value = str | int | float | bool | tuple[FeedSpec, ...]


def _shipped_rules() -> str:
    """rules/syslog.rules of a source checkout, else of an installed wheel (data-files)."""
    checkout = Path(__file__).resolve().parents[2] / "rules" / "syslog.rules"
    installed = Path(sys.prefix) / "share" / "probepair" / "rules" / "syslog.rules"
    return str(installed if not checkout.exists() and installed.exists() else checkout)


SHIPPED_RULES: Final = _shipped_rules()
MODES: Final = ("master", "slave", "standard")
FEED_TYPES: Final = ("udp", "tcp", "file", "stdin", "snmp")
SNMP_PROTOCOLS: Final = ("UDP", "TCP", "ALL", "ANY")  # mttrapd's Protocol; ANY = ALL
FEED_FORMATS: Final = ("syslog", "json", "line", "omnibus")
SINK_TYPES: Final = ("file", "tcp", "http", "sqlite", "stdout", "postgres", "alertmanager", "nats")
FAILBACKS: Final = ("handshake", "immediate", "manual")
RULES_SYNCS: Final = ("off", "pull")
METRICS_AUTHS: Final = ("none", "bearer")
# ms the udp feed gathers datagrams (issue 13). Measured with bench/cost.py: a wake-up
# of the probe costs ~165 µs of CPU whatever it carries (trio's run loop alone ~90 µs on
# the 2-core VM), an event ~17 µs more; rsyslog spends 25-35 µs an event at 1k/s. So
# staying within 1.5x of rsyslog at 1k events/s takes >= ~7 events a batch: 5 ms gave
# 1.4-2.3x, 10 ms 1.1-1.55x. bench/latency.py: p99 stays within this + 5 ms.
BATCH_LATENCY_MS: Final = 10.0
LEVELS: Final = ("debug", "info", "warn", "error", "fatal")  # OMNIbus MessageLevel values


def _prop(
    default: Value,
    doc: str,
    *,
    choices: tuple[str, ...] = (),
    low: float | None = None,
    high: float | None = None,
    positive: bool = False,
    secret: bool = False,
) -> Any:  # a dataclass field() standing in for the field's value, as dataclasses do
    meta = {
        "doc": doc,
        "choices": choices,
        "low": low,
        "high": high,
        "positive": positive,
        "secret": secret,
    }
    return field(default=default, metadata=meta, repr=not secret)


@dataclass(frozen=True, slots=True)
class Props:
    """Every property with its value. Field order is the ``--dumpprops`` order."""

    Mode: str = _prop(
        "standard", "failover role: master, slave or standard (no failover)", choices=MODES
    )
    PeerHost: str = _prop("", "host of the peer probe that receives our heartbeats")
    PeerPort: int = _prop(0, "UDP port of the peer probe's heartbeat listener", low=0, high=65535)
    ListenAddress: str = _prop("0.0.0.0", "address our heartbeat listener binds")
    ListenPort: int = _prop(
        0, "UDP port of our heartbeat listener; 0 = same as PeerPort", low=0, high=65535
    )
    BeatInterval: float = _prop(2.0, "seconds between heartbeats sent by the master", positive=True)
    BeatThreshold: float = _prop(1.0, "seconds of grace after a missed heartbeat", low=0)
    HeartbeatTimeout: float = _prop(1.0, "further seconds before the slave takes over", low=0)
    Failback: str = _prop(
        "handshake", "when the master returns: handshake, immediate or manual", choices=FAILBACKS
    )
    SharedSecret: str = _prop(
        "", "secret that signs heartbeats and acks (HMAC-SHA256)", secret=True
    )
    SharedSecretFile: str = _prop(
        "", "file holding the SharedSecret (mode 0600 or stricter; 'probepair secret' makes one)"
    )
    AllowInsecureHeartbeats: bool = _prop(
        False, "start Mode master/slave with an empty, short or placeholder secret (unsafe)"
    )
    AckInterval: float = _prop(0.1, "seconds between delivery acks sent to the peer", positive=True)
    BufferSize: int = _prop(1_000_000, "events a standby slave holds at most", low=1)
    BufferBytes: int = _prop(
        256 * 2**20, "bytes a standby slave's buffer holds at most (alerts + 160 each)", low=65536
    )
    BufferRetention: float = _prop(
        60.0, "seconds a standby slave holds an un-acked event", positive=True
    )
    GapTimeout: float = _prop(
        1.0,
        "seconds by which a key the active peer delivered must follow a held event before "
        "the standby counts the event as missed by the peer and delivers it",
        positive=True,
    )
    SinkFailover: float = _prop(
        30.0,
        "seconds an active probe's sink may fail before it hands over to a peer whose sink "
        "works; 0 = never",
        low=0,
    )
    FailbackWindow: str = _prop(
        "",
        "cron expression (local time) for the start of each window in which a returning "
        "master takes the role back; '' = any time",
    )
    FailbackWindowLength: float = _prop(
        3600.0, "seconds each FailbackWindow stays open", positive=True
    )
    FailbackDelay: float = _prop(
        0.0, "seconds a returning master must beat without a silence before failback", low=0
    )
    RulesSync: str = _prop(
        "off",
        "off, or pull: a standby slave fetches the master's rules tree when the digests differ",
        choices=RULES_SYNCS,
    )
    PeerMetricsPort: int = _prop(
        0,
        "port of the peer's metrics endpoint for /rules (0 = same as MetricsPort), and "
        "for /status until the peer's heartbeats say where it is (if set)",
        low=0,
        high=65535,
    )
    KeyWindow: float = _prop(
        5.0, "seconds within which identical payloads are numbered", positive=True
    )
    Name: str = _prop(platform.node(), "name of this probe in metrics, status and self-events")
    RulesFile: str = _prop(SHIPPED_RULES, "rules file run on every event; '' = tokens as fields")
    Manager: str = _prop("probepair", "value of %Manager for the rules (OMNIbus: the probe name)")
    # 20 ms: ~8x the worst the shipped rules cost on a 64 KiB line (2.3 ms, bench/rules.py)
    # and ~10,000x a usual event, yet short enough that a pair's heartbeats (default
    # BeatInterval 2 s) never wait for one event; a pair clamps it to BeatInterval / 8.
    RulesTimeBudget: float = _prop(
        20.0,
        "milliseconds of rules time one event may use; past it the event is delivered with "
        "the fields set so far and @RulesOverBudget; 0 = no budget (a pair: BeatInterval/8)",
        low=0,
    )
    Feeds: tuple[FeedSpec, ...] = _prop(
        (),
        "several feeds in one probe: a list of definitions, each a mapping of "
        + ", ".join(FEED_KEYS)
        + " (left out: the default); [] = the one feed the Feed* properties below describe",
    )
    FeedType: str = _prop(
        "udp", "input feed: udp, tcp, file, stdin or snmp (traps)", choices=FEED_TYPES
    )
    FeedAddress: str = _prop("127.0.0.1", "address the udp/tcp feed listens on")
    FeedPort: int = _prop(
        5514,
        "port the udp/tcp/snmp feed listens on (snmp: 162 unless set); 0 = any free port",
        low=0,
        high=65535,
    )
    FeedRcvBuf: int = _prop(
        0,
        "bytes of kernel receive buffer for the udp feed; 0 = the largest the kernel allows",
        low=0,
    )
    # 256 clients (a site's syslog forwarders) fit with the probe's own descriptors in
    # systemd's default soft limit of 1024 (feeds/tcp.py FD_RESERVE); 300 s frees a slot
    # held by a silent or vanished client while a quiet forwarder just reconnects.
    FeedMaxConnections: int = _prop(
        256, "tcp feed: connections open at once; past it new ones are refused", low=1
    )
    FeedIdleTimeout: float = _prop(
        300.0, "tcp feed: seconds a client may send nothing before it is closed; 0 = never", low=0
    )
    # -- TLS on the tcp feed (RFC 5425), issue 23; feeds/tls.py --
    FeedTLSCert: str = _prop(
        "", "tcp feed: PEM certificate (chain) of the feed; set = TLS (RFC 5425) on FeedPort"
    )
    FeedTLSKey: str = _prop(
        "", "tcp feed: PEM private key of FeedTLSCert (mode 0640 or stricter); '' = in FeedTLSCert"
    )
    FeedTLSCA: str = _prop(
        "", "tcp feed: PEM CA bundle; set = clients must present a certificate it signed"
    )
    # -- the snmp feed (mttrapd's names where it has one), issue 22 --
    Protocol: str = _prop(
        "UDP", "snmp: transport of traps: UDP, TCP (RFC 3430) or ALL (both)", choices=SNMP_PROTOCOLS
    )
    SnmpUsersFile: str = _prop(
        "", "snmp: SNMPv3 users, createUser [-e ENGINEID] name AUTH pass [PRIV [pass]] lines"
    )
    SnmpEngineID: str = _prop(
        "", "snmp: our SNMPv3 engine ID in hex (informs); '' = derived from Name (stable)"
    )
    NoNameResolution: bool = _prop(
        False, "snmp: $Node and $PeerAddress are addresses (no reverse DNS lookups)"
    )
    ActiveHostnameDuration: float = _prop(
        60.0, "snmp: minutes a resolved host name is cached", positive=True
    )
    TrapStat: int = _prop(
        0, "snmp: 1 enables the flood-control rules (read by rules as %TrapStat)", low=0, high=1
    )
    FeedFile: str = _prop("", "file followed like tail -F by the file feed")
    FeedFormat: str = _prop(
        "syslog",
        "record format: syslog, json, line or omnibus (the elements of IBM's syslog probes)",
        choices=FEED_FORMATS,
    )
    # FeedFormat omnibus: the syslog probes' properties (pipeline/omnibus.py), their defaults.
    OffsetZero: int = _prop(
        0, "omnibus: characters after the <PRI> skipped before the time stamp", low=0
    )
    OffsetOne: int = _prop(20, "omnibus: $Token elements made at most", low=0, high=1024)
    OffsetTwo: int = _prop(6, "omnibus: the token (from 1) where $Details begins", low=1, high=1024)
    BreakCharacters: str = _prop(",=", "omnibus: characters that end a token, as white space does")
    TimeFormat: str = _prop(
        "%b %d %H:%M:%S", "omnibus: strptime format of the time stamp read into $Time"
    )
    QueueSize: int = _prop(
        256, "batches held between the feed and the rules (back-pressure)", low=1
    )
    QueueBytes: int = _prop(
        32 * 2**20, "bytes held between two stages at most, besides QueueSize", low=65536
    )
    BatchLatency: float = _prop(
        BATCH_LATENCY_MS,
        "milliseconds the udp feed gathers datagrams before handing a batch on; 0 = at once",
        low=0,
        high=1000,
    )
    SinkType: str = _prop(
        "file",
        "event sink: file, tcp, http, sqlite, stdout, postgres, alertmanager or nats",
        choices=SINK_TYPES,
    )
    SinkFile: str = _prop("alerts.jsonl", "JSON-lines file written by the file sink")
    SinkAddress: str = _prop("", "host:port of the tcp sink")
    SinkUrl: str = _prop(
        "",
        "http: URL POSTed to; postgres: libpq URI; alertmanager: http://host:9093; "
        "nats: nats://host:port,...",
    )
    SinkDatabase: str = _prop("", "SQLite database of the sqlite sink")
    # -- the nats (JetStream) sink, issue 16 --
    SinkSubject: str = _prop(
        "probepair.alerts", "nats: subject alerts are published to (+ '.<Table>' of a target)"
    )
    SinkStream: str = _prop("PROBEPAIR", "nats: JetStream stream; created if missing")
    SinkReplicas: int = _prop(1, "nats: replicas of a stream the sink creates", low=1, high=5)
    SinkDedupWindow: float = _prop(
        600.0, "nats: seconds JetStream remembers a Nats-Msg-Id (created stream)", positive=True
    )
    SinkCredentialsFile: str = _prop("", "nats: .creds file (JWT and NKey seed) to authenticate")
    SinkPasswordFile: str = _prop(
        "", "file holding the postgres sink's password (else SinkUrl's or PGPASSFILE)"
    )
    AlertmanagerResolve: float = _prop(
        300.0, "seconds an alertmanager alert stays firing unless repeated", positive=True
    )
    StoreAndForward: bool = _prop(True, "spool alerts to SAFFileName while the sink is down")
    SAFFileName: str = _prop(
        "", "store-and-forward spool file; '' = <Name>.saf in the state directory"
    )
    MaxSAFFileSize: int = _prop(
        1 << 30, "bytes the spool holds at most; past it the oldest alerts go; 0 = no cap", low=0
    )
    SinkSync: str = _prop(
        "batch",
        "when a delivered alert is durable enough to ack to the peer: batch (synced before "
        "each ack), interval (every SinkSyncInterval) or off (at write)",
        choices=("batch", "interval", "off"),
    )
    SinkSyncInterval: float = _prop(
        1.0,
        "seconds between syncs of the file and sqlite sinks under SinkSync interval",
        positive=True,
    )
    MetricsAddress: str = _prop("127.0.0.1", "address of the /metrics endpoint")
    MetricsPort: int = _prop(0, "port of the /metrics endpoint; 0 = off", low=0, high=65535)
    MetricsAuth: str = _prop(
        "none",
        "none, or bearer: /metrics answers only 'Authorization: Bearer <MetricsTokenFile's "
        "token>' (/status and /rules always need a request signed with SharedSecret)",
        choices=METRICS_AUTHS,
    )
    MetricsTokenFile: str = _prop(
        "", "file holding the bearer token of MetricsAuth bearer (mode 0600 or stricter)"
    )
    ControlSocket: str = _prop(
        "",
        "Unix socket for status, takeover and release; '' = <Name>.sock in the runtime directory",
    )
    NotifyCommand: str = _prop("", "command run on role changes with role and reason")
    MessageLevel: str = _prop(
        "warn", "log level: debug, info, warn, error or fatal", choices=LEVELS
    )
    MessageLog: str = _prop("", "file the log is written to besides stderr")

    @property
    def feeds(self) -> tuple[Props, ...]:
        """One Props per feed, in ``Feeds`` order: these props with that feed's settings
        (and ``Feeds`` empty); the one-feed shorthand gives ``(self,)``."""
        if not self.Feeds:
            return (self,)
        return tuple(
            replace(self, Feeds=(), **{k: getattr(spec, k) for k in FEED_KEYS})
            for spec in self.Feeds
        )

    @property
    def heartbeat_port(self) -> int:
        """The UDP port our heartbeat listener binds (ListenPort, or PeerPort if 0)."""
        return self.ListenPort or self.PeerPort

    @property
    def takeover_bound(self) -> float:
        """Seconds of silence after which a slave takes over."""
        return self.BeatInterval + self.BeatThreshold + self.HeartbeatTimeout


_FIELDS: Final = {f.name: f for f in fields(Props)}
NAMES: Final = tuple(_FIELDS)
_BY_LOWER: Final = {name.lower(): name for name in NAMES}
SECRET_NAMES: Final = tuple(name for name in NAMES if _FIELDS[name].metadata["secret"])
REDACTED: Final = "<redacted>"  # a secret's value in --dumpprops and the rules' %Property
# Values that may embed a password or token (a URL's userinfo, ?password=, a DSN): dumped
# as '<redacted>' (loads back as "not set here") with the URL minus its credentials in the
# line's comment; the rules read the URL minus its credentials.
CREDENTIAL_NAMES: Final = ("SinkUrl",)
_HIDDEN_WHEN_REDACTED: Final = frozenset(SECRET_NAMES + CREDENTIAL_NAMES)
_TRUE: Final = ("true", "yes", "on", "1")
_FALSE: Final = ("false", "no", "off", "0")


def prop_type(name: str) -> PropType:
    """The OMNIbus type name of property ``name`` (``LIST``: ``Feeds``)."""
    default = _FIELDS[name].default
    if isinstance(default, tuple):
        return "LIST"
    if isinstance(default, bool):
        return "BOOLEAN"
    if isinstance(default, int):
        return "INTEGER"
    if isinstance(default, float):
        return "FLOAT"
    return "STRING"


def describe(name: str) -> str:
    """The property's one-line description."""
    return str(_FIELDS[name].metadata["doc"])


def _convert(name: str, raw: object, source: str) -> Value:
    """``raw`` as the property's type, range-checked; ConfigError naming source and name."""
    kind = prop_type(name)
    meta = _FIELDS[name].metadata
    value: Value
    if kind == "LIST":
        return convert_feeds(raw, source, _convert, {k: _FIELDS[k].default for k in FEED_KEYS})
    if kind == "BOOLEAN":
        if isinstance(raw, bool):
            value = raw
        elif isinstance(raw, int | str) and str(raw).strip().lower() in _TRUE + _FALSE:
            value = str(raw).strip().lower() in _TRUE
        else:
            raise ConfigError(source, name, f"expected true or false, got {raw!r}")
        return value
    if kind in ("INTEGER", "FLOAT"):
        what = "an integer" if kind == "INTEGER" else "a number"
        if meta["positive"]:
            what = "a positive number of seconds" if kind == "FLOAT" else "a positive integer"
        try:
            if isinstance(raw, bool):
                raise ValueError
            if kind == "INTEGER":
                if isinstance(raw, float) and not raw.is_integer():
                    raise ValueError
                value = int(raw) if isinstance(raw, int | float) else int(str(raw).strip())
            else:
                value = float(raw) if isinstance(raw, int | float) else float(str(raw).strip())
                if not math.isfinite(value):
                    raise ValueError
        except ValueError:
            raise ConfigError(source, name, f"expected {what}, got {raw!r}") from None
        low, high = meta["low"], meta["high"]
        if meta["positive"] and value <= 0:
            raise ConfigError(source, name, f"expected {what}, got {raw!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            span = f"between {low:g} and {high:g}" if high is not None else f">= {low:g}"
            raise ConfigError(source, name, f"expected {what} {span}, got {raw!r}")
        return value
    if isinstance(raw, bool | int | float):
        raw = str(raw).lower() if isinstance(raw, bool) else str(raw)
    if not isinstance(raw, str):
        got = f"a {type(raw).__name__} (not shown: a secret)" if meta["secret"] else repr(raw)
        raise ConfigError(source, name, f"expected a string, got {got}")
    choices = meta["choices"]
    if choices and raw not in choices:
        raise ConfigError(source, name, f"expected one of {', '.join(choices)}, got {raw!r}")
    return raw


def _unknown(name: str, source: str) -> ConfigError:
    close = _BY_LOWER.get(str(name).lower()) or next(
        iter(difflib.get_close_matches(str(name), NAMES, n=1)), None
    )
    hint = f" (did you mean {close!r}?)" if close else ""
    return ConfigError(source, str(name), f"unknown property{hint}")


def load(sources: Sequence[tuple[str, Mapping[str, object]]] = ()) -> Props:
    """The built-in defaults overridden by each ``(source, mapping)`` in turn.

    Args:
        sources: e.g. ``[("conf/master.props", file_values), ("command line", cli)]``;
            later sources win.

    Raises:
        ConfigError: naming the source (file or "command line"), the property and what
            was expected.
    """
    values: dict[str, Value] = {}
    origin: dict[str, str] = {}
    for source, mapping in sources:
        for name, raw in mapping.items():
            if name not in _FIELDS:
                raise _unknown(name, source)
            if name in _HIDDEN_WHEN_REDACTED and raw == REDACTED:
                continue  # a --dumpprops output: the secret stays the earlier source's
            values[name] = _convert(name, raw, source)
            origin[name] = source
    if values.get("FeedType") == "snmp" and "FeedPort" not in values:
        values["FeedPort"] = SNMP_PORT
    if values.get("Feeds"):
        both = [name for name in FEED_KEYS if name in values]
        if both:
            raise ConfigError(
                origin[both[0]], both[0],
                "set in each Feeds definition instead: with Feeds, the one-feed properties "
                f"are not used (Feeds from {origin['Feeds']})",
            )
    props = Props(**values)  # type: ignore[arg-type]
    feeds = [FeedSpec(**{k: getattr(f, k) for k in FEED_KEYS}) for f in props.feeds]
    check_feeds(feeds, bool(props.Feeds), origin)
    _check_failback_window(props, origin)
    if props.SnmpEngineID:
        hexid = props.SnmpEngineID.removeprefix("0x").removeprefix("0X")
        try:
            octets = len(bytes.fromhex(hexid))
        except ValueError:
            octets = 0
        if not 5 <= octets <= 32:  # RFC 3411 §5 SnmpEngineID
            raise ConfigError(
                origin["SnmpEngineID"],
                "SnmpEngineID",
                f"expected 5 to 32 octets in hex, got {props.SnmpEngineID!r}",
            )
    if props.MetricsAuth == "bearer" and not props.MetricsTokenFile:
        raise ConfigError(
            origin.get("MetricsAuth", "defaults"),
            "MetricsAuth",
            "bearer needs MetricsTokenFile: the file holding the token Prometheus sends",
        )
    if props.Mode != "standard":
        for name, what in (("PeerHost", "host"), ("PeerPort", "port")):
            if not getattr(props, name):
                where = origin.get(name, origin.get("Mode", "defaults"))
                raise ConfigError(where, name, f"Mode {props.Mode!r} needs the peer's {what}")
    return props


def _check_failback_window(props: Props, origin: dict[str, str]) -> None:
    """FailbackWindow must be a cron expression; window and delay need a handshake."""
    if props.FailbackWindow:
        from probepair.config.cron import FailbackWindow, WindowError

        try:
            FailbackWindow(props.FailbackWindow, props.FailbackWindowLength)
        except WindowError as exc:
            raise ConfigError(origin["FailbackWindow"], "FailbackWindow", str(exc)) from None
    if props.Failback == "immediate":
        for name in ("FailbackWindow", "FailbackDelay"):
            if getattr(props, name):
                raise ConfigError(
                    origin[name],
                    name,
                    "needs Failback handshake or manual: with immediate a returning master "
                    "is active at once",
                )


def _yaml_char(c: str) -> str:
    if c in '"\\':
        return "\\" + c
    if c.isprintable():
        return c
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def render_value(value: Value) -> str:
    """A value as it appears in a props file (``Feeds``: a JSON list, which is YAML)."""
    if isinstance(value, tuple):
        return json.dumps([{k: getattr(spec, k) for k in FEED_KEYS} for spec in value])
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if not value.isprintable():
        # Single-quoted YAML folds line breaks and cannot escape control characters:
        # double-quote with YAML's \x, \u and \U escapes (one per code point).
        return '"' + "".join(_yaml_char(c) for c in value) + '"'
    return "'" + value.replace("'", "''") + "'"


def origins(sources: Sequence[tuple[str, Mapping[str, object]]]) -> dict[str, str]:
    """Which source set each property ``load(sources)`` took from a source (not a default)."""
    found: dict[str, str] = {}
    for source, mapping in sources:
        for name, raw in mapping.items():
            if not (name in _HIDDEN_WHEN_REDACTED and raw == REDACTED):
                found[str(name)] = source
    return found


def _shown(name: str, value: Value, show_secrets: bool) -> Value:
    if show_secrets or not value:
        return value
    if name in SECRET_NAMES:
        return REDACTED
    if name in CREDENTIAL_NAMES and has_credentials(str(value)):
        return REDACTED
    return value


def dumpprops(props: Props, header: Iterable[str] = (), *, show_secrets: bool = False) -> str:
    """Every property, one ``Name: value # TYPE (description)`` line, after a header.

    The result is itself a valid props file. It loads back to ``props`` when
    ``show_secrets`` is true; otherwise a set secret is printed as ``'<redacted>'``,
    which loads back as "not set in this file".
    """
    lines = [f"# {h}" for h in header]
    for name in NAMES:
        raw = getattr(props, name)
        value = _shown(name, raw, show_secrets)
        note = describe(name)
        if name in CREDENTIAL_NAMES and value == REDACTED:
            note += f"; without its credentials: {redact_credentials(str(raw))}"
        line = f"{name}: {render_value(value)} # {prop_type(name)} ({note})"
        if props.Feeds and name in FEED_KEYS:
            line = f"# {line}; not used: Feeds sets it per feed"  # loads back as unset
        lines.append(line)
    return "\n".join(lines) + "\n"


def as_mapping(props: Props) -> dict[str, Value]:
    """The values by name (for the rules' ``%Property`` reads); secrets redacted, URLs
    without their credentials."""
    shown = {name: _shown(name, getattr(props, name), False) for name in NAMES}
    shown["Feeds"] = render_value(props.Feeds)  # the rules read values, not FeedSpecs
    for name in CREDENTIAL_NAMES:
        shown[name] = redact_credentials(str(getattr(props, name)))
    return shown
