"""The warm daemon: one ROUTER socket, a FIFO of jobs, one worker thread that owns the engine.

The main thread runs the socket loop: it validates every request (an invalid one gets an
``error`` reply and nothing else happens), queues ``enhance`` jobs, forwards the worker's events
to the client that asked, and sends a ``heartbeat`` for every active job each
:data:`~lr_bridge.protocol.HEARTBEAT_INTERVAL_S`. SIGTERM, SIGINT and a ``shutdown`` request stop
it gracefully: queued jobs are cancelled, the running file is cancelled between tiles (the
engine writes outputs under a temporary name, so nothing partial is left), clients get their
``done`` events, the state file is removed.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator

from lowlight_raw.backends import ClusterSpec
from lowlight_raw.errors import LowlightError
from lowlight_raw.registry import MODEL_CHOICES, check_shipped
from lr_bridge import __version__
from lr_bridge.jobs import Job, JobQueue
from lr_bridge.keys import KeyPair, make_curve_server
from lr_bridge.protocol import (
    BAD_OPTIONS,
    ENGINE_FAILED,
    HEARTBEAT_INTERVAL_S,
    INTERNAL,
    MAX_MESSAGE_BYTES,
    PATHS_REFUSED,
    PROTOCOL_VERSION,
    SHUTTING_DOWN,
    UNKNOWN_JOB,
    ProtocolError,
    Request,
    encode,
    error_frames,
    parse_request,
)
from lr_bridge.state import DaemonState, lock_state_dir, remove_state, write_state
from lr_bridge.worker import Worker, engine_options

log = logging.getLogger("lr_bridge.daemon")

STOP_GRACE_S = 30.0  # how long a stopping daemon waits for the running file to wind down
_EVENTS_ENDPOINT = "inproc://lr-bridge-events"


@dataclass(frozen=True)
class ServeSettings:
    """Everything ``lr-bridge serve`` needs, already resolved and checked."""

    bind: str
    state_dir: Path
    model: str = "auto"  # auto | fast | quality | a weight file
    device: str = "auto"
    server_keys: KeyPair | None = None  # CURVE: the daemon's key pair …
    authorized_keys: Path | None = None  # … and the folder of authorised client public keys
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

    # -- life cycle ---------------------------------------------------------------------------

    def serve(self) -> int:
        lock = lock_state_dir(self.settings.state_dir)
        authenticator = None
        router = self._context.socket(zmq.ROUTER)
        events = self._context.socket(zmq.PULL)
        try:
            router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            router.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            router.sndtimeo = 1000
            router.linger = 2000
            if self.settings.server_keys is not None:
                authenticator = ThreadAuthenticator(self._context, log=logging.getLogger("lr_bridge.auth"))
                authenticator.start()
                authenticator.configure_curve(domain="*", location=str(self.settings.authorized_keys))
                make_curve_server(router, self.settings.server_keys)
            router.bind(self.settings.bind)
            self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
            events.bind(_EVENTS_ENDPOINT)
            worker = self._worker = Worker(
                self._context, _EVENTS_ENDPOINT, self._jobs, self.settings.model, self.settings.device,
                self.settings.cluster,
            )
            worker.start()
            self._install_signal_handlers()
            public = self.settings.server_keys.public.decode() if self.settings.server_keys else None
            write_state(
                self.settings.state_dir,
                DaemonState(self.endpoint, os.getpid(), __version__, PROTOCOL_VERSION, time.time(), public),
            )
            log.info("listening on %s (pid %d)%s", self.endpoint, os.getpid(), ", CURVE" if public else "")
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
                self._fail_queued_jobs(f"the daemon cannot load the engine: {worker.load_error}")
                self._stop_requested, exit_status = True, 1
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
            if json.loads(frames[0])["type"] == "done":
                self._active.pop(job.id, None)
            self._send(job.client, frames)

    def _send_heartbeats(self) -> None:
        queued = self._jobs.queued_ids()
        for job in list(self._active.values()):
            state = "queued" if job.id in queued else "running"
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
                client, *frames = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                reply = self._handle(client, frames)
            except ProtocolError as exc:
                reply = error_frames(exc.code, exc.message, exc.request_id)
            except Exception as exc:  # the daemon never dies from input
                log.exception("unexpected failure handling a request")
                reply = error_frames(INTERNAL, f"internal error ({exc.__class__.__name__})", None)
            if reply is not None:
                self._send(client, reply)

    def _handle(self, client: bytes, frames: list[bytes]) -> list[bytes] | None:
        """Validate and act on one request; returns the reply (``None`` if already sent)."""
        request = parse_request(frames)
        handler = getattr(self, f"_on_{request.type}")
        return handler(client, request)

    def _on_ping(self, _client: bytes, request: Request) -> list[bytes]:
        worker = self._worker
        return encode("pong", request.id, ready=worker.state == "ready", state=self._state_name(),
                      pid=os.getpid(), software=__version__, protocol=PROTOCOL_VERSION)

    def _state_name(self) -> str:
        return "stopping" if self._stop_deadline is not None else self._worker.state

    def _on_status(self, _client: bytes, request: Request) -> list[bytes]:
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
            model=worker.model,
            load_error=worker.load_error,
            uptime_s=round(time.monotonic() - self._started, 3),
            running=None if running is None else {
                "job": running.id, "files": len(running.request.files), "index": worker.running_index,
            },
            queued=self._jobs.queued_ids(),
        )

    def _on_enhance(self, client: bytes, request: Request) -> list[bytes]:
        enhance = request.enhance
        assert enhance is not None
        if self._stop_deadline is not None or self._stop_requested:
            raise ProtocolError(SHUTTING_DOWN, "the daemon is shutting down; no new jobs", request.id)
        if self.settings.server_keys is not None and not enhance.as_bytes:
            raise ProtocolError(PATHS_REFUSED, "this remote daemon takes files as bytes, not paths", request.id)
        model = enhance.options.model
        if self.settings.server_keys is not None and model not in (None, *MODEL_CHOICES):
            raise ProtocolError(PATHS_REFUSED, "this remote daemon takes a shipped model's name, not a path", request.id)
        try:
            engine_options(enhance)
            if model is not None:
                check_shipped(model)
        except (ValueError, LowlightError) as exc:
            raise ProtocolError(BAD_OPTIONS, str(exc), request.id) from exc
        job = Job(client=client, request_id=request.id, request=enhance)
        self._active[job.id] = job
        position = self._jobs.put(job)
        log.info("job %s: %d file(s) from %s, %d ahead", job.id, len(enhance.files), client.hex(), position)
        return encode("accepted", request.id, job=job.id, files=len(enhance.files), position=position)

    def _on_cancel(self, client: bytes, request: Request) -> None:
        job = self._active.get(request.job or "")
        if job is None:
            raise ProtocolError(UNKNOWN_JOB, f"no queued or running job {request.job!r}", request.id)
        job.cancel.set()
        self._send(client, encode("ack", request.id, request="cancel", job=job.id))
        withdrawn = self._jobs.withdraw(job.id)
        if withdrawn is not None:
            self._finish_withdrawn(withdrawn)

    def _on_shutdown(self, _client: bytes, request: Request) -> list[bytes]:
        self._stop_requested = True
        return encode("ack", request.id, request="shutdown")
