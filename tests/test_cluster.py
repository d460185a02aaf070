"""The Dask backend on a real LocalCluster: two worker processes, the tiny model, real DNGs.

One cluster serves the module (starting it costs ~10 s here); every test closes what it opens.
Outputs are compared with the local engine's byte for byte, except the two timestamps the
writers embed, which are masked: the XMP history's ``stEvt:when`` and, in TIFF and JPEG, the
creation time littleCMS puts in the sRGB ICC profile's header (the second each file was written).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from distributed import Client, LocalCluster
from distributed.security import Security

from helpers import file_sha256, finished_outputs
from lowlight_raw.backends.dask_client import connect, start_local_cluster
from lowlight_raw.backends.dask_worker import warm_engines
from lowlight_raw.backends.spec import ClusterError, ClusterSpec
from lowlight_raw.cli import main
from lowlight_raw.engine import Enhancer
from lowlight_raw.options import EnhanceOptions

_XMP_WHEN = re.compile(rb'stEvt:when="[^"]*"')
_ICC_DATE = re.compile(rb"mntrRGB XYZ .{12}", re.DOTALL)  # the ICC header's device class, spaces, then its date


def same_except_timestamp(a: Path, b: Path) -> bool:
    """Whether two outputs are byte-identical once their write times (XMP history, ICC header) are masked."""
    def mask(data: bytes) -> bytes:
        return _ICC_DATE.sub(b"mntrRGB XYZ ?", _XMP_WHEN.sub(b'stEvt:when="?"', data))

    return mask(a.read_bytes()) == mask(b.read_bytes())


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 worker processes on loopback, closed after the module.

    Its workers preload :mod:`lowlight_raw.cluster` as ``dask worker --preload`` does (their warm
    engine is the shipped ``auto`` model; the tests' jobs ask for the tiny one).
    """
    with start_local_cluster(2, preload=["lowlight_raw.cluster"]) as local:
        yield local


@pytest.fixture
def batch(make_dng, tmp_path) -> list[Path]:
    """20 small dark DNGs, each a different noise draw."""
    return [make_dng(f"night_{i:02d}.dng", seed=i, directory=tmp_path / "raws") for i in range(20)]


@pytest.mark.slow
def test_cli_batch_on_the_cluster_matches_the_local_engine(cluster, batch, tiny_weights, tmp_path, capsys):
    hashes = [file_sha256(s) for s in batch]
    out = tmp_path / "out"
    status = main(["enhance", *map(str, batch), "-o", str(out), "--model", str(tiny_weights),
                   "--dask-scheduler", cluster.scheduler_address, "-q"])
    err = capsys.readouterr().err
    assert status == 0, err
    assert err.strip().splitlines()[-1] == "20 enhanced"
    names = finished_outputs(out)
    assert names == [f"night_{i:02d}_lowlight.dng" for i in range(20)]  # each exactly once, never _1
    reference = tmp_path / "ref"
    enhancer = Enhancer(tiny_weights, device="cpu")
    for source in batch:
        enhancer.enhance(source, EnhanceOptions(output_dir=reference))
    assert finished_outputs(reference) == names
    for name in names:
        assert same_except_timestamp(out / name, reference / name), name
    assert [file_sha256(s) for s in batch] == hashes  # sources untouched
    with Client(cluster) as client:  # each worker loaded each model once: the preloaded one and the tiny one
        engines = client.run(warm_engines)
    assert sorted(engines.values()) == [["lowlight-sid12", "tiny-test"]] * 2


