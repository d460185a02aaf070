"""The darktable plugin: its installer, and end to end in a real darktable with the real client,
daemon and (tiny) model.

The end-to-end tests run darktable headless under ``xvfb-run`` with a throw-away configdir and
an in-memory library; tests/darktable/e2e_driver.lua drives it and reports what darktable's
database holds afterwards. Two darktables: Debian 12's 4.2 on this machine (marked ``darktable``,
skipped where darktable or xvfb-run are missing), and 5.x from trixie-backports in a cached
Debian trixie chroot (scripts/darktable5_chroot.sh; marked ``darktable5``, skipped with the
script's one-line reason where it cannot be built, e.g. not root or Debian's archive unreachable).
In the chroot only the client runs (it needs no torch); the daemon runs here. The 4.2 run finds
its client as a fresh install does: recorded by the installer, not on PATH.

The darkroom tests render the engine's DNG with ``darktable-cli`` and darktable's defaults (4.2
here, 5.x in the chroot) and compare it with the engine's own JPEG of the same raw.
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

import exiv2
import imageio.v3 as iio
import numpy as np
import pytest

from helpers import file_sha256, finished_outputs
from lowlight_raw.machine import pid_alive
from lowlight_raw.networks.catalog import MODEL_CHOICES, shipped_weights
from lowlight_raw.pipeline.color import srgb_decode
from lr_bridge import darktable_install
from lr_bridge.darktable_install import REQUIRE_LINE, install_plugin
from lr_bridge.state import read_state

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "plugin" / "lowlight_enhance.lua"
DRIVER = REPO / "tests" / "darktable" / "e2e_driver.lua"
HAVE_DARKTABLE = shutil.which("darktable") is not None and shutil.which("xvfb-run") is not None
CHROOT_SCRIPT = REPO / "scripts" / "darktable5_chroot.sh"
CHROOT_PATH = "/usr/local/bin:/usr/bin:/bin"
VENV_CLIENT = Path(sys.executable).parent / "lr-bridge"  # this installation's client, as scripts/setup.sh makes it


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


def test_install_records_this_installations_client_and_models(tmp_path: Path) -> None:
    script = install_plugin(tmp_path)
    info = json.loads(script.with_name(darktable_install.INSTALL_INFO_NAME).read_text())
    assert info["client"] == str(VENV_CLIENT) and os.access(info["client"], os.X_OK)
    shipped = [name for name in MODEL_CHOICES if name == "auto" or shipped_weights(name) is not None]
    assert info["models"] == shipped
    assert ("quality" in info["models"]) == (shipped_weights("quality") is not None), "offered only when shipped"
    assert script.with_name(darktable_install.INSTALL_INFO_NAME).name == PLUGIN.with_suffix(".json").name, (
        "the plugin looks for it under its own name")


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


STARTUP_S = 60  # darktable 4.2 under xvfb sometimes hangs before it runs any Lua (2 of 20 bare starts)


def _run_darktable(command: list[str], env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess:
    """Run darktable (under xvfb-run, maybe in the chroot) in its own process group.

    ``timeout`` does not stop xvfb-run's darktable (a grandchild that ignores SIGTERM): on a
    timeout, and after a normal end for anything left behind, the whole group is killed. A
    darktable whose driver has not started (no trace file) within :data:`STARTUP_S` is killed
    and started again (at most three times).
    """
    trace = Path(env["LOWLIGHT_E2E_REPORT"] + ".trace")
    attempts = 3
    for attempt in range(1, attempts + 1):
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   errors="replace", start_new_session=True)
        started_by = time.monotonic() + STARTUP_S
        while not trace.is_file() and process.poll() is None and time.monotonic() < started_by:
            time.sleep(0.2)
        if trace.is_file() or process.poll() is not None or attempt == attempts:
            break
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        steps = trace.read_text() if trace.is_file() else "none: the driver did not start"
        pytest.fail(f"darktable did not finish within {timeout_s:.0f} s; driver steps:\n{steps}\n{(stdout + stderr)[-3000:]}")
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


KILLER = """\
import json, os, signal, subprocess, sys
from pathlib import Path
from lr_bridge.state import read_state

# the real client, passing its lines through; the daemon is killed once the first result is back
client = subprocess.Popen([{client!r}, *sys.argv[1:]], stdout=subprocess.PIPE, text=True)
killed = False
for line in client.stdout:
    sys.stdout.write(line)
    sys.stdout.flush()
    if not killed and json.loads(line).get("event") == "result":
        os.kill(read_state(Path(os.environ["LR_BRIDGE_STATE_DIR"])).pid, signal.SIGKILL)
        killed = True
