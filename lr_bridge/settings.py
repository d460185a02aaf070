"""Settings of the daemon and the client: command-line flag, else environment, else config file.

The config file is TOML (``$LR_BRIDGE_CONFIG``, default ``~/.config/lowlight-raw/bridge.toml``)
with flat keys, for example::

    bind = "tcp://127.0.0.1:5599"
    model = "quality"                     # auto, a shipped model (registry.MODEL_CHOICES) or a weight file
    device = "cuda"
    state_dir = "/run/user/1000/lowlight-raw"
    server_secret_key = "~/.config/lowlight-raw/keys/server.key_secret"   # daemon, remote mode
    authorized_keys = "~/.config/lowlight-raw/keys/authorized"            # daemon, remote mode
    endpoint = "tcp://gpu-box:5599"                                        # client
    server_key = "~/.config/lowlight-raw/keys/server.key"                  # client, remote mode
    client_key = "~/.config/lowlight-raw/keys/laptop.key_secret"           # client, remote mode
    max_held_mb = "2048"          # daemon: MiB of files it holds for queued and running jobs

Each key has an environment variable ``LR_BRIDGE_<KEY>`` (upper case) that overrides the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from lowlight_raw.machine import is_loopback_host
from lowlight_raw.options import parse_model
from lr_bridge.state import default_state_dir

DEFAULT_BIND = "tcp://127.0.0.1:*"  # loopback, any free port: clients find it in the state file
CONFIG_KEYS = frozenset(
    {"bind", "model", "device", "state_dir", "server_secret_key", "authorized_keys", "endpoint", "server_key", "client_key",
     "max_held_mb"}
)
_TCP = re.compile(r"^tcp://(?P<host>\[[0-9a-fA-F:.]+\]|[^:/\[\]]+):(?P<port>\*|\d{1,5})$")


class SettingsError(Exception):
    """A setting is malformed (message names the file or variable it came from)."""


def default_config_path() -> Path:
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "lowlight-raw" / "bridge.toml"


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The settings in the config file (``{}`` if there is none)."""
    explicit = path is not None or "LR_BRIDGE_CONFIG" in os.environ
    path = Path(path or os.environ.get("LR_BRIDGE_CONFIG") or default_config_path())
    if not path.is_file():
        if explicit:
            raise SettingsError(f"{path}: config file not found")
        return {}
    try:
        import tomllib
    except ModuleNotFoundError as exc:  # Python 3.10
        raise SettingsError(f"{path}: reading a config file needs Python 3.11 or later") from exc
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read config ({exc})") from exc
    unknown = set(data) - CONFIG_KEYS
    if unknown:
        raise SettingsError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    for key, value in data.items():
        if not isinstance(value, str):
            raise SettingsError(f"{path}: '{key}' must be a string")
    return data


def pick(flag_value: Any, key: str, config: dict[str, Any], default: Any = None) -> Any:
    """The flag's value if given, else ``$LR_BRIDGE_<KEY>``, else the config file's, else ``default``."""
    if flag_value is not None:
        return flag_value
    env_value = os.environ.get(f"LR_BRIDGE_{key.upper()}")
    if env_value:
        return env_value
    return config.get(key, default)


def pick_path(flag_value: Any, key: str, config: dict[str, Any], default: Path | None = None) -> Path | None:
    """Like :func:`pick`, as a user-expanded path."""
    value = pick(flag_value, key, config)
    return Path(value).expanduser() if value else default


def pick_model(flag_value: Any, config: dict[str, Any]) -> str:
    """The model to serve: a shipped model's name (``auto`` by default) or a user-expanded path."""
    return parse_model(str(pick(flag_value, "model", config, "auto")))


def pick_mebibytes(flag_value: Any, key: str, config: dict[str, Any], default_bytes: int) -> int:
    """Like :func:`pick`, a positive whole number of MiB, returned in bytes."""
    value = pick(flag_value, key, config)
    if value is None:
        return default_bytes
    try:
        mebibytes = int(value)
    except (TypeError, ValueError):
        mebibytes = 0
    if mebibytes <= 0:
        raise SettingsError(f"{key}: expected a positive whole number of MiB, got {value!r}")
    return mebibytes << 20


def pick_state_dir(flag_value: Any, config: dict[str, Any]) -> Path:
    """The state directory: flag, ``$LR_BRIDGE_STATE_DIR``, config, or :func:`default_state_dir`."""
    path = pick_path(flag_value, "state_dir", config, default_state_dir())
    assert path is not None
    return path.absolute()


def check_endpoint(endpoint: str) -> str:
    """``endpoint`` if it is ``tcp://HOST:PORT`` (PORT may be ``*`` to bind) or ``ipc://PATH``."""
    if endpoint.startswith("ipc://") and len(endpoint) > len("ipc://"):
        return endpoint
    match = _TCP.match(endpoint)
    if match and (match["port"] == "*" or 0 < int(match["port"]) < 65536):
        return endpoint
    raise SettingsError(f"{endpoint!r}: an endpoint is tcp://HOST:PORT or ipc://PATH")


def endpoint_is_local(endpoint: str) -> bool:
    """Whether ``endpoint`` cannot be reached from another machine (ipc, or a loopback address)."""
    if endpoint.startswith("ipc://"):
        return True
    match = _TCP.match(endpoint)
    if match is None:
        return False
    return is_loopback_host(match["host"].strip("[]"))