@pytest.mark.slow
def test_a_second_batch_numbers_new_outputs_and_a_bad_file_fails_alone(cluster, make_dng, tiny_weights, tmp_path,
                                                                      capsys):
    good = [make_dng(f"g{i}.dng", seed=i, directory=tmp_path / "raws") for i in range(2)]
    bad = tmp_path / "raws" / "broken.dng"
    bad.write_bytes(b"this is not a raw file" * 100)
    files = [good[0], bad, good[1]]
    out = tmp_path / "out"
    args = ["enhance", *map(str, files), "-o", str(out), "--model", str(tiny_weights), "-f", "jpeg", "-q"]
    assert main([*args, "--dask-scheduler", cluster.scheduler_address]) == 1
    cluster_err = capsys.readouterr().err
    assert main([*args, "--device", "cpu"]) == 1  # the local engine, same folder: numbered outputs
    local_err = capsys.readouterr().err
    error_lines = [line for line in cluster_err.splitlines() if line.startswith("error:")]
    assert error_lines == [line for line in local_err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and error_lines[0].startswith(f"error: {bad}: ")
    assert "2 enhanced, 1 failed" in cluster_err
    assert finished_outputs(out) == ["g0_lowlight.jpg", "g0_lowlight_1.jpg", "g1_lowlight.jpg", "g1_lowlight_1.jpg"]
    for stem in ("g0", "g1"):
        assert same_except_timestamp(out / f"{stem}_lowlight.jpg", out / f"{stem}_lowlight_1.jpg")


@pytest.mark.slow
def test_killing_a_worker_mid_batch_still_writes_every_file_once(cluster, make_dng, tiny_weights, tmp_path):
    sources = [make_dng(f"big_{i:02d}.dng", height=600, width=800, seed=i, directory=tmp_path / "raws")
               for i in range(12)]
    out = tmp_path / "out"
    backend = connect(ClusterSpec(scheduler=cluster.scheduler_address), str(tiny_weights))
    killed = None
    try:
        pids = backend.client.run(os.getpid)
        results = []
        for index, outcome in backend.enhance(sources, EnhanceOptions(output_dir=out)):
            results.append((index, outcome))
            if killed is None:  # the first file is back: kill a worker that is busy with another
                processing = backend.client.processing()
                busy = next(address for address, tasks in sorted(processing.items(), key=lambda kv: -len(kv[1])))
                assert processing[busy], "no worker was busy"
                killed = pids[busy]
                os.kill(killed, signal.SIGKILL)
        assert [index for index, _ in results] == list(range(12))
        assert all(not isinstance(outcome, Exception) for _, outcome in results), results
    finally:
        backend.close()
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)
    names = finished_outputs(out)
    assert names == [f"big_{i:02d}_lowlight.dng" for i in range(12)]
    enhancer = Enhancer(tiny_weights, device="cpu")
    for source in sources[::5]:
        reference = enhancer.enhance(source, EnhanceOptions(output_dir=tmp_path / "ref")).output
        assert same_except_timestamp(out / reference.name, reference)


@pytest.mark.slow
def test_an_unreachable_scheduler_fails_fast_with_one_line(make_dng, tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here once closed
    source = make_dng()
    start = time.monotonic()
    status = main(["enhance", str(source), "-o", str(tmp_path / "out"), "--dask-scheduler", f"tcp://127.0.0.1:{port}"])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err[-1].startswith(f"lowlight-raw: error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}: ")
    assert elapsed < 60  # the connect timeout is 5 s; never the default 30 s of retries
    assert not (tmp_path / "out").exists()


def test_plain_text_beyond_loopback_is_refused_without_connecting(make_dng, capsys):
    status = main(["enhance", str(make_dng()), "--dask-scheduler", "tcp://192.0.2.1:8786"])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err == ("lowlight-raw: error: refusing to send photos unencrypted to tcp://192.0.2.1:8786: use tls:// "
                   "with --dask-tls-ca/--dask-tls-cert/--dask-tls-key, or pass --dask-insecure")


@pytest.mark.slow
def test_dask_local_starts_and_stops_its_own_cluster(make_dng, tiny_weights, tmp_path, capsys):
    source = make_dng("one.dng")
    status = main(["enhance", str(source), "-o", str(tmp_path / "out"), "--model", str(tiny_weights),
                   "--dask", "local:1", "-q"])
    assert status == 0, capsys.readouterr().err
    assert finished_outputs(tmp_path / "out") == ["one_lowlight.dng"]


@pytest.fixture
def cluster_daemon(cluster, tiny_weights, tmp_path):
    """``lr-bridge serve --dask-scheduler`` on the module's cluster; its environment for clients."""
    state_dir = tmp_path / "state"
    env = {**os.environ, "LR_BRIDGE_STATE_DIR": str(state_dir)}
    log = tmp_path / "daemon.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "lr_bridge", "serve", "--model", str(tiny_weights),
             "--dask-scheduler", cluster.scheduler_address], env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while (state := bridge(env, "status", "--json")).returncode != 0 or json.loads(state.stdout)["state"] != "ready":
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        yield env
    finally:
        process.terminate()
        try:
            assert process.wait(30) == 0, log.read_text()
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise


