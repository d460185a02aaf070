"""Issue 11: the daemon is private to its user, never wedges, and its client always gives way.

Measured the hard way: another uid against a real daemon, crafted names over the wire, a full
temporary disk (a real 2 MiB tmpfs), a client whose daemon never confirms a cancel.
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from daemon_helpers import OTHER_UID, Mailbox, fill, launch, other_user_python, small_tmpfs, terminate
from lr_bridge.logfile import BoundedLogHandler
from lr_bridge.protocol import BUSY, FILE_FAILED, TOO_LARGE, encode, parse_request
from lr_bridge.state import LOG_FILE, STATE_FILE, StateDirInsecure, private_dir, read_state


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, tiny_weights):
    running = launch(tmp_path_factory.mktemp("hardening") / "state", tiny_weights)
    yield running
    terminate(running.process)


# -- 1. local mode is private --------------------------------------------------------------------

_INTRUDER = """
import json, sys, zmq
endpoint, server_key, state_file, secret_raw, out_dir = sys.argv[1:6]
report = {}
try:
    open(state_file).read()
    report["state_file_readable"] = True
except OSError:
    report["state_file_readable"] = False
context = zmq.Context()
def ask(curve):
    socket = context.socket(zmq.DEALER)
    socket.linger = 0
    if curve:  # its own key, and the daemon's public key as if it had leaked
        public, secret = zmq.curve_keypair()
        socket.curve_publickey, socket.curve_secretkey, socket.curve_serverkey = public, secret, server_key.encode()
    socket.connect(endpoint)
    for kind, extra in (("ping", {}), ("status", {}), ("cancel", {"job": "x"}),
                        ("enhance", {"files": [{"path": secret_raw}], "options": {"output_dir": out_dir}}),
                        ("shutdown", {})):
        socket.send_multipart([json.dumps({"version": 1, "type": kind, "id": kind, **extra}).encode()])
    answers = []
    while socket.poll(3000):
        answers.append(json.loads(socket.recv_multipart()[0])["type"])
    return answers
