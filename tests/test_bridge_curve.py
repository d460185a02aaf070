"""Remote mode: CURVE keys, authorised and unauthorised clients, files as bytes, plaintext refusal."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lr_bridge.client import BridgeClient, Connection
from lr_bridge.keys import REFUSAL_LOG_INTERVAL_S, read_keypair, read_public_key
from lr_bridge.protocol import FORBIDDEN
from lr_bridge.state import read_state


def lr_bridge(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lr_bridge", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    for name, folder in [("server", root), ("laptop", root / "clients"), ("tablet", root / "clients"),
                         ("intruder", root / "clients")]:
        made = lr_bridge("keys", "new", name, "--dir", str(folder))
        assert made.returncode == 0, made.stderr
    assert oct((root / "server.key_secret").stat().st_mode & 0o777) == "0o600"
    authorized = lr_bridge("keys", "authorize", str(root / "clients" / "laptop.key"), "--dir", str(root / "authorized"))
    assert authorized.returncode == 0, authorized.stderr
    assert lr_bridge("keys", "authorize", str(root / "clients" / "tablet.key"), "--dir", str(root / "authorized")).returncode == 0
    assert lr_bridge("keys", "new", "server", "--dir", str(root)).returncode == 2  # never overwrites a key
    return root


@pytest.fixture(scope="module")
def curve_dir(tmp_path_factory):
    """The CURVE daemon's folder: its state folder and its log (``serve.log``)."""
    return tmp_path_factory.mktemp("curve")


@pytest.fixture(scope="module")
def curve_daemon(curve_dir, tiny_weights, keys):
    state_dir = curve_dir / "state"
    log = open(curve_dir / "serve.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "lr_bridge", "serve", "--bind", "tcp://127.0.0.1:*", "--state-dir", str(state_dir),
         "--model", str(tiny_weights), "--server-secret-key", str(keys / "server.key_secret"),
         "--authorized-keys", str(keys / "authorized")],
        stdout=subprocess.DEVNULL, stderr=log, text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while read_state(state_dir) is None:
            assert process.poll() is None and time.monotonic() < deadline, Path(log.name).read_text()
            time.sleep(0.05)
        yield read_state(state_dir)
    finally:
        process.terminate()
        process.wait(15)
        log.close()


def test_state_file_publishes_the_server_key(curve_daemon, keys):
    assert curve_daemon.server_key == read_public_key(keys / "server.key").decode()


def test_unauthorised_clients_get_nothing(curve_daemon, keys):
    server = read_public_key(keys / "server.key")
    intruder = Connection(curve_daemon.endpoint, read_keypair(keys / "clients" / "intruder.key_secret"), server)
    with BridgeClient(intruder) as client:
        assert client.ping(2.0) is None
    with BridgeClient(Connection(curve_daemon.endpoint)) as plaintext:
        assert plaintext.ping(2.0) is None
    refused = lr_bridge("enhance", "--json", "--endpoint", curve_daemon.endpoint, "--server-key", str(keys / "server.key"),
                        "--client-key", str(keys / "clients" / "intruder.key_secret"), "/nonexistent.dng")
    assert refused.returncode == 3
    assert json.loads(refused.stdout)["code"] == "daemon_unreachable"


def test_refused_handshakes_are_logged_at_a_bounded_rate(curve_daemon, curve_dir, keys):
    server = read_public_key(keys / "server.key")
    intruder = Connection(curve_daemon.endpoint, read_keypair(keys / "clients" / "intruder.key_secret"), server)
    started = time.monotonic()
    for _ in range(20):
        with BridgeClient(intruder) as client:
            assert client.ping(0.2) is None
    while "refused" not in (curve_dir / "serve.log").read_text():
        assert time.monotonic() < started + 60, "no refused handshake logged"
        time.sleep(0.1)
    lines = [line for line in (curve_dir / "serve.log").read_text().splitlines() if "refused" in line]
    intervals = (time.monotonic() - started) / REFUSAL_LOG_INTERVAL_S
    assert 1 <= len(lines) <= 1 + math.ceil(intervals), lines  # 20 (or more) refusals, a line per interval