sys.exit(client.wait())
"""


def _killer_client(path: Path, client: Path, python: str) -> None:
    """A client command at ``path`` that runs ``client`` and kills the daemon after the first result."""
    path.with_suffix(".py").write_text(KILLER.format(client=str(client)))
    path.write_text(f"#!/bin/sh\nPYTHONPATH='{REPO}' exec {python} '{path.with_suffix('.py')}' \"$@\"\n")
    path.chmod(0o755)


CRASH_ATTEMPTS = 2  # darktable 4.2 has aborted (heap corruption, 1 CI run in about 40) on the junk photo's thumbnail


def _crashed(returncode: int) -> bool:
    """Whether darktable died by a signal (an abort or a segfault: its own crash, not an exit it chose)."""
    return returncode < 0 or returncode in (128 + signal.SIGABRT, 128 + signal.SIGSEGV, 128 + signal.SIGBUS)


def _enhance_in_darktable(tmp_path: Path, make_dng, tiny_weights: Path, chroot: Path | None) -> tuple[dict, str, Path]:
    """Run tests/darktable/e2e_driver.lua in darktable 4.2 (host) or 5.x (``chroot``).

    Each attempt runs in its own fresh folder; one that darktable itself crashes (a signal, see
    :func:`_crashed`) is run again from scratch, at most :data:`CRASH_ATTEMPTS` times in all, and
    its log stays in the failure message. Any other failure fails at once. Returns the driver's
    report, darktable's log and the photos' folder.
    """
    crashes = []
    for attempt in range(1, CRASH_ATTEMPTS + 1):
        run, report_path, folder, steps = _drive_darktable(tmp_path / f"attempt {attempt}", make_dng, tiny_weights, chroot)
        log = run.stdout + run.stderr
        if not _crashed(run.returncode) or attempt == CRASH_ATTEMPTS:
            break
        crashes.append(f"attempt {attempt}: darktable died with status {run.returncode}; driver steps: {steps}\n{log[-1500:]}")
    earlier = "".join(f"\n-- earlier crash, run again --\n{crash}" for crash in crashes)
    assert run.returncode == 0, f"darktable exited with {run.returncode}; driver steps: {steps}\n{log[-4000:]}{earlier}"
    assert report_path.is_file(), f"no report; driver steps: {steps}\n{log[-4000:]}"
    report = json.loads(report_path.read_text())
    assert report["ok"], report.get("error")
    return report, log, folder


def _drive_darktable(tmp_path: Path, make_dng, tiny_weights: Path,
                     chroot: Path | None) -> tuple[subprocess.CompletedProcess, Path, Path, str]:
    """One run of the driver in darktable, everything under ``tmp_path`` (made here).

    Returns darktable's process, where the driver's report goes, the photos' folder and the
    driver's steps (one line).
    """
    tmp_path.mkdir()
    folder = tmp_path / "low light ü 夜"
    good = make_dng("night's shot.dng", directory=folder)
    broken = make_dng("broken one.dng", directory=folder, seed=1)
    good_digest = file_sha256(good)
    more_folder = tmp_path / "more nights"
    more = [make_dng("big 0.dng", height=1200, width=1600, directory=more_folder)]
    for i in range(1, 6):  # more photos than the daemon finishes before the kill lands
        more.append(more_folder / f"big {i}.dng")
        more[-1].hardlink_to(more[0])

    configdir = tmp_path / "dt config"
    client = tmp_path / "bin dir" / "lr-bridge"
    env, state_dir = _isolated_bridge(tmp_path, client, tiny_weights)
    if chroot is None:
        # as the README says, with no PATH edits: darktable's PATH lacks the virtualenv and the
        # plugin's client preference stays empty; it runs the client the installer recorded
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if Path(p) != VENV_CLIENT.parent)
        install = subprocess.run([str(VENV_CLIENT), "install-darktable-plugin", "--configdir", str(configdir)],
                                 env=env, capture_output=True, text=True, timeout=60)
        assert install.returncode == 0 and f"the plugin runs {VENV_CLIENT}" in install.stdout, install.stdout + install.stderr
        client = VENV_CLIENT
    else:
        install_plugin(configdir)  # the chroot has no virtualenv: the preference names the chroot's client
    report_path = tmp_path / "report.json"
    env.update(
        LOWLIGHT_E2E_DRIVER=str(DRIVER),
        LOWLIGHT_E2E_SOURCES=f"{good}\n{broken}",
        LOWLIGHT_E2E_BROKEN=str(broken),
        LOWLIGHT_E2E_CLIENT="" if chroot is None else str(client),
        LOWLIGHT_E2E_REPORT=str(report_path),
        LOWLIGHT_E2E_TRIGGER="action" if chroot is None else "handler",
        LOWLIGHT_E2E_MORE="\n".join(map(str, more)),
        LOWLIGHT_E2E_KILLER=str(tmp_path / "bin dir" / "killer"),
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
    _killer_client(tmp_path / "bin dir" / "killer", client, "/opt/lr-client/bin/python" if chroot else sys.executable)
    daemon = _start_host_daemon(env, state_dir) if chroot is not None else None
    try:
        run = _run_darktable(darktable, env, timeout_s=300)
    finally:
        _stop_daemon(env, state_dir)
        if daemon is not None:
            daemon.wait(timeout=60)
    assert file_sha256(good) == good_digest, "the source file is never modified"
    trace = Path(f"{report_path}.trace")
    steps = " > ".join(trace.read_text().split("\n")).strip(" >") if trace.is_file() else "none: the driver did not start"
    return run, report_path, folder, steps


def _check_the_batch(report: dict, log: str, folder: Path) -> None:
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
    toasts = report["toasts"]
    failure = next(t for t in toasts if "broken one.dng" in t)
    assert failure.startswith("low light: broken one.dng: ") and str(folder) not in failure, "base name + reason"
    # the results went to another folder: the lighttable shows their film roll, the summary names it
    assert report["first_summary"] == "low light: 1 of 2 photos enhanced, 1 failed, in lowlight"
    assert report["sources_shown"] is True and report["results_shown"] is True, "the results are in view after the run"
    assert f"showing the film roll {folder / 'lowlight'}" in log, "by switching to their film roll"
    assert f"{report['first_summary'].removesuffix('lowlight')}{folder / 'lowlight'}" in report["report_file"]

    # the report keeps every file's outcome; a second run on the results skips their originals
    assert f"ok      {good} -> {result_file} (+" in report["report_file"]
    assert f"failed  {broken}: " in report["report_file"]
    assert report["second_run"] == {"ok": 0, "failed": 0, "skipped": 1}
    assert f"skipped {good}: already enhanced" in report["report_file"]
    assert "low light: nothing to enhance, 1 skipped: already enhanced" in toasts

    # a daemon killed mid-batch: the final summary counts what was never processed and says why
    killed = report["killed_run"]
    assert killed["ok"] >= 1 and killed["unprocessed"] >= 1 and killed["ok"] + killed["failed"] + killed["unprocessed"] == 6
    assert killed["stop_reason"] and killed["shown"] is True
    summary = report["killed_summary"]
    assert summary.startswith(f"low light: {killed['ok']} of 6 photos enhanced") and f"{killed['unprocessed']} not processed" in summary
    assert killed["stop_reason"].startswith("the daemon died or stalled")
    assert "not processed: the daemon died or stalled" in summary, summary
    assert report["report_file"].count("  not processed ") == killed["unprocessed"]

    print("toasts:", *(f"{len(t):3d} {t}" for t in toasts), sep="\n  ")
    assert all(len(t) <= 80 for t in toasts), [t for t in toasts if len(t) > 80]
    assert "select the photos to enhance first" not in log, "no batch ran without photos"
    lua_errors = [line for line in log.splitlines() if "LUA ERROR" in line]
    assert len(lua_errors) == 2 and "broken one.dng: " in lua_errors[0], lua_errors
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
    assert f"running '{VENV_CLIENT}' enhance" in log, "the client the installer recorded, not from PATH"
    _check_the_batch(report, log, folder)


@pytest.mark.darktable5
@pytest.mark.slow
def test_enhance_low_light_in_darktable_5(tmp_path: Path, make_dng, tiny_weights: Path, darktable5_chroot: Path) -> None:
    report, log, folder = _enhance_in_darktable(tmp_path, make_dng, tiny_weights, chroot=darktable5_chroot)
    assert tuple(int(n) for n in report["api"].split(".")) >= (9, 4, 0), "darktable 5.x"
    _check_the_batch(report, log, folder)


# -- a result as darktable's default pipeline shows it ----------------------------------------------

EXAMPLE = REPO / "examples" / "coffee_dark.dng"
GREY_TOLERANCE_EV = 0.3  # the darkroom's first look may differ from the engine's own JPEG by this much
CLIPPED_CODE = 254  # an 8-bit channel at or above this counts as clipped (JPEG rounding blurs 255)
_LUMA = np.array([0.2126, 0.7152, 0.0722])  # Rec. 709 / sRGB luminance weights


def _tone(jpeg: Path) -> tuple[float, float, float]:
    """A JPEG's mid-grey, two ways (log-average and median linear luminance, in EV) and its
    fraction of clipped pixels (any channel at or above :data:`CLIPPED_CODE`)."""
    codes = iio.imread(jpeg)[..., :3].astype(np.float64)
    luminance = srgb_decode(codes / 255.0) @ _LUMA
    log_average = float(np.mean(np.log2(np.maximum(luminance, 1e-4))))
    return log_average, float(np.log2(np.median(luminance))), float((codes >= CLIPPED_CODE).any(axis=2).mean())


def _render_with_defaults(image: Path, jpeg: Path, work: Path, chroot: Path | None) -> None:
    """``darktable-cli`` with a fresh config and cache (darktable's defaults, nothing cached)."""
    command = ["darktable-cli", str(image), str(jpeg), "--core", "--configdir", str(work / "config"),
               "--cachedir", str(work / "cache"), "--library", ":memory:", "--conf", "write_sidecar_files=never"]
    if chroot is not None:
        command = [str(CHROOT_SCRIPT), "run", "env", f"PATH={CHROOT_PATH}", f"HOME={work}", *command]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and jpeg.is_file(), (run.stdout + run.stderr)[-3000:]


def _check_the_darkroom_look(tmp_path: Path, chroot: Path | None) -> None:
    """The engine's DNG of a dark photo, rendered by darktable's default pipeline, looks like the
    engine's own JPEG of it: the same mid-grey (±0.3 EV) and no more clipped pixels. The source
    was underexposed on purpose (-2 EV compensation in its EXIF), which darktable undoes on raws."""
    from lowlight_raw.cli import main as engine

    source = tmp_path / "coffee_dark.dng"
    shutil.copyfile(EXAMPLE, source)
    tags = exiv2.ImageFactory.open(str(source))
    tags.readMetadata()
    tags.exifData()["Exif.Photo.ExposureBiasValue"] = "-2/1"
    tags.writeMetadata()
    for fmt in ("dng", "jpeg"):
        assert engine(["enhance", str(source), "-o", str(tmp_path / "out"), "--format", fmt]) == 0
    rendered = tmp_path / "darktable.jpg"
    _render_with_defaults(tmp_path / "out" / "coffee_dark_lowlight.dng", rendered, tmp_path / "dt", chroot)

    engine_grey, engine_median, engine_clipped = _tone(tmp_path / "out" / "coffee_dark_lowlight.jpg")
    grey, median, clipped = _tone(rendered)
    print(f"darkroom - engine: log-average {grey - engine_grey:+.2f} EV, median {median - engine_median:+.2f} EV, "
          f"clipped {clipped:.2%} (engine {engine_clipped:.2%})")
    assert abs(grey - engine_grey) <= GREY_TOLERANCE_EV
    assert abs(median - engine_median) <= GREY_TOLERANCE_EV
    assert clipped <= engine_clipped


@pytest.mark.darktable
@pytest.mark.skipif(shutil.which("darktable-cli") is None, reason="needs darktable-cli")
def test_a_result_opens_as_the_engine_meant_in_darktable_4(tmp_path: Path) -> None:
    _check_the_darkroom_look(tmp_path, chroot=None)


@pytest.mark.darktable5
def test_a_result_opens_as_the_engine_meant_in_darktable_5(tmp_path: Path, darktable5_chroot: Path) -> None:
    _check_the_darkroom_look(tmp_path, chroot=darktable5_chroot)


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
    unprocessed = len(names) - ok
    assert summary.endswith(f"failed=0 unprocessed={unprocessed} cancelled=true") and ok < len(names), run.stdout
    counts = f"{ok} of {len(names)} photos enhanced, {unprocessed} not processed, in out" if ok else f"{unprocessed} not processed"
    assert run.stdout.rstrip().endswith(f"message low light: {counts}; cancelled"), run.stdout
    daemon = json.loads(status.stdout)
    assert daemon["running"] is None and daemon["queued"] == [], "the daemon's job was cancelled"
    outputs = finished_outputs(folder / "out")
    assert len(outputs) == ok and all(name.endswith("_lowlight.dng") for name in outputs), outputs
