"""Talking to the daemon: a DEALER-socket client, finding (or starting) the daemon, running a job.

:class:`BridgeClient` sends requests and reads replies. :func:`connect` finds a daemon through
the state file or an explicit endpoint and, if allowed, starts one in the background and waits
until it is ready. :func:`run_job` submits an ``enhance`` request and turns the daemon's events
into the ``lr-bridge enhance --json`` events (see ``PROTOCOL.md``), writing outputs that come
back as bytes; it raises :class:`DaemonLost` as soon as the daemon has been silent for
:data:`~lr_bridge.protocol.HEARTBEAT_TIMEOUT_S`.

A local daemon is reached with its owner's CURVE keys from the private state file; a cancelled
job is given up after :data:`CANCEL_WAIT_S` even if the daemon never confirms, so Ctrl-C and
SIGTERM always end the client.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from lowlight_raw.machine import pid_alive
from lowlight_raw.options import EnhanceOptions
from lr_bridge.keys import KeyPair, make_curve_client
from lr_bridge.output import write_new_file
from lr_bridge.protocol import HEARTBEAT_TIMEOUT_S, ProtocolError, Reply, encode, parse_reply
from lr_bridge.settings import endpoint_is_local
from lr_bridge.state import EXIT_ALREADY_RUNNING, LOG_FILE, DaemonState, private_dir, read_state

Event = dict[str, Any]
OUTPUT_FAILED = "output_failed"  # the client could not write an output that came back as bytes
INPUT_FAILED = "input_failed"  # the client could not read a file to send as bytes
CANCEL_WAIT_S = 10.0  # after asking the daemon to cancel, the client waits this long for its ``done``
_LOG_PREFIX = re.compile(r"^[\d-]+ [\d:,]+ lr-bridge\[\d+\] ")  # the daemon's log line prefix


class DaemonUnreachable(Exception):
    """No daemon answers (or one could not be started); the message is one line."""


class DaemonLost(Exception):
    """The daemon died or stalled while a job was running; the message is one line."""


class Interrupted(Exception):
    """The user gave up (Ctrl-C, SIGTERM) while the client waited for the daemon."""


class JobRefused(Exception):
    """The daemon answered the enhance request with an error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Connection:
    """Where the daemon is and, for CURVE, the keys to reach it."""

    endpoint: str
    client_keys: KeyPair | None = None
    server_key: bytes | None = None
    owner: bool = False  # the keys are the daemon owner's, from its state file

    @property
    def remote(self) -> bool:
        """Whether files must travel as bytes (a remote client's keys, or an endpoint off this machine)."""
        return (self.client_keys is not None and not self.owner) or not endpoint_is_local(self.endpoint)


def open_socket(connection: Connection, context: zmq.Context | None = None) -> zmq.Socket:
    """A DEALER socket connected to the daemon of ``connection``, with its CURVE keys if it has them."""
    socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
    socket.linger = 0
    if connection.client_keys is not None:
        if connection.server_key is None:
            socket.close()
            raise DaemonUnreachable(f"{connection.endpoint}: a CURVE client needs the daemon's public key")
        make_curve_client(socket, connection.client_keys, connection.server_key)
    socket.connect(connection.endpoint)
    return socket