report["plaintext_answers"] = ask(False)
report["curve_answers"] = ask(True)
print(json.dumps(report))
"""


def test_another_local_user_gets_no_answer_and_no_file(daemon, make_dng, tmp_path):
    intruder = other_user_python()
    private = tmp_path / "private"
    secret_raw = make_dng("secret.dng", directory=private)
    secret_raw.chmod(0o600)
    private.chmod(0o700)
    loot = tmp_path / "loot"
    loot.mkdir(mode=0o777)
    loot.chmod(0o777)
    state = read_state(daemon.state_dir)
    assert state.endpoint.startswith("tcp://127.0.0.1:")  # reachable by every local account …
    done = subprocess.run([*intruder, "-c", _INTRUDER, state.endpoint, state.server_key,
                           str(daemon.state_dir / STATE_FILE), str(secret_raw), str(loot)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # … yet it does not answer another uid, whatever it sends, with or without its own CURVE key
    assert report == {"state_file_readable": False, "plaintext_answers": [], "curve_answers": []}
    assert list(loot.iterdir()) == [] and sorted(p.name for p in private.iterdir()) == ["secret.dng"]
    with Mailbox(daemon.connection) as owner:  # its owner still has it, running
        assert owner.request("ping", 10).header["ready"] is True
    assert daemon.process.poll() is None


def test_the_state_folder_and_its_files_are_private(daemon, tmp_path):
    for name in (".", STATE_FILE, LOG_FILE):
        mode = stat.S_IMODE(os.stat(daemon.state_dir / name).st_mode)
        assert mode & 0o077 == 0, f"{name} is {oct(mode)}"
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    assert stat.S_IMODE(os.stat(private_dir(loose)).st_mode) == 0o700
    link = tmp_path / "link"
    link.symlink_to(loose)
    with pytest.raises(StateDirInsecure, match="symlink"):
        private_dir(link)
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, OTHER_UID, OTHER_UID)
        with pytest.raises(StateDirInsecure, match=f"uid {OTHER_UID}"):
            private_dir(theirs)


# -- 2. nothing a request carries wedges the daemon ------------------------------------------------


def _bytes_job(client: Mailbox, names: list[str], data: bytes) -> list:
    files = [{"name": name, "frame": i + 1} for i, name in enumerate(names)]
    request_id = client.send("enhance", tuple(data for _ in names), files=files, options={"format": "jpeg"})
    return [e for e in client.until_done(request_id, timeout_s=120) if e.type != "heartbeat"]


@pytest.mark.parametrize("name", ["..", "sub/..", "x" * 300 + ".dng", "\ud800.dng", "a\nb\x00c.dng"[:3] + ".dng"])
def test_hostile_names_of_sent_bytes_are_served_and_the_daemon_goes_on(daemon, make_dng, name):
    data = make_dng("plain.dng").read_bytes()
    with Mailbox(daemon.connection) as client:
        events = _bytes_job(client, [name], data)
        done = events[-1]
        assert (done.type, done.header["ok"], done.header["failed"]) == ("done", 1, 0), [e.header for e in events]
        (result,) = [e for e in events if e.type == "result"]
        output = result.header["output"]
        assert "/" not in output and output not in (".", "..") and len(output.encode()) <= 255
        assert output.endswith("_lowlight.jpg") and result.blobs[0][:2] == b"\xff\xd8"
        assert client.request("ping", 10).header["ready"] is True  # not wedged: the next job runs too
        assert _bytes_job(client, ["next.dng"], data)[-1].header["ok"] == 1


def test_a_full_temporary_disk_fails_the_file_not_the_daemon(tmp_path, tiny_weights, make_dng):
    data = make_dng("plain.dng").read_bytes()
    with small_tmpfs(tmp_path / "small-tmp") as small:
        running = launch(tmp_path / "state", tiny_weights, env={"TMPDIR": str(small)})
        try:
            with Mailbox(running.connection) as client:
                assert _bytes_job(client, ["first.dng"], data)[-1].header["ok"] == 1  # (Python picks its TMPDIR)
                filler = fill(small)
                events = _bytes_job(client, ["full.dng", "fuller.dng"], data)
                errors = [e.header for e in events if e.type == "error"]
                assert [(e["code"], e["file"]) for e in errors] == [(FILE_FAILED, "full.dng"), (FILE_FAILED, "fuller.dng")]
                assert all("No space left on device" in e["message"] and "\n" not in e["message"] for e in errors)
                assert events[-1].header["failed"] == 2
                filler.unlink()
                assert _bytes_job(client, ["roomy.dng"], data)[-1].header["ok"] == 1
            assert running.process.poll() is None
            assert sorted(p.name for p in small.iterdir()) == []  # no scratch left behind
        finally:
            terminate(running.process)


def test_scratch_left_by_a_killed_daemon_is_removed_at_start(tmp_path, tiny_weights):
    scratch = tmp_path / "tmp"
    dead = subprocess.Popen(["true"])  # a pid whose process is gone
    dead.wait()
    stale = scratch / f"lr-bridge-job-{dead.pid}-k1ll3d00" / "in" / "0"
    stale.mkdir(parents=True)
    (stale / "private.dng").write_bytes(b"a client's raw")
    live = scratch / f"lr-bridge-job-{os.getpid()}-4l1ve000"  # a daemon still at work
    foreign = scratch / "lr-bridge-job-notes"  # not our naming
    for folder in (live, foreign):
        folder.mkdir()
    running = launch(tmp_path / "state", tiny_weights, env={"TMPDIR": str(scratch)})
    try:
        assert sorted(p.name for p in scratch.iterdir()) == sorted([live.name, foreign.name])
    finally:
        terminate(running.process)


class SilentDaemon(threading.Thread):
    """A daemon that accepts a job and sends heartbeats forever, but never finishes or cancels it."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.router = zmq.Context.instance().socket(zmq.ROUTER)
        self.router.linger = 0
        self.router.bind("tcp://127.0.0.1:*")
        self.endpoint = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.cancels = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        jobs: list[tuple[bytes, str]] = []
        while not self.stopped.is_set():
            if self.router.poll(500):
                client, *frames = self.router.recv_multipart()
                request = parse_request(frames)
                if request.type == "ping":
                    self.router.send_multipart([client, *encode("pong", request.id, ready=True, state="ready")])
                elif request.type == "enhance":
                    jobs.append((client, request.id))
                    self.router.send_multipart([client, *encode("accepted", request.id, job="j1", files=1, position=0)])
                elif request.type == "cancel":
                    self.cancels += 1
            for client, request_id in jobs:
                self.router.send_multipart([client, *encode("heartbeat", request_id, job="j1", state="running")])
        self.router.close()


def test_sigterm_ends_the_client_even_if_the_daemon_never_confirms(make_dng, tmp_path):
    silent = SilentDaemon()
    silent.start()
    try:
        env = {**os.environ, "LR_BRIDGE_STATE_DIR": str(tmp_path / "state")}
        client = subprocess.Popen([sys.executable, "-m", "lr_bridge", "enhance", "--json", "--no-autostart",
                                   "--endpoint", silent.endpoint, str(make_dng())],
                                  env=env, stdout=subprocess.PIPE, text=True)
        assert json.loads(client.stdout.readline())["event"] == "accepted"
        client.send_signal(signal.SIGTERM)
        assert client.wait(60) == 130
        done = json.loads(client.stdout.read().splitlines()[-1])
        assert (done["event"], done["cancelled"]) == ("done", True)
        assert silent.cancels == 1
    finally:
        silent.stopped.set()
        silent.join(10)


# -- 3. the file bytes a daemon holds are bounded, and given back ---------------------------------


def _resident_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) / 1024


