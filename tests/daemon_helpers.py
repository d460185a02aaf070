"""A real daemon for the tests: started, followed through a real DEALER socket, stopped; and the
root-only tools the hardening tests need (another uid, a small file system)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import zmq

from lr_bridge.client import BridgeClient, Connection, connect, start_daemon
from lr_bridge.protocol import Reply
from lr_bridge.state import read_state

OTHER_UID = 65534  # nobody: the "other local user" of the privacy tests


@dataclass
class RunningDaemon:
    process: subprocess.Popen
    state_dir: Path
    connection: Connection


def launch(state_dir: Path, weights: Path, env: dict[str, str] | None = None) -> RunningDaemon:
    """Start ``lr-bridge serve`` on a free loopback port (extra ``env``) and wait until it is ready."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LR_BRIDGE_MODEL", str(weights))
        for key, value in (env or {}).items():
            patch.setenv(key, value)
        process = start_daemon(state_dir)
    deadline = time.monotonic() + 90
    while read_state(state_dir) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"daemon did not start: {(state_dir / 'daemon.log').read_text()}")
        time.sleep(0.05)
    return RunningDaemon(process, state_dir, connect(state_dir, autostart=False, timeout_s=90))


def terminate(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Mailbox(BridgeClient):
    """A client that keeps every message until the test asks for it by request id.

    A test juggles several requests at once; a message that arrives while it waits for another
    request's reply is kept, not dropped, so the test never depends on how fast the daemon is.
    """

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        self._kept: list[Reply] = []

    def next_reply(self, request_id: str, timeout_s: float = 30.0, skip_heartbeats: bool = True) -> Reply:
        """The next message for ``request_id`` (heartbeats skipped unless asked for)."""
        wanted = lambda reply: reply.id == request_id and not (skip_heartbeats and reply.type == "heartbeat")  # noqa: E731
        deadline = time.monotonic() + timeout_s
        while True:
            for index, reply in enumerate(self._kept):
                if wanted(reply):
                    del self._kept[index]
                    return reply
            left = deadline - time.monotonic()
            reply = self.receive(left) if left > 0 else None
            if reply is None:
                raise AssertionError(f"no reply to {request_id} within {timeout_s} s")
            self._kept.append(reply)

    def request(self, message_type: str, timeout_s: float, **fields) -> Reply:
        return self.next_reply(self.send(message_type, **fields), timeout_s)

    def until_done(self, request_id: str, timeout_s: float = 60.0) -> list[Reply]:
        """All messages for one enhance request up to and including ``done``."""
        events = [self.next_reply(request_id, timeout_s, skip_heartbeats=False)]
        while events[-1].type != "done":
            events.append(self.next_reply(request_id, timeout_s, skip_heartbeats=False))
        return events


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"needs root ({why})")


def other_user_python() -> list[str]:
    """A command that runs Python with pyzmq importable as uid :data:`OTHER_UID` (skips if none)."""
    require_root("to run a second uid")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to run a second uid")
    drop = [setpriv, f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups"]
    site = str(Path(zmq.__file__).parent.parent)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")):
        if python is None:
            continue
        command = [*drop, "env", f"PYTHONPATH={site}", python]
        probe = subprocess.run([*command, "-c", "import zmq"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            return command
    pytest.skip(f"no Python with pyzmq that uid {OTHER_UID} may run (is {site} readable by others?)")


@contextmanager
def small_tmpfs(where: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` for the duration (root only; skips otherwise)."""
    require_root("to mount a small tmpfs")
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=1777", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` completely; returns the filler file (delete it to free it)."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as handle:
        while True:
            try:
                handle.write(chunk)
            except OSError:
                break
    for size in (4096, 512, 1):  # the last partial blocks
        try:
            with open(filler, "ab", buffering=0) as handle:
                while True:
                    handle.write(b"\0" * size)
        except OSError:
            continue
    return filler
