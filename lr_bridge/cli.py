"""The ``lr-bridge`` command: ``serve``, ``enhance``, ``status``, ``stop``, ``cancel``, ``keys``,
``install-darktable-plugin``.

Exit status of ``enhance``: 0 every file succeeded, 1 some file failed, 2 usage, 3 the daemon is
unreachable or died, 130 cancelled (Ctrl-C or SIGTERM cancel the job on the daemon first).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zmq

from lowlight_raw.backends.spec import ClusterError, ClusterSpec, add_cluster_arguments
from lowlight_raw.machine import pid_alive
from lowlight_raw.networks.catalog import MODEL_METAVAR
from lowlight_raw.options import EnhanceOptions, add_arguments
from lr_bridge import __version__, darktable_install
from lr_bridge.client import (
    BridgeClient,
    Connection,
    DaemonLost,
    DaemonUnreachable,
    Interrupted,
    JobRefused,
    connect,
    find_daemon,
    run_job,
)
from lr_bridge.keys import (
    KeyFileError,
    authorize_client,
    authorized_keys,
    default_key_dir,
    generate_keypair,
    read_keypair,
    read_public_key,
)
from lr_bridge.logfile import BoundedLogHandler
from lr_bridge.protocol import BAD_OPTIONS, DEFAULT_MAX_HELD_BYTES
from lr_bridge.settings import (
    DEFAULT_BIND,
    SettingsError,
    check_endpoint,
    endpoint_is_local,
    load_config,
    pick,
    pick_mebibytes,
    pick_model,
    pick_path,
    pick_state_dir,
)
from lr_bridge.state import EXIT_ALREADY_RUNNING, StateDirInsecure, StateDirLocked, read_state

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_CANCELLED = 0, 1, 2, 3, 130


class _Parser(argparse.ArgumentParser):
    """An argument parser that, for ``enhance --json``, reports usage errors as a JSON error line."""

    json_errors = False

    def error(self, message: str) -> None:  # type: ignore[override]
        if _Parser.json_errors:
            _json_error("usage", message)
            self.exit(EXIT_USAGE, f"lr-bridge: {message}\n")
        super().error(message)


def _json_error(code: str, message: str, job: str | None = None) -> None:
    line = {"event": "error", "job": job, "file": None, "code": code, "message": message}
    print(json.dumps(line, separators=(",", ":")), flush=True)


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("finding the daemon")
    group.add_argument("--endpoint", help="the daemon's endpoint (default: from the state file)")
    group.add_argument("--state-dir", help="the daemon's state folder (env LR_BRIDGE_STATE_DIR)")
    group.add_argument("--server-key", help="CURVE: the daemon's public key file (NAME.key)")
    group.add_argument("--client-key", help="CURVE: this client's secret key file (NAME.key_secret)")
    group.add_argument("--config", help="config file (default ~/.config/lowlight-raw/bridge.toml)")
    group.add_argument("--timeout", type=float, default=60.0, metavar="S",
                       help="seconds to wait for the daemon to answer or start (default 60)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lr-bridge", description="The warm lowlight-raw daemon and its client.")
    parser.add_argument("--version", action="version", version=f"lr-bridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = commands.add_parser("serve", help="run the daemon in the foreground")
    serve.add_argument("--bind", help=f"endpoint to listen on (default {DEFAULT_BIND}: loopback, any free port)")
    serve.add_argument("--state-dir", help="where to write the state file (env LR_BRIDGE_STATE_DIR)")
    serve.add_argument("--model", metavar=MODEL_METAVAR,
                       help="auto (default: quality on a GPU, fast on CPU), a shipped model, or a weight file")
    serve.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps (default auto)")
    serve.add_argument("--server-secret-key", help="CURVE: the daemon's secret key file (NAME.key_secret)")
    serve.add_argument("--authorized-keys", help="CURVE: folder of authorised clients' public keys (*.key)")
    serve.add_argument("--insecure-plaintext", action="store_true",
                       help="no CURVE at all, even on loopback (anyone who can connect can use and stop it)")
    serve.add_argument("--max-held-mb", help=f"MiB of files held for queued and running jobs, at most "
                       f"(default {DEFAULT_MAX_HELD_BYTES >> 20}; more is refused as 'busy')")
    serve.add_argument("--config", help="config file (default ~/.config/lowlight-raw/bridge.toml)")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    add_cluster_arguments(serve)

    enhance = commands.add_parser("enhance", help="enhance RAW files through the daemon")
    enhance.add_argument("files", nargs="+", metavar="FILE")
    add_arguments(enhance)
    enhance.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    enhance.add_argument("--no-autostart", action="store_true", help="fail instead of starting a daemon")
    enhance.add_argument("--send-bytes", action="store_true", help="send files as bytes even to a local daemon")
    _add_connection_options(enhance)

    status = commands.add_parser("status", help="show the daemon's state")
    status.add_argument("--json", action="store_true")
    _add_connection_options(status)

    stop = commands.add_parser("stop", help="stop the daemon (cancels the running job)")
    _add_connection_options(stop)

    cancel = commands.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("job", metavar="JOB_ID")
    _add_connection_options(cancel)

    keys = commands.add_parser("keys", help="CURVE keys for a remote daemon")
    key_commands = keys.add_subparsers(dest="key_command", required=True, parser_class=_Parser)
    new = key_commands.add_parser("new", help="make a key pair NAME.key / NAME.key_secret")
    new.add_argument("name")
    new.add_argument("--dir", help=f"where to write them (default {default_key_dir()})")
    authorize = key_commands.add_parser("authorize", help="let a client's public key use this daemon")
    authorize.add_argument("public_key", help="the client's NAME.key")
    authorize.add_argument("--dir", help=f"the authorised keys folder (default {default_key_dir() / 'authorized'})")

    plugin = commands.add_parser("install-darktable-plugin", help="install the darktable Lua plugin")
    darktable_install.add_arguments(plugin)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _Parser.json_errors = bool(argv) and argv[0] == "enhance" and "--json" in argv
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (SettingsError, KeyFileError, StateDirInsecure) as exc:
        return _fail(args, "usage", str(exc), EXIT_USAGE)


def _fail(args: argparse.Namespace, code: str, message: str, status: int, job: str | None = None) -> int:
    if getattr(args, "json", False) and args.command == "enhance":
        _json_error(code, message, job)
    print(f"lr-bridge: {message}", file=sys.stderr, flush=True)
    return status


# -- serve ----------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from lr_bridge.daemon import Daemon, ServeSettings

    logging.basicConfig(level=args.log_level, format="%(asctime)s lr-bridge[%(process)d] %(message)s",
                        handlers=[BoundedLogHandler(sys.stderr)])
    config = load_config(Path(args.config) if args.config else None)
    bind = check_endpoint(pick(args.bind, "bind", config, DEFAULT_BIND))
    secret = pick_path(args.server_secret_key, "server_secret_key", config)
    authorized = pick_path(args.authorized_keys, "authorized_keys", config)
    if (secret is None) != (authorized is None):
        raise SettingsError("CURVE needs both --server-secret-key and --authorized-keys")
    server_keys = read_keypair(secret) if secret is not None else None
    if authorized is not None:
        if not authorized_keys(authorized):
            raise SettingsError(f"{authorized}: no authorised client keys (*.key); add one with 'lr-bridge keys authorize'")
    if server_keys is None and not endpoint_is_local(bind) and not args.insecure_plaintext:
        raise SettingsError(
            f"refusing to listen on {bind} without encryption: use CURVE keys (--server-secret-key, "
            "--authorized-keys) or, on a trusted network only, --insecure-plaintext"
        )
    cluster = ClusterSpec.from_args(args)
    if cluster is not None and cluster.scheduler is not None:
        try:
            cluster.security()  # refuse an insecure or malformed address before anything starts
        except ClusterError as exc:
            raise SettingsError(str(exc)) from None
    settings = ServeSettings(
        bind=bind,
        state_dir=pick_state_dir(args.state_dir, config),
        model=pick_model(args.model, config),
        device=pick(args.device, "device", config, "auto"),
        server_keys=server_keys,
        authorized_keys=authorized,
        plaintext=args.insecure_plaintext,
        max_held_bytes=pick_mebibytes(args.max_held_mb, "max_held_mb", config, DEFAULT_MAX_HELD_BYTES),
        cluster=cluster,
    )
    try:
        return Daemon(settings).serve()
    except StateDirLocked:
        state = read_state(settings.state_dir)
        where = f" (pid {state.pid}, {state.endpoint})" if state else ""
        print(f"lr-bridge: a daemon is already running for {settings.state_dir}{where}", file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    except (zmq.ZMQError, OSError) as exc:  # e.g. the address is in use: one line, not a traceback
        print(f"lr-bridge: cannot serve on {bind}: {exc}", file=sys.stderr)
        return EXIT_FAILED


# -- client commands ------------------------------------------------------------------------------


def _client_keys(args: argparse.Namespace, config: dict[str, Any]):
    client_key = pick_path(args.client_key, "client_key", config)
    server_key_file = pick_path(args.server_key, "server_key", config)
    client_keys = read_keypair(client_key) if client_key else None
    server_key = read_public_key(server_key_file) if server_key_file else None
    return client_keys, server_key


def _connection_settings(args: argparse.Namespace) -> tuple[Path, str | None, Any, bytes | None]:
    config = load_config(Path(args.config) if args.config else None)
    endpoint = pick(args.endpoint, "endpoint", config)
    if endpoint is not None:
        check_endpoint(endpoint)
    client_keys, server_key = _client_keys(args, config)
    return pick_state_dir(args.state_dir, config), endpoint, client_keys, server_key


class _CancelOnSignal:
    """While active, SIGINT and SIGTERM set a flag (the job is then cancelled on the daemon)."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_CancelOnSignal":
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, lambda *_: self.requested.set())
        return self

    def __exit__(self, *_exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _enhance(args: argparse.Namespace) -> int:
    from lr_bridge.report import HumanReport, JsonLines

    state_dir, endpoint, client_keys, server_key = _connection_settings(args)
    options = EnhanceOptions.from_args(args)
    report = JsonLines() if args.json else HumanReport()
    job: str | None = None
    succeeded = 0

    def emit(event: dict[str, Any]) -> None:
        nonlocal job, succeeded
        job = event.get("job") or job
        succeeded += event["event"] == "result"
        report(event)

    with _CancelOnSignal() as cancel:
        try:
            connection = connect(state_dir, endpoint, client_keys, server_key, autostart=not args.no_autostart,
                                 timeout_s=args.timeout, give_up=cancel.requested.is_set)
            with BridgeClient(connection) as client:
                summary = run_job(client, args.files, options, emit, cancel.requested.is_set,
                                  as_bytes=True if args.send_bytes else None)
        except Interrupted as exc:
            return _fail(args, "cancelled", str(exc), EXIT_CANCELLED)
        except DaemonUnreachable as exc:
            report.close()
            return _fail(args, "daemon_unreachable", str(exc), EXIT_UNREACHABLE)
        except DaemonLost as exc:
            report.close()
            _fail(args, "daemon_died", str(exc), EXIT_UNREACHABLE, job)
            emit({"event": "done", "job": job, "ok": succeeded, "failed": len(args.files) - succeeded,
                  "cancelled": False})
            return EXIT_UNREACHABLE
        except JobRefused as exc:
            report.close()
            return _fail(args, exc.code, str(exc), EXIT_USAGE if exc.code == BAD_OPTIONS else EXIT_FAILED)
    if summary.job is None:  # no file could even be read
        return EXIT_FAILED
    emit({"event": "done", "job": summary.job, "ok": summary.ok, "failed": summary.failed,
          "cancelled": summary.cancelled})
    if summary.cancelled:
        return EXIT_CANCELLED
    return EXIT_OK if summary.failed == 0 and summary.ok == len(args.files) else EXIT_FAILED


def _existing_daemon(args: argparse.Namespace) -> Connection | None:
    state_dir, endpoint, client_keys, server_key = _connection_settings(args)
    return find_daemon(state_dir, endpoint, client_keys, server_key)


def _ask_running_daemon(args: argparse.Namespace, request: str, **fields: Any):
    """One request to the running daemon; ``None`` (after saying why) when none answers."""
    connection = _existing_daemon(args)
    if connection is None:
        print("lr-bridge: no daemon is running", file=sys.stderr)
        return None
    try:
        with BridgeClient(connection) as client:
            return client.request(request, min(args.timeout, 5.0), **fields)
    except DaemonUnreachable as exc:
        print(f"lr-bridge: {exc}", file=sys.stderr)
        return None


def _status(args: argparse.Namespace) -> int:
    reply = _ask_running_daemon(args, "status")
    if reply is None:
        return EXIT_UNREACHABLE
    header = reply.header
    if args.json:
        print(json.dumps({k: v for k, v in header.items() if k not in ("type", "id")}), flush=True)
        return EXIT_OK
    model = header.get("model") or {}
    running = header.get("running")
    lines = [
        f"daemon     {header.get('state')} (pid {header.get('pid')}, lowlight-raw {header.get('software')}, "
        f"protocol {header.get('protocol')})",
        f"endpoint   {header.get('endpoint')}{' (CURVE)' if header.get('curve') else ''}",
        f"device     {header.get('device') or '-'}",
        f"model      {model.get('name', '-')} {str(model.get('sha256', ''))[:12]}",
        f"running    {_describe_running(running)}",
        f"queued     {len(header.get('queued') or [])} job(s)",
        f"uptime     {header.get('uptime_s', 0):.0f} s",
    ]
    if header.get("load_error"):
        lines.append(f"error      {header['load_error']}")
    print("\n".join(lines))
    return EXIT_OK


def _describe_running(running: dict[str, Any] | None) -> str:
    if not running:
        return "-"
    return f"job {running['job']}: file {running['index'] + 1} of {running['files']}"


def _stop(args: argparse.Namespace) -> int:
    connection = _existing_daemon(args)
    if connection is None:
        print("lr-bridge: no daemon is running")
        return EXIT_OK
    try:
        with BridgeClient(connection) as client:
            pid = client.request("status", min(args.timeout, 5.0)).header.get("pid")
            reply = client.request("shutdown", min(args.timeout, 5.0))
    except DaemonUnreachable as exc:
        print(f"lr-bridge: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if reply.type == "error":  # e.g. forbidden: only the daemon's owner may stop it
        print(f"lr-bridge: {reply.header.get('message')}", file=sys.stderr)
        return EXIT_FAILED
    deadline = time.monotonic() + args.timeout
    while isinstance(pid, int) and endpoint_is_local(connection.endpoint) and pid_alive(pid):
        if time.monotonic() > deadline:
            print(f"lr-bridge: the daemon (pid {pid}) is still stopping", file=sys.stderr)
            return EXIT_FAILED
        time.sleep(0.1)
    print("lr-bridge: daemon stopped")
    return EXIT_OK


def _cancel(args: argparse.Namespace) -> int:
    reply = _ask_running_daemon(args, "cancel", job=args.job)
    if reply is None:
        return EXIT_UNREACHABLE
    if reply.type == "error":
        print(f"lr-bridge: {reply.header.get('message')}", file=sys.stderr)
        return EXIT_FAILED
    print(f"lr-bridge: job {args.job} cancelled")
    return EXIT_OK


def _keys(args: argparse.Namespace) -> int:
    if args.key_command == "new":
        public, secret = generate_keypair(Path(args.dir) if args.dir else default_key_dir(), args.name)
        print(f"public key {public}\nsecret key {secret} (keep it private)")
        return EXIT_OK
    target = authorize_client(Path(args.public_key), Path(args.dir) if args.dir else default_key_dir() / "authorized")
    print(f"authorised {target} (restart the daemon to apply)")
    return EXIT_OK


_COMMANDS = {
    "serve": _serve,
    "enhance": _enhance,
    "status": _status,
    "stop": _stop,
    "cancel": _cancel,
    "keys": _keys,
    "install-darktable-plugin": darktable_install.run,
}