def test_file_bytes_held_are_bounded_and_returned_after_the_jobs(tmp_path, tiny_weights, make_dng):
    limit_mib, blob_mib, sent = 64, 24, 10
    running = launch(tmp_path / "state", tiny_weights, env={"LR_BRIDGE_MAX_HELD_MB": str(limit_mib)})
    pid = running.process.pid
    small = {"path": str(make_dng("small.dng"))}  # 4 × 400 of it keep the worker busy, with little memory
    try:
        with Mailbox(running.connection) as client:
            busy_ids = [client.send("enhance", files=[small] * 400, options={"output_dir": str(tmp_path / "out")})
                        for _ in range(4)]
            busy_id = busy_ids[0]
            reply = client.next_reply(busy_id, timeout_s=90)
            while not (reply.type == "progress" and reply.header["fraction"] > 0.0):  # the worker is busy
                reply = client.next_reply(busy_id, timeout_s=90)
            baseline = _resident_mib(pid)
            blob = os.urandom(blob_mib << 20)
            ids = [client.send("enhance", (blob,), files=[{"name": f"{i}.dng", "frame": 1}]) for i in range(sent)]
            too_large = client.send("enhance", (blob, blob, blob), files=[{"name": f"{i}.dng", "frame": i + 1} for i in range(3)])
            answers = [client.next_reply(request_id, timeout_s=120) for request_id in ids]
            kinds = [a.type if a.type == "accepted" else a.header["code"] for a in answers]
            assert kinds == ["accepted"] * 2 + [BUSY] * (sent - 2)  # 2 × 24 MiB fit in 64 MiB, a third does not
            assert client.next_reply(too_large, timeout_s=120).header["code"] == TOO_LARGE
            client.request("ping", 10)
            held = _resident_mib(pid) - baseline
            assert held < limit_mib + 2 * blob_mib, f"{held:.0f} MiB held for {limit_mib} MiB of queued files"
            jobs = [client.next_reply(request_id).header["job"] for request_id in busy_ids[1:]]
            for job in [reply.header["job"], *jobs, *(answer.header["job"] for answer in answers[:2])]:
                client.request("cancel", 10, job=job)
            for request_id in [*busy_ids, *ids[:2]]:
                client.until_done(request_id, timeout_s=60)
            client.request("ping", 10)
            after = _resident_mib(pid) - baseline
            assert after < 1.5 * blob_mib, f"{after:.0f} MiB still held after the jobs ended"  # < both jobs' 48
    finally:
        terminate(running.process)


# -- 7. a flood of idle connections does not lock the owner out -----------------------------------


def _open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_connection_flood_leaves_status_answering(tmp_path, tiny_weights):
    flood = 1100  # more than the usual soft limit of 1024 descriptors
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2 * flood:
        pytest.skip(f"the hard open-file limit ({hard}) is too low to flood with {flood} connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # the daemon starts with a desktop's limit
    try:
        running = launch(tmp_path / "state", tiny_weights)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2 * flood + 256), hard))
    port = int(running.connection.endpoint.rsplit(":", 1)[1])
    idle: list[socket.socket] = []
    try:
        for _ in range(flood):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        with Mailbox(running.connection) as owner:
            assert owner.request("status", 60).header["state"] == "ready"
        assert _open_files(running.process.pid) > flood  # answered while holding every idle connection
        deadline = time.monotonic() + 120  # connections that never complete a handshake are closed
        while _open_files(running.process.pid) > flood // 2:
            assert time.monotonic() < deadline, f"{_open_files(running.process.pid)} descriptors still open"
            time.sleep(0.5)
    finally:
        for connection in idle:
            connection.close()
        terminate(running.process)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- 8. the log is bounded --------------------------------------------------------------------------


def test_the_log_is_rotated_when_full_and_never_grows_past_twice_its_bound(tmp_path):
    path = tmp_path / "daemon.log"
    bound = 4096
    with open(path, "a") as stream:  # as start_daemon opens the daemon's stderr
        handler = BoundedLogHandler(stream, max_bytes=bound)
        logger = logging.getLogger("test.bounded")
        logger.addHandler(handler)
        try:
            for number in range(2000):  # ~100 kB of lines, like a job that logs twice a second for long
                logger.warning("line %05d of a chatty daemon", number)
                assert path.stat().st_size <= bound + 100
        finally:
            logger.removeHandler(handler)
    rotated = path.with_name("daemon.log.1")
    assert bound < rotated.stat().st_size <= bound + 100
    assert "line 01999" in path.read_text() and "line 00000" not in rotated.read_text()


def test_a_job_whose_client_left_is_logged_once(tmp_path, tiny_weights, long_job):
    running = launch(tmp_path / "state", tiny_weights)
    try:
        with Mailbox(running.connection) as leaving:
            request_id = leaving.send("enhance", files=[{"path": str(p)} for p in long_job],
                                      options={"output_dir": str(tmp_path / "out")})
            leaving.next_reply(request_id, timeout_s=90)
        log = running.state_dir / "daemon.log"
        deadline = time.monotonic() + 60
        while "cancelled" not in log.read_text():  # the worker's own "N ok, M failed, cancelled" line
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        with Mailbox(running.connection) as other:
            other.request("status", 10)  # a few more heartbeat rounds have passed by now
        assert log.read_text().count("its client is gone") == 1
    finally:
        terminate(running.process)
