"""Command line: ``probepair run | status | sync | demo | secret | rules ...``, ``--dumpprops``.

``main`` is the one place that turns ProbepairError into a message and an exit code:
0 success, 1 runtime failure, 2 bad configuration or usage. A user error never prints a
traceback; a bug always does.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence

from probepair._version import __version__
from probepair.config import props
from probepair.config.propsfile import read_props_file
from probepair.errors import ConfigError, ProbepairError, RulesError, leaf_exceptions

logger = logging.getLogger("probepair")

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
}


def _add_prop_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("properties (each overrides the props file)")
    group.add_argument(
        "--props",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="props file (YAML 'Name: value' or OMNIbus 'Name : value' lines)",
    )
    for name in props.NAMES:
        group.add_argument(
            f"--{name.lower()}",
            dest=f"prop_{name}",
            metavar=props.prop_type(name),
            default=argparse.SUPPRESS,
            help=props.describe(name).replace("%", "%%"),
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probepair",
        description="Two event probes on two hosts as a hot-standby failover pair.",
    )
    parser.add_argument("--version", action="version", version=f"probepair {__version__}")
    parser.add_argument(
        "--dumpprops",
        action="store_true",
        help="print every property with the value the probe would start with",
    )
    parser.add_argument(
        "--show-secrets",
        action="store_true",
        help="with --dumpprops: print secrets instead of '<redacted>'",
    )
    _add_prop_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the probe in the foreground")
    _add_prop_options(run)
    status = sub.add_parser("status", help="both probes of the pair side by side")
    _add_prop_options(status)
    status.add_argument("--json", action="store_true", help="print both status objects as JSON")
    status.add_argument(
        "--peer-url",
        metavar="URL",
        help="the peer's /status URL (default http://PeerHost:MetricsPort/status)",
    )
    for name, what in (
        ("takeover", "make this probe the active master (like %%Mode = 'master')"),
        ("release", "make this probe the standby slave (like %%Mode = 'slave')"),
    ):
        _add_prop_options(sub.add_parser(name, help=what))
    sync = sub.add_parser(
        "sync", help="install the master's rules tree here (signed /rules) and reload the probe"
    )
    _add_prop_options(sync)
    sync.add_argument(
        "--peer-url",
        metavar="URL",
        help="the peer's /rules URL (default http://PeerHost:PeerMetricsPort/rules)",
    )
    demo = sub.add_parser(
        "demo", help="a pair, a feed and a sink on loopback: watch a failover", add_help=False
    )
    demo.add_argument("demo_args", nargs=argparse.REMAINDER)
    sub.add_parser(
        "secret", help="print a new random SharedSecret (put it in a SharedSecretFile, mode 0600)"
    )
    rules = sub.add_parser("rules", help="check or try a rules file")
    rules_sub = rules.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    check = rules_sub.add_parser("check", help="compile a rules file and report errors")
    check.add_argument("file")
    try_ = rules_sub.add_parser("run", help="run records from stdin through a rules file")
    try_.add_argument("file")
    try_.add_argument("--format", choices=props.FEED_FORMATS, default="line")
    return parser


def prop_sources(args: argparse.Namespace) -> list[tuple[str, dict[str, object]]]:
    """Defaults < --props FILE < --<prop> options: the sources for ``props.load``."""
    sources: list[tuple[str, dict[str, object]]] = []
    props_file = getattr(args, "props", None)
    if props_file is not None:
        sources.append((props_file, read_props_file(props_file)))
    overrides = {k[len("prop_") :]: v for k, v in vars(args).items() if k.startswith("prop_")}
    if overrides:
        sources.append(("command line", overrides))
    return sources


def setup_logging(p: props.Props) -> None:
    level = _LEVELS[p.MessageLevel]
    fmt = logging.Formatter(f"%(asctime)s {p.Name} %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(level)
    for h in list(root.handlers):
        root.removeHandler(h)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if p.MessageLog:
        try:
            # Created 0640 whatever the umask (outside systemd it is often 022): a log
            # may name hosts and users; an existing file keeps its mode.
            os.close(os.open(p.MessageLog, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640))
            handlers.append(logging.FileHandler(p.MessageLog))
        except OSError as exc:
            raise ConfigError(
                "MessageLog", None, f"cannot open {p.MessageLog!r}: {exc.strerror}"
            ) from None
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    # httpx logs every request at info ("HTTP Request: POST ..."): one line per sink
    # batch. Its requests show only at debug; its warnings and errors always.
    logging.getLogger("httpx").setLevel(
        logging.DEBUG if level <= logging.DEBUG else logging.WARNING
    )


def _run(p: props.Props, origins: dict[str, str]) -> int:
    import trio

    from probepair.config.secret import check_secret_files, load_secret, read_metrics_token
    from probepair.ops.process import settle_gc, trim_heap_forever
    from probepair.probe import run_probe

    setup_logging(p)
    p = load_secret(p, origins)  # refuses a weak secret; reads SharedSecretFile
    check_secret_files(p, origins)  # owner and mode of every other credential file
    read_metrics_token(p, origins)  # an unusable MetricsTokenFile stops the start here
    logger.info("probepair %s starting: Mode %s", __version__, p.Mode)

    async def main() -> None:
        # Process-wide tuning belongs to the process: here, not in Probe.
        async with trio.open_nursery() as nursery:

            async def probe(task_status: trio.TaskStatus[object]) -> None:
                await run_probe(p, wall_clock=time.time, task_status=task_status)
                nursery.cancel_scope.cancel(reason="probe stopped")

            nursery.start_soon(trim_heap_forever, name="heap-trim")
            await nursery.start(probe, name="probe")
            settle_gc()  # start-up is done: what exists now lives as long as we do

    trio.run(main)
    return EXIT_OK


def _status(p: props.Props, origins: dict[str, str], as_json: bool, peer_url: str | None) -> int:
    """This probe's status over the control socket, the peer's over HTTP, side by side."""
    from probepair.config.secret import read_secret_file
    from probepair.ops.control import ControlError, request, socket_path
    from probepair.ops.status import fetch_status, render_table, status_url

    # The peer's /status answers requests signed with the pair's secret only (a probe
    # without one serves it to anyone). Only signing here: whether the secret is strong
    # enough is for `probepair run` to refuse.
    secret_error = None
    secret = p.SharedSecret
    if p.SharedSecretFile and not secret:
        try:
            secret = read_secret_file(p.SharedSecretFile, origins.get("SharedSecretFile", ""))
        except ConfigError as exc:  # still show this probe: its socket needs no secret
            secret_error = f"cannot sign a request to the peer's /status: {exc}"
    local = request(socket_path(p.Name, p.ControlSocket), "status")["status"]
    peer: dict[str, object] | None = None
    peer_error = None
    if p.Mode != "standard" or peer_url:
        # Where the peer's heartbeats come from, at the MetricsPort they announce; never
        # PeerHost + our own MetricsPort, which on one host is this probe itself.
        url = peer_url
        heard = local.get("peer_status_address")
        if url is None and isinstance(heard, list) and len(heard) == 2:
            url = status_url(str(heard[0]), int(heard[1]))
        if url is None and p.PeerMetricsPort:
            url = status_url(p.PeerHost, p.PeerMetricsPort)
        if url is None:
            peer_error = (
                "peer unknown: not heard yet, or it has no MetricsPort (its heartbeats say "
                "where its /status is); give it with --peer-url"
            )
        elif secret_error is not None:
            peer_error = secret_error
        else:
            try:
                peer = fetch_status(url, secret=secret.encode())
            except ControlError as exc:
                peer_error = str(exc)
    if as_json:
        sys.stdout.write(
            json.dumps({"local": local, "peer": peer, "peer_error": peer_error}, indent=2) + "\n"
        )
    else:
        sys.stdout.write(render_table(local, peer, peer_error) + "\n")
    return EXIT_OK


def _sync(p: props.Props, origins: dict[str, str], url: str | None) -> int:
    """``probepair sync``: fetch, verify, compile and install the peer's rules; reload."""
    import os

    from probepair.config.secret import load_secret
    from probepair.ops.control import ControlError, request, socket_path
    from probepair.rules import load_rules
    from probepair.rulesync.install import recover
    from probepair.rulesync.pull import (
        fetch_peer_rules_digest,
        peer_url,
        status_approval,
        sync_once,
    )
    from probepair.rulesync.tree import read_tree

    p = load_secret(p, origins)
    port = p.PeerMetricsPort or p.MetricsPort
    if url is None:
        if not (p.PeerHost and port):
            raise ConfigError(
                origins.get("PeerHost", "defaults"),
                "PeerMetricsPort",
                "the peer's metrics endpoint is unknown: set PeerHost and PeerMetricsPort "
                "(or MetricsPort), or give --peer-url",
            )
        url = peer_url(p.PeerHost, port, "/rules")
    # No heartbeat here: the master's signed /status says which tree it runs now, and
    # only that one is installed (never an older signed archive).
    status = url.rsplit("/rules", 1)[0] + "/status" if url.endswith("/rules") else None
    if status is None:
        raise ConfigError(
            "command line", "--peer-url", f"expected a URL ending in /rules, got {url!r}"
        )
    expected = fetch_peer_rules_digest(status, p.SharedSecret.encode())
    if p.RulesFile:
        recover(p.RulesFile)  # an earlier sync cut short: the current tree is whole again
    try:
        program = load_rules(p.RulesFile) if p.RulesFile else None
        current = read_tree(p.RulesFile, program.files) if program is not None else None
    except (RulesError, OSError) as exc:
        logger.warning("the current rules do not load (%s): replacing them anyway", exc)
        current = None
    outcome = sync_once(
        url,
        p.RulesFile,
        p.SharedSecret.encode(),
        current,
        approve=status_approval(expected, status),
    )
    if not outcome.changed:
        print(f"rules already in sync with {url} (tree {outcome.digest[:12]})")
        return EXIT_OK
    print(
        f"installed rules tree {outcome.digest[:12]} from {url} in "
        f"{os.path.dirname(os.path.abspath(p.RulesFile))} (its other files untouched); the "
        f"previous files are in {outcome.previous}"
    )
    try:
        request(socket_path(p.Name, p.ControlSocket), "reload")
    except ControlError as exc:
        print(f"probe not reloaded ({exc}): it loads the new rules when it starts")
        return EXIT_FAILURE if "reload failed" in exc.message else EXIT_OK
    print(f"{p.Name}: rules reloaded")
    return EXIT_OK


