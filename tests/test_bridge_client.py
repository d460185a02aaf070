"""The ``lr-bridge`` command as the darktable plugin runs it: JSON lines, exit codes, autostart,
a daemon killed or stalled mid-job, cancelling with SIGTERM, ``status``/``stop``/``cancel``."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from helpers import file_sha256, finished_outputs
from lowlight_raw.machine import pid_alive
from lr_bridge.protocol import HEARTBEAT_TIMEOUT_S
from lr_bridge.state import LOG_FILE, STATE_FILE, read_state

EVENT_KEYS = {
    "accepted": {"event", "job", "files"},
    "progress": {"event", "job", "file", "index", "total", "fraction"},
    "result": {"event", "job", "file", "output", "ev", "seconds"},
    "error": {"event", "job", "file", "code", "message"},
    "done": {"event", "job", "ok", "failed", "cancelled"},
}


class Bridge:
    """Runs ``python -m lr_bridge`` with a private state folder and the tiny model."""

    def __init__(self, state_dir: Path, weights: Path) -> None:
        self.state_dir = state_dir
        self.env = {**os.environ, "LR_BRIDGE_STATE_DIR": str(state_dir), "LR_BRIDGE_MODEL": str(weights)}
        self.daemon_pids: set[int] = set()

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "lr_bridge", *args]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        done = subprocess.run(self.command(*args), env=self.env, capture_output=True, text=True, timeout=timeout)
        self.remember_daemon()
        return done

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(self.command(*args), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def remember_daemon(self) -> int | None:
        state = read_state(self.state_dir)
        if state is not None:
            self.daemon_pids.add(state.pid)
        return state.pid if state else None

    def kill_daemons(self) -> None:
        self.remember_daemon()
        for pid in self.daemon_pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def bridge(tmp_path, tiny_weights):
    helper = Bridge(tmp_path / "state", tiny_weights)
    yield helper
    helper.kill_daemons()


def json_lines(stdout: str) -> list[dict]:
    events = [json.loads(line) for line in stdout.splitlines()]
    for event in events:
        assert set(event) == EVENT_KEYS[event["event"]], event
    return events


class LineReader:
    """Reads a running client's stdout lines without blocking the test."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[dict] = []
        self._pump_thread = threading.Thread(target=self._pump, args=(process.stdout,), daemon=True)
        self._pump_thread.start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.lines.put(line)

    def until(self, predicate, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = json.loads(self.lines.get(timeout=0.2))
            except queue.Empty:
                continue
            self.seen.append(event)
            if predicate(event):
                return event
        raise AssertionError(f"no matching event within {timeout} s; saw {self.seen[-5:]}")

    def rest(self) -> list[dict]:
        """Every event, once the client has exited and its stdout is read to the end."""
        self._pump_thread.join(10)
        while not self.lines.empty():
            self.seen.append(json.loads(self.lines.get()))
        return self.seen


def in_network_stage(event: dict) -> bool:
    return event["event"] == "progress" and event["fraction"] > 0.0


def test_json_lines_follow_the_contract_and_the_daemon_is_started_once(bridge, make_dng, tmp_path):
    first, second = make_dng("one.dng", seed=1), make_dng("two.dng", seed=2)
    out = tmp_path / "out"
    done = bridge.run("enhance", "--json", "--format", "jpeg", "--ev", "auto", "--strength", "0.5",
                      "--output-dir", str(out), str(first), str(second))
    assert done.returncode == 0, done.stderr
    events = json_lines(done.stdout)
    job = events[0]["job"]
    assert events[0] == {"event": "accepted", "job": job, "files": 2}
    assert events[-1] == {"event": "done", "job": job, "ok": 2, "failed": 0, "cancelled": False}
    results = [e for e in events if e["event"] == "result"]
    assert [r["file"] for r in results] == [str(first), str(second)]  # as given on the command line
    for result in results:
        output = Path(result["output"])
        assert output.parent == out and output.suffix == ".jpg" and output.read_bytes()[:2] == b"\xff\xd8"
        assert isinstance(result["ev"], float) and result["seconds"] > 0
    progress = [e for e in events if e["event"] == "progress"]
    assert [e["index"] for e in progress] == sorted(e["index"] for e in progress)
    assert all(e["total"] == 2 and 0.0 <= e["fraction"] <= 1.0 for e in progress)
    daemon_pid = bridge.remember_daemon()
    assert daemon_pid is not None and pid_alive(daemon_pid)

    # the warm daemon serves the next run; a missing file fails that file only: exit 1
    missing = tmp_path / "missing.dng"
    again = bridge.run("enhance", "--json", "--output-dir", str(out), str(missing), str(first))
    assert again.returncode == 1
    events = json_lines(again.stdout)
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == 1 and errors[0]["file"] == str(missing) and errors[0]["code"] == "file_failed"
    assert str(missing) in errors[0]["message"]
    assert events[-1]["ok"] == 1 and events[-1]["failed"] == 1
    assert bridge.remember_daemon() == daemon_pid


def test_human_output_names_each_result(bridge, make_dng):
    source = make_dng("evening.dng")
    done = bridge.run("enhance", "--format", "tiff", str(source))
    assert done.returncode == 0, done.stderr
    output = source.with_name("evening_lowlight.tif")
    assert output.is_file()
    assert f"{source} → {output}" in done.stdout
    assert "1 enhanced" in done.stderr


def test_failures_before_a_job_are_one_json_line_and_an_exit_code(bridge, make_dng):
    source = make_dng()
    unreachable = bridge.run("enhance", "--json", "--no-autostart", str(source))
    assert unreachable.returncode == 3
    (line,) = json_lines(unreachable.stdout)
    assert (line["event"], line["job"], line["code"]) == ("error", None, "daemon_unreachable")
    assert not (bridge.state_dir / STATE_FILE).exists()  # nothing was started

    usage = bridge.run("enhance", "--json", "--strength", "7", str(source))
    assert usage.returncode == 2
    (line,) = json_lines(usage.stdout)
    assert line["code"] == "usage" and "strength" in line["message"]

    broken = Bridge(bridge.state_dir.with_name("broken-state"), bridge.state_dir / "no-such-weights.pt")
    failed_start = broken.run("enhance", "--json", str(source))
    assert failed_start.returncode == 3
    (line,) = json_lines(failed_start.stdout)
    # the cause first (a toast shows the start of a message), then the log's name
    assert line["message"].startswith("cannot load the engine: ") and "no-such-weights.pt" in line["message"]
    assert "weight file not found" in line["message"]
    assert line["message"].endswith(f" (the daemon did not start; see {broken.state_dir / LOG_FILE})")

    too_bright = bridge.run("enhance", "--json", "--ev", "40", str(source))
    assert too_bright.returncode == 2
    (line,) = json_lines(too_bright.stdout)
    assert line["code"] == "usage" and "EV must be between -4 and +12, got 40.0" in line["message"]

    refused = bridge.run("enhance", "--json", "-f", "jpeg", "--linear", str(source))  # the daemon's check
    assert refused.returncode == 2
    (line,) = json_lines(refused.stdout)
    assert line["code"] == "bad_options" and line["message"] == "--linear applies to TIFF output only"


@pytest.mark.slow
def test_daemon_killed_mid_job_fails_fast_and_a_new_one_serves_next(bridge, make_dng, long_job, tmp_path):
    before = file_sha256(long_job[0])
    out = tmp_path / "out"
    client = bridge.start("enhance", "--json", "--output-dir", str(out), *map(str, long_job))
    reader = LineReader(client)
    reader.until(in_network_stage, timeout=90)
    victim = bridge.remember_daemon()
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    status = client.wait(HEARTBEAT_TIMEOUT_S + 10)
    assert time.monotonic() - killed_at < HEARTBEAT_TIMEOUT_S + 3
    assert status == 3
    *_, error, done = reader.rest()
    assert error["event"] == "error" and error["code"] == "daemon_died" and "stopped answering" in error["message"]
    assert done == {"event": "done", "job": error["job"], "ok": done["ok"], "failed": len(long_job) - done["ok"], "cancelled": False}
    assert "died or stalled" in client.stderr.read()
    finished = finished_outputs(out)  # and no partial output
    assert len(finished) == done["ok"] < len(long_job)
    assert file_sha256(long_job[0]) == before

    small = make_dng("small.dng")
    again = bridge.run("enhance", "--json", "--output-dir", str(out), str(small))
    assert again.returncode == 0, again.stderr
    assert bridge.remember_daemon() not in (None, victim)
    assert finished_outputs(out) == sorted([*finished, "small_lowlight.dng"])


@pytest.mark.slow
def test_a_stalled_daemon_is_detected(bridge, long_job, tmp_path):
    client = bridge.start("enhance", "--json", "--output-dir", str(tmp_path), *map(str, long_job))
    reader = LineReader(client)
    reader.until(in_network_stage, timeout=90)
    os.kill(bridge.remember_daemon(), signal.SIGSTOP)
    stopped_at = time.monotonic()
    assert client.wait(HEARTBEAT_TIMEOUT_S + 10) == 3
    assert time.monotonic() - stopped_at < HEARTBEAT_TIMEOUT_S + 3
    assert reader.rest()[-2]["code"] == "daemon_died"


def test_sigterm_cancels_the_job_on_the_daemon(bridge, long_job, tmp_path):
    out = tmp_path / "out"
    client = bridge.start("enhance", "--json", "--output-dir", str(out), *map(str, long_job))
    reader = LineReader(client)
    reader.until(in_network_stage, timeout=90)
    client.send_signal(signal.SIGTERM)
    assert client.wait(15) == 130
    done = reader.rest()[-1]
    assert done["event"] == "done" and done["cancelled"] is True
    assert len(finished_outputs(out)) == done["ok"] < len(long_job)

    status = bridge.run("status", "--json")
    assert status.returncode == 0
    state = json.loads(status.stdout)
    assert (state["state"], state["running"], state["queued"]) == ("ready", None, [])


def test_status_cancel_and_stop_commands(bridge, make_dng):
    assert bridge.run("status").returncode == 3  # nothing running yet
    assert bridge.run("enhance", "--json", str(make_dng())).returncode == 0
    pid = bridge.remember_daemon()
    status = bridge.run("status")
    assert status.returncode == 0 and "ready" in status.stdout and "tiny-test" in status.stdout
    unknown = bridge.run("cancel", "no-such-job")
    assert unknown.returncode == 1 and "no-such-job" in unknown.stderr
    stop = bridge.run("stop")
    assert stop.returncode == 0 and "stopped" in stop.stdout
    assert not pid_alive(pid) and not (bridge.state_dir / STATE_FILE).exists()
    assert bridge.run("stop").returncode == 0


def test_an_ipc_endpoint_given_on_the_command_line_is_started_and_used(bridge, make_dng, tmp_path):
    endpoint = f"ipc://{tmp_path}/bridge.sock"
    done = bridge.run("enhance", "--json", "--endpoint", endpoint, str(make_dng()))
    assert done.returncode == 0, done.stderr
    assert read_state(bridge.state_dir).endpoint == endpoint
    status = bridge.run("status", "--json", "--endpoint", endpoint)
    assert json.loads(status.stdout)["endpoint"] == endpoint


NO_TORCH_CLIENT = """
import sys

class RefuseHeavyImports:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "numpy"):
            raise ImportError(f"the client must not import {name}")

sys.meta_path.insert(0, RefuseHeavyImports())
from lr_bridge.cli import main
status = main(sys.argv[1:])
print("heavy modules:", sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "numpy")), file=sys.stderr)
from importlib.metadata import packages_distributions
owners = packages_distributions()
top_level = {m.split(".")[0] for m in sys.modules if not m.startswith("_")}  # not site's startup hooks
used = {d for m in top_level for d in owners.get(m, []) if d != "lowlight-raw"}
print("distributions:", " ".join(sorted(used)), file=sys.stderr)
sys.exit(status)
"""


def test_the_client_imports_neither_torch_nor_numpy(bridge, make_dng, tmp_path):
    """What lets the client run where torch is not installed (the darktable 5 chroot)."""
    source = make_dng("night.dng")
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-c", NO_TORCH_CLIENT, "enhance", "--json", "-o", str(out), "-f", "tiff",
                          "--linear", "--ev", "3", "--strength", "0.5", str(source)],
                         env=bridge.env, capture_output=True, text=True, timeout=120)
    bridge.remember_daemon()
    assert run.returncode == 0, run.stderr
    assert "heavy modules: []" in run.stderr
    # exactly what the darktable 5 chroot installs for it
    chroot_script = (Path(__file__).parent.parent / "scripts" / "darktable5_chroot.sh").read_text()
    (packages,) = re.findall(r"^CLIENT_PACKAGES=\((.*)\)$", chroot_script, re.MULTILINE)
    assert f"distributions: {' '.join(sorted(packages.split()))}\n" in run.stderr
    (result,) = [e for e in json_lines(run.stdout) if e["event"] == "result"]
    assert result["output"] == str(out / "night_lowlight.tif") and result["ev"] == 3.0
    assert Path(result["output"]).is_file()


