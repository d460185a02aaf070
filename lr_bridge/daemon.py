"""The warm daemon: one ROUTER socket, a FIFO of jobs, one worker thread that owns the engine.

The main thread runs the socket loop: it validates every request (an invalid one gets an
``error`` reply and nothing else happens), queues ``enhance`` jobs, forwards the worker's events
to the client that asked, and sends a ``heartbeat`` for every active job each
:data:`~lr_bridge.protocol.HEARTBEAT_INTERVAL_S` while the worker is alive and making progress
(:data:`WORKER_STALL_S`); a worker thread that ends unexpectedly stops the daemon (exit 1).

Every daemon is a CURVE server unless started with ``--insecure-plaintext``: its owner's key
pair is made at start and published only in the private state file, so only the owner's
processes (and, for a remote daemon, the authorised keys) get in. A job belongs to the key that
submitted it: only that key or the owner's may cancel it; only the owner's key may ``shutdown``.

SIGTERM, SIGINT and a ``shutdown`` request stop it gracefully: queued jobs are cancelled, the
running file is cancelled between tiles (the engine writes outputs under a temporary name, so
nothing partial is left), clients get their ``done`` events, the state file is removed.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator

from lowlight_raw.backends.spec import ClusterSpec
from lowlight_raw.errors import LowlightError
from lowlight_raw.machine import release_memory, return_large_blocks
from lowlight_raw.networks.catalog import MODEL_CHOICES, check_shipped
from lr_bridge import __version__
from lr_bridge.jobs import Job, JobQueue
from lr_bridge.keys import Admission, KeyPair, authorized_keys, make_curve_server, new_keypair
from lr_bridge.protocol import (
    BAD_OPTIONS,
    BUSY,
    DEFAULT_MAX_HELD_BYTES,
    ENGINE_FAILED,
    FORBIDDEN,
    HEARTBEAT_INTERVAL_S,
    INTERNAL,
    MAX_MESSAGE_BYTES,
    PATHS_REFUSED,
    PROTOCOL_VERSION,
    SHUTTING_DOWN,
    TOO_LARGE,
    UNKNOWN_JOB,
    ProtocolError,
    Request,
    encode,
    error_frames,
    parse_request,
)
from lr_bridge.state import DaemonState, lock_state_dir, remove_state, write_state
from lr_bridge.worker import Worker, engine_options, remove_stale_scratch

log = logging.getLogger("lr_bridge.daemon")

STOP_GRACE_S = 30.0  # how long a stopping daemon waits for the running file to wind down
HANDSHAKE_TIMEOUT_S = 10  # a connection that has not completed its handshake by then is closed
MAX_OPEN_FILES = 65536  # the daemon raises its open-file limit to this (or the hard limit) for connections
RELEASE_AFTER_BYTES = 1 << 20  # after a message this big, freed memory is handed back at once
WORKER_STALL_S = 120.0  # a running job gets no heartbeats once the worker is silent this long
_EVENTS_ENDPOINT = "inproc://lr-bridge-events"


@dataclass(frozen=True)
class ServeSettings:
    """Everything ``lr-bridge serve`` needs, already resolved and checked."""

    bind: str
    state_dir: Path
    model: str = "auto"  # auto, a shipped model (lowlight_raw.networks.catalog.MODEL_CHOICES) or a weight file
    device: str = "auto"
    server_keys: KeyPair | None = None  # remote CURVE: the daemon's key pair …
    authorized_keys: Path | None = None  # … and the folder of authorised client public keys
    plaintext: bool = False  # --insecure-plaintext: no CURVE at all, anyone who connects is the owner
    max_held_bytes: int = DEFAULT_MAX_HELD_BYTES  # file bytes held for queued and running jobs, at most
    cluster: ClusterSpec | None = None  # run every file on this Dask cluster instead of a local engine


class Daemon:
    """One daemon process; :meth:`serve` runs it until it is stopped and returns the exit status."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self._context = zmq.Context()
        self._jobs = JobQueue()
        self._active: dict[str, Job] = {}  # queued or running jobs, by id
        self._stop_requested = False
        self._stop_deadline: float | None = None
        self._started = time.monotonic()
        self.endpoint: str | None = None
        self._worker: Worker | None = None
        self._owner: KeyPair | None = None  # None in plaintext mode

    # -- life cycle ---------------------------------------------------------------------------

    def serve(self) -> int:
        lock = lock_state_dir(self.settings.state_dir)
        return_large_blocks()
        raise_open_file_limit()
        for folder in remove_stale_scratch():
            log.info("removed %s, left by a daemon that died", folder)
        authenticator = None
        router = self._context.socket(zmq.ROUTER)
        events = self._context.socket(zmq.PULL)
        try:
            router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            router.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_TIMEOUT_S * 1000)
            router.setsockopt(zmq.MAXMSGSIZE, min(MAX_MESSAGE_BYTES, self.settings.max_held_bytes))
            router.sndtimeo = 1000
            router.linger = 2000
            server_keys = None
            if not self.settings.plaintext:
                self._owner, server_keys = new_keypair(), self.settings.server_keys or new_keypair()
                clients = authorized_keys(self.settings.authorized_keys) if self.settings.authorized_keys else frozenset()
                auth_log = logging.getLogger("lr_bridge.auth")
                authenticator = ThreadAuthenticator(self._context, log=auth_log)
                authenticator.start()
                authenticator.configure_curve_callback("*", Admission(self._owner.public, clients, auth_log))
                make_curve_server(router, server_keys)
            router.bind(self.settings.bind)
            self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
            events.bind(_EVENTS_ENDPOINT)
            worker = self._worker = Worker(
                self._context, _EVENTS_ENDPOINT, self._jobs, self.settings.model, self.settings.device,
                self.settings.cluster,
            )
            worker.start()
            self._install_signal_handlers()
            owner = self._owner
            write_state(
                self.settings.state_dir,
                DaemonState(self.endpoint, os.getpid(), __version__, PROTOCOL_VERSION, time.time(),
                            server_keys.public.decode() if server_keys else None,
                            owner.public.decode() if owner else None, owner.secret.decode() if owner else None),
            )
            log.info("listening on %s (pid %d)%s", self.endpoint, os.getpid(),
                     " without CURVE (--insecure-plaintext)" if owner is None else "")
            return self._loop(router, events, worker)
        finally:
            remove_state(self.settings.state_dir, os.getpid())
            router.close()
            events.close()
            if authenticator is not None:
                authenticator.stop()
            if self._worker is not None and self._worker.is_alive():
                self._context.destroy(linger=1000)  # the worker is stuck in a file: take its socket too
            else:
                self._context.term()
            lock.close()

    def _install_signal_handlers(self) -> None:
        def request_stop(signum: int, _frame) -> None:
            log.info("received %s, stopping", signal.Signals(signum).name)
            self._stop_requested = True

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

    def _loop(self, router: zmq.Socket, events: zmq.Socket, worker: Worker) -> int:
        self._router = router
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(events, zmq.POLLIN)
        next_heartbeat = time.monotonic() + HEARTBEAT_INTERVAL_S
        exit_status = 0
        while True:
            ready = dict(poller.poll(100))
            if events in ready:
                self._forward_events(events)
            if router in ready:
                self._serve_requests(router)
            if time.monotonic() >= next_heartbeat:
                self._send_heartbeats()
                next_heartbeat = time.monotonic() + HEARTBEAT_INTERVAL_S
            if worker.state == "failed" and self._stop_deadline is None:
                reason = f"cannot load the engine: {worker.load_error}"
                log.error("%s", reason)  # the log's last line: a client that started us quotes it
                self._fail_queued_jobs(f"the daemon {reason}")
                self._stop_requested, exit_status = True, 1
            if not worker.is_alive() and worker.state == "ready" and self._stop_deadline is None:
                log.error("the worker thread ended unexpectedly; stopping so that clients notice")
                return 1
            if self._stop_requested and self._stop_deadline is None:
                self._begin_stop()
            if self._stop_deadline is not None:
                if not worker.is_alive() or worker.state == "loading":
                    self._forward_events(events)
                    return exit_status
                if time.monotonic() > self._stop_deadline:
                    log.warning("the running file did not stop within %.0f s; exiting anyway", STOP_GRACE_S)
                    return exit_status

    def _begin_stop(self) -> None:
        self._stop_deadline = time.monotonic() + STOP_GRACE_S
        for job in self._jobs.close():
            self._finish_withdrawn(job)
        for job in self._active.values():  # the running one (it may not be marked running yet)
            job.cancel.set()

    def _fail_queued_jobs(self, message: str) -> None:
        for job in self._jobs.close():
            self._send(job.client, error_frames(ENGINE_FAILED, message, job.request_id, job=job.id))
            done = encode("done", job.request_id, job=job.id, ok=0, failed=len(job.request.files), cancelled=False)
            self._send(job.client, done)
            self._active.pop(job.id, None)

    # -- sending ------------------------------------------------------------------------------

    def _send(self, client: bytes, frames: list[bytes]) -> bool:
        """Send to one client; a client that is gone or stuck has its jobs cancelled."""
        try:
            self._router.send_multipart([client, *frames])
            return True
        except zmq.ZMQError as exc:
            if exc.errno not in (errno.EHOSTUNREACH, errno.EAGAIN):
                raise
            for job in [j for j in self._active.values() if j.client == client]:
                if not job.cancel.is_set():  # once: a job that is slow to stop is not logged every heartbeat
                    log.info("job %s: its client is gone, cancelling", job.id)
                job.cancel.set()
                if self._jobs.withdraw(job.id) is not None:
                    self._active.pop(job.id, None)
            return False

    def _forward_events(self, events: zmq.Socket) -> None:
        while True:
            try:
                job_id, *frames = events.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            job = self._active.get(job_id.decode())
            if job is None:
                continue
            finished = json.loads(frames[0])["type"] == "done"
            if finished:
                self._active.pop(job.id, None)
            self._send(job.client, frames)
            if finished:
                del job  # the last reference to its file bytes
                release_memory()

    def _send_heartbeats(self) -> None:
        """A heartbeat per active job, only while the worker lives and the running job progresses."""
        worker = self._worker
        if worker is None or not worker.is_alive():
            return
        queued = self._jobs.queued_ids()
        stalled = time.monotonic() - worker.last_progress > WORKER_STALL_S
        for job in list(self._active.values()):
            state = "queued" if job.id in queued else "running"
            if state == "running" and stalled:
                continue
            position = queued.index(job.id) if state == "queued" else None
            self._send(job.client, encode("heartbeat", job.request_id, job=job.id, state=state, position=position))

    def _finish_withdrawn(self, job: Job) -> None:
        """Tell the client of a job withdrawn from the queue that it ended cancelled."""
        self._active.pop(job.id, None)
        self._send(job.client, encode("done", job.request_id, job=job.id, ok=0, failed=0, cancelled=True))

    # -- requests -----------------------------------------------------------------------------

    def _serve_requests(self, router: zmq.Socket) -> None:
        for _ in range(100):  # then let events and heartbeats through
            try:
                parts = router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            client, frames = parts[0].bytes, [part.bytes for part in parts[1:]]
            size, user = sum(len(frame) for frame in frames), _user_id(parts[-1])
            del parts
            try:
                reply = self._handle(client, user, frames)
            except ProtocolError as exc:
                reply = error_frames(exc.code, exc.message, exc.request_id)
            except Exception as exc:  # the daemon never dies from input
                log.exception("unexpected failure handling a request")
                reply = error_frames(INTERNAL, f"internal error ({exc.__class__.__name__})", None)
            del frames  # a job keeps its files; anything else of the message is freed before the reply
            if size > RELEASE_AFTER_BYTES:
                release_memory()
            if reply is not None:
                self._send(client, reply)

    def _handle(self, client: bytes, user: str | None, frames: list[bytes]) -> list[bytes] | None:
        """Validate and act on one request from ``user`` (its CURVE key); returns the reply (``None`` if sent)."""
        request = parse_request(frames)
        handler = REQUEST_HANDLERS[request.type]  # parse_request admits only protocol.REQUEST_TYPES
        return handler(self, Caller(client, user, self._owner is None or user == self._owner.public.decode()), request)

    def _on_ping(self, _caller: "Caller", request: Request) -> list[bytes]:
        worker = self._worker
        return encode("pong", request.id, ready=worker.state == "ready", state=self._state_name(),
                      pid=os.getpid(), software=__version__, protocol=PROTOCOL_VERSION)

    def _state_name(self) -> str:
        return "stopping" if self._stop_deadline is not None else self._worker.state

    def _on_status(self, _caller: "Caller", request: Request) -> list[bytes]:
        worker = self._worker
        running = worker.running
        if running is not None and running.id not in self._active:
            running = None  # its ``done`` is already sent: the worker is only tidying up
        return encode(
            "status",
            request.id,
            state=self._state_name(),
            pid=os.getpid(),
            software=__version__,
            protocol=PROTOCOL_VERSION,
            endpoint=self.endpoint,
            curve=self.settings.server_keys is not None,
            device=worker.device,
            model=worker.model_info,
            load_error=worker.load_error,
            uptime_s=round(time.monotonic() - self._started, 3),
            running=None if running is None else {
                "job": running.id, "files": len(running.request.files), "index": worker.running_index,
            },
            queued=self._jobs.queued_ids(),
        )

    def _on_enhance(self, caller: "Caller", request: Request) -> list[bytes]:
        enhance = request.enhance
        assert enhance is not None
        if self._stop_deadline is not None or self._stop_requested:
            raise ProtocolError(SHUTTING_DOWN, "the daemon is shutting down; no new jobs", request.id)
        if not caller.owner and not enhance.as_bytes:
            raise ProtocolError(PATHS_REFUSED, "this daemon takes files from remote clients as bytes, not paths",
                                request.id)
        model = enhance.options.model_choice
        if not caller.owner and model not in (None, *MODEL_CHOICES):
            raise ProtocolError(PATHS_REFUSED, "this daemon takes a shipped model's name from remote clients, not a path",
                                request.id)
        try:
            engine_options(enhance)
            if model is not None:
                check_shipped(model)
        except (ValueError, LowlightError) as exc:
            raise ProtocolError(BAD_OPTIONS, str(exc), request.id) from exc
        self._check_room(enhance.data_bytes, request.id)
        job = Job(client=caller.client, request_id=request.id, request=enhance, user=caller.user)
        self._active[job.id] = job
        position = self._jobs.put(job)
        log.info("job %s: %d file(s) from %s, %d ahead", job.id, len(enhance.files), caller.client.hex(), position)
        return encode("accepted", request.id, job=job.id, files=len(enhance.files), position=position)

    def _check_room(self, size: int, request_id: str) -> None:
        """Refuse a job whose files would take the bytes held past ``max_held_bytes``."""
        limit = min(MAX_MESSAGE_BYTES, self.settings.max_held_bytes)
        if size > limit:
            raise ProtocolError(TOO_LARGE, f"the job carries {_mib(size)} of files; this daemon takes at most "
                                           f"{_mib(limit)} per job: send fewer files at a time", request_id)
        held = sum(job.request.data_bytes for job in self._active.values())
        if held + size > self.settings.max_held_bytes:
            raise ProtocolError(BUSY, f"the daemon already holds {_mib(held)} of files for waiting jobs (limit "
                                      f"{_mib(self.settings.max_held_bytes)}); try again when they are done", request_id)

    def _on_cancel(self, caller: "Caller", request: Request) -> None:
        job = self._active.get(request.job or "")
        if job is None:
            raise ProtocolError(UNKNOWN_JOB, f"no queued or running job {request.job!r}", request.id)
        if not caller.owner and job.user != caller.user:
            raise ProtocolError(FORBIDDEN, f"job {job.id} belongs to another client", request.id)
        job.cancel.set()
        self._send(caller.client, encode("ack", request.id, request="cancel", job=job.id))
        withdrawn = self._jobs.withdraw(job.id)
        if withdrawn is not None:
            self._finish_withdrawn(withdrawn)

    def _on_shutdown(self, caller: "Caller", request: Request) -> list[bytes]:
        if not caller.owner:
            raise ProtocolError(FORBIDDEN, "only the daemon's owner may stop it", request.id)
        self._stop_requested = True
        return encode("ack", request.id, request="shutdown")


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the connection to answer, its CURVE key, whether it is the owner."""

    client: bytes  # the ROUTER identity
    user: str | None  # the Z85 public key ZAP authenticated (None in plaintext mode)
    owner: bool  # the owner's key (or plaintext mode): may stop the daemon, cancel any job, send paths


# What the daemon does for each request type of the protocol (protocol.REQUEST_TYPES; a test holds
# the two to each other).
REQUEST_HANDLERS: dict[str, Callable[[Daemon, Caller, Request], list[bytes] | None]] = {
    "ping": Daemon._on_ping,
    "status": Daemon._on_status,
    "enhance": Daemon._on_enhance,
    "cancel": Daemon._on_cancel,
    "shutdown": Daemon._on_shutdown,
}


def _user_id(frame: zmq.Frame) -> str | None:
    """The ZAP User-Id (the client's Z85 public key) a received frame carries, if any."""
    try:
        return frame.get("User-Id")
    except zmq.ZMQError:
        return None


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit towards :data:`MAX_OPEN_FILES` (one per connection); returns it.

    Idle connections then cannot take the last descriptor from the clients that matter before
    libzmq closes them (:data:`HANDSHAKE_TIMEOUT_S`).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(MAX_OPEN_FILES, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return soft


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.0f} MiB"
