"""The daemon over real ZeroMQ sockets on loopback: every message type, order, cancel, fuzz, stop."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon_helpers import Mailbox, launch, terminate
from helpers import file_sha256, finished_outputs
from lr_bridge.client import open_socket, start_daemon
from lr_bridge.protocol import (
    BAD_FRAMES,
    BAD_HEADER,
    BAD_JSON,
    BAD_OPTIONS,
    FILE_FAILED,
    HEADER_TOO_LARGE,
    PROTOCOL_VERSION,
    UNKNOWN_JOB,
    UNKNOWN_TYPE,
    UNSUPPORTED_VERSION,
)
from lr_bridge.state import STATE_FILE, read_state


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, tiny_weights):
    running = launch(tmp_path_factory.mktemp("bridge") / "state", tiny_weights)
    yield running
    terminate(running.process)


@pytest.fixture
def client(daemon):
    with Mailbox(daemon.connection) as bridge:
        yield bridge


def test_ping_and_status_describe_the_daemon(daemon, client):
    pong = client.request("ping", 5)
    assert pong.type == "pong"
    assert (pong.header["ready"], pong.header["state"], pong.header["protocol"]) == (True, "ready", PROTOCOL_VERSION)
    assert pong.header["pid"] == daemon.process.pid
    status = client.request("status", 5).header
    assert status["state"] == "ready" and status["device"] == "cpu"
    assert status["model"]["name"] == "tiny-test" and len(status["model"]["sha256"]) == 64
    assert (status["running"], status["queued"], status["curve"]) == (None, [], False)
    assert status["endpoint"] == read_state(daemon.state_dir).endpoint == daemon.connection.endpoint


def test_enhance_by_path_streams_ordered_events(client, make_dng, tmp_path):
    sources = [make_dng("a.dng", seed=1), make_dng("b.dng", seed=2)]
    missing = tmp_path / "missing.dng"
    before = [file_sha256(p) for p in sources]
    out = tmp_path / "out"
    request_id = client.send("enhance", files=[{"path": str(p)} for p in [sources[0], missing, sources[1]]],
                             options={"format": "tiff", "output_dir": str(out)})
    events = [e for e in client.until_done(request_id) if e.type != "heartbeat"]
    accepted, *middle, done = events
    assert accepted.type == "accepted" and accepted.header["files"] == 3
    job = accepted.header["job"]
    assert all(e.header["job"] == job for e in events[1:])
    assert (done.header["ok"], done.header["failed"], done.header["cancelled"]) == (2, 1, False)

    # per file: progress with non-decreasing fractions in [0, 1], then exactly one result or error
    finals = [e for e in middle if e.type in ("result", "error")]
    assert [e.header["index"] for e in finals] == [0, 1, 2]
    position = 0
    for final in finals:
        index = final.header["index"]
        progress = []
        while middle[position] is not final:
            assert middle[position].type == "progress" and middle[position].header["index"] == index
            progress.append(middle[position].header["fraction"])
            position += 1
        position += 1
        assert progress and progress == sorted(progress) and 0.0 <= progress[0] and progress[-1] <= 1.0
    assert [e.type for e in finals] == ["result", "error", "result"]
    error = finals[1].header
    assert error["code"] == FILE_FAILED and str(missing) in error["message"] and "\n" not in error["message"]
    for final, source in zip((finals[0], finals[2]), sources):
        output = Path(final.header["output"])
        assert output.parent == out and output.suffix == ".tif" and output.stem.startswith(source.stem)
        assert output.read_bytes()[:4] in (b"II*\x00", b"MM\x00*")
        assert isinstance(final.header["ev"], float) and final.header["seconds"]["total"] > 0
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(f.header["output"]).name for f in (finals[0], finals[2]))
    assert [file_sha256(p) for p in sources] == before


def test_enhance_by_bytes_returns_the_output_as_bytes(client, make_dng, tmp_path):
    source = make_dng("night.dng")
    request_id = client.send("enhance", (source.read_bytes(),), files=[{"name": "night.dng", "frame": 1}],
                             options={"format": "jpeg", "ev": 4.0})
    events = [e for e in client.until_done(request_id) if e.type in ("result", "done")]
    result, done = events
    assert result.header["bytes"] is True and result.header["output"] == "night_lowlight.jpg"
    assert result.header["ev"] == 4.0
    assert len(result.blobs) == 1 and result.blobs[0][:2] == b"\xff\xd8" and len(result.blobs[0]) > 1000
    assert done.header["ok"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["night.dng"]  # the daemon wrote nothing here


def test_a_broken_file_sent_as_bytes_fails_alone_under_its_own_name(client, make_dng):
    good = make_dng("good.dng")
    request_id = client.send("enhance", (b"not a raw file at all", good.read_bytes()),
                             files=[{"name": "/home/me/broken.dng", "frame": 1}, {"name": "good.dng", "frame": 2}])
    events = [e for e in client.until_done(request_id) if e.type in ("result", "error", "done")]
    error, result, done = events
    assert error.type == "error" and error.header["code"] == FILE_FAILED
    assert error.header["message"].startswith("/home/me/broken.dng: ") and "lr-bridge-job" not in error.header["message"]
    assert result.type == "result" and result.header["output"] == "good_lowlight.dng"
    assert (done.header["ok"], done.header["failed"]) == (1, 1)


def test_a_client_that_goes_away_has_its_job_cancelled(daemon, client, long_job, tmp_path):
    out = tmp_path / "out"
    with Mailbox(daemon.connection) as leaving:
        request_id = leaving.send("enhance", files=[{"path": str(p)} for p in long_job], options={"output_dir": str(out)})
        job = leaving.next_reply(request_id).header["job"]
    deadline = time.monotonic() + 10
    while (running := client.request("status", 5).header["running"]) is not None and time.monotonic() < deadline:
        assert running["job"] == job
        time.sleep(0.2)
    assert running is None
    assert len(finished_outputs(out)) < len(long_job)  # stopped early, and only whole files are left


def test_options_the_engine_refuses_are_an_error_reply(client, make_dng):
    request_id = client.send("enhance", files=[{"path": str(make_dng())}], options={"ev": 99.0})
    reply = client.next_reply(request_id)
    assert reply.type == "error" and reply.header["code"] == BAD_OPTIONS and "99" in reply.header["message"]


def test_cancel_running_and_queued_jobs(client, make_dng, long_job, tmp_path):
    out = tmp_path / "out"
    long_id = client.send("enhance", files=[{"path": str(p)} for p in long_job], options={"output_dir": str(out)})
    long_job = client.next_reply(long_id).header["job"]
    deadline = time.monotonic() + 30  # the worker takes the job up (on a loaded machine, not at once)
    while (client.request("status", 5).header["running"] or {}).get("job") != long_job:
        assert time.monotonic() < deadline, "the first job never started"
        time.sleep(0.05)
    queued_id = client.send("enhance", files=[{"path": str(make_dng("small.dng"))}], options={"output_dir": str(out)})
    queued = client.next_reply(queued_id)
    assert queued.type == "accepted" and queued.header["position"] == 0
    status = client.request("status", 5).header
    assert status["running"]["job"] == long_job and status["queued"] == [queued.header["job"]]

    # a queued job ends at once, cancelled, without running
    cancel_id = client.send("cancel", job=queued.header["job"])
    assert client.next_reply(cancel_id).type == "ack"
    done = client.next_reply(queued_id)
    assert done.type == "done" and (done.header["ok"], done.header["failed"], done.header["cancelled"]) == (0, 0, True)

    # the running job sends heartbeats, then stops between tiles when cancelled
    heartbeat = client.next_reply(long_id, skip_heartbeats=False)
    while not (heartbeat.type == "heartbeat" and heartbeat.header["state"] == "running"):
        heartbeat = client.next_reply(long_id, skip_heartbeats=False)  # (one may predate the start: "queued")
    assert heartbeat.header["job"] == long_job and heartbeat.header["position"] is None
    started = time.monotonic()
    cancel_id = client.send("cancel", job=long_job)
    assert client.next_reply(cancel_id).type == "ack"
    done = client.next_reply(long_id)
    while done.type != "done":
        done = client.next_reply(long_id)
    assert done.header["cancelled"] is True and done.header["ok"] < len(long_job)
    assert time.monotonic() - started < 5
    assert len(finished_outputs(out)) == done.header["ok"]
    assert client.request("status", 5).header["running"] is None

    unknown = client.request("cancel", 5, job="no-such-job")
    assert unknown.type == "error" and unknown.header["code"] == UNKNOWN_JOB


def _garbage_messages():
    """Multipart messages that are invalid by construction, each with the error code it must get."""
    raw_bytes = st.binary(min_size=0, max_size=200).filter(lambda b: not b.strip().startswith(b"{"))
    json_value = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=10,
    )
    not_an_object = json_value.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode())
    wrong_version = st.fixed_dictionaries(
        {"version": st.one_of(st.none(), st.integers().filter(lambda v: v != 1), st.text(max_size=5), st.booleans()),
         "type": st.sampled_from(["ping", "status", "shutdown", "enhance"]), "id": st.text(min_size=1, max_size=10)}
    ).map(lambda h: json.dumps(h).encode())
    unknown_type = st.fixed_dictionaries(
        {"version": st.just(1), "id": st.text(min_size=1, max_size=10),
         "type": st.text(max_size=12).filter(lambda t: t not in ("ping", "status", "enhance", "cancel", "shutdown"))}
    ).map(lambda h: json.dumps(h).encode())
    bad_enhance = st.fixed_dictionaries(
        {"version": st.just(1), "id": st.text(min_size=1, max_size=10), "type": st.just("enhance"),
         "files": json_value.filter(lambda v: not isinstance(v, list) or not v or not all(isinstance(x, dict) for x in v))}
    ).map(lambda h: json.dumps(h).encode())
    return st.one_of(
        st.tuples(raw_bytes, st.just({BAD_JSON, BAD_HEADER})),
        st.tuples(not_an_object, st.just({BAD_HEADER})),
        st.tuples(wrong_version, st.just({UNSUPPORTED_VERSION})),
        st.tuples(unknown_type, st.just({UNKNOWN_TYPE})),
        st.tuples(bad_enhance, st.just({BAD_HEADER, BAD_FRAMES})),
    ), st.lists(st.binary(max_size=50), max_size=3)


@pytest.fixture(scope="module")
def raw_socket(daemon):
    socket = open_socket(daemon.connection)
    yield socket
    socket.close()


def _answer(socket: zmq.Socket, frames: list[bytes]) -> dict:
    socket.send_multipart(frames)
    assert socket.poll(5000), f"no answer to {frames!r:.200}"
    header = json.loads(socket.recv_multipart()[0])
    assert header["version"] == PROTOCOL_VERSION
    return header


_MESSAGE, _EXTRA_FRAMES = _garbage_messages()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=_MESSAGE, extra_frames=_EXTRA_FRAMES)
def test_garbage_gets_an_error_reply_and_the_daemon_lives_on(raw_socket, message, extra_frames):
    frame, allowed_codes = message
    header = _answer(raw_socket, [frame, *extra_frames])
    assert header["type"] == "error"
    assert header["code"] in allowed_codes | {BAD_FRAMES}, header
    assert isinstance(header["message"], str) and header["message"]


def test_huge_and_incomplete_headers_then_ping_still_answers(daemon, raw_socket):
    huge = json.dumps({"version": 1, "type": "ping", "id": "h", "pad": "x" * (1 << 20)}).encode()
    assert _answer(raw_socket, [huge])["code"] == HEADER_TOO_LARGE
    assert _answer(raw_socket, [b'{"version": 1, "type": "ping"}'])["code"] == BAD_HEADER
    assert _answer(raw_socket, [b'{"version": 1, "id": "x"}'])["code"] == BAD_HEADER
    assert _answer(raw_socket, [b'{"version": 1, "id": "x", "type": "cancel"}'])["code"] == BAD_HEADER
    assert _answer(raw_socket, [b""])["code"] == BAD_JSON
    pong = _answer(raw_socket, [json.dumps({"version": 1, "type": "ping", "id": "after"}).encode()])
    assert (pong["type"], pong["id"], pong["pid"]) == ("pong", "after", daemon.process.pid)
    assert daemon.process.poll() is None


@pytest.mark.parametrize("how", ["shutdown request", "SIGTERM"])
def test_stopping_mid_job_cancels_cleanly(how, tmp_path, tiny_weights, long_job):
    running = launch(tmp_path / "state", tiny_weights)
    try:
        before = file_sha256(long_job[0])
        out = tmp_path / "out"
        with Mailbox(running.connection) as bridge:
            request_id = bridge.send("enhance", files=[{"path": str(p)} for p in long_job], options={"output_dir": str(out)})
            reply = bridge.next_reply(request_id)
            while not (reply.type == "progress" and reply.header["fraction"] > 0.0):
                reply = bridge.next_reply(request_id)
            if how == "SIGTERM":
                running.process.send_signal(signal.SIGTERM)
            else:
                assert bridge.request("shutdown", 5).type == "ack"
            done = bridge.next_reply(request_id, timeout_s=15)
            while done.type != "done":
                done = bridge.next_reply(request_id, timeout_s=15)
            assert (done.header["failed"], done.header["cancelled"]) == (0, True)
            assert done.header["ok"] < len(long_job) and len(finished_outputs(out)) == done.header["ok"]
        assert running.process.wait(15) == 0
        assert not (running.state_dir / STATE_FILE).exists()
        assert file_sha256(long_job[0]) == before
    finally:
        terminate(running.process)


def test_a_second_daemon_on_the_same_state_dir_is_refused(tmp_path, tiny_weights):
    running = launch(tmp_path / "state", tiny_weights)
    try:
        second = start_daemon(running.state_dir)
        assert second.wait(60) == 75
        assert "already running" in (running.state_dir / "daemon.log").read_text()
        assert read_state(running.state_dir).pid == running.process.pid
    finally:
        terminate(running.process)
    assert running.process.returncode == 0
    assert not (running.state_dir / STATE_FILE).exists()
    assert os.path.exists(running.state_dir / "daemon.lock")
