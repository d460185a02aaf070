"""What is local to this machine: live processes, what dead ones left, and loopback hosts (shared by engine and bridge).

Pure standard library: the bridge's client imports it and must stay light.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def left_by_dead_processes(folder: Path, name: re.Pattern[str]) -> list[os.DirEntry]:
    """The entries of ``folder`` whose ``name`` match names the process that made them (group
    ``pid``) and whose process is gone: a killed writer's temporary files or folders. None where
    the folder cannot be read."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return [entry for entry in entries if (match := name.match(entry.name)) and not pid_alive(int(match["pid"]))]


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 without brackets) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