def bridge(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lr_bridge", *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_the_daemon_runs_jobs_on_the_cluster(cluster, cluster_daemon, batch, tiny_weights, tmp_path):
    hashes = [file_sha256(s) for s in batch]
    out = tmp_path / "out"
    done = bridge(cluster_daemon, "enhance", "--json", "--no-autostart", "-o", str(out), *map(str, batch))
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[-1] == {"event": "done", "job": events[0]["job"], "ok": 20, "failed": 0, "cancelled": False}
    results = [e for e in events if e["event"] == "result"]
    assert [r["file"] for r in results] == list(map(str, batch))
    progress = [e["index"] for e in events if e["event"] == "progress"]
    assert progress == sorted(progress)  # the protocol's order: each file's progress, then its result
    names = finished_outputs(out)
    assert names == [f"night_{i:02d}_lowlight.dng" for i in range(20)]
    assert [Path(r["output"]).name for r in results] == names
    enhancer = Enhancer(tiny_weights, device="cpu")
    for source in batch:
        reference = enhancer.enhance(source, EnhanceOptions(output_dir=tmp_path / "ref")).output
        assert same_except_timestamp(out / reference.name, reference)
    assert [file_sha256(s) for s in batch] == hashes

    # bytes jobs (what a remote client sends): outputs come back and the client writes them; a bad file fails alone
    bad = tmp_path / "raws" / "broken.dng"
    bad.write_bytes(b"not a raw" * 50)
    sent = bridge(cluster_daemon, "enhance", "--json", "--no-autostart", "--send-bytes", "-f", "tiff",
                  "-o", str(tmp_path / "sent"), str(batch[0]), str(bad))
    assert sent.returncode == 1, sent.stderr
    events = [json.loads(line) for line in sent.stdout.splitlines()]
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == 1 and errors[0]["file"] == str(bad) and errors[0]["code"] == "file_failed"
    assert events[-1]["ok"] == 1 and events[-1]["failed"] == 1
    assert finished_outputs(tmp_path / "sent") == ["night_00_lowlight.tif"]
    local = enhancer.enhance(batch[0], EnhanceOptions(output_format="tiff", output_dir=tmp_path / "ref"))
    assert same_except_timestamp(tmp_path / "sent" / "night_00_lowlight.tif", local.output)

    status = bridge(cluster_daemon, "status", "--json")
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["state"] == "ready" and info["running"] is None
    assert info["device"] == f"dask {cluster.scheduler_address} (2 workers: cpu)"
    assert info["model"]["name"] == "tiny-test" and len(info["model"]["sha256"]) == 64


@pytest.mark.slow
def test_the_daemon_refuses_an_insecure_scheduler_and_stops_on_an_unreachable_one(tmp_path):
    env = {**os.environ, "LR_BRIDGE_STATE_DIR": str(tmp_path / "state")}
    refused = bridge(env, "serve", "--dask-scheduler", "tcp://192.0.2.1:8786")
    assert refused.returncode == 2
    assert refused.stderr.strip().endswith("refusing to send photos unencrypted to tcp://192.0.2.1:8786: use tls:// "
                                           "with --dask-tls-ca/--dask-tls-cert/--dask-tls-key, or pass --dask-insecure")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    unreachable = bridge(env, "serve", "--dask-scheduler", f"tcp://127.0.0.1:{port}")
    assert unreachable.returncode == 1
    assert f"cannot use the Dask cluster: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}: " in unreachable.stderr
    assert not (tmp_path / "state" / "daemon.json").exists()


@pytest.mark.slow
def test_cancelling_a_cluster_job_stops_it_and_the_daemon_serves_on(cluster_daemon, long_job, tmp_path):
    out = tmp_path / "out"
    client = subprocess.Popen([sys.executable, "-m", "lr_bridge", "enhance", "--json", "--no-autostart", "-o", str(out),
                               *map(str, long_job)], env=cluster_daemon, stdout=subprocess.PIPE, text=True)
    try:
        for line in client.stdout:
            if json.loads(line)["event"] == "result":
                client.send_signal(signal.SIGTERM)  # the client cancels the job on the daemon
                break
        rest = [json.loads(line) for line in client.stdout]
        assert client.wait(60) == 130
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    done = rest[-1]
    assert done["event"] == "done" and done["cancelled"] is True
    assert 1 <= done["ok"] < len(long_job) and done["failed"] == 0
    assert len(finished_outputs(out)) == done["ok"]  # whole outputs only, one per finished file
    status = json.loads(bridge(cluster_daemon, "status", "--json").stdout)
    assert status["state"] == "ready" and status["running"] is None and status["queued"] == []


@pytest.mark.parametrize(("spec", "message"), [
    (ClusterSpec(scheduler="tls://studio:8786", tls_ca=Path("ca.pem")),
     "TLS needs all of --dask-tls-ca, --dask-tls-cert and --dask-tls-key"),
    (ClusterSpec(scheduler="studio:8786"),
     "cannot use the Dask scheduler address 'studio:8786': expected tls://HOST:PORT or tcp://HOST:PORT"),
    (ClusterSpec(scheduler="tcp://10.0.0.5:8786"),
     "refusing to send photos unencrypted to tcp://10.0.0.5:8786: use tls:// with "
     "--dask-tls-ca/--dask-tls-cert/--dask-tls-key, or pass --dask-insecure"),
])
def test_addresses_that_are_refused(spec, message):
    with pytest.raises(ClusterError) as refused:
        spec.security()
    assert str(refused.value) == message


def test_tls_files_make_a_security_that_requires_encryption_and_loopback_or_insecure_needs_none():
    security = ClusterSpec(scheduler="tls://studio:8786", tls_ca=Path("/c/ca.pem"), tls_cert=Path("/c/me.pem"),
                           tls_key=Path("/c/me.key")).security()
    assert (security.tls_ca_file, security.tls_client_cert, security.tls_client_key) == (
        "/c/ca.pem", "/c/me.pem", "/c/me.key")
    assert security.require_encryption is True
    assert ClusterSpec(scheduler="tls://studio:8786").security() is None  # Dask's own TLS configuration
    assert ClusterSpec(scheduler="tcp://localhost:8786").security() is None
    assert ClusterSpec(scheduler="tcp://[::1]:8786").security() is None
    assert ClusterSpec(scheduler="tcp://10.0.0.5:8786", insecure=True).security() is None


@pytest.mark.parametrize("text", ["local:0", "local", "remote:2", "local:x"])
def test_dask_local_needs_a_worker_count(text, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["enhance", "x.dng", "--dask", text])
    assert exit_.value.code == 2
    assert "expected local:N with N from 1 to 256" in capsys.readouterr().err


@pytest.fixture
def tls_files(tmp_path) -> dict[str, Path]:
    """A throw-away CA and one certificate for 127.0.0.1 signed by it (made with the openssl tool)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path / "tls"
    folder.mkdir()
    (folder / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for command in (
        "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=test-ca",
        "req -newkey rsa:2048 -nodes -keyout node.key -out node.csr -subj /CN=127.0.0.1",
        "x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out node.pem -days 1 -extfile ext",
    ):
        subprocess.run(["openssl", *command.split()], cwd=folder, check=True, capture_output=True)
    return {"ca": folder / "ca.pem", "cert": folder / "node.pem", "key": folder / "node.key"}


@pytest.mark.slow
def test_a_tls_cluster_is_used_through_the_tls_options_and_refuses_plain_text(tls_files, make_dng, tiny_weights,
                                                                               tmp_path, capsys):
    ca, cert, key = (str(tls_files[k]) for k in ("ca", "cert", "key"))
    security = Security(tls_ca_file=ca, tls_scheduler_cert=cert, tls_scheduler_key=key, tls_worker_cert=cert,
                        tls_worker_key=key, tls_client_cert=cert, tls_client_key=key, require_encryption=True)
    source = make_dng("tls.dng")
    out = tmp_path / "out"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, protocol="tls", host="127.0.0.1",
                      security=security, dashboard_address="127.0.0.1:0") as tls_cluster:
        address = tls_cluster.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        status = main(["enhance", str(source), "-o", str(out), "--model", str(tiny_weights), "-q",
                       "--dask-scheduler", address, "--dask-tls-ca", ca, "--dask-tls-cert", cert, "--dask-tls-key", key])
        assert status == 0, capsys.readouterr().err
        plain = address.replace("tls://", "tcp://")
        assert main(["enhance", str(source), "-o", str(out), "--dask-scheduler", plain]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"lowlight-raw: error: cannot reach the Dask scheduler at {plain}: ")
    assert finished_outputs(out) == ["tls_lowlight.dng"]
    reference = Enhancer(tiny_weights, device="cpu").enhance(source, EnhanceOptions(output_dir=tmp_path / "ref"))
    assert same_except_timestamp(out / "tls_lowlight.dng", reference.output)