def test_each_job_can_name_its_model_and_a_bad_one_fails_only_that_job(bridge, make_dng, tmp_path):
    from lowlight_raw.networks.catalog import SHIPPED_MODELS

    source = make_dng("night.dng")
    default = bridge.run("enhance", "--json", "-o", str(tmp_path / "default"), str(source))
    fast = bridge.run("enhance", "--json", "-o", str(tmp_path / "fast"), "--model", "fast", str(source))
    fast_again = bridge.run("enhance", "--json", "-o", str(tmp_path / "fast again"), "--model", "fast", str(source))
    assert default.returncode == fast.returncode == fast_again.returncode == 0, fast.stderr
    pixels = [tifffile.imread(tmp_path / d / "night_lowlight.dng") for d in ("default", "fast", "fast again")]
    assert np.array_equal(pixels[1], pixels[2]), "the same model gives the same result"
    assert np.abs(pixels[0].astype(float) - pixels[1]).mean() > 100, "the daemon's tiny default is another network"
    log = (bridge.state_dir / LOG_FILE).read_text()
    assert log.count("model fast ready (lowlight-sid12)") == 1, "loaded once, then kept warm"

    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a model")
    bad = bridge.run("enhance", "--json", "--model", str(broken), str(source))
    assert bad.returncode == 1
    (error,) = [e for e in json_lines(bad.stdout) if e["event"] == "error"]
    assert error["file"] == str(source) and error["message"].startswith(f"{source}: cannot load the model: ")
    if not SHIPPED_MODELS["quality"]["bayer"].is_file():
        quality = bridge.run("enhance", "--json", "--model", "quality", str(source))
        assert quality.returncode == 2
        (line,) = json_lines(quality.stdout)
        assert line["code"] == "bad_options"
        assert line["message"].endswith("the 'quality' model is not shipped with this installation")

    status = json.loads(bridge.run("status", "--json").stdout)
    assert status["state"] == "ready" and status["model"]["name"] == "tiny-test", "the daemon lives on, unchanged"


