"""The darktable plugin: its installer, and end to end in a real darktable with the real client,
daemon and (tiny) model.

The end-to-end tests run darktable headless under ``xvfb-run`` with a throw-away configdir and
an in-memory library; tests/darktable/e2e_driver.lua drives it and reports what darktable's
database holds afterwards. Two darktables: Debian 12's 4.2 on this machine (marked ``darktable``,
skipped where darktable or xvfb-run are missing), and 5.x from trixie-backports in a cached
Debian trixie chroot (scripts/darktable5_chroot.sh; marked ``darktable5``, skipped with the
script's one-line reason where it cannot be built, e.g. not root or Debian's archive unreachable).
In the chroot only the client runs (it needs no torch); the daemon runs here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lr_bridge import darktable_install
from lr_bridge.darktable_install import REQUIRE_LINE, install_plugin
from lowlight_raw.local import pid_alive
from lr_bridge.state import read_state

from helpers import file_sha256, finished_outputs

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "plugin" / "lowlight_enhance.lua"
DRIVER = REPO / "tests" / "darktable" / "e2e_driver.lua"
HAVE_DARKTABLE = shutil.which("darktable") is not None and shutil.which("xvfb-run") is not None
CHROOT_SCRIPT = REPO / "scripts" / "darktable5_chroot.sh"
CHROOT_PATH = "/usr/local/bin:/usr/bin:/bin"


# -- installer ----------------------------------------------------------------------------------


def test_install_copies_the_script_and_adds_require_once(tmp_path: Path) -> None:
    configdir = tmp_path / "dark table ü"
    (configdir).mkdir()
    (configdir / "luarc").write_text('require "tools/script_manager"')  # no final newline

    script = install_plugin(configdir)
    install_plugin(configdir)

    assert script == configdir / "lua" / "lowlight" / "lowlight_enhance.lua"
    assert script.read_bytes() == PLUGIN.read_bytes()
    assert (configdir / "luarc").read_text() == f'require "tools/script_manager"\n{REQUIRE_LINE}\n'
    assert not list(configdir.rglob("*.tmp")), "no temporary files left"


def test_install_updates_a_changed_script_and_respects_an_existing_require(tmp_path: Path) -> None:
    script = tmp_path / "lua" / "lowlight" / "lowlight_enhance.lua"
    script.parent.mkdir(parents=True)
    script.write_text("-- an old version\n")
    luarc = tmp_path / "luarc"
    luarc.write_text("-- require \"lowlight/lowlight_enhance\"\nrequire('lowlight/lowlight_enhance')\n")

    install_plugin(tmp_path)

    assert script.read_bytes() == PLUGIN.read_bytes()
    assert luarc.read_text() == "-- require \"lowlight/lowlight_enhance\"\nrequire('lowlight/lowlight_enhance')\n"


def test_a_commented_out_require_does_not_count(tmp_path: Path) -> None:
    (tmp_path / "luarc").write_text('--require "lowlight/lowlight_enhance"\n')
    install_plugin(tmp_path)
    assert (tmp_path / "luarc").read_text().splitlines() == ['--require "lowlight/lowlight_enhance"', REQUIRE_LINE]


def test_default_configdir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    script = install_plugin()
    assert script == tmp_path / "xdg" / "darktable" / "lua" / "lowlight" / "lowlight_enhance.lua"
    assert (tmp_path / "xdg" / "darktable" / "luarc").read_text() == REQUIRE_LINE + "\n"


def test_run_reports_an_unwritable_configdir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    parser = __import__("argparse").ArgumentParser()
    darktable_install.add_arguments(parser)

    status = darktable_install.run(parser.parse_args(["--configdir", str(blocker)]))

    assert status == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lr-bridge: cannot install the darktable plugin:") and str(blocker) in err
    assert "\n" not in err


def test_run_installs_and_says_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = __import__("argparse").ArgumentParser()
    darktable_install.add_arguments(parser)
    assert darktable_install.run(parser.parse_args(["--configdir", str(tmp_path)])) == 0
    assert str(tmp_path / "lua" / "lowlight" / "lowlight_enhance.lua") in capsys.readouterr().out


# -- end to end in darktable -----------------------------------------------------------------------


def _stop_daemon(env: dict[str, str], state_dir: Path) -> None:
    subprocess.run([sys.executable, "-m", "lr_bridge", "stop"], env=env, capture_output=True, timeout=60)
    state = read_state(state_dir)
    if state is not None and pid_alive(state.pid):
        os.kill(state.pid, 9)


def _isolated_bridge(tmp_path: Path, client: Path, tiny_weights: Path) -> tuple[dict[str, str], Path]:
    """A client wrapper at ``client`` and an environment whose daemon is this test's own.

    Returns the environment (tiny model, CPU, empty config, private state folder) and the state folder.
    """
    client.parent.mkdir(parents=True, exist_ok=True)
    client.write_text(f"#!/bin/sh\nexec '{sys.executable}' -m lr_bridge \"$@\"\n")
    client.chmod(0o755)
    bridge_config = tmp_path / "bridge.toml"
    bridge_config.write_text("")
    state_dir = tmp_path / "state"
    env = dict(
        os.environ,
        LR_BRIDGE_CONFIG=str(bridge_config),
        LR_BRIDGE_STATE_DIR=str(state_dir),
        LR_BRIDGE_MODEL=str(tiny_weights),
        LR_BRIDGE_DEVICE="cpu",
    )
    return env, state_dir


def _run_darktable(command: list[str], env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess:
    """Run darktable (under xvfb-run, maybe in the chroot) in its own process group.

    ``timeout`` does not stop xvfb-run's darktable (a grandchild that ignores SIGTERM): on a
    timeout, and after a normal end for anything left behind, the whole group is killed.
    """
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               errors="replace", start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"darktable did not finish within {timeout_s:.0f} s: {(stdout + stderr)[-3000:]}")
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _start_host_daemon(env: dict[str, str], state_dir: Path) -> subprocess.Popen:
    """Start this test's daemon on the host (where torch is) and wait for its state file."""
    daemon = subprocess.Popen([sys.executable, "-m", "lr_bridge", "serve"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    while read_state(state_dir) is None:
        assert daemon.poll() is None, f"the daemon exited with status {daemon.returncode}"
        time.sleep(0.1)
    return daemon


@pytest.fixture(scope="session")
def darktable5_chroot() -> Path:
    """The cached darktable 5.x chroot, built on first use; skipped (one line) where it cannot be."""
    build = subprocess.run([str(CHROOT_SCRIPT), "build"], capture_output=True, text=True, timeout=3600)
    if build.returncode == 3:
        pytest.skip(build.stderr.strip().splitlines()[-1])
    assert build.returncode == 0, build.stderr[-3000:]
    return Path(build.stdout.strip().splitlines()[-1])


def _enhance_in_darktable(tmp_path: Path, make_dng, tiny_weights: Path, chroot: Path | None) -> tuple[dict, str, Path]:
    """Run tests/darktable/e2e_driver.lua in darktable 4.2 (host) or 5.x (``chroot``).

    Returns the driver's report, darktable's log and the photos' folder.
    """
    folder = tmp_path / "low light ü 夜"
    good = make_dng("night's shot.dng", directory=folder)
    broken = make_dng("broken one.dng", directory=folder, seed=1)
    good_digest = file_sha256(good)

    configdir = tmp_path / "dt config"
    install_plugin(configdir)
    client = tmp_path / "bin dir" / "lr-bridge"
    env, state_dir = _isolated_bridge(tmp_path, client, tiny_weights)
    report_path = tmp_path / "report.json"
    env.update(
        LOWLIGHT_E2E_DRIVER=str(DRIVER),
        LOWLIGHT_E2E_SOURCES=f"{good}\n{broken}",
        LOWLIGHT_E2E_BROKEN=str(broken),
        LOWLIGHT_E2E_CLIENT=str(client),
        LOWLIGHT_E2E_REPORT=str(report_path),
        LOWLIGHT_E2E_TRIGGER="action" if chroot is None else "handler",
    )
    darktable = [
        "xvfb-run", "-a", "darktable",
        "--configdir", str(configdir), "--cachedir", str(tmp_path / "dt cache"), "--library", ":memory:",
        "--disable-opencl", "--conf", "write_sidecar_files=never", "-d", "lua",
        "--luacmd", 'dofile(os.getenv("LOWLIGHT_E2E_DRIVER"))',
    ]
    if chroot is not None:
        # the chroot's client (no torch there) reaches this test's daemon, started here, through
        # the state folder under /tmp, which the chroot shares
        client.write_text(f"#!/bin/sh\nPYTHONPATH='{REPO}' exec /opt/lr-client/bin/python -m lr_bridge \"$@\"\n")
        env["LR_DT5_BINDS"] = str(REPO)
        darktable = [str(CHROOT_SCRIPT), "run", "env", f"PATH={CHROOT_PATH}", *darktable]
    daemon = _start_host_daemon(env, state_dir) if chroot is not None else None
    try:
        run = _run_darktable(darktable, env, timeout_s=300)
    finally:
        _stop_daemon(env, state_dir)
        if daemon is not None:
            daemon.wait(timeout=60)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    assert report_path.is_file(), log[-4000:]
    report = json.loads(report_path.read_text())
    assert report["ok"], report.get("error")
    assert file_sha256(good) == good_digest, "the source file is never modified"
    return report, log, folder


def _check_the_batch(report: dict, log: str, folder: Path, configdir: Path) -> None:
    assert report["plugin_loaded"] and report["api"].startswith("9.")
    assert report["action_images"] == 2
    assert report["busy_at_end"] is False

    good_group, broken_group = report["groups"]
    good = folder / "night's shot.dng"
    result_file = folder / "lowlight" / "night's shot_lowlight.dng"
    assert result_file.is_file()
    assert sorted(m["file"] for m in good_group["members"]) == sorted([str(good), str(result_file)])
    result = next(m for m in good_group["members"] if m["file"] == str(result_file))
    assert result["leader"] == str(result_file), "the result leads the group (the default)"
    assert good_group["source"]["leader"] == str(result_file)
    assert "lowlight e2e|nuit étoilée" in result["tags"]
    assert result["rating"] == good_group["source"]["rating"] == 4
    assert result["labels"] == ["red", "blue"]
    assert result["title"] == "night 1 «test»" and result["description"] == "it's dark, 1"
    assert report["selection"] == [str(result_file)], "the result is selected afterwards"

    # the broken photo failed alone, said so in plain words, and nothing was imported for it
    broken = folder / "broken one.dng"
    assert [m["file"] for m in broken_group["members"]] == [str(broken)]
    assert not (folder / "lowlight" / "broken one_lowlight.dng").exists()
    assert "broken one.dng failed" in log
    report_file = configdir / "lowlight_enhance.log"
    summary = (f"1 of 2 photo(s) enhanced, 1 failed; results selected, grouped with their sources in "
               f"{folder / 'lowlight'}; report: {report_file}")
    assert summary in log
    lua_errors = [line for line in log.splitlines() if "LUA ERROR" in line]
    assert len(lua_errors) == 1 and "broken one.dng failed" in lua_errors[0], lua_errors

    # the report keeps every file's outcome; a second run on the results skips them all
    assert f"ok      {good} -> {result_file} (+" in report["report_file"]
    assert f"failed  {broken}: " in report["report_file"]
    assert report["second_run"] == {"ok": 0, "failed": 0, "skipped": 1}
    assert f"skipped {result_file}: a low light result" in report["report_file"]
    assert "nothing to enhance, 1 skipped (low light results or not raw)" in log
    assert report["reloaded"] is True, "switched off (destroy) and on again, as script_manager does"


@pytest.mark.skipif(os.geteuid() != 0, reason="the chroot is built and entered as root")
def test_a_chroot_that_cannot_be_built_is_one_line_and_status_3(tmp_path: Path) -> None:
    env = dict(os.environ, LR_DT5_CHROOT=str(tmp_path / "chroot"), LR_DT5_MIRROR="http://127.0.0.1:9/debian")
    build = subprocess.run([str(CHROOT_SCRIPT), "build"], env=env, capture_output=True, text=True, timeout=300)
    assert (build.returncode, build.stdout) == (3, "")
    assert build.stderr == "darktable 5 chroot: Debian's archive http://127.0.0.1:9/debian is unreachable\n"
    assert not (tmp_path / "chroot").exists() and not (tmp_path / "chroot.partial").exists()

    enter = subprocess.run([str(CHROOT_SCRIPT), "run", "true"], env=env, capture_output=True, text=True, timeout=60)
    assert enter.returncode == 3
    assert enter.stderr == (f"darktable 5 chroot: {tmp_path / 'chroot'} is not built "
                            "(run: scripts/darktable5_chroot.sh build)\n")


@pytest.mark.darktable
@pytest.mark.slow
@pytest.mark.skipif(not HAVE_DARKTABLE, reason="needs darktable and xvfb-run")
def test_enhance_low_light_in_darktable_4(tmp_path: Path, make_dng, tiny_weights: Path) -> None:
    report, log, folder = _enhance_in_darktable(tmp_path, make_dng, tiny_weights, chroot=None)
    assert report["api"].startswith("9.0."), "Debian 12's darktable 4.2"
    assert report["busy_after_trigger"] is True, "the shortcut action started the batch in the background"
    _check_the_batch(report, log, folder, tmp_path / "dt config")


@pytest.mark.darktable5
@pytest.mark.slow
def test_enhance_low_light_in_darktable_5(tmp_path: Path, make_dng, tiny_weights: Path, darktable5_chroot: Path) -> None:
    report, log, folder = _enhance_in_darktable(tmp_path, make_dng, tiny_weights, chroot=darktable5_chroot)
    assert tuple(int(n) for n in report["api"].split(".")) >= (9, 4, 0), "darktable 5.x"
    _check_the_batch(report, log, folder, tmp_path / "dt config")


# -- the cancel button against the real client (fake darktable, real processes) ------------------


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("lua5.4") is None, reason="needs lua5.4")
def test_cancel_stops_the_job_on_the_daemon(tmp_path: Path, make_dng, tiny_weights: Path) -> None:
    folder = tmp_path / "many nights"
    first = make_dng("night 0.dng", height=1200, width=1600, directory=folder)
    for i in range(1, 24):  # more photos than any machine finishes before the cancel lands
        (folder / f"night {i}.dng").hardlink_to(first)
    names = sorted(p.name for p in folder.iterdir())
    client = tmp_path / "lr-bridge"
    env, state_dir = _isolated_bridge(tmp_path, client, tiny_weights)
    env.update(
        LOWLIGHT_CANCEL_CLIENT=str(client),
        LOWLIGHT_CANCEL_FOLDER=str(folder),
        LOWLIGHT_CANCEL_FILES="\n".join(names),
    )
    try:
        run = subprocess.run(["lua5.4", str(REPO / "tests" / "lua" / "real_client_cancel.lua")], env=env,
                             capture_output=True, text=True, timeout=180)
        status = subprocess.run([sys.executable, "-m", "lr_bridge", "status", "--json"], env=env,
                                capture_output=True, text=True, timeout=60)
    finally:
        _stop_daemon(env, state_dir)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = next(line for line in run.stdout.splitlines() if line.startswith("summary "))
    ok = int(summary.split("ok=")[1].split()[0])
    assert summary.endswith("failed=0 cancelled=true") and ok < len(names), run.stdout
    assert f"message low light: {ok} of {len(names)} photo(s) enhanced, cancelled" in run.stdout
    daemon = json.loads(status.stdout)
    assert daemon["running"] is None and daemon["queued"] == [], "the daemon's job was cancelled"
    outputs = finished_outputs(folder / "out")
    assert len(outputs) == ok and all(name.endswith("_lowlight.dng") for name in outputs), outputs