def _switch(p: props.Props, command: str) -> int:
    """``takeover`` / ``release`` through the running probe's control socket."""
    from probepair.ops.control import request, socket_path

    status = request(socket_path(p.Name, p.ControlSocket), command)["status"]
    print(
        f"{status.get('name')}: {command} requested; now {status.get('role')}, "
        f"{'active' if status.get('active') else 'standby'} (epoch {status.get('epoch')})"
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:  # its options are its own (argparse REMAINDER drops "--help")
        from probepair.ops import demo

        try:
            return demo.main(argv[1:])
        except ProbepairError as exc:
            print(f"probepair: {exc}", file=sys.stderr)
            return EXIT_FAILURE
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "rules":
            from probepair.ops import rulestool as tool

            if args.rules_command == "check":
                return tool.check_command(args.file, sys.stdout, sys.stderr)
            return tool.run_command(
                args.file, args.format, sys.stdin.buffer, sys.stdout.buffer, sys.stderr
            )
        if args.command == "secret":
            from probepair.config.secret import new_secret

            print(new_secret())
            return EXIT_OK
        sources = prop_sources(args)
        p = props.load(sources)
        if args.dumpprops:
            header = [f"probepair {__version__} properties: Name: value # TYPE (description)"]
            if not args.show_secrets and any(getattr(p, n) for n in props.SECRET_NAMES):
                header.append(f"secrets show as {props.REDACTED!r} (--show-secrets prints them)")
            sys.stdout.write(props.dumpprops(p, header, show_secrets=args.show_secrets))
            return EXIT_OK
        if args.command == "run":
            return _run(p, props.origins(sources))
        if args.command == "status":
            return _status(p, props.origins(sources), args.json, args.peer_url)
        if args.command == "sync":
            return _sync(p, props.origins(sources), args.peer_url)
        if args.command in ("takeover", "release"):
            return _switch(p, args.command)
        parser.print_help()
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_OK
    except (ProbepairError, BaseExceptionGroup) as exc:
        leaves = leaf_exceptions(exc)
        if not all(isinstance(e, ProbepairError | KeyboardInterrupt) for e in leaves):
            raise  # a bug: show the traceback
        for leaf in leaves:
            if isinstance(leaf, ProbepairError):
                print(f"probepair: {leaf}", file=sys.stderr)
        if all(
            isinstance(e, ConfigError | RulesError) for e in leaves if isinstance(e, ProbepairError)
        ):
            return EXIT_CONFIG
        return EXIT_FAILURE if any(isinstance(e, ProbepairError) for e in leaves) else EXIT_OK