def test_a_mixed_batch_gets_a_network_per_sensor_layout(bridge, make_dng, xtrans_dng, linear_dng, tmp_path):
    """Bayer, X-Trans and linear DNGs in one job: ``--model fast`` gives each its own network; a
    weight file (the daemon's tiny Bayer default) fails only the files of another layout."""
    bayer = make_dng("bayer.dng")
    named = bridge.run("enhance", "--json", "-o", str(tmp_path / "named"), "-f", "tiff", "--model", "fast",
                       str(bayer), str(xtrans_dng), str(linear_dng))
    assert named.returncode == 0, named.stderr
    results = [e for e in json_lines(named.stdout) if e["event"] == "result"]
    assert sorted(Path(r["output"]).name for r in results) == ["bayer_lowlight.tif", "linear_dark_lowlight.tif", "xt_dark_lowlight.tif"]
    path = bridge.run("enhance", "--json", "-o", str(tmp_path / "path"), str(bayer), str(xtrans_dng))
    assert path.returncode == 1
    (error,) = [e for e in json_lines(path.stdout) if e["event"] == "error"]
    assert error["file"] == str(xtrans_dng)
    assert error["message"] == f"{xtrans_dng}: X-Trans sensor, but the model {bridge.env['LR_BRIDGE_MODEL']} is for Bayer sensors"
    assert (tmp_path / "path" / "bayer_lowlight.dng").is_file()