def test_a_job_belongs_to_its_key_and_only_the_owner_may_stop_the_daemon(curve_daemon, keys, long_job):
    server = read_public_key(keys / "server.key")
    laptop = Connection(curve_daemon.endpoint, read_keypair(keys / "clients" / "laptop.key_secret"), server)
    tablet = Connection(curve_daemon.endpoint, read_keypair(keys / "clients" / "tablet.key_secret"), server)
    data = long_job[0].read_bytes()
    with BridgeClient(laptop) as owner_of_job, BridgeClient(tablet) as other:
        request_id = owner_of_job.send("enhance", (data, data, data), options={"format": "jpeg"},
                                       files=[{"name": f"{i}.dng", "frame": i + 1} for i in range(3)])
        accepted = owner_of_job.receive(30)
        while accepted.type != "accepted":
            accepted = owner_of_job.receive(30)
        job = accepted.header["job"]
        refused = other.request("cancel", 10, job=job)
        assert (refused.type, refused.header["code"]) == ("error", FORBIDDEN)
        stop = other.request("shutdown", 10)
        assert (stop.type, stop.header["code"]) == ("error", FORBIDDEN)
        assert owner_of_job.request("cancel", 10, job=job).type == "ack"
        done = owner_of_job.receive(30)
        while not (done.type == "done" and done.id == request_id):
            done = owner_of_job.receive(30)
        assert done.header["cancelled"] is True
        assert other.request("ping", 10).header["ready"] is True  # still serving
    env = {**os.environ, "LR_BRIDGE_STATE_DIR": "/nonexistent-state"}
    stop = lr_bridge("stop", "--endpoint", curve_daemon.endpoint, "--server-key", str(keys / "server.key"),
                     "--client-key", str(keys / "clients" / "tablet.key_secret"), env=env)
    assert stop.returncode == 1 and "only the daemon's owner may stop it" in stop.stderr


def test_authorised_client_sends_bytes_and_writes_the_result(curve_daemon, keys, make_dng, tmp_path):
    laptop = Connection(curve_daemon.endpoint, read_keypair(keys / "clients" / "laptop.key_secret"),
                        read_public_key(keys / "server.key"))
    with BridgeClient(laptop) as client:
        pong = client.ping(10.0)
        assert pong is not None and pong.header["ready"] is True
        refused = client.request("enhance", 10.0, files=[{"path": "/etc/passwd"}])
        assert refused.type == "error" and refused.header["code"] == "paths_refused"
        request_id = client.send("enhance", (b"raw bytes",), files=[{"name": "a.dng", "frame": 1}],
                                 options={"model": "/etc/passwd"})
        weights = client.receive(10.0)
        assert weights is not None and weights.id == request_id
        assert weights.type == "error" and weights.header["code"] == "paths_refused", "no weight file paths either"

    source = make_dng("remote.dng")
    (tmp_path / "remote_lowlight.jpg").write_bytes(b"keep me")  # an earlier result is never overwritten
    env = {**os.environ, "LR_BRIDGE_STATE_DIR": str(tmp_path / "unused-state")}
    done = lr_bridge("enhance", "--json", "--format", "jpeg", "--endpoint", curve_daemon.endpoint,
                     "--server-key", str(keys / "server.key"), "--client-key", str(keys / "clients" / "laptop.key_secret"),
                     str(source), env=env)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    result = next(e for e in events if e["event"] == "result")
    output = tmp_path / "remote_lowlight_1.jpg"
    assert result["output"] == str(output) and output.read_bytes()[:2] == b"\xff\xd8"
    assert (tmp_path / "remote_lowlight.jpg").read_bytes() == b"keep me"
    assert not list(tmp_path.glob(".*.tmp"))
    assert not (tmp_path / "unused-state").exists()  # a remote daemon is never autostarted


def test_plaintext_on_the_network_is_refused_unless_asked(tmp_path, keys):
    refused = lr_bridge("serve", "--bind", "tcp://0.0.0.0:*", "--state-dir", str(tmp_path / "state"))
    assert refused.returncode == 2 and "--insecure-plaintext" in refused.stderr
    assert not (tmp_path / "state").exists()
    empty = tmp_path / "no-clients"
    empty.mkdir()
    no_clients = lr_bridge("serve", "--bind", "tcp://0.0.0.0:*", "--state-dir", str(tmp_path / "state"),
                           "--server-secret-key", str(keys / "server.key_secret"), "--authorized-keys", str(empty))
    assert no_clients.returncode == 2 and "no authorised client keys" in no_clients.stderr