class BridgeClient:
    """A DEALER socket connected to the daemon. Not thread-safe: one per thread."""

    def __init__(self, connection: Connection, context: zmq.Context | None = None) -> None:
        self.connection = connection
        self._socket = open_socket(connection, context)

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> "BridgeClient":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def send(self, message_type: str, blobs: tuple[bytes, ...] = (), **fields: Any) -> str:
        """Send a request; returns its id."""
        request_id = uuid.uuid4().hex
        self._socket.send_multipart(encode(message_type, request_id, blobs, **fields), copy=False)
        return request_id

    def receive(self, timeout_s: float) -> Reply | None:
        """The next message from the daemon, or ``None`` after ``timeout_s`` of silence."""
        if not self._socket.poll(max(0, int(timeout_s * 1000)), zmq.POLLIN):
            return None
        frames = self._socket.recv_multipart()
        try:
            return parse_reply(frames)
        except ProtocolError as exc:
            raise DaemonUnreachable(f"{self.connection.endpoint}: {exc.message}") from exc

    def request(self, message_type: str, timeout_s: float, **fields: Any) -> Reply:
        """Send a request and wait for the reply to it (other messages are skipped)."""
        request_id = self.send(message_type, **fields)
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            reply = self.receive(left)
            if reply is not None and reply.id == request_id:
                return reply
        raise DaemonUnreachable(f"no daemon answered at {self.connection.endpoint} within {timeout_s:g} s")

    def ping(self, timeout_s: float) -> Reply | None:
        """The daemon's ``pong``, or ``None`` if none came within ``timeout_s``."""
        try:
            return self.request("ping", timeout_s)
        except DaemonUnreachable:
            return None


# -- finding and starting the daemon ------------------------------------------------------------


def find_daemon(
    state_dir: Path, endpoint: str | None, client_keys: KeyPair | None, server_key: bytes | None
) -> Connection | None:
    """The connection the user asked for (``endpoint``) or the one the state file names.

    Without keys of its own the client uses the owner's keys from the state file when the
    daemon there is the one asked for.
    """
    state = read_state(state_dir)
    if state is not None and endpoint_is_local(state.endpoint) and not pid_alive(state.pid):
        state = None
    if endpoint is not None and (state is None or state.endpoint != endpoint):
        return Connection(endpoint, client_keys, server_key)
    if state is None:
        return None
    if client_keys is None and state.owner_public and state.owner_secret:
        return _owner_connection(state)
    known_key = server_key or (state.server_key.encode() if state.server_key else None)
    return Connection(state.endpoint, client_keys, known_key)


def _owner_connection(state: DaemonState) -> Connection:
    assert state.owner_public and state.owner_secret and state.server_key
    keys = KeyPair(state.owner_public.encode(), state.owner_secret.encode())
    return Connection(state.endpoint, keys, state.server_key.encode(), owner=True)


def connect(
    state_dir: Path,
    endpoint: str | None = None,
    client_keys: KeyPair | None = None,
    server_key: bytes | None = None,
    autostart: bool = True,
    timeout_s: float = 60.0,
    probe_s: float = 1.5,
    give_up: Callable[[], bool] = lambda: False,
) -> Connection:
    """A connection to a ready daemon: found, or started in the background if allowed.

    Raises :class:`DaemonUnreachable`, or :class:`Interrupted` as soon as ``give_up()`` is true.
    """
    connection = find_daemon(state_dir, endpoint, client_keys, server_key)
    if connection is not None:
        with BridgeClient(connection) as client:
            pong = client.ping(probe_s)
        if pong is not None and pong.header.get("state") in ("stopping", "failed"):
            _wait_for_exit(pong.header.get("pid"), connection, time.monotonic() + timeout_s, give_up)
        elif pong is not None:
            return _wait_until_ready(state_dir, endpoint, client_keys, server_key, time.monotonic() + timeout_s,
                                     None, give_up)
    where = endpoint or f"the state folder {state_dir}"
    if not autostart:
        raise DaemonUnreachable(f"no lr-bridge daemon answers ({where}); start one with 'lr-bridge serve'")
    if endpoint is not None and (not endpoint_is_local(endpoint) or client_keys is not None):
        raise DaemonUnreachable(f"no daemon answers at {endpoint} (a remote daemon is not started automatically)")
    process = start_daemon(state_dir, endpoint)
    return _wait_until_ready(state_dir, endpoint, client_keys, server_key, time.monotonic() + timeout_s,
                             process, give_up)


def _wait_for_exit(pid: object, connection: Connection, deadline: float, give_up: Callable[[], bool]) -> None:
    """Let a local daemon that is stopping finish, so that a new one can take its place."""
    while isinstance(pid, int) and not connection.remote and pid_alive(pid) and time.monotonic() < deadline:
        if give_up():
            raise Interrupted("interrupted while waiting for the old daemon to stop")
        time.sleep(0.1)


def start_daemon(state_dir: Path, bind: str | None = None) -> subprocess.Popen:
    """Start ``lr-bridge serve`` detached (own session, output to ``daemon.log``, mode 600)."""
    private_dir(state_dir)
    command = [sys.executable, "-m", "lr_bridge", "serve", "--state-dir", str(state_dir)]
    if bind is not None:
        command += ["--bind", bind]
    with open(os.open(state_dir / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log_file:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True, close_fds=True
        )


def _wait_until_ready(
    state_dir: Path,
    endpoint: str | None,
    client_keys: KeyPair | None,
    server_key: bytes | None,
    deadline: float,
    process: subprocess.Popen | None,
    give_up: Callable[[], bool],
) -> Connection:
    client: BridgeClient | None = None
    try:
        while time.monotonic() < deadline:
            if give_up():
                raise Interrupted("interrupted while waiting for the daemon to be ready")
            if process is not None and process.poll() not in (None, EXIT_ALREADY_RUNNING):
                raise DaemonUnreachable(_start_failure(state_dir))
            connection = find_daemon(state_dir, endpoint, client_keys, server_key)
            if connection is None:
                time.sleep(0.1)
                continue
            if client is None or client.connection != connection:
                if client is not None:
                    client.close()
                client = BridgeClient(connection)
            pong = client.ping(0.5)
            if pong is not None and pong.header.get("ready"):
                return connection
            if pong is not None and pong.header.get("state") in ("failed", "stopping"):
                time.sleep(0.2)  # it is going away; a new one may follow
    finally:
        if client is not None:
            client.close()
    raise DaemonUnreachable(
        f"the daemon was not ready within the timeout (see {state_dir / LOG_FILE}); "
        "loading the model can take a while: try a longer --timeout"
    )


def _start_failure(state_dir: Path) -> str:
    """Why a daemon we started exited, cause first: the daemon log's last line (a daemon that cannot
    start writes its reason last), and where that log is."""
    log = state_dir / LOG_FILE
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    cause = _LOG_PREFIX.sub("", lines[-1].strip()) if lines else "no message"
    return f"{cause} (the daemon did not start; see {log})"


# -- running a job ------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobSummary:
    """How a job ended."""

    job: str | None
    ok: int
    failed: int
    cancelled: bool


def run_job(
    client: BridgeClient,
    sources: Sequence[str],
    options: EnhanceOptions,
    emit: Callable[[Event], None],
    cancel_requested: Callable[[], bool] = lambda: False,
    as_bytes: bool | None = None,
    silence_limit_s: float = HEARTBEAT_TIMEOUT_S,
) -> JobSummary:
    """Run one job for ``sources`` (as the user named them), calling ``emit`` for each event.

    Raises :class:`JobRefused` if the daemon refuses the job, :class:`DaemonUnreachable` if it
    never answers, :class:`DaemonLost` if it goes silent once the job has started.
    """
    as_bytes = client.connection.remote if as_bytes is None else as_bytes
    files, blobs, names, unread = [], [], [], 0
    for source in sources:
        if not as_bytes:
            files.append({"path": os.path.abspath(source)})
            names.append(source)
            continue
        try:
            blobs.append(Path(source).read_bytes())
        except OSError as exc:
            emit(_error(None, source, INPUT_FAILED, f"{source}: cannot read ({exc.strerror})"))
            unread += 1
            continue
        files.append({"name": source, "frame": len(blobs)})
        names.append(source)
    if not files:
        return JobSummary(None, 0, unread, False)
    request_id = client.send("enhance", tuple(blobs), files=files, options=options.to_wire(as_bytes))
    upload_s = sum(len(b) for b in blobs) / 2e6  # generous time for the request to arrive
    job = _await_accepted(client, request_id, silence_limit_s + upload_s, cancel_requested)
    emit({"event": "accepted", "job": job, "files": len(files)})
    return _follow_job(client, request_id, job, names, options, emit, cancel_requested, silence_limit_s, unread)


def _await_accepted(client: BridgeClient, request_id: str, timeout_s: float, cancel_requested: Callable[[], bool]) -> str:
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if cancel_requested():  # the daemon cancels the job once it cannot deliver to us
            raise Interrupted("interrupted before the daemon accepted the job")
        reply = client.receive(min(left, 0.1))
        if reply is None or reply.id != request_id:
            continue
        if reply.type == "accepted":
            return str(reply.header["job"])
        if reply.type == "error":
            raise JobRefused(str(reply.header.get("code")), str(reply.header.get("message")))
    raise DaemonUnreachable(f"the daemon at {client.connection.endpoint} did not accept the job within {timeout_s:.0f} s")


def _error(job: str | None, file: str | None, code: str, message: str) -> Event:
    return {"event": "error", "job": job, "file": file, "code": code, "message": message}


def _follow_job(
    client: BridgeClient,
    request_id: str,
    job: str,
    names: list[str],
    options: EnhanceOptions,
    emit: Callable[[Event], None],
    cancel_requested: Callable[[], bool],
    silence_limit_s: float,
    already_failed: int,
) -> JobSummary:
    ok = failed = 0  # as the client sees them, for a job that ends without its done event
    client_failures = already_failed  # files the daemon counts as done that the client could not save
    total = len(names)
    last_heard = time.monotonic()
    cancel_sent_at: float | None = None
    while True:
        if cancel_sent_at is None and cancel_requested():
            client.send("cancel", job=job)
            cancel_sent_at = time.monotonic()
        reply = client.receive(0.1)
        now = time.monotonic()
        if cancel_sent_at is not None and now - cancel_sent_at > CANCEL_WAIT_S:
            return JobSummary(job, ok, failed + already_failed, True)  # never wait on the daemon past a Ctrl-C
        if reply is None or reply.id != request_id:
            if now - last_heard > silence_limit_s:
                if cancel_sent_at is not None:
                    return JobSummary(job, ok, failed + already_failed, True)
                raise DaemonLost(  # the point first: a darktable message shows only its start
                    f"the daemon died or stalled (no heartbeat for {silence_limit_s:g} s): it stopped answering "
                    f"during job {job} at {client.connection.endpoint}"
                )
            continue
        last_heard = now
        header = reply.header
        index = header.get("index")
        name = names[index] if isinstance(index, int) and 0 <= index < total else header.get("file")
        if reply.type == "progress":
            emit({"event": "progress", "job": job, "file": name, "index": index, "total": total,
                  "fraction": header.get("fraction")})
        elif reply.type == "result":
            output = header.get("output")
            if header.get("bytes"):
                try:
                    output = str(_save_returned_output(name, str(output), reply.blobs, options))
                except OSError as exc:
                    failed, client_failures = failed + 1, client_failures + 1
                    emit(_error(job, name, OUTPUT_FAILED, f"{name}: cannot write the result ({exc})"))
                    continue
            ok += 1
            seconds = header.get("seconds") or {}
            emit({"event": "result", "job": job, "file": name, "output": output, "ev": header.get("ev"),
                  "seconds": round(float(seconds.get("total", 0.0)), 3)})
        elif reply.type == "error":
            failed += 1 if name is not None else 0
            emit(_error(job, name, str(header.get("code")), str(header.get("message"))))
        elif reply.type == "done":
            output_failures = client_failures - already_failed
            return JobSummary(job, int(header.get("ok", ok)) - output_failures,
                              int(header.get("failed", failed)) + client_failures, bool(header.get("cancelled")))


def _save_returned_output(source: str, name: str, blobs: tuple[bytes, ...], options: EnhanceOptions) -> Path:
    if len(blobs) != 1:
        raise OSError(f"the daemon sent {len(blobs)} data frames instead of 1")
    directory = options.output_dir or Path(source).absolute().parent
    return write_new_file(Path(directory), name, blobs[0], options.overwrite)
